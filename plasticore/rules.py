"""Plasticity rule programs (contract v2): ``dH_ij = sum_k c_k * pre_k(i) * post_k(j)``.

A layer's local plasticity unit runs a *program* of up to :data:`K_MAX` terms, then the layer's
decay and clamp (``docs/spec.md`` §3.4, ``docs/plasticity.md``).  Each term multiplies one
presynaptic factor by one postsynaptic factor, rounds, saturates and scales by an integer
coefficient::

    p_k  = sat(rshift_round(pre_k(i) * post_k(j), shift_k), TERM_BITS)
    q_k  = rshift_round(c_k * p_k, c_shift_k)
    dH   = sat(sum_k q_k, DH_BITS)
    H    = clip(rshift_round(H * decay, 8) + dH, -h_clamp, +h_clamp)

Users write rules as strings in the spirit of Lava's ``dw`` strings, e.g.
``"beta*x*lut(u) + c1*x*m"``; :func:`compile_rule` parses them (a small hand-written tokenizer and
recursive-descent parser) and chooses the integer shifts so that every term lands on H's 2^-12
grid.  A v1 layer (``hebb_sign``, ``dh_shift``) is the one-term program :func:`v1_program`.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

import numpy as np

from . import contract as C
from .errors import PlasticoreError

# --------------------------------------------------------------------------------------------
# widths and limits (defined once; docs/spec.md §3.4)
# --------------------------------------------------------------------------------------------
K_MAX = 4  #: terms per rule program
COEF_BITS = 16  #: coefficient c_k, signed
TERM_BITS = 18  #: p_k (rounded pre*post product), saturating (an 18x18 DSP operand)
DH_BITS = 18  #: the sum of the terms, saturating, before it is added to the decayed H
TRACE_BITS = 16  #: pre/post traces, signed, saturating
TRACE_FRAC = 8  #: trace real value = trace / 2**8 (a spike adds 1.0 = 256)
M_BITS = 16  #: third factor m_j, signed
M_FRAC = 12  #: m real value = m / 2**12 (one-hot label 1.0 = 4096)
SHIFT_MAX = C.SHIFT_MAX


class RuleError(PlasticoreError, ValueError):
    """A rule string or program is malformed; the message names the token and its position."""


class Pre(enum.StrEnum):
    """Presynaptic factors (per axon i)."""

    ONE = "1"
    X = "x"  #: the input x_i of this step (spike 0/1 or graded, x_frac fractional bits)
    XTR = "xtr"  #: presynaptic trace (TRACE_FRAC fractional bits)
    BETA = "beta"  #: beta_i (dh_shift fractional bits)
    G = "beta*x"  #: g_i = sat16(rshift_round(beta_i * x_i, x_frac)) (the v1 presynaptic term)


class Post(enum.StrEnum):
    """Postsynaptic factors (per neuron j)."""

    ONE = "1"
    LUT = "lut"  #: f_j = lut[z_j] (12 fractional bits)
    S = "s"  #: s_j of this step (LIF spike 0/1; ANN output)
    YTR = "ytr"  #: postsynaptic trace
    M = "m"  #: the third factor m_j (M_FRAC fractional bits)
    M_LUT = "m*lut"  #: sat16(rshift_round(m_j * f_j, 12))
    M_S = "m*s"  #: sat16(m_j * s_j)
    M_YTR = "m*ytr"  #: sat16(rshift_round(m_j * ytr_j, TRACE_FRAC))


class MKind(enum.StrEnum):
    """How the third factor m_j is formed from the host's per-sample/per-step value t_j."""

    DIRECT = "direct"  #: m_j = t_j (label one-hot, reward broadcast, any host value)
    ERROR = "error"  #: m_j = sat16(t_j - f_j): the error against a target, formed on chip


@dataclass(frozen=True)
class Term:
    """One integer term: ``q = rshift_round(c * sat18(rshift_round(pre * post, shift)), c_shift)``."""

    pre: Pre  #: presynaptic factor (per axon i)
    post: Post  #: postsynaptic factor (per neuron j)
    c: int  #: coefficient (COEF_BITS, signed)
    shift: int = 0  #: rounding shift of the factor product
    c_shift: int = 0  #: rounding shift after the coefficient

    def to_json(self) -> dict:
        return {"pre": self.pre.value, "post": self.post.value, "c": int(self.c), "shift": int(self.shift),
                "c_shift": int(self.c_shift)}


