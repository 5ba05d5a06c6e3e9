# amaranth: UnusedElaboratable=no
"""The controller on its own (Amaranth simulator): micro-ops without an instruction index,
decode held within reach of the queue heads' index tags, AXI errors reported with the
full index of the micro-op the unit took, and queues of depth 1 that offer the decoded
word itself to their unit."""

import pytest
from amaranth.sim import Simulator

from systolic.config import preset
from systolic.isa import INSTR_BYTES, ErrorCode, Opcode, Queue, assemble
from systolic.rtl.controller import TAG_BITS, Controller, stored_bits
from systolic.rtl.decoder import uop_layout

CONFIG = preset("tiny")
PROG_ADDR = 0x400
REACH = 2 ** TAG_BITS - 1      # instructions decode may run ahead of a tagged queue head


def _program(n_nops):
    return assemble("\n".join([
        "LOAD dest=sp n_rows=4 addr=0 length=2 stride=2 dram_addr=0",
        "LOAD dest=sp n_rows=1 addr=4 length=2 stride=2 dram_addr=64",
        *["NOP"] * n_nops, "HALT"]))


def _run(words, script, config=CONFIG):
    """Run the controller on ``words`` (served by a fetch model that offers one word per
    cycle and holds it until the controller takes it) while
    ``script(ctx, ctrl, state)`` plays the load unit; returns the state dict (instret
    count, done strobe, error code and index, and the cycles each word was offered)."""
    ctrl = Controller(config=config)
    sim = Simulator(ctrl)
    sim.add_clock(1e-6)
    state = {"instret": 0, "done": None, "offered": 0, "held": [], "error": (0, 0)}

    async def fetch(ctx):
        pending = []
        while True:
            ctx.set(ctrl.fetch_cmd.ready, 1)
            ctx.set(ctrl.fetch_words.valid, 0)
            if pending:
                word, last = pending[0]
                ctx.set(ctrl.fetch_words.p, {"data": word, "error": 0, "last": last})
                ctx.set(ctrl.fetch_words.valid, 1)
            # values just before the clock edge, after the other bench's changes
            # the CSR block's error record, which the controller writes and reads back
            ctx.set(ctrl.error_held, state["error"][0] != ErrorCode.NONE.value)
            ctx.set(ctrl.error_held_index, state["error"][1])
            _, _, cmd_valid, addr, count, taken, instret, done, we, code, index = (
                await ctx.tick().sample(
                    ctrl.fetch_cmd.valid, ctrl.fetch_cmd.p.addr, ctrl.fetch_cmd.p.count,
                    ctrl.fetch_words.ready, ctrl.instret, ctrl.done, ctrl.error_we,
                    ctrl.error_code, ctrl.error_index))
            if pending:
                state["offered"] += 1
                if taken:
                    pending.pop(0)
                    state["held"].append(state["offered"])
                    state["offered"] = 0
            state["instret"] += instret
            if done:
                state["done"] = state["error"]
            if we:
                state["error"] = (code, index)
            if cmd_valid:
                first = (addr - PROG_ADDR) // INSTR_BYTES
                pending += [(words[first + i], i == count - 1) for i in range(count)]

    async def control(ctx):
        ctx.set(ctrl.units_idle, 1)
        ctx.set(ctrl.prog_addr, PROG_ADDR)
        ctx.set(ctrl.prog_len, len(words))
        ctx.set(ctrl.start, 1)
        await ctx.tick()
        ctx.set(ctrl.start, 0)
        await script(ctx, ctrl, state)

    sim.add_testbench(fetch, background=True)
    sim.add_testbench(control)
    sim.run()
    return state


async def _take(ctx, ctrl):
    """Accept the load queue's head; returns its opcode."""
    ctx.set(ctrl.load.ready, 1)
    while not ctx.get(ctrl.load.valid):
        await ctx.tick()
    opcode = ctx.get(ctrl.load.p.opcode)
    await ctx.tick()
    ctx.set(ctrl.load.ready, 0)
    return opcode


def test_micro_ops_carry_no_index():
    for q in (Queue.LOAD, Queue.EXEC, Queue.STORE):
        assert "index" not in dict(uop_layout(q).members)
    widths = [len(stored_bits(preset("icebreaker"), q))
              for q in (Queue.LOAD, Queue.EXEC, Queue.STORE)]
    assert max(widths) < 128, widths


