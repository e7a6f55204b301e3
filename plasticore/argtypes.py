"""argparse value types shared by every ``plasticore`` subcommand.

Each raises :class:`argparse.ArgumentTypeError` with a message naming the expected form, so a bad
value ends as one line (``plasticore run: error: argument --count: ...``) before any work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["int_list", "int_range", "nonneg_int", "positive_float", "positive_int", "u32"]


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in ``lo..hi`` (either bound may be open); accepts 0x.. / 0b.. literals."""

    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            want = f"{lo}..{hi}" if lo is not None and hi is not None else (f">= {lo}" if lo is not None
                                                                             else f"<= {hi}")
            raise argparse.ArgumentTypeError(f"{v} is out of range (expected {want})")
        return v

    parse.__name__ = "integer"
    return parse


#: an integer >= 1 (counts, sizes, epochs ...)
positive_int = int_range(1)
#: an integer >= 0 (seeds ...)
nonneg_int = int_range(0)
#: a 32-bit unsigned integer (design IDs; hex accepted)
u32 = int_range(0, (1 << 32) - 1)


def positive_float(text: str) -> float:
    """A finite float > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return v


def int_list(lo: int = 1, hi: int | None = None) -> Callable[[str], list[int]]:
    """A comma separated list of integers in ``lo..hi`` (e.g. ``64,32,10``)."""
    one = int_range(lo, hi)

    def parse(text: str) -> list[int]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma separated integers, e.g. 64,32,10")
        out = []
        for p in parts:
            try:
                out.append(one(p))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
        return out

    parse.__name__ = "integer list"
    return parse