@dataclass(frozen=True)
class RuleProgram:
    """The integer rule program of a layer (what runs) plus its source text (informative)."""

    terms: tuple[Term, ...]
    pre_decay: int = C.FRAC8_ONE  #: presynaptic trace decay k/256
    post_decay: int = C.FRAC8_ONE  #: postsynaptic trace decay k/256
    m_kind: MKind = MKind.DIRECT
    text: str = ""
    coefs: dict = field(default_factory=dict, compare=False, hash=False)  #: the real coefficients by name

    @property
    def uses_traces(self) -> bool:
        return any(t.pre == Pre.XTR or t.post in (Post.YTR, Post.M_YTR) for t in self.terms)

    @property
    def uses_m(self) -> bool:
        return self.m_kind == MKind.ERROR or any(t.post in (Post.M, Post.M_LUT, Post.M_S, Post.M_YTR)
                                                  for t in self.terms)

    def to_json(self) -> dict:
        return {"text": self.text, "terms": [t.to_json() for t in self.terms], "pre_decay": int(self.pre_decay),
                "post_decay": int(self.post_decay), "m_kind": self.m_kind.value,
                "coefs": {k: float(v) for k, v in self.coefs.items()}}


def validate_program(prog: RuleProgram, where: str = "rule") -> None:
    """Raise :class:`RuleError` naming the first out-of-range field of ``prog``."""
    if not 1 <= len(prog.terms) <= K_MAX:
        raise RuleError(f"{where}: {len(prog.terms)} terms, allowed 1..{K_MAX}")
    for k, t in enumerate(prog.terms):
        if not isinstance(t.pre, Pre) or not isinstance(t.post, Post):
            raise RuleError(f"{where}.terms[{k}]: pre/post {t.pre!r}/{t.post!r} are not factors")
        if not C.smin(COEF_BITS) <= t.c <= C.smax(COEF_BITS):
            raise RuleError(f"{where}.terms[{k}].c = {t.c} not in {C.smin(COEF_BITS)}..{C.smax(COEF_BITS)}")
        for name in ("shift", "c_shift"):
            v = getattr(t, name)
            if not 0 <= v <= SHIFT_MAX:
                raise RuleError(f"{where}.terms[{k}].{name} = {v} not in 0..{SHIFT_MAX}")
    for name in ("pre_decay", "post_decay"):
        v = getattr(prog, name)
        if not 0 <= v <= C.FRAC8_ONE:
            raise RuleError(f"{where}.{name} = {v} not in 0..{C.FRAC8_ONE}")
    if not isinstance(prog.m_kind, MKind):
        raise RuleError(f"{where}.m_kind = {prog.m_kind!r}, expected one of {[m.value for m in MKind]}")


def program_from_json(d: dict, where: str = "rule") -> RuleProgram:
    """Inverse of :meth:`RuleProgram.to_json` with validation (errors name the field)."""
    if not isinstance(d, dict):
        raise RuleError(f"{where}: expected an object, got {type(d).__name__}")
    terms = []
    for k, td in enumerate(d.get("terms", [])):
        w = f"{where}.terms[{k}]"
        if not isinstance(td, dict):
            raise RuleError(f"{w}: expected an object")
        try:
            pre, post = Pre(td["pre"]), Post(td["post"])
        except KeyError as e:
            raise RuleError(f"{w}: missing field {e}") from None
        except ValueError:
            raise RuleError(f"{w}: pre {td.get('pre')!r} / post {td.get('post')!r}: expected pre in "
                            f"{[p.value for p in Pre]}, post in {[p.value for p in Post]}") from None
        vals = {}
        for name in ("c", "shift", "c_shift"):
            v = td.get(name, 0)
            if isinstance(v, bool) or not isinstance(v, int):
                raise RuleError(f"{w}.{name} = {v!r} is not an integer")
            vals[name] = v
        terms.append(Term(pre, post, **vals))
    try:
        mk = MKind(d.get("m_kind", "direct"))
    except ValueError:
        raise RuleError(f"{where}.m_kind = {d.get('m_kind')!r}, expected one of {[m.value for m in MKind]}") from None
    for name in ("pre_decay", "post_decay"):
        v = d.get(name, C.FRAC8_ONE)
        if isinstance(v, bool) or not isinstance(v, int):
            raise RuleError(f"{where}.{name} = {v!r} is not an integer")
    prog = RuleProgram(terms=tuple(terms), pre_decay=d.get("pre_decay", C.FRAC8_ONE),
                       post_decay=d.get("post_decay", C.FRAC8_ONE), m_kind=mk, text=str(d.get("text", "")),
                       coefs=dict(d.get("coefs", {})))
    validate_program(prog, where)
    return prog


