# amaranth: UnusedElaboratable=no
"""Store unit + post-processor + DMA write engine in Amaranth's simulator.

STOREs (and the CONFIGs before them) run on the three blocks against an AXI write slave
written here (random AW/W pauses, B responses after a delay) and read-port models of the
accumulator and the scratchpad (random refusals); system memory must match the golden
model byte for byte, and each STORE's push must come after its last B response. The
measured cycles per row are printed (``pytest -s``)."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from systolic.config import AcceleratorConfig, preset
from systolic.isa import (
    INSTR_BYTES,
    ConfigReg,
    Instruction,
    Opcode,
    Queue,
    StoreSrc,
    encode,
    to_bytes,
)
from systolic.model import GoldenModel
from systolic.numerics import Activation, OutType, activation_bounds
from systolic.rtl.decoder import uop_layout
from systolic.rtl.dma_write import WriteEngine
from systolic.rtl.postproc import PostProcessor
from systolic.rtl.store_unit import StoreUnit, narrow_bound, narrow_bound_hdl

MEM_BYTES = 1 << 14
PROG_ADDR = MEM_BYTES - 1024     # the model's program; STOREs stay below it


class Harness(Elaboratable):
    """The three blocks wired as in the top, plus read-port models answering from
    memories initialised with ``acc`` and ``sp``; ``acc_deny``/``sp_deny`` refuse a
    request in the cycle they are high."""

    def __init__(self, config, acc, sp):
        self.config = config
        self.pp = PostProcessor(config=config)
        self.su = StoreUnit(config=config, pp_signature=self.pp.signature)
        self.we = WriteEngine(config)
        self.acc_init = [[int(v) for v in row] for row in acc]
        self.sp_init = [int.from_bytes(bytes(row), "little") for row in sp]
        self.acc_deny = Signal()
        self.sp_deny = Signal()

    def elaborate(self, platform):
        m = Module()
        su, pp, we = self.su, self.pp, self.we
        m.submodules.su, m.submodules.pp, m.submodules.we = su, pp, we
        wiring.connect(m, su.store_cmd, we.store_cmd)
        wiring.connect(m, su.store_rows, we.store_rows)
        wiring.connect(m, we.store_done, su.store_done)
        wiring.connect(m, su.pp_i, pp.i)
        wiring.connect(m, pp.o, su.pp_o)
        for name, port, init, deny in (("acc", su.acc_rd, self.acc_init, self.acc_deny),
                                       ("sp", su.sp_rd, self.sp_init, self.sp_deny)):
            mem = memory.Memory(shape=port.data.shape(), depth=len(init), init=init)
            m.submodules[f"{name}_mem"] = mem
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(port.addr), port.ready.eq(~deny), port.data.eq(rp.data)]
            m.d.sync += port.valid.eq(port.en & port.ready)
        return m


def uop_value(instr):
    """The store queue's micro-op for ``instr``."""
    flags = {f: int(getattr(instr, f)) for f in ("pop_prev", "pop_next", "push_prev",
                                                 "push_next")}
    if instr.opcode is Opcode.CONFIG:
        body = {"config": {"reg": instr.reg.value, "value": instr.value}}
    elif instr.opcode is Opcode.SYNC:
        body = {}
    else:
        body = {instr.opcode.name.lower(): dict(instr.fields)}
    return uop_layout(Queue.STORE).const({"opcode": instr.opcode, **flags,
                                          "body": body})


def store(**fields):
    return Instruction(Opcode.STORE, fields, push_prev=True)


def config(reg, value):
    return Instruction(Opcode.CONFIG, {"reg": reg, "value": value})


def model_memory(cfg, instrs, image, acc, sp, params):
    """System memory after ``instrs`` on the golden model."""
    words = [encode(i) for i in instrs] + [encode(Instruction(Opcode.HALT, {}))]
    with_prog = bytearray(image)
    with_prog[PROG_ADDR:PROG_ADDR + len(words) * INSTR_BYTES] = to_bytes(words)
    model = GoldenModel(cfg)
    model.acc[:] = acc
    model.sp[:] = sp
    model.params[:] = params
    result = model.run(bytes(with_prog), PROG_ADDR, len(words))
    assert result.ok, result.error
    out = bytearray(result.memory.tobytes())
    out[PROG_ADDR:] = image[PROG_ADDR:]
    return bytes(out)


