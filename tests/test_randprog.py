"""The constrained-random program generator, checked on the golden model alone."""

import pytest

from systolic.config import preset
from systolic.isa import MAX_ROWS, MAX_TOKENS, ConfigReg, ErrorCode, VectorOp, decode
from systolic.model import GoldenModel
from systolic.testing.randprog import coverage, generate, reproduce_command

PRESETS = ("tiny", "icebreaker", "default")
SEEDS = range(40)


@pytest.mark.parametrize("name", PRESETS)
def test_programs_are_valid_and_race_free(name):
    config = preset(name)
    for seed in SEEDS:
        prog = generate(config, seed)
        result = prog.run_golden()
        assert result.error is ErrorCode.NONE, (seed, result.error, result.error_index)
        assert result.races == [], (seed, [str(r) for r in result.races[:3]])
        assert prog.prog_len == len(prog.words)
        assert prog.image[prog.prog_addr:prog.prog_addr + 16] == \
            prog.words[0].to_bytes(16, "little")


@pytest.mark.parametrize("name", PRESETS)
def test_programs_write_results(name):
    """Most programs change system memory (a program that stores nothing checks little)."""
    config = preset(name)
    changed = sum(generate(config, s).run_golden().memory.tobytes() != generate(config, s).image
                  for s in SEEDS)
    assert changed >= len(SEEDS) * 3 // 4


def test_programs_do_not_depend_on_earlier_state():
    """Every read touches rows the program wrote itself, so leftovers change nothing."""
    config = preset("tiny")
    model = GoldenModel(config)
    for seed in range(20):
        prog = generate(config, seed)
        dirty = model.run(prog.image, prog.prog_addr, prog.prog_len)
        fresh = prog.run_golden()
        assert dirty.memory.tobytes() == fresh.memory.tobytes(), seed


def test_deterministic_per_seed():
    config = preset("default")
    a, b, c = generate(config, 11), generate(config, 11), generate(config, 12)
    assert (a.image, a.prog_addr, a.prog_len) == (b.image, b.prog_addr, b.prog_len)
    assert a.image != c.image


def test_unpacks_as_image_address_length():
    prog = generate(preset("tiny"), 3)
    image, addr, length = prog
    assert (image, addr, length) == (prog.image, prog.prog_addr, prog.prog_len)


def _required_features(config):
    feats = {"NOP", "HALT", "SYNC.LOAD", "SYNC.EXEC", "SYNC.STORE",
             "LOAD.SP", "LOAD.ACC", "LOAD.PARAM", "LOAD.pad_top", "LOAD.pad_bottom",
             "LOAD.pad_left", "LOAD.SP.stride0", "LOAD.ACC.stride0", "LOAD.n1",
             "STORE.SP", "STORE.stride0",
             "MATMUL.preload", "MATMUL.compute", "MATMUL.preload+compute",
             "MATMUL.accumulate", "MATMUL.overwrite",
             "LOAD.pop_next", "LOAD.push_next", "EXEC.pop_prev", "EXEC.pop_next",
             "EXEC.push_prev", "EXEC.push_next", "STORE.pop_prev", "STORE.push_prev"}
    for out in ("INT8", "UINT8", "INT32"):
        feats.add(f"STORE.ACC.{out}.per_tensor")
    for out in ("INT8", "UINT8"):
        feats.add(f"STORE.ACC.{out}.per_channel")
    regs = [r for r in ConfigReg if config.vector_unit or not r.name.startswith("VEC")]
    feats |= {f"CONFIG.{r.name}" for r in regs}
    if config.vector_unit:
        feats |= {f"VECTOR.{v.name}" for v in VectorOp}
    return feats


@pytest.mark.parametrize("name", PRESETS)
def test_covers_every_opcode_and_flag(name):
    config = preset(name)
    seen = set()
    for seed in range(60):
        seen |= coverage(generate(config, seed).words)
    missing = _required_features(config) - seen
    assert not missing, sorted(missing)
    if not config.vector_unit:
        assert not any(f.startswith("VECTOR") for f in seen)


def test_shapes_include_one_and_the_maximum():
    config = preset("default")
    rows = set()
    for seed in range(120):
        for w in generate(config, seed).words:
            i = decode(w)
            if "n_rows" in i.fields:
                rows.add(i.n_rows)
    assert 1 in rows and MAX_ROWS in rows


def test_traffic_is_capped():
    """The budget is soft (no task starts past it), so the mean stays near it."""
    for name in PRESETS:
        costs = [generate(preset(name), seed, budget=3000).cost for seed in SEEDS]
        assert sum(costs) / len(costs) < 3000, name
        assert max(costs) < 3 * 3000, name
        big = [generate(preset(name), seed, budget=30000).cost for seed in range(10)]
        assert sum(big) > sum(costs[:10]), name


@pytest.mark.parametrize("code", [e for e in ErrorCode if e is not ErrorCode.NONE])
@pytest.mark.parametrize("name", PRESETS)
def test_injects_exactly_one_error(name, code):
    config = preset(name)
    for seed in range(12):
        index = None if seed % 3 else (MAX_TOKENS + seed if code is ErrorCode.TOKEN_OVERFLOW
                                       else seed)
        prog = generate(config, seed, error=code, error_index=index)
        result = prog.run_golden()
        assert (result.error, result.error_index) == (code, prog.error_index), seed
        assert result.races == []
        if index is not None:
            assert prog.error_index == index


def test_injection_rejects_impossible_requests():
    with pytest.raises(ValueError, match="TOKEN_OVERFLOW needs an index of at least 255, not 3"):
        generate(preset("tiny"), 0, error=ErrorCode.TOKEN_OVERFLOW, error_index=3)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        generate(preset("tiny"), -1)


def test_reproduce_command_names_seed_and_preset():
    cmd = reproduce_command("icebreaker", 4242)
    assert "SYSTOLIC_SEED=4242" in cmd and "SYSTOLIC_PRESETS=icebreaker" in cmd
    assert "tests/test_accelerator.py" in cmd