def v1_program(hebb_sign: int, dh_shift: int) -> RuleProgram:
    """The v1 rule ``hebb_sign * rshift_round(g_i * f_j, dh_shift)`` as a one-term program (exact:
    c = ±1, c_shift = 0, and |dH| >= 2^17 - 1 clips to the same H as the unsaturated v1 sum)."""
    sign = -1 if hebb_sign < 0 else 1
    return RuleProgram(terms=(Term(Pre.G, Post.LUT, c=sign, shift=dh_shift, c_shift=0),),
                       text=("-" if sign < 0 else "") + "beta*x*lut(u)")


def needs_program_core(bundle) -> bool:
    """A plastic layer of ``bundle`` runs a program the v1 LPU cannot (a chip of program cores runs it)."""
    return any(L.plastic and v1_form(L.program) is None for L in bundle.layers)


def v1_form(prog: RuleProgram) -> tuple[int, int] | None:
    """``(hebb_sign, dh_shift)`` if ``prog`` is exactly a v1 program (what the v1 LPU can run), else None."""
    if len(prog.terms) != 1 or prog.m_kind != MKind.DIRECT:
        return None
    t = prog.terms[0]
    if t.pre == Pre.G and t.post == Post.LUT and t.c in (-1, 1) and t.c_shift == 0:
        return t.c, t.shift
    return None


def lpu_v1_registers(layer) -> tuple[int, int]:
    """``(hebb_sign, dh_shift)`` the v1 LPU registers hold for ``layer``; a :class:`RuleError` naming the
    layer's rule when its program needs the v2 LPU (a chip of v1 cores runs one-term ``±beta*x*lut(u)``
    programs; a chip of program cores runs any)."""
    if not layer.plastic:
        return layer.hebb_sign, layer.dh_shift
    v1 = v1_form(layer.program)
    if v1 is None:
        raise RuleError(f"rule {layer.program.text or layer.program.to_json()['terms']!r}: the RTL LPU runs only "
                        "one-term ±beta*x*lut(u) programs (contract v1); run this layer on a chip of program cores "
                        "(core 'program') or on the golden model")
    return v1


# --------------------------------------------------------------------------------------------
# the rule-string grammar
# --------------------------------------------------------------------------------------------
#   rule   := ['+'|'-'] term (('+'|'-') term)*
#   term   := factor ('*' factor)*
#   factor := NUMBER ['^' ['-'] NUMBER] | NAME | 'lut' '(' 'u' ')'
#   NAME   := x | xtr | beta | s | ytr | m | f | <coefficient name>
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>[-+*^()]))")
_PRE_ATOMS = {"x": "x", "xtr": "xtr", "beta": "beta"}
_POST_ATOMS = {"s": "s", "ytr": "ytr", "m": "m", "f": "lut"}
_PRE_SETS = {frozenset(): Pre.ONE, frozenset({"x"}): Pre.X, frozenset({"xtr"}): Pre.XTR,
             frozenset({"beta"}): Pre.BETA, frozenset({"beta", "x"}): Pre.G}
_POST_SETS = {frozenset(): Post.ONE, frozenset({"lut"}): Post.LUT, frozenset({"s"}): Post.S,
              frozenset({"ytr"}): Post.YTR, frozenset({"m"}): Post.M, frozenset({"m", "lut"}): Post.M_LUT,
              frozenset({"m", "s"}): Post.M_S, frozenset({"m", "ytr"}): Post.M_YTR}


@dataclass
class ParsedTerm:
    """A term in real units: coefficient value, factor sets, and which coefficient names it uses."""

    coef: float
    pre: Pre
    post: Post
    names: tuple[str, ...]
    pos: int


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    toks, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        mt = _TOKEN.match(text, i)
        if mt is None or mt.end() == i:
            j = i + len(text[i:]) - len(text[i:].lstrip())
            raise RuleError(f"rule {text!r}: unexpected character {text[j]!r} at position {j}")
        kind = mt.lastgroup
        start = mt.start(kind)
        toks.append((kind, mt.group(kind), start))
        i = mt.end()
    toks.append(("end", "", len(text)))
    return toks


