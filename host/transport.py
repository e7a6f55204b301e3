"""Byte transports for the host link.

* :class:`Transport` -- what :class:`plasticore.host.link.Link` needs: ``write`` bytes,
  ``read`` what has arrived (waiting up to a timeout), ``close``.
* :class:`SerialTransport` -- any pyserial URL through :func:`serial.serial_for_url`: a device
  path (``/dev/ttyUSB0``, a simulated board's pty), ``sim://`` (spawns a simulated board, see
  :mod:`plasticore.sim.simboard`), ``loop://``, ``socket://host:port`` ...  Schemes beyond pyserial's own
  come from installed packages through the ``plasticore.serial_url_handlers`` entry point group
  (:func:`register_url_handler`).
* :class:`FaultInjectingTransport` -- wraps another transport and flips, drops or duplicates
  bytes at a given rate (seeded), in either direction, to test recovery.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

__all__ = ["FaultInjectingTransport", "NoPortError", "PortBusyError", "PortLock", "SerialTransport", "Transport",
           "TransportError", "register_url_handler"]

#: Entry point group of pyserial protocol-handler packages, named by URL scheme: ``sim = "plasticore.sim"``
#: makes pyserial import ``plasticore.sim.protocol_sim`` for a ``sim://`` URL.
URL_HANDLER_ENTRY_POINT_GROUP = "plasticore.serial_url_handlers"

#: Default line rate for serial ports (baud).  USB-serial bridges on FPGA boards (FT2232H, FT231X)
#: do 3 Mbaud; a pty ignores it.
DEFAULT_BAUDRATE = 3_000_000


class TransportError(OSError):
    """The byte transport failed (port vanished, write error...)."""


class NoPortError(TransportError):
    """The serial port could not be opened (missing device, bad URL, permission...)."""


class PortBusyError(NoPortError):
    """Another process has the port open ("port X is in use by PID N")."""


def lock_dir() -> Path:
    """Where port lock files live: ``$PLASTICORE_LOCK_DIR``, else ``$XDG_RUNTIME_DIR/plasticore``, else
    ``<tmp>/plasticore-locks-<uid>``."""
    if os.environ.get("PLASTICORE_LOCK_DIR"):
        return Path(os.environ["PLASTICORE_LOCK_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "plasticore"
    return Path(tempfile.gettempdir()) / f"plasticore-locks-{os.getuid()}"


class PortLock:
    """An exclusive advisory lock on a local serial device (a tty or a simulated board's pty), keyed by
    its resolved path and holding the owner's PID, so a second opener learns who has the port.

    The lock is an ``fcntl.flock`` on ``lock_dir()/<resolved path>.lock``; the kernel drops it when the
    owner exits, however it exits, so a stale file never blocks anyone.
    """

    def __init__(self, port: str):
        self.port = port
        self.path = lock_dir() / (re.sub(r"[^A-Za-z0-9._-]", "_", os.path.realpath(port)).strip("_") + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PortBusyError(f"port {self.port} is in use by PID {pid}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # drops the flock; the (empty) file stays, unlinking it would race
            self._fd = None


def _is_local_device(url: str) -> bool:
    """A plain path to a character device (not a ``scheme://`` URL)."""
    if "://" in url:
        return False
    try:
        import stat

        return stat.S_ISCHR(os.stat(url).st_mode)
    except OSError:
        return False


def _reason(e: BaseException) -> str:
    """The innermost OS reason of a pyserial open failure (pyserial repeats the port name)."""
    inner = e.__context__ if isinstance(e.__context__, OSError) else e
    if isinstance(inner, OSError) and inner.strerror and not str(inner.strerror).startswith("could not"):
        return inner.strerror
    return str(e)


class Transport(abc.ABC):
    """A bidirectional byte pipe."""

    #: Line rate in baud (bits/s, 10 bits per byte for 8N1) if known, else ``None``.
    baudrate: int | None = None
    #: Human-readable name of the port for error messages.
    name: str = "?"

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of ``data`` (may block while the OS buffer is full)."""

    @abc.abstractmethod
    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Return received bytes: at least one unless ``timeout`` seconds passed (then ``b""``)."""

    def reset_input(self) -> None:
        """Discard received bytes not read yet."""
        while self.read(65536, 0):
            pass

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def register_url_handler(url: str) -> bool:
    """Add the pyserial handler package an installed entry point names for ``url``'s scheme to
    ``serial.protocol_handler_packages``; True if there is one (pyserial imports it on open)."""
    import serial

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        return False
    from importlib.metadata import entry_points

    found = False
    for ep in entry_points(group=URL_HANDLER_ENTRY_POINT_GROUP, name=scheme):
        found = True
        if ep.module not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(ep.module)
    return found


class SerialTransport(Transport):
    """A pyserial port opened with :func:`serial.serial_for_url`.

    The handler of a URL's scheme is registered first (:func:`register_url_handler`), so ``sim://``
    spawns a simulated board when ``plasticore.sim`` is installed.

    A local device (``/dev/ttyUSB0``, a pty) is opened exclusively: a :class:`PortLock` keyed by its
    resolved path plus pyserial's ``exclusive=True``; a second opener gets :class:`PortBusyError`
    ("port X is in use by PID N").  ``exclusive=False`` opts out (shared debugging taps).
    """

    def __init__(self, url: str, baudrate: int = DEFAULT_BAUDRATE, exclusive: bool = True, **kwargs):
        import serial

        register_url_handler(url)
        self.name = url
        self.baudrate = baudrate
        self._lock: PortLock | None = None
        if exclusive and _is_local_device(url):
            self._lock = PortLock(url)
            self._lock.acquire()
            kwargs["exclusive"] = True
        elif exclusive and url.startswith("sim://"):
            kwargs["exclusive"] = True  # the board spawned for this URL is this host's alone
        try:
            self._ser = serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=None,
                                              **kwargs)
        except (serial.SerialException, OSError, ValueError) as e:
            if self._lock is not None:
                self._lock.release()
            raise NoPortError(f"cannot open serial port {url!r}: {_reason(e)}") from e
        self._closed = False

    @property
    def serial(self):
        """The underlying :class:`serial.Serial`."""
        return self._ser

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"write to {self.name} failed: {e}") from e

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial

        try:
            n = self._ser.in_waiting
            if n:
                return self._ser.read(min(n, max_bytes))
            if timeout <= 0:
                return b""
            self._ser.timeout = timeout
            first = self._ser.read(1)
            self._ser.timeout = 0
            if not first:
                return b""
            n = self._ser.in_waiting
            return first + (self._ser.read(min(n, max_bytes - 1)) if n and max_bytes > 1 else b"")
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"read from {self.name} failed: {e}") from e

    def reset_input(self) -> None:
        self._ser.reset_input_buffer()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._ser.close()
            finally:
                if self._lock is not None:
                    self._lock.release()


