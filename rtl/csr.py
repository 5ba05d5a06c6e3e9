"""CSR block: the AXI4-Lite register slave generated from :data:`systolic.csr.CSR_MAP`."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from systolic.csr import CSR, CSR_MAP, id_words
from systolic.isa import ErrorCode

from .axi import AXI4LiteSignature
from .scratchpad import check_config

__all__ = ["CSR_ADDR_WIDTH", "PERF_EVENTS", "PerfEvents", "CsrBlock"]

CSR_ADDR_WIDTH = 8

# Counter register -> event input that increments it (PERF_CYCLES counts BUSY cycles).
PERF_EVENTS = {
    "PERF_MAC_BUSY": "mac_busy", "PERF_STALL_TOKEN": "stall_token",
    "PERF_STALL_DMA": "stall_dma", "PERF_STALL_FETCH": "stall_fetch",
    "PERF_INSTRET": "instret", "PERF_LOAD_BUSY": "load_busy",
    "PERF_STORE_BUSY": "store_busy", "PERF_OVERLAP": "overlap",
}

PerfEvents = data.StructLayout({name: 1 for name in PERF_EVENTS.values()})


def _field(reg, name):
    f = next(f for f in CSR[reg].fields if f.name == name)
    return slice(f.lsb, f.lsb + f.width)


class CsrBlock(wiring.Component):
    """AXI4-Lite slave with every register of the CSR map.

    Writes take the address and data channels together and answer OKAY one cycle later;
    reads answer one cycle after the address. Unmapped offsets read as zero and ignore
    writes; every access is answered, whatever state the accelerator is in.
    Performance counters exist only with ``config.perf_counters`` (otherwise they read 0);
    they clear at START and count while BUSY.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    bus : In(AXI4LiteSignature(addr_width=8, data_width=32))
    start, soft_reset : Out(1)
        One-cycle strobes from CTRL (START only while not BUSY).
    prog_addr, prog_len : Out(32)
    irq : Out(1)
        IRQ_STATUS.DONE and CTRL.IRQ_ENABLE.
    busy, resetting, acc_overflow : In(1)
        Status from the controller.
    done : In(1)
        One-cycle strobe: the program finished; ``error_code`` and ``error_index`` are
        latched with it.
    error_code : In(ErrorCode)
    error_index : In(32)
    events : In(PerfEvents)
        One bit per performance event, counted in each cycle it is high.
    """

    def __init__(self, *, config):
        check_config(config, "CsrBlock")
        self.config = config
        super().__init__({
            "bus": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH, data_width=32)),
            "start": Out(1),
            "soft_reset": Out(1),
            "prog_addr": Out(32),
            "prog_len": Out(32),
            "irq": Out(1),
            "busy": In(1),
            "resetting": In(1),
            "acc_overflow": In(1),
            "done": In(1),
            "error_code": In(ErrorCode),
            "error_index": In(32),
            "events": In(PerfEvents),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        bus = self.bus

        irq_enable = Signal()
        done = Signal()
        error = Signal()
        irq_pending = Signal()
        error_code = Signal(ErrorCode)
        error_index = Signal(32)

        with m.If(self.start):
            m.d.sync += [done.eq(0), error.eq(0), error_code.eq(ErrorCode.NONE),
                         error_index.eq(0)]
        with m.If(self.done):
            m.d.sync += [done.eq(1), error.eq(self.error_code != ErrorCode.NONE),
                         error_code.eq(self.error_code), error_index.eq(self.error_index),
                         irq_pending.eq(1)]
        m.d.comb += self.irq.eq(irq_pending & irq_enable)

        status = Signal(32)
        m.d.comb += [
            status[_field("STATUS", "BUSY")].eq(self.busy),
            status[_field("STATUS", "DONE")].eq(done),
            status[_field("STATUS", "ERROR")].eq(error),
            status[_field("STATUS", "ACC_OVERFLOW")].eq(self.acc_overflow),
            status[_field("STATUS", "RESETTING")].eq(self.resetting),
        ]

        counters = {}
        if c.perf_counters:
            for reg in CSR_MAP:
                if reg.perf:
                    counters[reg.name] = Signal(32, name=reg.name.lower())
            with m.If(self.start):
                m.d.sync += [ctr.eq(0) for ctr in counters.values()]
            with m.Elif(self.busy):
                m.d.sync += counters["PERF_CYCLES"].eq(counters["PERF_CYCLES"] + 1)
                for reg, event in PERF_EVENTS.items():
                    with m.If(getattr(self.events, event)):
                        m.d.sync += counters[reg].eq(counters[reg] + 1)

        ctrl = Signal(32)
        m.d.comb += ctrl[_field("CTRL", "IRQ_ENABLE")].eq(irq_enable)
        values = dict(id_words(c))
        values.update({
            "CTRL": ctrl, "STATUS": status, "ERROR_CODE": error_code.as_value(),
            "ERROR_INDEX": error_index, "PROG_ADDR": self.prog_addr,
            "PROG_LEN": self.prog_len, "IRQ_STATUS": irq_pending,
        })
        values.update(counters)
        missing = {reg.name for reg in CSR_MAP if not reg.perf} - set(values)
        assert not missing, f"CSR registers without hardware: {missing}"

        # -- read channel ---------------------------------------------------------------------
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(0), bus.rresp.eq(0)]
            with m.Switch(bus.araddr[2:]):
                for reg in CSR_MAP:
                    if reg.name in values and reg.access != "wo":
                        with m.Case(reg.offset >> 2):
                            m.d.sync += bus.rdata.eq(values[reg.name])

        # -- write channel --------------------------------------------------------------------
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        take = Signal()
        m.d.comb += [
            take.eq(bus.awvalid & bus.wvalid & ~bus.bvalid),
            bus.awready.eq(take),
            bus.wready.eq(take),
        ]
        wdata = bus.wdata
        with m.If(take):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(0)]
            with m.Switch(bus.awaddr[2:]):
                with m.Case(CSR["CTRL"].offset >> 2):
                    m.d.comb += [
                        self.start.eq(wdata[_field("CTRL", "START")] & ~self.busy
                                      & ~self.resetting),
                        self.soft_reset.eq(wdata[_field("CTRL", "SOFT_RESET")]),
                    ]
                    m.d.sync += irq_enable.eq(wdata[_field("CTRL", "IRQ_ENABLE")])
                with m.Case(CSR["PROG_ADDR"].offset >> 2):
                    m.d.sync += self.prog_addr.eq(wdata)
                with m.Case(CSR["PROG_LEN"].offset >> 2):
                    m.d.sync += self.prog_len.eq(wdata)
                with m.Case(CSR["IRQ_STATUS"].offset >> 2):
                    with m.If(wdata[_field("IRQ_STATUS", "DONE")]):
                        m.d.sync += irq_pending.eq(0)
        # a new START clears the pending interrupt of the last run
        with m.If(self.start):
            m.d.sync += irq_pending.eq(0)
        with m.If(self.done):
            m.d.sync += irq_pending.eq(1)
        return m