def parse_rule(text: str, coefs: dict[str, float] | None = None) -> list[ParsedTerm]:
    """Parse a rule string into real-valued terms; unknown names, bad tokens, illegal factor
    combinations and more than :data:`K_MAX` terms raise :class:`RuleError` naming token and position."""
    coefs = dict(coefs or {})
    toks = _tokenize(text)
    pos = 0

    def err(msg: str, tok) -> RuleError:
        shown = tok[1] if tok[0] != "end" else "end of rule"
        return RuleError(f"rule {text!r}: {msg} {shown!r} at position {tok[2]}")

    def number() -> float:
        nonlocal pos
        k, v, _ = toks[pos]
        pos += 1
        val = float(v)
        if toks[pos][1] == "^":
            pos += 1
            neg = False
            if toks[pos][1] in "+-" and toks[pos][0] == "op":
                neg = toks[pos][1] == "-"
                pos += 1
            if toks[pos][0] != "num":
                raise err("expected an exponent, got", toks[pos])
            e = float(toks[pos][1])
            pos += 1
            val = val ** (-e if neg else e)
        return val

    terms: list[ParsedTerm] = []
    sign = 1.0
    if toks[pos][1] in ("+", "-") and toks[pos][0] == "op":
        sign = -1.0 if toks[pos][1] == "-" else 1.0
        pos += 1
    while True:
        start = toks[pos]
        coef, pre, post, names = sign, set(), set(), []
        while True:
            tok = toks[pos]
            if tok[0] == "num":
                coef *= number()
            elif tok[0] == "name":
                name = tok[1]
                pos += 1
                if name == "lut":
                    if not (toks[pos][1] == "(" and toks[pos + 1][1] == "u" and toks[pos + 2][1] == ")"):
                        raise err("expected 'lut(u)' after", tok)
                    pos += 3
                    atom, dest = "lut", post
                elif name in _PRE_ATOMS:
                    atom, dest = _PRE_ATOMS[name], pre
                elif name in _POST_ATOMS:
                    atom, dest = _POST_ATOMS[name], post
                elif name in coefs:
                    coef *= float(coefs[name])
                    names.append(name)
                    atom = None
                else:
                    raise err("unknown name (not a factor, no coefficient given)", tok)
                if atom is not None:
                    if atom in dest:
                        raise err("factor appears twice in a term:", tok)
                    dest.add(atom)
                    if frozenset(pre) not in _PRE_SETS:
                        raise err(f"presynaptic factors {sorted(pre)} cannot be combined; the last is", tok)
                    if frozenset(post) not in _POST_SETS:
                        raise err(f"postsynaptic factors {sorted(post)} cannot be combined; the last is", tok)
            else:
                raise err("expected a factor, got", tok)
            if toks[pos][1] == "*" and toks[pos][0] == "op":
                pos += 1
                continue
            break
        terms.append(ParsedTerm(coef, _PRE_SETS[frozenset(pre)], _POST_SETS[frozenset(post)], tuple(names), start[2]))
        if len(terms) > K_MAX:
            raise err(f"more than K_MAX = {K_MAX} terms: extra term starts at", start)
        tok = toks[pos]
        if tok[0] == "end":
            break
        if tok[0] == "op" and tok[1] in "+-":
            sign = -1.0 if tok[1] == "-" else 1.0
            pos += 1
            if toks[pos][0] == "end":
                raise err("expected a term, got", toks[pos])
            continue
        raise err("expected '+', '-', '*' or the end, got", tok)
    return terms


def pre_frac(pre: Pre, x_frac: int, beta_frac: int) -> int:
    """Fractional bits of a presynaptic factor's integer value."""
    return {Pre.ONE: 0, Pre.X: x_frac, Pre.XTR: TRACE_FRAC, Pre.BETA: beta_frac, Pre.G: beta_frac}[pre]


def post_frac(post: Post, s_frac: int) -> int:
    """Fractional bits of a postsynaptic factor's integer value."""
    return {Post.ONE: 0, Post.LUT: C.F_FRAC, Post.S: s_frac, Post.YTR: TRACE_FRAC, Post.M: M_FRAC,
            Post.M_LUT: M_FRAC, Post.M_S: M_FRAC, Post.M_YTR: M_FRAC}[post]


