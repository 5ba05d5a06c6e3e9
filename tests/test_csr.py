"""The CSR map: a well-formed register table, and ID registers that describe the config."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from systolic.config import PRESETS, AcceleratorConfig
from systolic.csr import CSR, CSR_MAP, ID_MAGIC, VERSION, csr_markdown, id_words

ACCESS = {"ro", "rw", "w1c", "wo"}


def test_offsets_are_unique_and_word_aligned():
    offsets = [reg.offset for reg in CSR_MAP]
    assert len(set(offsets)) == len(offsets)
    assert all(off % 4 == 0 and 0 <= off < 0x1000 for off in offsets)
    assert offsets == sorted(offsets)


def test_names_are_unique_and_indexed():
    assert len(CSR) == len(CSR_MAP)
    assert all(CSR[reg.name] is reg for reg in CSR_MAP)


@pytest.mark.parametrize("reg", CSR_MAP, ids=lambda r: r.name)
def test_register_is_well_formed(reg):
    assert reg.access in ACCESS
    assert reg.doc
    names = [f.name for f in reg.fields]
    assert len(set(names)) == len(names)
    taken = 0
    for f in reg.fields:
        assert f.width >= 1 and f.lsb >= 0, f.name
        assert f.lsb + f.width <= 32, f.name
        mask = ((1 << f.width) - 1) << f.lsb
        assert not taken & mask, f"{reg.name}.{f.name} overlaps another field"
        taken |= mask


def test_perf_counters_are_read_only_and_after_the_control_registers():
    perf = [reg for reg in CSR_MAP if reg.perf]
    assert perf and all(reg.access == "ro" for reg in perf)
    assert min(r.offset for r in perf) > max(r.offset for r in CSR_MAP if not r.perf)


def test_control_and_status_registers_exist():
    for name in ("ID", "VERSION", "CTRL", "STATUS", "ERROR_CODE", "ERROR_INDEX",
                 "PROG_ADDR", "PROG_LEN", "IRQ_STATUS"):
        assert name in CSR
    assert {"START", "SOFT_RESET", "IRQ_ENABLE"} <= {f.name for f in CSR["CTRL"].fields}
    assert {"BUSY", "DONE", "ERROR"} <= {f.name for f in CSR["STATUS"].fields}


# -- ID registers, decoded through the field table -----------------------------------------

def field(words, reg, name):
    f = {f.name: f for f in CSR[reg].fields}[name]
    return (words[reg] >> f.lsb) & ((1 << f.width) - 1)


def decode_id(words):
    """Rebuild the configuration fields the ID registers carry, from the field table alone."""
    def log2(reg, name):
        return 1 << field(words, reg, name)

    return {
        "rows": field(words, "CONFIG0", "ROWS"),
        "cols": field(words, "CONFIG0", "COLS"),
        "input_bits": field(words, "CONFIG0", "INPUT_BITS"),
        "weight_bits": field(words, "CONFIG0", "WEIGHT_BITS"),
        "input_signed": bool(field(words, "CONFIG0", "INPUT_SIGNED")),
        "weight_signed": bool(field(words, "CONFIG0", "WEIGHT_SIGNED")),
        "dataflow": "os" if field(words, "CONFIG0", "DATAFLOW_OS") else "ws",
        "vector_unit": bool(field(words, "CONFIG0", "VECTOR_UNIT")),
        "perf_counters": bool(field(words, "CONFIG0", "PERF_COUNTERS")),
        "sp_banks": field(words, "CONFIG1", "SP_BANKS"),
        "sp_depth": log2("CONFIG1", "SP_DEPTH_LOG2"),
        "acc_depth": log2("CONFIG1", "ACC_DEPTH_LOG2"),
        "param_rows": field(words, "CONFIG1", "PARAM_ROWS") or 256,
        "axi_data_width": 8 * field(words, "CONFIG2", "AXI_DATA_BYTES"),
        "requant_bits": field(words, "CONFIG2", "REQUANT_BITS"),
        "lanes": field(words, "CONFIG2", "POSTPROC_LANES"),
    }


def expected_id(config):
    return {name: getattr(config, name) for name in decode_id(id_words(PRESETS["tiny"]))}


@pytest.mark.parametrize("config", PRESETS.values(), ids=lambda c: c.name)
def test_id_words_of_presets_decode_back_to_the_config(config):
    words = id_words(config)
    assert words["ID"] == ID_MAGIC == 0x53595354
    assert words["VERSION"] == VERSION
    assert set(words) <= set(CSR)
    assert all(0 <= w < 1 << 32 for w in words.values())
    assert decode_id(words) == expected_id(config)


@given(rows=st.integers(1, 64), cols=st.sampled_from([1, 2, 8, 16, 64]),
       input_bits=st.integers(1, 8), weight_bits=st.integers(1, 8),
       flags=st.lists(st.booleans(), min_size=5, max_size=5),
       sp_depth=st.sampled_from([16, 1024, 16384]), acc_depth=st.sampled_from([8, 512, 16384]),
       param_rows=st.sampled_from([2, 255, 256]), axi=st.sampled_from([32, 64, 128]),
       requant_bits=st.sampled_from([16, 32]))
def test_id_words_of_any_config_decode_back(rows, cols, input_bits, weight_bits, flags,
                                            sp_depth, acc_depth, param_rows, axi, requant_bits):
    config = AcceleratorConfig(
        rows=rows, cols=cols, input_bits=input_bits, weight_bits=weight_bits,
        input_signed=flags[0], weight_signed=flags[1], dataflow="os" if flags[2] else "ws",
        vector_unit=flags[3], perf_counters=flags[4], sp_depth=sp_depth, acc_depth=acc_depth,
        param_rows=param_rows, axi_data_width=axi, requant_bits=requant_bits,
        postproc_lanes=1 if rows % 2 else None)
    assert decode_id(id_words(config)) == expected_id(config)


def test_id_decoding_catches_a_changed_configuration():
    """The round trip can fail: another config's ID words do not decode to this one."""
    assert decode_id(id_words(PRESETS["icebreaker"])) != expected_id(PRESETS["ulx3s"])


def test_markdown_lists_every_register_and_field():
    text = csr_markdown()
    for reg in CSR_MAP:
        assert f"| 0x{reg.offset:02X} | `{reg.name}` | {reg.access} |" in text
        for f in reg.fields:
            assert f"`{f.name}`" in text
