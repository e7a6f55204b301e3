"""The chip bus over the serial link: a :class:`BusPort` on :class:`plasticore.host.link.Link`.

``open_board(url)`` opens a pyserial URL (``/dev/ttyUSB0``, a pty path, ``sim://...``), identifies
the board (protocol version, design ID, geometry from the identify reply) and returns a
:class:`plasticore.host.device.Device` ready to deploy.  The same code path serves real and
simulated boards.
"""

from __future__ import annotations

import os

from plasticore import chip_map as M
from plasticore import core_map as CM
from plasticore.chip_map import ChipGeometry
from plasticore.errors import PlasticoreError

from .bus import BusError, BusPort, TargetStopped

#: link timeout (seconds without progress before a resend) on a pseudo-terminal
SIM_TIMEOUT_S = 10.0


class BoardError(PlasticoreError):
    """The board is not usable (no port, wrong design, not a plasticore chip)."""


class BoardStopped(BoardError, TargetStopped):
    """The board stopped answering: its port failed (e.g. the simulated board's process died) or it
    went silent through every retry."""


class LinkBus(BusPort):
    def __init__(self, link):
        self.link = link

    def _wrap(self, fn, what: str):
        from .link import CrcError, LinkDown, LinkError, LinkTimeout, NackError

        try:
            return fn()
        except NackError as e:
            raise BusError(f"{what}: {e}", addr=getattr(e, "detail", None)) from None
        except (LinkDown, LinkTimeout) as e:
            if isinstance(e, CrcError):  # answering, but every reply corrupted: a bad line, not a dead board
                raise BoardError(f"{what}: {e}") from None
            raise BoardStopped(self.link.transport.name, f"{what}: {e}") from None
        except LinkError as e:
            raise BoardError(f"{what}: {e}") from None

    def write(self, addr, words):
        self._wrap(lambda: self.link.write(addr, list(words)), f"write at 0x{addr:08x}")

    def wire_bytes(self) -> tuple[int, int]:
        return self.link.stats["bytes_sent"], self.link.stats["bytes_received"]

    def write_fix(self, addr, words):
        self._wrap(lambda: self.link.write(addr, list(words), fixed=True), f"write at 0x{addr:08x}")

    def read(self, addr, n):
        return self._wrap(lambda: self.link.read(addr, n), f"read of {n} words at 0x{addr:08x}")

    def read_many(self, spans):
        spans = [(int(a), int(n)) for a, n in spans]
        return self._wrap(lambda: self.link.read_many(spans), f"read of {len(spans)} spans at 0x{spans[0][0]:08x}")

    def read_fix(self, addr, n):
        return self._wrap(lambda: self.link.read(addr, n, fixed=True), f"read of {n} words at 0x{addr:08x}")

    def run(self, steps):
        r = self._wrap(lambda: self.link.run(steps), f"run {steps}")
        if r is None:  # executed, reply lost: ask the chip
            r = self.read(M.chip_addr(M.ChipReg.OUT_COUNT), 1)[0]
        return r

    def reset(self):
        self._wrap(self.link.reset, "reset")

    def sync(self):
        self._wrap(self.link.flush, "sync")

    def close(self):
        self.link.close()


def open_board(url: str, expected_design_id: int | None = None, baudrate: int | None = None, **link_kw):
    """Open the board at ``url`` and return a connected :class:`Device` (geometry from the board)."""
    from .link import Link
    from .transport import NoPortError, SerialTransport

    if url.startswith("sim://") or os.path.realpath(url).startswith("/dev/pts/"):
        # a pseudo-terminal (the simulated board): its byte rate is the simulator's, not a baud
        # rate, and slows down on a loaded machine; do not give up after the line-rate timeout
        link_kw.setdefault("timeout", float(os.environ.get("PLASTICORE_LINK_TIMEOUT", SIM_TIMEOUT_S)))
    try:
        tr = SerialTransport(url) if baudrate is None else SerialTransport(url, baudrate=baudrate)
    except NoPortError as e:  # already says "cannot open serial port X: why" / "port X is in use by PID N"
        raise BoardError(str(e)) from None
    return open_link(Link(tr, **link_kw), url, expected_design_id)


def open_link(link, url: str, expected_design_id: int | None = None):
    """Connect ``link`` (a :class:`~plasticore.host.link.Link` on any transport, e.g. a
    :class:`~plasticore.host.transport.FaultInjectingTransport`) to the board named ``url`` and return
    a :class:`Device` on it; the link is closed on failure."""
    from .device import Device
    from .link import LinkError

    try:
        ident = link.connect()
    except LinkError as e:
        link.close()
        raise BoardError(f"no plasticore board answers on {url}: {e}") from None
    g = ident.geometry if isinstance(ident.geometry, dict) else {}
    if not g.get("cores"):
        link.close()
        raise BoardError(f"the board on {url} has no neuromorphic chip behind its link (geometry {g})")
    if expected_design_id is not None and ident.design_id != expected_design_id:
        link.close()
        raise BoardError(f"board on {url} runs design 0x{ident.design_id:08x}, expected 0x{expected_design_id:08x}: "
                         f"rebuild/flash (plasticore deploy) or pass the matching bundle")
    geom = ChipGeometry(g["mesh_x"], g["mesh_y"], CM.CoreGeometry(g["axons"], g["neurons"], g["lanes"]))
    dev = Device(LinkBus(link), geom, design_id=ident.design_id)
    dev.identify()
    return dev