def term_scales(pre: Pre, post: Post, x_frac: int, beta_frac: int, s_frac: int) -> tuple[int, int]:
    """``(shift, p_frac)``: the product shift that keeps p_k at most H's 12 fractional bits, and the
    fractional bits p_k then has."""
    pf = pre_frac(pre, x_frac, beta_frac) + post_frac(post, s_frac)
    shift = min(max(0, pf - C.H_FRAC), SHIFT_MAX)
    return shift, pf - shift


def quantise_coef(coef: float, p_frac: int) -> tuple[int, int]:
    """``(c, c_shift)`` with c = round(coef * 2**c_frac) as precise as 16 bits allow and
    c_shift = c_frac + p_frac - 12 (so q_k lands on H's 2^-12 grid)."""
    lo = C.H_FRAC - p_frac  # c_shift >= 0
    if coef == 0.0:
        return 0, 0
    if not math.isfinite(coef):
        raise RuleError(f"coefficient {coef} is not finite")
    cf = math.floor(math.log2(C.smax(COEF_BITS) / abs(coef)))
    while cf > -64 and abs(math.floor(coef * 2.0 ** cf + 0.5)) > C.smax(COEF_BITS):
        cf -= 1
    cf = min(cf, SHIFT_MAX - p_frac + C.H_FRAC)
    if cf < lo:
        raise RuleError(f"coefficient {coef:g} is too large: the term needs |c| <= "
                        f"{C.smax(COEF_BITS) * 2.0 ** -lo:g}")
    return int(math.floor(coef * 2.0 ** cf + 0.5)), cf + p_frac - C.H_FRAC


def compile_terms(parsed: list[ParsedTerm], values: list[float] | None = None, *, x_frac: int = 0,
                  beta_frac: int = 0, s_frac: int = 0, pre_decay: int = C.FRAC8_ONE, post_decay: int = C.FRAC8_ONE,
                  m_kind: MKind | str = MKind.DIRECT, text: str | None = None,
                  coefs: dict | None = None) -> RuleProgram:
    """The integer program of parsed terms (``values`` overrides each term's real coefficient, e.g. the
    meta-learned ones from torch).  A ``±1 * beta*x*lut(u)`` term compiles to the v1 term exactly."""
    terms = []
    vals = [pt.coef for pt in parsed] if values is None else [float(v) for v in values]
    for pt, coef in zip(parsed, vals, strict=True):
        shift, pf = term_scales(pt.pre, pt.post, x_frac, beta_frac, s_frac)
        if pt.pre == Pre.G and pt.post == Post.LUT and coef in (1.0, -1.0):
            c, cs = int(coef), 0  # the v1 term, bit for bit
        else:
            try:
                c, cs = quantise_coef(coef, pf)
            except RuleError as e:
                raise RuleError(f"rule {text!r}: term at position {pt.pos}: {e}") from None
        terms.append(Term(pt.pre, pt.post, c=c, shift=shift, c_shift=cs))
    if text is None:
        text = " + ".join("*".join([f"{v:.6g}"] + [a for a in (pt.pre.value, pt.post.value) if a != "1"])
                          for pt, v in zip(parsed, vals, strict=True)).replace("lut", "lut(u)").replace("+ -", "- ")
    prog = RuleProgram(terms=tuple(terms), pre_decay=int(pre_decay), post_decay=int(post_decay),
                       m_kind=MKind(m_kind), text=text, coefs=dict(coefs or {}))
    validate_program(prog)
    return prog


def compile_rule(text: str, coefs: dict[str, float] | None = None, *, x_frac: int = 0, beta_frac: int = 0,
                 s_frac: int = 0, pre_decay: int = C.FRAC8_ONE, post_decay: int = C.FRAC8_ONE,
                 m_kind: MKind | str = MKind.DIRECT) -> RuleProgram:
    """Compile a rule string into the integer program of a layer whose inputs have ``x_frac``, whose
    β has ``beta_frac`` (= the layer's ``dh_shift``) and whose outputs have ``s_frac`` fractional bits."""
    coefs = dict(coefs or {})
    return compile_terms(parse_rule(text, coefs), x_frac=x_frac, beta_frac=beta_frac, s_frac=s_frac,
                         pre_decay=pre_decay, post_decay=post_decay, m_kind=m_kind, text=text, coefs=coefs)


