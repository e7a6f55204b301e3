"""A naive per-synapse reference of one layer step, with Python integers only.

Written independently of the vectorised golden model straight from ``docs/spec.md`` §3: every
synapse and neuron is visited in a plain loop.  Used by the tests (vectorised == naive on random
cases) and by the benchmark as the baseline the golden model is measured against.
"""

from __future__ import annotations


def _sat(v: int, bits: int) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return lo if v < lo else hi if v > hi else v


def _rsr(v: int, s: int) -> int:
    return v if s == 0 else (v + (1 << (s - 1))) >> s


def naive_layer_step(p: dict, u: list[int], s: list[int], H: list[list[int]], x: list[int]):
    """One step of one layer for a single sample. ``p`` as from ``golden.layer_params`` (arrays may be
    numpy; they are read element by element). Returns new (u, s, H) as Python lists."""
    from plasticore import contract as C

    A, N = len(x), len(u)
    W, b, m = p["W"], p["b"], p["hmask"]
    accW = [0] * N
    accH = [0] * N
    for i in range(A):
        xi = int(x[i])
        if xi == 0:
            continue
        for j in range(N):
            accW[j] += xi * int(W[i][j])
            accH[j] += xi * int(H[i][j]) * int(m[i][j])
    u2, s2 = [0] * N, [0] * N
    for j in range(N):
        ih = _sat(_rsr(p["alpha"] * accH[j], p["alpha_shift"]), C.U_BITS)
        cur = _sat((accW[j] << p["acc_shift"]) + int(b[j]) + ih, C.U_BITS)
        if p["soma"] == C.SomaMode.LIF:
            if p["reset"] == C.ResetMode.SOFT:
                v = u[j] - p["theta"] * s[j]
            else:
                v = p["u_reset"] if s[j] else u[j]
            u2[j] = _sat(_rsr(v * p["lam"], 8) + cur, C.U_BITS)
            s2[j] = 1 if u2[j] > p["theta"] else 0
        else:
            u2[j] = cur
            y = _rsr(cur, p["ann_shift"])
            lo, hi = C.ann_range(p["ann_act"])
            s2[j] = min(max(y, lo), hi)
    if not p["plastic"]:
        return u2, s2, [list(r) for r in H]
    f = [0] * N
    for j in range(N):
        z = _rsr(u2[j] * p["recip"], p["recip_shift"]) - int(p["eta"][j])
        z = min(max(z, -C.LUT_HALF), C.LUT_HALF - 1)
        f[j] = int(p["lut"][z + C.LUT_HALF])
    H2 = [[0] * N for _ in range(A)]
    c = p["h_clamp"]
    for i in range(A):
        g = _sat(_rsr(int(p["beta"][i]) * int(x[i]), p["x_frac"]), C.G_BITS)
        for j in range(N):
            dh = _rsr(g * f[j], p["dh_shift"]) * p["hebb_sign"]
            h = _rsr(int(H[i][j]) * p["decay"], 8) + dh
            H2[i][j] = -c if h < -c else c if h > c else h
    return u2, s2, H2
