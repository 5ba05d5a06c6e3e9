"""AcceleratorConfig: validation messages, presets, derived values and the C header."""

import dataclasses
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systolic.config import PRESETS, AcceleratorConfig, preset
from systolic.csr import CSR_MAP
from systolic.isa import ErrorCode

FIELDS = [f.name for f in dataclasses.fields(AcceleratorConfig) if f.name != "name"]


# -- validation ----------------------------------------------------------------------------

def _rule(name, rule, value):
    return f"AcceleratorConfig.{name} {rule}, not {value!r}"


def _int_cases(name, lo, hi):
    return [
        (name, lo - 1, _rule(name, f"must be in {lo}..{hi}", lo - 1)),
        (name, hi + 1, _rule(name, f"must be in {lo}..{hi}", hi + 1)),
        (name, str(lo), _rule(name, "must be an integer", str(lo))),
        (name, float(lo), _rule(name, "must be an integer", float(lo))),
        (name, True, _rule(name, "must be an integer", True)),
    ]


def _bool_cases(name):
    return [(name, bad, _rule(name, "must be a bool", bad)) for bad in (1, 0, "true", None)]


BAD = [
    *_int_cases("rows", 1, 64),
    *_int_cases("cols", 1, 64),
    ("dataflow", "is", _rule("dataflow", "must be 'ws' or 'os'", "is")),
    ("dataflow", "WS", _rule("dataflow", "must be 'ws' or 'os'", "WS")),
    *_int_cases("input_bits", 1, 8),
    *_int_cases("weight_bits", 1, 8),
    ("acc_bits", 16, _rule("acc_bits", "must be 32", 16)),
    *_bool_cases("input_signed"),
    *_bool_cases("weight_signed"),
    ("sp_banks", 3, _rule("sp_banks", "must be in 4..16", 3)),
    ("sp_banks", 17, _rule("sp_banks", "must be in 4..16", 17)),
    ("sp_banks", "4", _rule("sp_banks", "must be an integer", "4")),
    ("sp_depth", 8, _rule("sp_depth", "must be in 16..16384", 8)),
    ("sp_depth", 1 << 15, _rule("sp_depth", "must be in 16..16384", 1 << 15)),
    ("sp_depth", 1000, _rule("sp_depth", "must be a power of two", 1000)),
    ("sp_depth", 2048.0, _rule("sp_depth", "must be an integer", 2048.0)),
    ("acc_banks", 1, _rule("acc_banks", "must be 2", 1)),
    ("acc_banks", 4, _rule("acc_banks", "must be 2", 4)),
    ("acc_depth", 4, _rule("acc_depth", "must be in 8..16384", 4)),
    ("acc_depth", 1 << 15, _rule("acc_depth", "must be in 8..16384", 1 << 15)),
    ("acc_depth", 96, _rule("acc_depth", "must be a power of two", 96)),
    *_int_cases("param_rows", 2, 256),
    ("axi_data_width", 16, _rule("axi_data_width", "must be 32, 64 or 128", 16)),
    ("axi_data_width", 256, _rule("axi_data_width", "must be 32, 64 or 128", 256)),
    ("axi_data_width", "64", _rule("axi_data_width", "must be 32, 64 or 128", "64")),
    ("axi_addr_width", 64, _rule("axi_addr_width", "must be 32", 64)),
    *_int_cases("axi_id_width", 1, 8),
    *_int_cases("load_queue_depth", 1, 64),
    *_int_cases("exec_queue_depth", 1, 64),
    *_int_cases("store_queue_depth", 1, 64),
    *_int_cases("max_outstanding_reads", 4, 16),
    *_bool_cases("vector_unit"),
    ("postproc_lanes", 0, _rule("postproc_lanes", "must be in 1..8", 0)),
    ("postproc_lanes", 9, _rule("postproc_lanes", "must be in 1..8", 9)),
    ("postproc_lanes", 3, _rule("postproc_lanes", "must divide cols (8)", 3)),
    ("postproc_lanes", "all", _rule("postproc_lanes", "must be an integer", "all")),
    ("requant_bits", 8, _rule("requant_bits", "must be 16 or 32", 8)),
    ("requant_bits", 24, _rule("requant_bits", "must be 16 or 32", 24)),
    *_bool_cases("perf_counters"),
    *_int_cases("pipeline_every", 0, 64),
]


def test_every_field_has_bad_value_cases():
    assert {name for name, _, _ in BAD} == set(FIELDS)