def test_decode_stays_within_reach_and_error_index_is_full():
    words = _program(n_nops=2 * REACH)
    seen = {}

    async def script(ctx, ctrl, state):
        ctx.set(ctrl.units_idle, 0)
        await ctx.tick().repeat(12 * REACH)         # the load unit does not take anything
        seen["stalled_at"] = state["instret"]
        assert await _take(ctx, ctrl) == Opcode.LOAD
        await ctx.tick().repeat(8 * REACH)
        seen["after_first"] = state["instret"]
        assert await _take(ctx, ctrl) == Opcode.LOAD
        await ctx.tick().repeat(20)
        ctx.set(ctrl.unit_error, 1 << Queue.LOAD.value)  # the second LOAD's AXI error
        await ctx.tick()
        ctx.set(ctrl.unit_error, 0)
        ctx.set(ctrl.units_idle, 1)
        await ctx.tick().repeat(40)

    state = _run(words, script)
    # decode waits when it is REACH instructions past the oldest queued LOAD, not later
    assert seen["stalled_at"] == REACH
    assert seen["after_first"] == REACH + 1
    code, index = state["done"]
    assert (ErrorCode(code), index) == (ErrorCode.AXI_ERROR, 1)


@pytest.mark.parametrize("name", ["tiny", "icebreaker"])
def test_error_index_past_a_tag_wrap(name):
    """A LOAD at index 2 * 2**TAG_BITS + 5 whose queue was empty: index comes back whole
    (from the tag on ``tiny``, from the decode index at the take with depth 1)."""
    n = 2 * 2 ** TAG_BITS + 3
    words = assemble("\n".join(["NOP"] * n + [
        "LOAD dest=sp n_rows=4 addr=0 length=2 stride=2 dram_addr=0",
        "LOAD dest=sp n_rows=1 addr=4 length=2 stride=2 dram_addr=64", "HALT"]))

    async def script(ctx, ctrl, state):
        ctx.set(ctrl.units_idle, 0)                      # the unit is busy with them
        assert await _take(ctx, ctrl) == Opcode.LOAD
        assert await _take(ctx, ctrl) == Opcode.LOAD
        ctx.set(ctrl.unit_error, 1 << Queue.LOAD.value)
        await ctx.tick()
        ctx.set(ctrl.unit_error, 0)
        ctx.set(ctrl.units_idle, 1)
        await ctx.tick().repeat(40)

    state = _run(words, script, preset(name))
    code, index = state["done"]
    assert (ErrorCode(code), index) == (ErrorCode.AXI_ERROR, n + 1)


@pytest.mark.parametrize("name", ["tiny", "icebreaker"])
def test_queue_head_body_is_the_micro_op(name):
    """A SYNC's queue field and a CONFIG's reg are in the word's body bits; the queue
    head shows SYNC with an all-zero body and CONFIG with only reg and value."""
    words = assemble("SYNC queue=store\nCONFIG reg=req_zp value=-3\nHALT")
    heads = []

    async def script(ctx, ctrl, state):
        for _ in range(2):
            ctx.set(ctrl.store.ready, 1)
            while not ctx.get(ctrl.store.valid):
                await ctx.tick()
            heads.append((ctx.get(ctrl.store.p.opcode), ctx.get(ctrl.store.p.body.as_value()),
                          ctx.get(ctrl.store.p.body.config.reg),
                          ctx.get(ctrl.store.p.body.config.value)))
            await ctx.tick()
            ctx.set(ctrl.store.ready, 0)
        await ctx.tick().repeat(20)

    _run(words, script, preset(name))
    (sync_op, sync_body, *_), (cfg_op, cfg_body, reg, value) = heads
    assert (sync_op, sync_body) == (Opcode.SYNC, 0)
    assert cfg_op == Opcode.CONFIG and (reg, value) == (3, -3)
    assert cfg_body == 3 | ((-3) & 0xFFFF_FFFF) << 8


def test_fetch_word_held_while_its_segments_are_written():
    """With a 32-bit bus the buffer writes a word as 4 segments: a word offered back to
    back is taken in its fourth cycle, and decode still sees every word whole."""
    words = _program(n_nops=6)

    async def script(ctx, ctrl, state):
        assert await _take(ctx, ctrl) == Opcode.LOAD
        assert await _take(ctx, ctrl) == Opcode.LOAD
        await ctx.tick().repeat(100)

    state = _run(words, script)
    assert state["held"] == [4] * len(words)
    assert state["instret"] == len(words)
    code, index = state["done"]
    assert (ErrorCode(code), index) == (ErrorCode.NONE, 0)