class FaultInjectingTransport(Transport):
    """Wrap ``inner`` and corrupt the byte streams: each byte, with probability ``rate``, is
    flipped (XOR with a random non-zero mask), dropped or duplicated (kind chosen at random among
    ``kinds``).  ``directions`` selects ``"tx"`` (host -> board), ``"rx"`` or both.
    ``counts`` records what was injected, per ``(direction, kind)``.
    """

    KINDS = ("flip", "drop", "dup")

    def __init__(self, inner: Transport, rate: float, seed: int = 0, kinds=KINDS, directions=("tx", "rx")):
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        bad = set(kinds) - set(self.KINDS)
        if bad:
            raise ValueError(f"unknown fault kinds {sorted(bad)}; choose from {self.KINDS}")
        self.inner = inner
        self.rate = rate
        self.kinds = tuple(kinds)
        self.directions = set(directions)
        self.rng = random.Random(seed)
        self.counts: Counter = Counter()
        self.name = f"faulty({inner.name}, rate={rate})"
        self.baudrate = inner.baudrate

    def _mangle(self, data: bytes, direction: str) -> bytes:
        if direction not in self.directions or not self.rate or not data:
            return data
        rng = self.rng
        out = bytearray()
        for b in data:
            if rng.random() >= self.rate:
                out.append(b)
                continue
            kind = rng.choice(self.kinds)
            self.counts[direction, kind] += 1
            if kind == "flip":
                out.append(b ^ rng.randrange(1, 256))
            elif kind == "dup":
                out += bytes((b, b))
            # drop: nothing
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.inner.write(self._mangle(data, "tx"))

    def read(self, max_bytes: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            data = self._mangle(self.inner.read(max_bytes, max(0.0, deadline - time.monotonic())), "rx")
            if data or time.monotonic() >= deadline:
                return data

    def reset_input(self) -> None:
        self.inner.reset_input()

    def close(self) -> None:
        self.inner.close()
