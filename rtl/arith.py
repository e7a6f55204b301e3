"""Combinational arithmetic primitives of the integer contract, as Amaranth expressions.

They mirror ``plasticore.contract``: ``sat``, ``rshift_round`` (round half up, variable shift),
``clip``.  Every function returns a value of an explicit, sufficient width; nothing wraps.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value, signed

__all__ = ["clip", "clip_sub_fast", "round_half", "rshift_round", "sat", "sat_fast", "to_signed"]


def to_signed(v) -> Value:
    """``v`` as a signed value (an unsigned value gains a zero sign bit)."""
    v = Value.cast(v)
    if v.shape().signed:
        return v
    return v.as_unsigned() + Const(0, signed(2))  # zero-extends by one bit and becomes signed


def sat(v, bits: int) -> Value:
    """Clamp signed ``v`` to ``[-2**(bits-1), 2**(bits-1)-1]``; result is ``signed(bits)``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = to_signed(v)
    if len(v) <= bits:
        return v
    return Mux(v > hi, Const(hi, signed(bits)), Mux(v < lo, Const(lo, signed(bits)), v[:bits].as_signed()))


def sat_fast(v, bits: int) -> Value:
    """:func:`sat` from an overflow test of the top bits (all equal to the sign) instead of two
    comparators: no carry chain, for slow FPGAs where carry chains are the long paths."""
    v = to_signed(v)
    if len(v) <= bits:
        return v
    top = v[bits - 1:]
    ok = (top == 0) | (top == (1 << len(top)) - 1)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(ok, v[:bits].as_signed(), Mux(v[-1], Const(lo, signed(bits)), Const(hi, signed(bits))))


def clip_sub_fast(a, b, bits: int) -> Value:
    """``sat(a - b, bits)`` with a short carry chain, for a wide ``a`` and a narrow ``b``: the
    subtraction is made on the low ``len(b) + 2`` bits of ``a`` beside a test that ``a`` fits in them;
    if not, ``|a| >= 2**(len(b)+1)`` exceeds ``|b| + 2**(bits-1)`` and the result is ``a``'s bound."""
    a, b = to_signed(a), to_signed(b)
    lo_bits = len(b) + 2
    assert (1 << (lo_bits - 1)) - (1 << (len(b) - 1)) > 1 << (bits - 1), "bits too wide for the short form"
    if len(a) <= lo_bits:
        return sat_fast(a - b, bits)
    top = a[lo_bits - 1:]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(fits, sat_fast(a[:lo_bits].as_signed() - b, bits),
               Mux(a[-1], Const(lo, signed(bits)), Const(hi, signed(bits))))


def clip(v, lo, hi) -> Value:
    """``min(max(v, lo), hi)`` (``lo``/``hi`` may be signals)."""
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


def rshift_round(v, s, s_max: int) -> Value:
    """``floor((v + 2**(s-1)) / 2**s)`` for ``s > 0``, ``v`` for ``s == 0`` (``s`` variable, <= ``s_max``).

    Hardware: add half an LSB of the result, arithmetic shift right.  The sum is formed at
    ``max(len(v), s_max) + 2`` bits so it cannot overflow; the result is signed at that width.
    """
    v = to_signed(v)
    w = max(len(v), s_max) + 2
    s = Value.cast(s)
    half = (Const(1, w + 1) << s)[1: w + 1]  # 2**s >> 1, i.e. 0 when s == 0
    total = (v + half.as_unsigned())[: w + 1].as_signed()
    return (total >> s)[:w].as_signed()


def round_half(s, width: int) -> Value:
    """``2**(s-1)`` for ``s > 0``, 0 for ``s == 0`` (the rounding constant of ``rshift_round``), unsigned.

    ``rshift_round(v, s) == (v + round_half(s)) >> s`` (arithmetic shift); pipelined datapaths add
    the constant in one stage and shift in the next.
    """
    return (Const(1, width + 1) << Value.cast(s))[1: width + 1]