def _fifo_trace(depth, pushes, pop_every):
    """Drive a ``_Fifo`` of ``depth`` with the words ``pushes`` (written whenever
    ``w_rdy``) while a reader pops the head every ``pop_every`` cycles; returns the
    words read and the cycles of each write."""
    from amaranth.hdl import Signal
    from amaranth.sim import Simulator

    from systolic.rtl.controller import _Fifo

    fifo_keep = Signal()
    fifo = _Fifo(8, depth, clear=[([7], fifo_keep)])
    sim = Simulator(fifo)
    sim.add_clock(1e-6)
    out = {"read": [], "writes": [], "max_level": 0}

    async def bench(ctx):
        todo = list(pushes)
        ctx.set(fifo_keep, 1)
        for cycle in range(8 * len(pushes) * pop_every + 8):
            write = bool(todo) and ctx.get(fifo.w_rdy)
            ctx.set(fifo.w_en, write)
            if write:
                ctx.set(fifo.w_data, todo[0])
            pop = ctx.get(fifo.r_rdy) and cycle % pop_every == 0
            ctx.set(fifo.r_en, pop)
            if pop:
                out["read"].append(ctx.get(fifo.r_data))
            out["max_level"] = max(out["max_level"], ctx.get(fifo.level))
            await ctx.tick()
            if write:
                out["writes"].append(cycle)
                todo.pop(0)

    sim.add_testbench(bench)
    sim.run()
    return out


def test_fifo_needs_two_entries():
    from systolic.rtl.controller import _Fifo

    with pytest.raises(ValueError, match="FIFO depth must be an integer of at least 2, not 1"):
        _Fifo(8, 1)
    out = _fifo_trace(2, [0x11, 0x22, 0x33], 3)
    assert out["read"] == [0x11, 0x22, 0x33] and out["max_level"] <= 2


def test_depth_one_offers_the_decoded_word_until_its_unit_takes_it():
    """With queues of depth 1 the checked word is the queue head: its payload holds while
    the unit waits, nothing behind it is decoded meanwhile, and it retires at the take."""
    words = assemble("\n".join([
        "LOAD dest=sp n_rows=4 addr=8 length=2 stride=2 dram_addr=0x40 push_next",
        "MATMUL compute=1 n_rows=4 a_addr=8 pop_prev",
        "STORE src=acc n_rows=1 addr=0 length=2 stride=8 dram_addr=0x80", "HALT"]))
    seen = {}

    async def script(ctx, ctrl, state):
        ctx.set(ctrl.units_idle, 0)
        while not ctx.get(ctrl.load.valid):
            await ctx.tick()
        first = ctx.get(ctrl.load.p.as_value())
        for _ in range(50):                       # the load unit does not take it yet
            await ctx.tick()
            assert ctx.get(ctrl.load.valid) and ctx.get(ctrl.load.p.as_value()) == first
            assert not ctx.get(ctrl.exec.valid) and not ctx.get(ctrl.store.valid)
        seen["before"] = state["instret"]
        seen["load"] = (ctx.get(ctrl.load.p.body.load.addr),
                        ctx.get(ctrl.load.p.body.load.dram_addr))
        ctx.set(ctrl.load.ready, 1)
        await ctx.tick()
        ctx.set(ctrl.load.ready, 0)
        assert not ctx.get(ctrl.load.valid)
        seen["after"] = state["instret"]
        # the MATMUL is decoded next; its token is not pushed yet
        for _ in range(30):
            await ctx.tick()
            assert not ctx.get(ctrl.exec.valid)
        seen["stall_token"] = ctx.get(ctrl.stall_token)
        ctx.set(ctrl.push[Queue.LOAD.value][1], 1)
        await ctx.tick()
        ctx.set(ctrl.push[Queue.LOAD.value][1], 0)
        assert await _take_from(ctx, ctrl.exec) == Opcode.MATMUL
        assert await _take_from(ctx, ctrl.store) == Opcode.STORE
        ctx.set(ctrl.units_idle, 1)
        await ctx.tick().repeat(40)

    state = _run(words, script, preset("icebreaker"))
    assert seen["before"] == 0 and seen["after"] == 1
    assert seen["load"] == (8, 0x40)
    assert seen["stall_token"] == 1
    assert state["instret"] == len(words)
    code, index = state["done"]
    assert (ErrorCode(code), index) == (ErrorCode.NONE, 0)


async def _take_from(ctx, port):
    ctx.set(port.ready, 1)
    while not ctx.get(port.valid):
        await ctx.tick()
    opcode = ctx.get(port.p.opcode)
    await ctx.tick()
    ctx.set(port.ready, 0)
    return opcode
