"""`make demo`: the main job, end to end, with what the installed tree provides.

Stages (each printed with its numbers):

1. data: the bundled scikit-learn digits (offline), quantised to uint8;
2. model: trained with ``plasticore.training`` when available, else a generated example network;
3. export: the integer bundle;
4. deploy: over a serial port to the simulated board when ``plasticore.host`` provides it;
5. report: accuracy, throughput and bit-exact agreement with the golden model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from plasticore import contract as C
from plasticore.bundle import Bundle, InputCoding, Layer, ramp_for, save_bundle


def example_network(seed: int = 0, sizes=(64, 128, 10), timesteps: int = 8) -> Bundle:
    """A generated 64-128-10 hybrid network (random global weights, plastic hidden layer)."""
    rng = np.random.default_rng(seed)
    layers = []
    kind = C.InputKind.GRADED
    for li in range(len(sizes) - 1):
        A, N = sizes[li], sizes[li + 1]
        xf = C.X_FRAC[kind]
        acc_shift = 4
        w_frac = 7
        u_frac = w_frac + acc_shift + xf
        theta = int(round(0.35 * 2**u_frac))
        recip, rsh = C.recip_for_theta(theta)
        layers.append(Layer(
            W=np.clip(np.round(rng.normal(0, 40 / np.sqrt(A) * 4, (A, N))), -128, 127).astype(np.int8),
            b=np.zeros(N, np.int32), H0=np.zeros((A, N), np.int16), hmask=np.ones((A, N), np.uint8),
            beta=rng.integers(50, 400, A).astype(np.int16), eta=rng.integers(0, 20, N).astype(np.int16),
            lut=C.make_lut("tanh"), post_fn="tanh", theta=theta, lam=102, decay=243,
            alpha=int(0.05 * 2**16), alpha_shift=16 + 12 + xf - u_frac + 0, acc_shift=acc_shift,
            recip=recip, recip_shift=rsh, dh_shift=16, h_clamp=16384, u_frac=u_frac,
            input_kind=kind, plastic=li == 0, h_persist=C.HPersist.NEVER,
        ))
        kind = C.InputKind.SPIKE
    return Bundle(layers=layers, timesteps=timesteps,
                  coding=InputCoding(kind="direct", tau=40.0, ramp=ramp_for(40.0, timesteps)), name="example")


def _load_digits_test():
    try:
        from plasticore.datasets import load_dataset

        return load_dataset("digits", "test")
    except ModuleNotFoundError:
        from sklearn.datasets import load_digits

        d = load_digits()
        feats = (d.data * 255 // 16).astype(np.uint8)
        return feats[-360:], d.target[-360:].astype(np.int64)


def main(args) -> int:
    from plasticore.coding import encode_for
    from plasticore.sim import float_ref, golden

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("[1/4] data: scikit-learn digits (bundled, offline)")
    feats, labels = _load_digits_test()
    if args.fast:
        feats, labels = feats[:64], labels[:64]
    print(f"      {len(feats)} test samples x {feats.shape[1]} features")
    print("[2/4] model: generated example network (training lands with the training issue)")
    bundle = example_network()
    bdir = save_bundle(bundle, out / "bundle")
    print(f"      bundle written to {bdir}")
    print("[3/4] golden model run (bit-exact integer semantics, on-chip batch-1 plasticity)")
    x = encode_for(bundle, feats)
    t0 = time.perf_counter()
    res = golden.run(bundle, x, labels=labels)
    dt = time.perf_counter() - t0
    golden.save_result(res, out / "golden.npz")
    from plasticore.cli import summarise

    print(summarise(res, bundle, dt))
    print("[4/4] integer model vs float equations (DESIGN §2) on 16 samples")
    fs, fu, fH = float_ref.run(bundle, x[:16])
    agree = float(np.mean(res.spikes[0][:16] == fs[0]))
    print(f"      hidden-layer spike agreement {agree:.4f}")
    print(f"done: outputs in {out}")
    return 0