# --------------------------------------------------------------------------------------------
# executing a program (numpy, vectorised; the golden model calls this)
# --------------------------------------------------------------------------------------------
def update_traces(xtr, ytr, x, s, prog: RuleProgram, x_frac: int, s_frac: int):
    """xtr' = sat16(rshift_round(xtr*pre_decay, 8) + (x << (8 - x_frac))), same for ytr with s."""
    xtr = C.sat(C.mul_frac8(xtr, prog.pre_decay) + (x << (TRACE_FRAC - x_frac)), TRACE_BITS)
    ytr = C.sat(C.mul_frac8(ytr, prog.post_decay) + (s << (TRACE_FRAC - s_frac)), TRACE_BITS)
    return xtr, ytr


def third_factor(t, f, prog: RuleProgram):
    """m_j = t_j (direct) or sat16(t_j - f_j) (error)."""
    if prog.m_kind == MKind.ERROR:
        return C.sat(t - f, M_BITS)
    return t


def pre_value(pre: Pre, x, beta, xtr, x_frac: int):
    """The pre factor of a term, shaped like ``x`` (numpy arrays or torch tensors alike)."""
    if pre == Pre.G:
        return C.sat(C.rshift_round(beta * x, x_frac), C.G_BITS)
    return {Pre.ONE: 1 + 0 * x, Pre.X: x, Pre.XTR: xtr, Pre.BETA: beta + 0 * x}[pre]


def post_value(post: Post, f, s, ytr, m):
    """The post factor of a term, shaped like ``f`` (numpy arrays or torch tensors alike)."""
    products = {Post.M_LUT: lambda: C.sat(C.rshift_round(m * f, C.F_FRAC), M_BITS),
                Post.M_S: lambda: C.sat(m * s, M_BITS),
                Post.M_YTR: lambda: C.sat(C.rshift_round(m * ytr, TRACE_FRAC), M_BITS)}
    if post in products:
        return products[post]()
    return {Post.ONE: 1 + 0 * f, Post.LUT: f, Post.S: s, Post.YTR: ytr, Post.M: m}[post]


def program_dh(prog: RuleProgram, x, beta, xtr, f, s, ytr, m, x_frac: int) -> np.ndarray:
    """dH (.., A, N) int64 = sat18(sum_k rshift_round(c_k * p_k, c_shift_k)) with
    p_k = sat18(rshift_round(pre_k * post_k, shift_k)).  The factors are int64 numpy arrays (the golden
    model) or int64 torch tensors (``training/deploy.py``); the result is of the same kind."""
    total = None
    for t in prog.terms:
        a = pre_value(t.pre, x, beta, xtr, x_frac)
        b = post_value(t.post, f, s, ytr, m)
        p = C.sat(C.rshift_round(a[..., :, None] * b[..., None, :], t.shift), TERM_BITS)
        q = C.rshift_round(t.c * p, t.c_shift)
        total = q if total is None else total + q
    return C.sat(total, DH_BITS)


