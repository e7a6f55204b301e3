"""The ``plasticore`` command line.

Subcommands are registered by the layer that implements them; this module only wires them up,
so ``plasticore --help`` lists what the installed tree provides.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from plasticore.errors import PlasticoreError


class CliError(PlasticoreError):
    """A user-facing error: printed without a traceback, exit status 2."""


# ------------------------------------------------------------------------------------------
# inputs shared by `golden run`, `sim run` and `run`
# ------------------------------------------------------------------------------------------
def add_input_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--inputs", type=Path, help=".npz with 'features' (S, A) uint8 or 'x' (S, T, A) per-step "
                                                 "layer-0 inputs, optional 'labels' (S,); golden run: "
                                                 "'m<l>' third factor of layer l, 'teach' (docs/run-format.md)")
    src.add_argument("--dataset", help="bundled dataset name (digits, mnist1d, ...): its test split")
    p.add_argument("--count", type=int, default=None, help="number of samples (default: all)")
    p.add_argument("--data-root", type=Path, default=None, help="folder of user-supplied datasets")


def load_inputs(args, bundle) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-step layer-0 inputs (S, T, A) and labels (or None) for the CLI arguments."""
    from plasticore.coding import encode_for

    labels = None
    if args.inputs is not None:
        if not args.inputs.is_file():
            raise CliError(f"--inputs {args.inputs}: no such file")
        with np.load(args.inputs, allow_pickle=False) as z:
            files = set(z.files)
            if "x" in files:
                x = z["x"]
            elif "features" in files:
                x = encode_for(bundle, z["features"])
            else:
                raise CliError(f"--inputs {args.inputs}: needs an array 'features' (S, A) or 'x' (S, T, A); "
                               f"found {sorted(files)}")
            if "labels" in files:
                labels = z["labels"]
    else:
        from plasticore.datasets import load_dataset

        feats, labels = load_dataset(args.dataset, "test", root=args.data_root)
        if feats.shape[1] != bundle.n_in:
            raise CliError(f"dataset {args.dataset} has {feats.shape[1]} features but the bundle takes {bundle.n_in}")
        if args.count is not None:
            feats, labels = feats[: args.count], labels[: args.count]
        x = encode_for(bundle, feats)
    if args.count is not None:
        x = x[: args.count]
        labels = None if labels is None else labels[: args.count]
    if labels is not None and len(labels) != len(x):
        raise CliError(f"{len(labels)} labels for {len(x)} samples")
    return x, labels


def load_host_signals(args, bundle, samples: int) -> tuple[dict, np.ndarray | None]:
    """The contract v2 host inputs in ``--inputs``: ``m{l}`` (third factor of layer l) and ``teach``
    (the last layer's teaching current), in the shapes of ``docs/run-format.md``; ({}, None) if absent."""
    from plasticore.rules import RuleError
    from plasticore.sim.golden import run_inputs

    if getattr(args, "inputs", None) is None:
        return {}, None
    with np.load(args.inputs, allow_pickle=False) as z:
        m = {int(k[1:]): z[k] for k in z.files if k[:1] == "m" and k[1:].isdigit()}
        teach = z["teach"] if "teach" in z.files else None
    if args.count is not None:
        m = {k: v[: args.count] for k, v in m.items()}
        teach = None if teach is None else teach[: args.count]
    try:
        run_inputs(bundle, samples, m, teach)
    except RuleError as e:
        raise CliError(f"--inputs {args.inputs}: {e}") from None
    return m, teach