def run_store_unit(cfg, instrs, image, acc, sp, params, *, seed=0, pause=0.0, deny=0.0,
                   b_latency=3):
    """Run ``instrs`` (store-queue micro-ops) back to back.

    Returns the memory afterwards and, per STORE, ``(cycles, rows)``: cycles from the
    micro-op's handshake to its push. Raises AssertionError on an AXI rule broken or a
    push before the STORE's last B response.
    """
    h = Harness(cfg, acc, sp)
    su, bus = h.su, h.we.bus
    B = cfg.axi_bytes
    rng = np.random.default_rng(seed)
    mem = bytearray(image)
    log = {"push": [], "accept": []}
    cycle = [0]

    async def params_and_uops(ctx):
        pw = h.pp.param_w
        for addr, words in enumerate(params):
            ctx.set(pw.en, 1)
            ctx.set(pw.addr, addr)
            ctx.set(pw.data, [int(w) & 0xFFFF_FFFF for w in words])
            await ctx.tick()
        ctx.set(pw.en, 0)
        for instr in instrs:
            ctx.set(su.uop.p, uop_value(instr))
            ctx.set(su.uop.valid, 1)
            await ctx.tick().until(su.uop.ready)
            log["accept"].append(cycle[0])
        ctx.set(su.uop.valid, 0)
        await ctx.tick().until(su.idle)

    async def axi_slave(ctx):
        bursts, beats_due, b_due = [], [], []
        aw_count = b_count = 0
        sigs = (bus.awvalid, bus.awready, bus.awaddr, bus.awlen, bus.wvalid, bus.wready,
                bus.wdata, bus.wstrb, bus.wlast, bus.bvalid, bus.bready, su.push_prev,
                h.acc_deny)
        ctx.set(bus.awready, 1)
        ctx.set(bus.wready, 1)
        async for _, _, awv, awr, awaddr, awlen, wv, wr, wdata, wstrb, wlast, bv, br, push, \
                _ in ctx.tick().sample(*sigs):
            cycle[0] += 1
            now = cycle[0]
            assert now < 200_000, "the STOREs did not finish"
            if push:
                assert b_count == aw_count and not bursts, \
                    f"push with {aw_count - b_count} B responses owed"
                log["push"].append(now)
            if awv and awr:
                aw_count += 1
                bursts.append([awaddr, awlen + 1])
                beats_due.append(0)
            if wv and wr:
                assert bursts, "a W beat before its AW"
                addr, nbeats = bursts[0]
                k = beats_due[0]
                for lane in range(B):
                    if (wstrb >> lane) & 1:
                        mem[addr + k * B + lane] = (wdata >> (8 * lane)) & 0xFF
                assert bool(wlast) == (k + 1 == nbeats), f"WLAST wrong on beat {k}"
                beats_due[0] += 1
                if k + 1 == nbeats:
                    bursts.pop(0)
                    beats_due.pop(0)
                    b_due.append(now + b_latency)
            if bv and br:
                b_due.pop(0)
                b_count += 1
            ctx.set(bus.awready, int(rng.random() >= pause))
            ctx.set(bus.wready, int(rng.random() >= pause))
            ctx.set(bus.bvalid, int(bool(b_due) and b_due[0] <= now))
            ctx.set(h.acc_deny, int(rng.random() < deny))
            ctx.set(h.sp_deny, int(rng.random() < deny))

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(axi_slave, background=True)
    sim.add_testbench(params_and_uops)
    sim.run()

    stores = [(i, instr) for i, instr in enumerate(instrs) if instr.opcode is Opcode.STORE]
    assert len(log["push"]) == len(stores), f"{len(log['push'])} pushes, {len(stores)} STOREs"
    figures = [(push - log["accept"][i], instr.n_rows)
               for (i, instr), push in zip(stores, log["push"], strict=True)]
    return bytes(mem), figures


def random_image(rng):
    image = bytearray(rng.integers(0, 256, MEM_BYTES, dtype=np.uint8).tobytes())
    return bytes(image)


def random_contents(cfg, rng):
    acc = rng.integers(-(1 << 31), 1 << 31, (cfg.acc_rows, cfg.cols), dtype=np.int64)
    acc[rng.random(acc.shape) < 0.5] //= 1 << 20
    sp = rng.integers(0, 256, (cfg.sp_rows, cfg.sp_width), dtype=np.uint8)
    params = rng.integers(0, 1 << 31, (cfg.param_rows, cfg.cols), dtype=np.int64)
    params[1::2] &= 63
    return acc, sp, params