@pytest.mark.parametrize("name, value, message", BAD,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_field_is_rejected_with_its_own_message(name, value, message):
    with pytest.raises(ValueError) as info:
        AcceleratorConfig(**{name: value})
    assert str(info.value) == message


def test_sp_size_is_limited_over_all_banks():
    AcceleratorConfig(sp_banks=4, sp_depth=1 << 14)
    with pytest.raises(ValueError) as info:
        AcceleratorConfig(sp_banks=8, sp_depth=1 << 14)
    assert str(info.value) == _rule("sp_depth", "times sp_banks must be at most 65536 rows",
                                    1 << 14)


# Widths and counts compared with ``not in (...)`` or ``!=`` let an equal float through.
FLOAT_TWINS = [("axi_data_width", 64.0), ("axi_addr_width", 32.0), ("acc_bits", 32.0),
               ("acc_banks", 2.0), ("requant_bits", 16.0)]


@pytest.mark.parametrize("name, value", FLOAT_TWINS, ids=[n for n, _ in FLOAT_TWINS])
def test_float_twins_of_allowed_values_are_rejected(name, value):
    with pytest.raises(ValueError, match=rf"^AcceleratorConfig\.{name} must be "):
        AcceleratorConfig(**{name: value})


def test_replace_checks_again():
    with pytest.raises(ValueError, match=r"^AcceleratorConfig\.rows must be in 1\.\.64, not 0$"):
        PRESETS["tiny"].replace(rows=0)
    assert PRESETS["tiny"].replace(rows=3).rows == 3


def test_frozen_and_keyword_only():
    config = AcceleratorConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rows = 4
    with pytest.raises(TypeError):
        AcceleratorConfig(8, 8)


# -- presets -------------------------------------------------------------------------------

def test_presets():
    assert list(PRESETS) == ["tiny", "default", "icebreaker", "ulx3s"]
    for name, config in PRESETS.items():
        assert config.name == name
        assert preset(name) is config
        assert AcceleratorConfig(**config.to_dict()) == config


def test_presets_match_the_architecture():
    tiny, default, ice, ulx = (PRESETS[n] for n in ("tiny", "default", "icebreaker", "ulx3s"))
    assert (tiny.rows, tiny.cols) == (2, 2)
    assert (default.rows, default.cols, default.axi_data_width) == (8, 8, 64)
    assert default.vector_unit and default.perf_counters and default.requant_bits == 32
    assert (ice.rows, ice.cols, ice.axi_data_width, ice.lanes) == (4, 4, 32, 1)
    assert not ice.vector_unit and ice.requant_bits == 16
    assert ulx.requant_bits == 16 and ulx.lanes < ulx.cols


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError) as info:
        preset("huge")
    assert str(info.value) == "unknown preset 'huge'; choose one of tiny, default, icebreaker, ulx3s"


# -- derived values ------------------------------------------------------------------------

@st.composite
def configs(draw):
    cols = draw(st.integers(1, 64))
    lanes = draw(st.sampled_from([None] + [d for d in range(1, cols + 1) if cols % d == 0]))
    sp_banks = draw(st.integers(4, 16))
    sp_depth = 1 << draw(st.integers(4, 16 - (sp_banks - 1).bit_length()))
    return AcceleratorConfig(
        rows=draw(st.integers(1, 64)), cols=cols, dataflow=draw(st.sampled_from(["ws", "os"])),
        input_bits=draw(st.integers(1, 8)), weight_bits=draw(st.integers(1, 8)),
        input_signed=draw(st.booleans()), weight_signed=draw(st.booleans()),
        sp_banks=sp_banks, sp_depth=sp_depth, acc_depth=1 << draw(st.integers(3, 14)),
        param_rows=draw(st.integers(2, 256)),
        axi_data_width=draw(st.sampled_from([32, 64, 128])),
        postproc_lanes=lanes, requant_bits=draw(st.sampled_from([16, 32])),
        vector_unit=draw(st.booleans()), perf_counters=draw(st.booleans()),
    )


@given(configs())
def test_derived_values(c):
    assert c.lanes == (c.cols if c.postproc_lanes is None else c.postproc_lanes)
    assert c.sp_width == max(c.rows, c.cols)
    assert c.sp_rows == c.sp_banks * c.sp_depth <= 1 << 16
    assert c.sp_bytes == c.sp_rows * c.sp_width
    assert c.acc_rows == 2 * c.acc_depth
    assert c.acc_bytes == c.acc_rows * c.cols * 4
    assert c.axi_bytes * 8 == c.axi_data_width
    assert c.macs_per_cycle == c.rows * c.cols
    for bits, signed, (lo, hi) in ((c.input_bits, c.input_signed, c.input_range),
                                   (c.weight_bits, c.weight_signed, c.weight_range)):
        assert hi - lo == (1 << bits) - 1
        assert lo == (-(1 << (bits - 1)) if signed else 0)