def summarise(res, bundle, seconds: float | None = None) -> str:
    lines = []
    S, T = res.spikes[0].shape[:2]
    for li, L in enumerate(bundle.layers):
        sp = res.spikes[li]
        rate = float(np.mean(sp != 0)) if sp.size else 0.0
        h = res.h_final[li].astype(np.int64)
        dh = int(np.abs(h - L.H0).sum())
        lines.append(f"  layer {li}: {L.n_in:4d} -> {L.n_out:4d} {L.soma.name:3s} plastic={L.plastic!s:5s} "
                     f"activity {rate:6.3f}  |H - H0|_1 = {dh}")
    if res.labels is not None and len(res.labels):
        lines.append(f"  accuracy {np.mean(res.predictions == res.labels):.4f} on {S} samples")
    if seconds:
        sops = sum(L.n_in * L.n_out for L in bundle.layers) * S * T
        lines.append(f"  {S} samples x {T} steps in {seconds:.3f} s ({sops / seconds:.3g} synaptic ops/s)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# golden
# ------------------------------------------------------------------------------------------
def cmd_golden_run(args) -> int:
    import time

    from plasticore.bundle import load_bundle
    from plasticore.sim import golden

    bundle = load_bundle(args.bundle)
    x, labels = load_inputs(args, bundle)
    m, teach = load_host_signals(args, bundle, len(x))
    t0 = time.perf_counter()
    res = golden.run(bundle, x, labels=labels, record_membranes=args.record_membranes, m=m, teach=teach)
    dt = time.perf_counter() - t0
    golden.save_result(res, args.out, source="golden")
    print(f"golden run of {args.bundle} -> {args.out}")
    print(summarise(res, bundle, dt))
    return 0


def cmd_bundle_random(args) -> int:
    from plasticore.bundle import save_bundle
    from plasticore.sim.random_bundle import random_bundle

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    b = random_bundle(np.random.default_rng(args.seed), sizes=sizes, timesteps=args.timesteps,
                      coding=args.coding)
    save_bundle(b, args.out)
    print(f"wrote random bundle {[L.n_in for L in b.layers] + [b.n_out]} T={b.timesteps} to {args.out}")
    return 0


def cmd_bundle_check(args) -> int:
    from plasticore.bundle import load_bundle

    b = load_bundle(args.bundle)
    print(f"{args.bundle}: valid bundle '{b.name}', {len(b.layers)} layers, "
          f"{[L.n_in for L in b.layers] + [b.n_out]}, T={b.timesteps}, coding={b.coding.kind}")
    return 0


def cmd_demo(args) -> int:
    demo = importlib.import_module("plasticore.demo")
    return demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    from plasticore import __version__

    ap = argparse.ArgumentParser(prog="plasticore", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"plasticore {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("golden", help="bit-exact golden model").add_subparsers(dest="golden_cmd", required=True)
    gr = g.add_parser("run", help="run a bundle on the golden model and write the run .npz")
    gr.add_argument("--bundle", type=Path, required=True)
    add_input_args(gr)
    gr.add_argument("--out", type=Path, required=True)
    gr.add_argument("--record-membranes", action="store_true", help="also store u for every step")
    gr.set_defaults(func=cmd_golden_run)

    b = sub.add_parser("bundle", help="network bundles").add_subparsers(dest="bundle_cmd", required=True)
    br = b.add_parser("random", help="write a random valid bundle (for tests)")
    br.add_argument("--out", type=Path, required=True)
    br.add_argument("--seed", type=int, default=0)
    br.add_argument("--sizes", help="comma separated layer sizes, e.g. 64,32,10")
    br.add_argument("--timesteps", type=int, default=None)
    br.add_argument("--coding", choices=["direct", "rate"], default=None)
    br.set_defaults(func=cmd_bundle_random)
    bc = b.add_parser("check", help="validate a bundle")
    bc.add_argument("bundle", type=Path)
    bc.set_defaults(func=cmd_bundle_check)

    d = sub.add_parser("demo", help="the main job end to end (see README)")
    d.add_argument("--out", type=Path, default=Path("out/demo"))
    d.add_argument("--fast", action="store_true", help="fewer epochs and samples")
    d.set_defaults(func=cmd_demo)

    # subcommands owned by other layers: each module exposes add_cli(subparsers)
    for mod in ("plasticore.training.api", "plasticore.host.cli", "plasticore.sim.cli", "plasticore.firmware.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # that layer provides no CLI (yet)
            raise
        m.add_cli(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PlasticoreError as e:
        print(f"plasticore: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
