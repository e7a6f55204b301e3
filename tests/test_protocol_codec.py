"""The wire protocol definitions (plasticore/protocol.py): layouts, CRC, frame codec."""

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plasticore import protocol as P
from plasticore.protocol import Op, Status


def test_layout_sizes_are_whole_words():
    assert P.REQ_HEADER.size == P.RSP_HEADER.size == 32
    assert P.IDENTIFY.size == 32 * P.IDENTIFY_WORDS
    assert P.STATUS.size == 32 * P.STATUS_WORDS


def test_opcodes_and_status_codes_are_unique_bytes():
    assert len({int(o) for o in Op}) == len(Op)
    assert all(0 < o < P.RSP_FLAG for o in Op)  # replies set the flag bit
    assert len({int(s) for s in Status}) == len(Status) and max(Status) < 256
    assert P.IDEMPOTENT_OPS <= set(Op)


@given(op=st.integers(0, 255), seq=st.integers(0, 255), arg=st.integers(0, 0xFFFF))
def test_header_pack_unpack_roundtrip(op, seq, arg):
    v = P.pack(P.REQ_HEADER, op=op, seq=seq, arg=arg)
    assert P.unpack(P.REQ_HEADER, v) == {"op": op, "seq": seq, "arg": arg}
    # byte 0 on the wire is the opcode, byte 1 the sequence number
    assert P.words_to_bytes([v])[:2] == bytes([op, seq])


def test_pack_rejects_unknown_fields_and_nests():
    with pytest.raises(KeyError):
        P.pack(P.REQ_HEADER, opcode=1)
    v = P.pack(P.IDENTIFY, magic=P.MAGIC, geometry={"cores": 4, "lanes": 8})
    f = P.unpack(P.IDENTIFY, v)
    assert f["magic"] == P.MAGIC and f["geometry"]["cores"] == 4 and f["geometry"]["lanes"] == 8


@given(data=st.binary(max_size=300))
def test_crc_register_model_matches_zlib(data):
    reg = P.CRC_INIT
    for b in data:
        reg = P.crc_register_update(reg, b)
    assert reg ^ P.CRC_XOROUT == zlib.crc32(data) == P.crc(data)
    for b in P.crc(data).to_bytes(P.CRC_BYTES, "little"):
        reg = P.crc_register_update(reg, b)
    assert reg == P.crc_residue()


@given(words=st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=300))
def test_frame_roundtrip_and_size_bound(words):
    enc = P.encode_frame(words)
    assert enc[0] == 0 and enc[-1] == 0 and 0 not in enc[1:-1]
    assert len(enc) <= P.frame_wire_bytes(len(words))
    assert P.decode_frame(enc[1:-1]) == words


@given(words=st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=40), pos=st.integers(0, 10_000),
       mask=st.integers(1, 255))
def test_corrupted_frame_is_rejected(words, pos, mask):
    enc = bytearray(P.encode_frame(words, lead=False)[:-1])
    pos %= len(enc)
    enc[pos] ^= mask
    if 0 in enc:
        return  # became two frames on the wire: each is rejected separately
    try:
        got = P.decode_frame(bytes(enc))
    except P.FrameError:
        return
    assert got != words or bytes(enc) == P.encode_frame(words, lead=False)[:-1]
    pytest.fail("a corrupted frame decoded without error")


def test_seq_diff_windows():
    assert P.seq_diff(5, 5) == 0
    assert P.seq_diff(6, 5) == 1
    assert P.seq_diff(4, 5) == 255
    assert P.seq_diff(0, 250) == 6
    assert P.MAX_WINDOW_FRAMES < P.SEQ_MODULO // 2


def test_request_builders():
    w = P.request(Op.READ, 7, arg=3, words=[0x100])
    assert P.unpack(P.REQ_HEADER, w[0]) == {"op": Op.READ, "seq": 7, "arg": 3} and w[1] == 0x100
    r = P.reply(Op.READ | P.RSP_FLAG, 7, Status.OK, 8, [1, 2, 3])
    assert P.unpack(P.RSP_HEADER, r[0])["expect"] == 8 and r[1:] == [1, 2, 3]
