"""The plasticore host-link wire protocol, defined once.

The RTL command decoder (``plasticore.rtl.link``) matches on these opcodes and unpacks these
layouts; the host (``plasticore.host.link``) packs them.  ``docs/protocol.md`` is the prose form.

Wire format
-----------
A *frame* is a sequence of 32-bit little-endian words followed by a CRC, COBS-encoded and
delimited by ``0x00`` bytes::

    0x00 | COBS( word0 word1 ... wordN-1 | CRC-32 (4 bytes, little-endian) ) | 0x00

* the leading ``0x00`` is optional (the host always sends it: it resynchronises the decoder
  after garbage; an empty frame is ignored by the board);
* word 0 is a header (:data:`REQ_HEADER` for requests, :data:`RSP_HEADER` for replies);
* the CRC is CRC-32/ISO-HDLC (``zlib.crc32``) over the unencoded words.

Every request gets exactly one reply unless the frame was lost on the wire.  Replies carry the
request's sequence number, a :class:`Status` and the board's *next expected* sequence number, so
the host can go back N frames after a loss.  See :class:`Op` for the request layouts.

Flow control: the board advertises the size of its receive FIFO in bytes (``rx_credit`` in the
identify reply).  The host keeps the bytes it has sent and for which no reply (to that frame or a
later one) has arrived at or below ``rx_credit``.  A reply to a frame means all its bytes have left
the FIFO, so the FIFO can never overflow and an acknowledged byte is never dropped.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable, Sequence

from amaranth.lib import data
from cobs import cobs

__all__ = [
    "BUS_DATA_BITS",
    "CRC_BYTES",
    "DEFAULT_MAX_WORDS",
    "DEFAULT_RX_CREDIT",
    "FrameError",
    "GEOMETRY",
    "IDENTIFY",
    "IDEMPOTENT_OPS",
    "MAGIC",
    "MAX_WORDS_LIMIT",
    "NACK_OP",
    "Op",
    "PROTOCOL_VERSION",
    "REQ_HEADER",
    "RSP_FLAG",
    "RSP_HEADER",
    "SEQ_MODULO",
    "STATUS",
    "Cap",
    "Status",
    "crc",
    "crc_residue",
    "decode_frame",
    "encode_frame",
    "frame_wire_bytes",
    "pack",
    "seq_diff",
    "unpack",
    "words_from_bytes",
    "words_to_bytes",
]

#: Protocol version (major, minor).  A host refuses a board with a different major version.
PROTOCOL_VERSION: tuple[int, int] = (1, 1)

#: First word of the identify reply: the bytes ``b"PCOR"`` read as a little-endian word.
MAGIC = int.from_bytes(b"PCOR", "little")

#: Width of a bus data word and of every protocol word.
BUS_DATA_BITS = 32
WORD_BYTES = BUS_DATA_BITS // 8

#: Sequence numbers are 8 bit; the board compares them modulo 256 (see :func:`seq_diff`).
SEQ_BITS = 8
SEQ_MODULO = 1 << SEQ_BITS
#: At most this many frames may be unacknowledged (half the sequence space, minus margin).
MAX_WINDOW_FRAMES = 64

#: Hard upper limit of data words in one READ/WRITE (the count field is 16 bit).
MAX_WORDS_LIMIT = 1024
#: Board defaults (a board advertises its own values in the identify reply).
DEFAULT_MAX_WORDS = 256
DEFAULT_RX_CREDIT = 4096

#: Reply opcode = request opcode | RSP_FLAG.  Replies to frames that could not be parsed
#: (CRC, COBS, length, too long) use :data:`NACK_OP`.
RSP_FLAG = 0x80
NACK_OP = 0xFF


class Op(enum.IntEnum):
    """Request opcodes (byte 0 of a request frame).

    Request layouts, in 32-bit words after the header (``arg`` is the header's 16-bit field):

    ========== ========================= ============================================
    op         request words             reply payload words (after the reply header)
    ========== ========================= ============================================
    IDENTIFY   --                        :data:`IDENTIFY` (9 words); *resets sequencing*
    STATUS     --                        :data:`STATUS` (6 words)
    PING       --                        --
    ECHO       tag, data[n] (n >= 1)     data[n] (a loopback: no bus access; ``tag`` is ignored)
    WRITE      addr, data[n] (n >= 1)    -- (writes addr, addr+1, ...)
    WRITE_FIX  addr, data[n]             -- (writes every word to addr: a port/FIFO)
    READ       addr; arg = n             data[n] (reads addr, addr+1, ...)
    READ_FIX   addr; arg = n             data[n] (reads addr n times)
    RUN        value                     result (1 word, from the bus target)
    RESET      --                        -- (soft reset of the bus target)
    ========== ========================= ============================================

    IDENTIFY is executed whatever its sequence number and sets the board's expected sequence
    number to ``seq + 1``: it is how a host (re)synchronises.  Every other op is executed only
    when its ``seq`` equals the expected one.
    """

    IDENTIFY = 0x01
    STATUS = 0x02
    PING = 0x03
    ECHO = 0x04
    WRITE = 0x10
    WRITE_FIX = 0x11
    READ = 0x12
    READ_FIX = 0x13
    RUN = 0x20
    RESET = 0x21


#: Ops that the board re-executes when it sees a duplicate (already executed) sequence number,
#: because re-executing them has no side effect.  Other duplicates get ``Status.DUPLICATE``.
IDEMPOTENT_OPS = frozenset({Op.STATUS, Op.PING, Op.ECHO, Op.READ})


class Status(enum.IntEnum):
    """Status / error code (byte 2 of a reply header)."""

    OK = 0
    CRC = 1  #: CRC mismatch: the frame was corrupted on the wire (seq field untrusted)
    FRAMING = 2  #: invalid COBS encoding (a code byte runs past the delimiter)
    TOO_LONG = 3  #: frame longer than the board's buffer (max_words data words)
    LENGTH = 4  #: frame length is not a whole number of words or does not fit the op
    OPCODE = 5  #: unknown opcode
    SEQUENCE = 6  #: seq is ahead of the expected one (an earlier frame was lost): not executed
    DUPLICATE = 7  #: seq was already executed (its reply was lost): not executed again
    ADDRESS = 8  #: the bus target rejected an address (detail word = first failing address)

    @property
    def frame_level(self) -> bool:
        """True for errors where the frame could not be trusted at all (seq field meaningless)."""
        return self in (Status.CRC, Status.FRAMING, Status.TOO_LONG)


class Cap(enum.IntFlag):
    """Capability flags in the identify reply."""

    RUN = 1  #: the bus target implements RUN
    RESET = 2  #: the bus target implements RESET
    FIXED = 4  #: READ_FIX / WRITE_FIX supported
    STATUS = 8  #: STATUS counters supported
    ECHO = 16  #: ECHO supported (protocol 1.1)


# ---------------------------------------------------------------------------------------------
# Layouts.  Bit 0 of a layout is bit 0 of byte 0 of the first word on the wire (little-endian).
# ---------------------------------------------------------------------------------------------
#: Request header (word 0 of every request).
REQ_HEADER = data.StructLayout({"op": 8, "seq": 8, "arg": 16})

#: Reply header (word 0 of every reply).  ``op`` = request op | 0x80, or 0xFF for frame errors;
#: ``expect`` = the board's next expected sequence number after this frame.
RSP_HEADER = data.StructLayout({"op": 8, "seq": 8, "status": 8, "expect": 8})

#: Geometry of the design behind the link (filled by the board top; zeros for the link test top).
GEOMETRY = data.StructLayout({
    "cores": 16,
    "mesh_x": 8,
    "mesh_y": 8,
    "axons": 16,  #: axons per core
    "neurons": 16,  #: neurons per core
    "lanes": 8,
    "layers": 8,  #: max layers per core
    "reserved": 16,
})

#: Identify reply payload (9 words).
IDENTIFY = data.StructLayout({
    "magic": 32,
    "version_minor": 8,
    "version_major": 8,
    "caps": 16,
    "design_id": 32,  #: identifies the bitstream / Verilated design
    "rx_credit": 16,  #: receive FIFO size in bytes: max unacknowledged bytes in flight
    "max_words": 16,  #: max data words in one READ/WRITE
    "clocks_per_bit": 16,
    "addr_bits": 8,  #: bus address width (word addresses)
    "data_bits": 8,  #: bus data width (32)
    "clk_hz": 32,  #: nominal design clock (0 = unknown, e.g. simulation)
    "geometry": GEOMETRY,
})

#: STATUS reply payload (6 words): free-running counters since reset (wrap around).
STATUS = data.StructLayout({
    "cycles": 64,  #: clock cycles since reset
    "frames_ok": 32,  #: frames executed
    "crc_errors": 16,
    "framing_errors": 16,  #: COBS, TOO_LONG and LENGTH errors
    "seq_errors": 16,  #: SEQUENCE nacks
    "duplicates": 16,  #: duplicate frames (re-executed or nacked)
    "uart_errors": 16,  #: UART stop-bit errors
    "rx_overflows": 16,  #: bytes lost because the receive FIFO was full (must stay 0)
})

for _layout in (REQ_HEADER, RSP_HEADER):
    assert _layout.size == BUS_DATA_BITS
assert GEOMETRY.size % BUS_DATA_BITS == 0
assert IDENTIFY.size % BUS_DATA_BITS == 0 and STATUS.size % BUS_DATA_BITS == 0
IDENTIFY_WORDS = IDENTIFY.size // BUS_DATA_BITS
STATUS_WORDS = STATUS.size // BUS_DATA_BITS


def pack(layout: data.StructLayout, **values) -> int:
    """Pack field values into an integer with ``layout``'s bit positions (missing fields are 0).

    Nested struct fields take a dict.  Values are masked to the field width (two's complement).
    """
    unknown = set(values) - {name for name, _ in layout}
    if unknown:
        raise KeyError(f"unknown field(s) {sorted(unknown)} for layout {layout!r}")
    out = 0
    for name, field in layout:
        if name not in values:
            continue
        v = values[name]
        if isinstance(field.shape, data.StructLayout):
            v = pack(field.shape, **v)
        out |= (int(v) & ((1 << field.width) - 1)) << field.offset
    return out


def unpack(layout: data.StructLayout, value: int) -> dict:
    """Inverse of :func:`pack`: a dict of unsigned field values (nested structs as dicts)."""
    out = {}
    for name, field in layout:
        v = (value >> field.offset) & ((1 << field.width) - 1)
        out[name] = unpack(field.shape, v) if isinstance(field.shape, data.StructLayout) else v
    return out


def words_to_bytes(words: Iterable[int]) -> bytes:
    ws = list(words)
    return struct.pack(f"<{len(ws)}I", *(w & 0xFFFFFFFF for w in ws))


def words_from_bytes(raw: bytes) -> list[int]:
    if len(raw) % WORD_BYTES:
        raise ValueError(f"{len(raw)} bytes is not a whole number of words")
    return list(struct.unpack(f"<{len(raw) // WORD_BYTES}I", raw))


def value_words(layout: data.StructLayout, value: int) -> list[int]:
    """Split a packed layout value into its 32-bit words (word 0 = bits 0..31)."""
    return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(layout.size // 32)]


def words_value(words: Sequence[int]) -> int:
    return sum((w & 0xFFFFFFFF) << (32 * i) for i, w in enumerate(words))


def seq_diff(seq: int, expect: int) -> int:
    """``(seq - expect) mod 256``: 0 = expected, 1..127 = ahead (lost frame), 128..255 = duplicate."""
    return (seq - expect) % SEQ_MODULO


# ---------------------------------------------------------------------------------------------
# CRC-32/ISO-HDLC (zlib): reflected, poly 0x04C11DB7, init and xorout 0xFFFFFFFF, appended LSB
# first.  The RTL runs the register over frame + CRC and compares with the residue.
# ---------------------------------------------------------------------------------------------
CRC_BITS = 32
CRC_BYTES = CRC_BITS // 8
CRC_POLY_REFLECTED = 0xEDB88320
CRC_INIT = 0xFFFFFFFF
CRC_XOROUT = 0xFFFFFFFF


def crc(raw: bytes) -> int:
    """CRC of ``raw`` (as appended to a frame)."""
    return zlib.crc32(raw) & 0xFFFFFFFF


def crc_register_update(reg: int, byte: int) -> int:
    """One byte through the (reflected) CRC register -- the bit-level model the RTL implements."""
    reg ^= byte
    for _ in range(8):
        reg = (reg >> 1) ^ (CRC_POLY_REFLECTED if reg & 1 else 0)
    return reg


def crc_residue() -> int:
    """Register value after running over any frame followed by its CRC (init, no xorout)."""
    reg = CRC_INIT
    for b in b"\x00" + crc(b"\x00").to_bytes(CRC_BYTES, "little"):
        reg = crc_register_update(reg, b)
    return reg


# ---------------------------------------------------------------------------------------------
# Frame codec
# ---------------------------------------------------------------------------------------------
class FrameError(ValueError):
    """A received frame is malformed (COBS, length or CRC)."""


def encode_frame(words: Sequence[int], lead: bool = True) -> bytes:
    """Encode words as an on-wire frame: ``[0x00] COBS(words | crc) 0x00``."""
    raw = words_to_bytes(words)
    raw += crc(raw).to_bytes(CRC_BYTES, "little")
    return (b"\x00" if lead else b"") + cobs.encode(raw) + b"\x00"


def decode_frame(encoded: bytes) -> list[int]:
    """Decode one frame's bytes (without delimiters) into words; raise :class:`FrameError`."""
    try:
        raw = cobs.decode(encoded)
    except cobs.DecodeError as e:
        raise FrameError(f"COBS decode error: {e}") from None
    if len(raw) < WORD_BYTES + CRC_BYTES or (len(raw) - CRC_BYTES) % WORD_BYTES:
        raise FrameError(f"bad frame length {len(raw)} bytes")
    body, tail = raw[:-CRC_BYTES], raw[-CRC_BYTES:]
    if crc(body) != int.from_bytes(tail, "little"):
        raise FrameError("CRC mismatch")
    return words_from_bytes(body)


def frame_wire_bytes(n_words: int, lead: bool = True) -> int:
    """Upper bound of the on-wire size of a frame of ``n_words`` words (COBS worst case)."""
    raw = n_words * WORD_BYTES + CRC_BYTES
    return raw + (raw // 254) + 1 + 1 + (1 if lead else 0)


def request(op: Op, seq: int, arg: int = 0, words: Sequence[int] = ()) -> list[int]:
    """Words of a request frame (header + payload words)."""
    return [pack(REQ_HEADER, op=int(op), seq=seq, arg=arg), *words]


def reply(op: int, seq: int, status: Status, expect: int, words: Sequence[int] = ()) -> list[int]:
    """Words of a reply frame (what the board sends), for models and tests."""
    return [pack(RSP_HEADER, op=op, seq=seq, status=int(status), expect=expect), *words]