# --------------------------------------------------------------------------------------------
# host-side third factor / teaching inputs
# --------------------------------------------------------------------------------------------
def expand_per_step(a, S: int, T: int, N: int, name: str, bits: int = M_BITS) -> np.ndarray:
    """A per-sample ``(S, N)``, per-step ``(S, T, N)``, or broadcast ``(S,)`` / ``(S, T, 1)`` (a reward for
    every neuron) integer array as ``(S, T, N)`` int64; errors name ``name``."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise RuleError(f"{name}: dtype {a.dtype}, expected integers")
    if a.shape == (S,):
        a = np.broadcast_to(a[:, None, None], (S, T, N))
    elif a.shape == (S, N):
        a = np.broadcast_to(a[:, None, :], (S, T, N))
    elif a.shape == (S, T, 1):
        a = np.broadcast_to(a, (S, T, N))
    elif a.shape != (S, T, N):
        raise RuleError(f"{name}: shape {a.shape}, expected ({S},), ({S}, {N}), ({S}, {T}, 1) or ({S}, {T}, {N})")
    lo, hi = C.smin(bits), C.smax(bits)
    if a.size and (a.min() < lo or a.max() > hi):
        raise RuleError(f"{name}: values in [{a.min()}, {a.max()}], allowed {lo}..{hi}")
    return np.array(a, dtype=np.int64)


def label_m(labels, n: int, amp: int = 1 << M_FRAC) -> np.ndarray:
    """One-hot teaching factor (S, n): ``amp`` (default 1.0 = 4096) at the label, 0 elsewhere."""
    labels = np.asarray(labels, np.int64)
    out = np.zeros((labels.shape[0], n), np.int64)
    out[np.arange(labels.shape[0]), labels] = amp
    return out


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A named rule with the layer options it needs (post function table, clamp, reset, β sign)."""

    name: str
    text: str
    coefs: dict
    description: str
    post_fn: str | None = None  #: table to load (None: keep the layer's)
    clamp: float | None | str = "keep"  #: H clamp in real units (None: int16 range; "keep")
    reset: str | None = None  #: soft | hard | None (keep)
    beta_nonneg: bool = False  #: β >= 0 (training clamps it; the preset clips it)
    pre_decay: int = C.FRAC8_ONE
    post_decay: int = C.FRAC8_ONE
    m_kind: MKind = MKind.DIRECT
    decay: int | None = None  #: plastic decay k/256 (None: keep)
    teach: bool = False  #: the rule expects a teaching current on the output layer


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("simple", "beta*x*lut(u)", {}, "authors' simple example: tanh, +", post_fn="tanh", clamp=4.0),
    Preset("classification", "-beta*x*lut(u)", {}, "authors' classification: sign -, no tanh (identity), clamp ±2",
           post_fn="identity", clamp=2.0),
    Preset("fmnist", "beta*x*lut(u)", {}, "authors' fmnist: tanh, hard reset, β >= 0", post_fn="tanh", clamp=4.0,
           reset="hard", beta_nonneg=True),
    Preset("fewshot", "beta*x*lut(u)", {}, "authors' few-shot: label-driven through the teaching current, "
           "no decay", post_fn="tanh", clamp=4.0, decay=C.FRAC8_ONE, teach=True),
    Preset("stdp", "a_plus*xtr*s - a_minus*x*ytr", {"a_plus": 0.01, "a_minus": 0.012},
           "pair-based STDP with exponential traces", pre_decay=205, post_decay=205),
    Preset("fireflyp", "a*x*s + b*s + c*x + d", {"a": 0.01, "b": -0.002, "c": -0.001, "d": 0.0},
           "FireFly-P: a·Si·Sj + b·Sj + c·Si + d"),
    Preset("reward_hebb", "c*x*m*s", {"c": 0.01}, "reward-modulated Hebbian: m = reward broadcast"),
    Preset("prototype", "c*x*m", {"c": 0.01}, "few-shot prototype rule: m = one-hot label, H accumulates "
           "class means of the inputs", decay=C.FRAC8_ONE),
    Preset("delta", "c*x*m", {"c": 0.01}, "delta rule: m = t - f(u) formed on chip from the target t",
           post_fn="identity", m_kind=MKind.ERROR, decay=C.FRAC8_ONE),
)}


def preset_program(name: str, layer, coefs: dict[str, float] | None = None) -> RuleProgram:
    """Compile preset ``name`` for ``layer`` (a :class:`plasticore.bundle.Layer`)."""
    if name not in PRESETS:
        raise RuleError(f"unknown preset {name!r}, expected one of {sorted(PRESETS)}")
    p = PRESETS[name]
    s_frac = 0 if layer.soma == C.SomaMode.LIF else 8
    return compile_rule(p.text, {**p.coefs, **(coefs or {})}, x_frac=layer.x_frac, beta_frac=layer.dh_shift,
                        s_frac=s_frac, pre_decay=p.pre_decay, post_decay=p.post_decay, m_kind=p.m_kind)


def apply_preset(layer, name: str, coefs: dict[str, float] | None = None):
    """A copy of ``layer`` running preset ``name`` (program, table, clamp, reset, β sign, decay)."""
    from .bundle import copy_layer

    p = PRESETS.get(name)
    if p is None:
        raise RuleError(f"unknown preset {name!r}, expected one of {sorted(PRESETS)}")
    ch: dict = {"rule": preset_program(name, layer, coefs), "plastic": True}
    if p.post_fn is not None:
        ch["lut"], ch["post_fn"] = C.make_lut(p.post_fn), p.post_fn
    if p.clamp != "keep":
        ch["h_clamp"] = C.smax(C.H_BITS) if p.clamp is None else int(min(round(p.clamp * 4096), C.smax(C.H_BITS)))
    if p.reset is not None:
        ch["reset"] = C.ResetMode[p.reset.upper()]
    if p.beta_nonneg:
        ch["beta"] = np.maximum(np.asarray(layer.beta), 0).astype(np.int16)
    if p.decay is not None:
        ch["decay"] = p.decay
    return copy_layer(layer, **ch)
