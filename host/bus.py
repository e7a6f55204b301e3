"""The bus a host talks to: the chip's 32-bit word address space (``plasticore.chip_map``).

:class:`BusPort` is what the device API (:mod:`plasticore.host.device`) drives.  Implementations:
the serial link to a real or simulated board (:class:`plasticore.host.linkbus.LinkBus`) and the
Verilated chip without a link (:class:`plasticore.sim.chipsim.ChipSimBus`).  Writes may be
pipelined; a read, ``run`` or ``sync`` returns only after everything before it has executed, and
raises :class:`BusError` if any earlier write was rejected.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from plasticore.errors import PlasticoreError


class BusError(PlasticoreError):
    """The target rejected an address or request."""

    def __init__(self, msg: str, addr: int | None = None):
        super().__init__(msg)
        self.addr = addr


class TargetStopped(PlasticoreError):
    """The board (or simulator) behind the bus stopped answering: its port failed or went silent.

    ``port`` names it, ``cause`` says what was seen, ``step`` what the host was doing (filled in by
    :class:`~plasticore.host.device.Device`): "board on PORT stopped answering during STEP: CAUSE".
    """

    def __init__(self, port: str, cause: str, step: str | None = None):
        self.port, self.cause, self.step = port, cause, step
        during = f" during {step}" if step else ""
        super().__init__(f"board on {port} stopped answering{during}: {cause}")

    def during(self, step: str) -> TargetStopped:
        """The same error with ``step`` named."""
        return type(self)(self.port, self.cause, step)


class BusPort(ABC):
    @abstractmethod
    def write(self, addr: int, words) -> None:
        """Write words to addr, addr+1, ..."""

    @abstractmethod
    def write_fix(self, addr: int, words) -> None:
        """Write every word to the same address (a FIFO or command register)."""

    @abstractmethod
    def read(self, addr: int, n: int) -> list[int]:
        """Read addr, addr+1, ..., addr+n-1."""

    def read_many(self, spans) -> list[list[int]]:
        """:meth:`read` of every ``(addr, n)`` in ``spans``; a port may send them all before it waits
        for the first answer (memory that nothing in between changes)."""
        return [self.read(addr, n) for addr, n in spans]

    @abstractmethod
    def read_fix(self, addr: int, n: int) -> list[int]:
        """Read the same address n times (a port register)."""

    @abstractmethod
    def run(self, steps: int) -> int:
        """Run ``steps`` time steps; returns the number of entries waiting in the output ring."""

    @abstractmethod
    def reset(self) -> None:
        """Soft reset of the chip: clear every core's state, empty the output ring."""

    @abstractmethod
    def sync(self) -> None:
        """Wait until every pipelined write has executed (raises BusError on a rejected one)."""

    def wire_bytes(self) -> tuple[int, int] | None:
        """Bytes sent to and received from the target so far (None: no wire, e.g. the Verilated chip)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release the port."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