def test_derived_values_of_the_default_preset():
    c = PRESETS["default"]
    assert (c.sp_width, c.sp_rows, c.sp_bytes) == (8, 8192, 64 * 1024)
    assert (c.acc_rows, c.acc_bytes) == (1024, 32 * 1024)
    assert (c.input_range, c.weight_range) == ((-128, 127), (-128, 127))
    assert AcceleratorConfig(input_signed=False).input_range == (0, 255)


# -- the C header --------------------------------------------------------------------------

def _defines(header):
    return dict(re.findall(r"^#define (\w+) (\S+)$", header, flags=re.MULTILINE))


def _expected_defines(config):
    out = {}
    for name in FIELDS:
        value = getattr(config, name)
        if name == "dataflow":
            out[f"SYSTOLIC_DATAFLOW_{value.upper()}"] = 1
        elif name == "postproc_lanes":
            out["SYSTOLIC_POSTPROC_LANES"] = config.lanes
        else:
            out[f"SYSTOLIC_{name.upper()}"] = int(value)
    for name in ("sp_width", "sp_rows", "sp_bytes", "acc_rows", "acc_bytes"):
        out[f"SYSTOLIC_{name.upper()}"] = getattr(config, name)
    for reg in CSR_MAP:
        out[f"SYSTOLIC_CSR_{reg.name}"] = reg.offset
        for f in reg.fields:
            out[f"SYSTOLIC_CSR_{reg.name}_{f.name}_SHIFT"] = f.lsb
            out[f"SYSTOLIC_CSR_{reg.name}_{f.name}_MASK"] = ((1 << f.width) - 1) << f.lsb
    for code in ErrorCode:
        out[f"SYSTOLIC_ERR_{code.name}"] = code.value
    return out


CUSTOM = AcceleratorConfig(rows=3, cols=6, dataflow="os", input_signed=False,
                           postproc_lanes=2, perf_counters=False)
HEADER_CONFIGS = [*PRESETS.values(), CUSTOM]


@pytest.mark.parametrize("config", HEADER_CONFIGS, ids=lambda c: c.name)
def test_header_has_every_parameter_and_csr_offset(config):
    header = config.to_c_header()
    defines = _defines(header)
    for name, value in _expected_defines(config).items():
        assert name in defines, name
        assert int(defines[name].rstrip("u"), 0) == value, name


def test_header_values_follow_the_config():
    defines = _defines(CUSTOM.to_c_header())
    assert defines["SYSTOLIC_ROWS"] == "3" and defines["SYSTOLIC_INPUT_SIGNED"] == "0"
    assert "SYSTOLIC_DATAFLOW_OS" in defines and "SYSTOLIC_DATAFLOW_WS" not in defines


def test_header_compiles_and_its_values_hold_in_c(tmp_path):
    """gcc (which Verilator needs anyway) checks every value with a static assertion."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "a C compiler (gcc) is needed to check the generated header"
    for i, config in enumerate(HEADER_CONFIGS):
        (tmp_path / f"systolic{i}.h").write_text(config.to_c_header())
        checks = "\n".join(f'_Static_assert({name} == {value}ULL, "{name}");'
                           for name, value in _expected_defines(config).items())
        source = tmp_path / f"check{i}.c"
        source.write_text(f'#include "systolic{i}.h"\n#include "systolic{i}.h"\n{checks}\n')
        result = subprocess.run([gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                                 str(source)], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr


def test_header_static_assertion_catches_a_wrong_value(tmp_path):
    """The check above can fail: a header with one wrong value is refused by gcc."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc
    header = PRESETS["tiny"].to_c_header().replace("#define SYSTOLIC_ROWS 2",
                                                   "#define SYSTOLIC_ROWS 3")
    (tmp_path / "systolic.h").write_text(header)
    source = tmp_path / "check.c"
    source.write_text('#include "systolic.h"\n_Static_assert(SYSTOLIC_ROWS == 2ULL, "rows");\n')
    result = subprocess.run([gcc, "-std=c11", "-fsyntax-only", str(source)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0


@settings(max_examples=25)
@given(configs())
def test_header_of_any_config_has_every_parameter(config):
    defines = _defines(config.to_c_header())
    for name, value in _expected_defines(config).items():
        assert int(defines[name].rstrip("u"), 0) == value, name
