"""AXI4 and AXI4-Lite interface signatures with the standard port names.

Signatures are described from the master's side (as in the AXI specification): a master
holds ``Out(AXI4Signature(...))``, a slave ``In(AXI4Signature(...))``. Members carry the
standard lower-case AXI names (``awaddr``, ``rdata``, ...), so a component with a member
``m_axi`` would be emitted with ports ``m_axi__awaddr`` (Amaranth joins member paths with
a double underscore).

SoC tools and cocotbext-axi expect ``m_axi_awaddr``. A top-level component therefore takes
the bus as *flat* members, built by :func:`flat_members`, and reaches them as an ordinary
interface through :func:`flat_interface`::

    class Top(wiring.Component):
        def __init__(self, config):
            self._axi = Out(axi.AXI4Signature.from_config(config))
            self._axil = In(axi.AXI4LiteSignature(addr_width=8))
            super().__init__({
                **axi.flat_members("m_axi", self._axi),
                **axi.flat_members("s_axil", self._axil),
                "irq": Out(1),
            })

        def elaborate(self, platform):
            m = Module()
            m.submodules.dma = dma = ...
            # forward the outward port to the submodule, as with any member
            wiring.connect(m, wiring.flipped(axi.flat_interface(self, "m_axi", self._axi)),
                           dma.bus)
            ...

The Verilog ports are then ``m_axi_awaddr``, ``s_axil_rdata`` and so on, and
``AxiBus.from_prefix(dut, "m_axi")`` / ``AxiLiteBus.from_prefix(dut, "s_axil")`` bind
to them directly.
"""

from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "Burst", "Resp", "AXI4Signature", "AXI4LiteSignature",
    "flat_members", "flat_interface",
]


class Burst(enum.Enum, shape=2):
    """AxBURST encodings."""
    FIXED = 0
    INCR = 1
    WRAP = 2