def wide_or(rng, value):
    """``value``, or at times any 32-bit value (clamp bounds far outside the byte range)."""
    return int(rng.integers(-(1 << 31), 1 << 31)) if rng.random() < 0.3 else value


def random_program(cfg, rng, count):
    """CONFIGs and STOREs of every source and out type, odd lengths, strides and
    addresses (int32 rows 4-byte aligned, as the decoder requires)."""
    instrs = []
    for _ in range(count):
        for reg, value in ((ConfigReg.REQ_MULT, int(rng.integers(0, 1 << 15))),
                           (ConfigReg.REQ_SHIFT, int(rng.integers(0, 20))),
                           (ConfigReg.REQ_ZP, int(rng.integers(-20, 20))),
                           (ConfigReg.ACTIVATION, int(rng.integers(0, 3))),
                           (ConfigReg.CLAMP_LO, wide_or(rng, int(rng.integers(-100, 0)))),
                           (ConfigReg.CLAMP_HI, wide_or(rng, int(rng.integers(0, 100))))):
            if rng.random() < 0.4:
                instrs.append(config(reg, value))
        src = StoreSrc.SP if rng.random() < 0.25 else StoreSrc.ACC
        out_type = OutType.INT8 if src is StoreSrc.SP else OutType(int(rng.integers(0, 3)))
        width = cfg.sp_width if src is StoreSrc.SP else cfg.cols
        length = width if rng.random() < 0.6 else int(rng.integers(1, width + 1))
        nbytes = length * out_type.nbytes
        n_rows = int(rng.integers(1, 12))
        stride = int(rng.choice([nbytes, nbytes + 3, 64, 0])) if n_rows > 1 else 0
        align = 4 if out_type is OutType.INT32 else 1
        stride -= stride % align
        dram = int(rng.integers(0, PROG_ADDR - n_rows * max(stride, nbytes) - 64))
        dram -= dram % align
        rows = cfg.sp_rows if src is StoreSrc.SP else cfg.acc_rows
        instrs.append(store(
            src=src.value, out_type=out_type.value, length=length, n_rows=n_rows,
            addr=int(rng.integers(0, rows - n_rows + 1)), stride=stride, dram_addr=dram,
            per_channel=int(src is StoreSrc.ACC and out_type is not OutType.INT32
                            and rng.random() < 0.3),
            param_addr=int(rng.integers(0, cfg.param_rows // 2)) * 2))
        if rng.random() < 0.2:
            instrs.append(Instruction(Opcode.SYNC, {}))
    return instrs


def check_memory(want, got):
    """Scoreboard: system memory byte for byte, naming the first difference."""
    bad = [i for i in range(len(want)) if want[i] != got[i]]
    assert not bad, f"{len(bad)} memory bytes differ, first at 0x{bad[0]:x}: " \
                    f"0x{want[bad[0]]:02x} expected, 0x{got[bad[0]]:02x} written"


SMALL = AcceleratorConfig(name="small", rows=2, cols=4, sp_depth=16, acc_depth=16,
                          param_rows=4, axi_data_width=32, postproc_lanes=1,
                          requant_bits=16, vector_unit=False)
WIDE = AcceleratorConfig(name="wide", rows=4, cols=8, sp_depth=16, acc_depth=16,
                         param_rows=4, axi_data_width=128, postproc_lanes=2)
DEFAULT = preset("default").replace(sp_depth=16, acc_depth=16, param_rows=4)
# Scratchpad rows wider than a post-processor beat: cut into chunks from the hold register.
TALL = AcceleratorConfig(name="tall", rows=8, cols=4, sp_depth=16, acc_depth=16,
                         param_rows=4, axi_data_width=32, postproc_lanes=1,
                         requant_bits=16, vector_unit=False)
TALL2 = AcceleratorConfig(name="tall2", rows=16, cols=2, sp_depth=16, acc_depth=16,
                          param_rows=4, axi_data_width=32, postproc_lanes=2,
                          vector_unit=False)


@pytest.mark.parametrize("cfg", [DEFAULT, SMALL, WIDE, TALL, TALL2], ids=lambda c: c.name)
@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_random_stores_match_model(cfg, pause):
    rng = np.random.default_rng(cfg.cols * 7 + int(pause * 10))
    image = random_image(rng)
    acc, sp, params = random_contents(cfg, rng)
    instrs = random_program(cfg, rng, 10)
    want = model_memory(cfg, instrs, image, acc, sp, params)
    got, _ = run_store_unit(cfg, instrs, image, acc, sp, params, seed=int(pause * 10),
                            pause=pause, deny=pause)
    check_memory(want, got)


def test_scoreboard_catches_one_byte():
    cfg = SMALL
    rng = np.random.default_rng(5)
    image = random_image(rng)
    acc, sp, params = random_contents(cfg, rng)
    instrs = [store(src=StoreSrc.ACC.value, out_type=OutType.INT32.value, length=4,
                    n_rows=3, addr=2, stride=16, dram_addr=256)]
    want = model_memory(cfg, instrs, image, acc, sp, params)
    got, _ = run_store_unit(cfg, instrs, image, acc, sp, params)
    check_memory(want, got)
    bad = bytearray(got)
    bad[256 + 16 + 5] ^= 0x01
    with pytest.raises(AssertionError, match="1 memory bytes differ"):
        check_memory(want, bytes(bad))


def streaming_figures(cfg, out_type, n_rows=64):
    """Cycles per row of one long STORE with an always-ready bus."""
    rng = np.random.default_rng(1)
    image = random_image(rng)
    acc, sp, params = random_contents(cfg, rng)
    nbytes = cfg.cols * out_type.nbytes
    instrs = [config(ConfigReg.ACTIVATION, Activation.RELU.value),
              store(src=StoreSrc.ACC.value, out_type=out_type.value, length=cfg.cols,
                    n_rows=n_rows, addr=0, stride=nbytes + 64, dram_addr=0)]
    want = model_memory(cfg, instrs, image, acc, sp, params)
    got, figures = run_store_unit(cfg, instrs, image, acc, sp, params)
    check_memory(want, got)
    cycles, rows = figures[0]
    beats = rows * -(-nbytes // cfg.axi_bytes)
    return cycles, beats


@pytest.mark.parametrize("out_type", [OutType.INT32, OutType.INT8], ids=lambda t: t.name)
def test_streaming_rate(out_type):
    """A long STORE keeps the W channel busy: the cycles are printed against the bus
    beats (the minimum), and the STORE must at least finish."""
    cfg = preset("default").replace(sp_depth=16, acc_depth=32, param_rows=4)
    cycles, beats = streaming_figures(cfg, out_type, n_rows=64)
    print(f"\n{out_type.name} STORE of 64 rows on default: {cycles} cycles for {beats} W "
          f"beats ({beats / cycles:.1%} of the bus)")
    assert cycles >= beats


BOUNDS = [-(1 << 31), -70000, -1025, -1024, -513, -512, -511, -300, -256, -129, -128, -1, 0,
          1, 127, 128, 200, 255, 256, 300, 511, 512, 513, 767, 1023, 1024, 5000, (1 << 31) - 1]


def clamped_bytes(out_type, lo, hi, narrow):
    """Output bytes of a CLAMP activation over a range of results, bounds narrowed or not."""
    lo, hi = (narrow(lo), narrow(hi))
    tlo, thi = activation_bounds(out_type, Activation.CLAMP, 0, lo, hi)
    return [max(min(y, thi), tlo) & 0xFF for y in range(-700, 700, 3)]


def testnarrow_bound_hdls_keep_every_output():
    """The 10-bit clamp bounds of the CONFIG registers give the model's bytes for every
    bound pair; the RTL's narrowing is the reference function's; truncating the bounds
    instead would be caught."""
    pairs = [(lo, hi) for lo in BOUNDS for hi in BOUNDS]
    for out_type in (OutType.INT8, OutType.UINT8):
        for lo, hi in pairs:
            assert clamped_bytes(out_type, lo, hi, narrow_bound) == \
                clamped_bytes(out_type, lo, hi, int), (out_type, lo, hi)

    def truncate(v):
        return ((v + 512) & 1023) - 512

    assert any(clamped_bytes(OutType.UINT8, lo, hi, truncate)
               != clamped_bytes(OutType.UINT8, lo, hi, int) for lo, hi in pairs)

    m = Module()
    v = Signal(signed(32))
    out = Signal(signed(10))
    m.d.comb += out.eq(narrow_bound_hdl(v))
    got = []

    async def bench(ctx):
        for value in BOUNDS:
            ctx.set(v, value)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [narrow_bound(b) for b in BOUNDS]