class Resp(enum.Enum, shape=2):
    """xRESP encodings. Bit 1 set means an error (SLVERR or DECERR)."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, not {value!r}")


class AXI4Signature(wiring.Signature):
    """Full AXI4 master interface: AW, W, B, AR and R channels.

    Parameters
    ----------
    addr_width : int
        Address width (12..64).
    data_width : int
        Data width in bits (32, 64, 128, 256, 512, 1024).
    id_width : int
        Transaction ID width (1..16).

    Members
    -------
    aw* : Out
        ``awid``, ``awaddr``, ``awlen`` (8), ``awsize`` (3), ``awburst`` (2), ``awlock``,
        ``awcache`` (4), ``awprot`` (3), ``awqos`` (4), ``awvalid``; ``awready`` is In.
    w* : Out
        ``wdata``, ``wstrb`` (data_width / 8), ``wlast``, ``wvalid``; ``wready`` is In.
    b* : In
        ``bid``, ``bresp`` (2), ``bvalid``; ``bready`` is Out.
    ar* : Out
        As the AW channel, with the ``ar`` prefix.
    r* : In
        ``rid``, ``rdata``, ``rresp`` (2), ``rlast``, ``rvalid``; ``rready`` is Out.
    """

    def __init__(self, *, addr_width=32, data_width=64, id_width=4):
        if not isinstance(addr_width, int) or not 12 <= addr_width <= 64:
            raise ValueError(f"AXI address width must be an integer in 12..64, not {addr_width!r}")
        _check("AXI data width", data_width, (32, 64, 128, 256, 512, 1024))
        if not isinstance(id_width, int) or not 1 <= id_width <= 16:
            raise ValueError(f"AXI ID width must be an integer in 1..16, not {id_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_width),
                f"{ch}addr": Out(addr_width),
                f"{ch}len": Out(8),
                f"{ch}size": Out(3),
                f"{ch}burst": Out(2),
                f"{ch}lock": Out(1),
                f"{ch}cache": Out(4),
                f"{ch}prot": Out(3),
                f"{ch}qos": Out(4),
                f"{ch}valid": Out(1),
                f"{ch}ready": In(1),
            })
        members.update({
            "wdata": Out(data_width),
            "wstrb": Out(data_width // 8),
            "wlast": Out(1),
            "wvalid": Out(1),
            "wready": In(1),
            "bid": In(id_width),
            "bresp": In(2),
            "bvalid": In(1),
            "bready": Out(1),
            "rid": In(id_width),
            "rdata": In(data_width),
            "rresp": In(2),
            "rlast": In(1),
            "rvalid": In(1),
            "rready": Out(1),
        })
        super().__init__(members)

    @classmethod
    def from_config(cls, config):
        """The accelerator's master bus, sized by an :class:`AcceleratorConfig`."""
        return cls(addr_width=config.axi_addr_width, data_width=config.axi_data_width,
                   id_width=config.axi_id_width)

    def __eq__(self, other):
        return (type(other) is type(self) and
                (self.addr_width, self.data_width, self.id_width) ==
                (other.addr_width, other.data_width, other.id_width))

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite master interface (a register slave holds ``In`` of it).

    Parameters
    ----------
    addr_width : int
        Address width (1..64).
    data_width : int
        Data width in bits (32 or 64).

    Members
    -------
    ``awaddr``, ``awprot``, ``awvalid`` / ``awready``; ``wdata``, ``wstrb``, ``wvalid`` /
    ``wready``; ``bresp``, ``bvalid`` / ``bready``; ``araddr``, ``arprot``, ``arvalid`` /
    ``arready``; ``rdata``, ``rresp``, ``rvalid`` / ``rready``.
    """

    def __init__(self, *, addr_width=32, data_width=32):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 64:
            raise ValueError(f"AXI4-Lite address width must be an integer in 1..64, "
                             f"not {addr_width!r}")
        _check("AXI4-Lite data width", data_width, (32, 64))
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width),
            "awprot": Out(3),
            "awvalid": Out(1),
            "awready": In(1),
            "wdata": Out(data_width),
            "wstrb": Out(data_width // 8),
            "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2),
            "bvalid": In(1),
            "bready": Out(1),
            "araddr": Out(addr_width),
            "arprot": Out(3),
            "arvalid": Out(1),
            "arready": In(1),
            "rdata": In(data_width),
            "rresp": In(2),
            "rvalid": In(1),
            "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and
                (self.addr_width, self.data_width) == (other.addr_width, other.data_width))

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"


def _outward(member):
    if not isinstance(member, wiring.Member) or not member.is_signature:
        raise TypeError(f"expected In(signature) or Out(signature), not {member!r}")
    # ``In(sig).signature`` is already ``sig.flip()``: the member as seen from outside.
    return member.signature


def flat_members(prefix, member):
    """Members ``{f"{prefix}_{name}": ...}`` for one bus, to merge into a component's signature.

    Parameters
    ----------
    prefix : str
        Port name prefix, e.g. ``"m_axi"`` or ``"s_axil"``.
    member : wiring.Member
        ``Out(signature)`` for a master port, ``In(signature)`` for a slave port.
    """
    if not isinstance(prefix, str) or not prefix.isidentifier():
        raise ValueError(f"bus prefix must be an identifier, not {prefix!r}")
    return {f"{prefix}_{name}": sub for name, sub in _outward(member).members.items()}


class _FlatInterface:
    def __init__(self, obj, prefix, signature):
        self.signature = signature
        for name in signature.members:
            setattr(self, name, getattr(obj, f"{prefix}_{name}"))


def flat_interface(obj, prefix, member):
    """The bus made of ``obj``'s flat ports ``{prefix}_*`` as one interface.

    The interface faces outward like the member it was built from (``Out(sig)`` gives an
    interface of ``sig``); use ``wiring.flipped(...)`` on it to forward the port to a
    submodule with :func:`wiring.connect`.
    """
    return _FlatInterface(obj, prefix, _outward(member))
