"""The ``plasticore`` command line.

The ``golden``, ``bundle`` and ``demo`` commands live here; the commands of each layer are registered by
its module in :mod:`plasticore.app` (``training_cli``, ``host_cli``, ``sim_cli``, ``firmware_cli``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

from plasticore.argtypes import int_list, nonneg_int, positive_int
from plasticore.errors import PlasticoreError


class CliError(PlasticoreError):
    """A user-facing error: printed without a traceback, exit status 2."""


class UsageError(CliError):
    """A bad command line (argparse's complaint), reported as one line."""


class ArgParser(argparse.ArgumentParser):
    """argparse, but a bad command line raises :class:`UsageError` (one line, exit status 2 from
    :func:`main`) instead of printing the usage block and exiting."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# ------------------------------------------------------------------------------------------
# inputs shared by `golden run`, `sim run` and `run`
# ------------------------------------------------------------------------------------------
def add_input_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--inputs", type=Path, help=".npz with 'features' (S, A) uint8 or 'x' (S, T, A) per-step "
                                                 "layer-0 inputs, optional 'labels' (S,); golden run and "
                                                 "program cores: 'm<l>' third factor of layer l, 'teach' "
                                                 "(docs/run-format.md)")
    src.add_argument("--dataset", help="bundled dataset name (digits, mnist1d, ...): its test split")
    p.add_argument("--count", type=positive_int, default=None, help="number of samples (default: all)")
    p.add_argument("--data-root", type=Path, default=None, help="folder of user-supplied datasets")


def add_out_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--out FILE.npz`` (a run) and ``--force`` (replace a previous run file there)."""
    p.add_argument("--out", type=Path, required=required, help="write the run .npz here (docs/run-format.md)")
    p.add_argument("--force", action="store_true", help="replace an existing run .npz at --out")


def check_run_out(args) -> None:
    """Refuse a bad ``--out`` before any work (unwritable, existing without --force, not a run file)."""
    from plasticore.outputs import check_output_file
    from plasticore.runs import is_run_npz

    if getattr(args, "out", None) is not None:
        check_output_file(args.out, "--out", force=args.force, same_kind=is_run_npz, kind="run .npz")


def _npz_array(z, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(z[key])
    except Exception as e:  # noqa: BLE001 - zip, zlib, header, pickle errors of one member
        raise CliError(f"--inputs {path}: array '{key}' cannot be read ({type(e).__name__}: {e})") from None


def load_inputs(args, bundle, with_features: bool = False):
    """Per-step layer-0 inputs (S, T, A) and labels (or None) for the CLI arguments, validated; with
    ``with_features`` also the uint8 features they were coded from (None for an ``x`` input file)."""
    from plasticore.coding import InputError, check_features, encode_for
    from plasticore.runs import check_inputs, check_labels

    labels = feats = None
    if args.inputs is not None:
        src = f"--inputs {args.inputs}"
        if not args.inputs.is_file():
            raise CliError(f"{src}: no such file")
        try:
            z = np.load(args.inputs, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - truncated, not a zip, pickled, unreadable
            raise CliError(f"{src}: cannot be read as .npz ({type(e).__name__}: {e})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CliError(f"{src}: holds a single array, expected an .npz with 'features' or 'x'")
        with z:
            files = set(z.files)
            try:
                if "x" in files:
                    x = check_inputs(bundle, _npz_array(z, "x", args.inputs))
                elif "features" in files:
                    feats = check_features(_npz_array(z, "features", args.inputs), bundle.n_in)
                    x = encode_for(bundle, feats)
                else:
                    raise CliError(f"{src}: needs an array 'features' (S, A) or 'x' (S, T, A); found {sorted(files)}")
            except InputError as e:
                raise CliError(f"{src}: {'x' if 'x' in files else 'features'}: {e}") from None
            if "labels" in files:
                labels = _npz_array(z, "labels", args.inputs)
    else:
        from plasticore.datasets import load_dataset

        src = f"--dataset {args.dataset}"
        feats, labels = load_dataset(args.dataset, "test", root=args.data_root)
        if feats.shape[1] != bundle.n_in:
            raise CliError(f"{src} has {feats.shape[1]} features but the bundle takes {bundle.n_in}")
        if args.count is not None:  # encode only what runs
            feats, labels = feats[: args.count], labels[: args.count]
        try:
            x = encode_for(bundle, feats)
        except InputError as e:
            raise CliError(f"{src}: {e}") from None
    if args.count is not None:
        x = x[: args.count]
        labels = None if labels is None else labels[: args.count]
        feats = None if feats is None else feats[: args.count]
    if len(x) == 0:
        raise CliError(f"{src}: no samples")
    if labels is not None:
        try:
            labels = check_labels(labels, len(x), bundle.n_out)
        except InputError as e:
            raise CliError(f"{src}: {e}") from None
    return (x, labels, feats) if with_features else (x, labels)


def refuse_host_signals(args) -> None:
    """A chip of v1 cores has no third factor or teaching current: ``m<l>`` / ``teach`` keys in
    ``--inputs`` are refused (one line) rather than ignored."""
    if getattr(args, "inputs", None) is None or not args.inputs.is_file():
        return
    try:
        with np.load(args.inputs, allow_pickle=False) as z:
            keys = [k for k in z.files if k == "teach" or (k[:1] == "m" and k[1:].isdigit())]
    except Exception:  # noqa: BLE001 - load_inputs reports an unreadable file
        return
    if keys:
        raise CliError(f"--inputs {args.inputs}: {', '.join(keys)} (contract v2 host inputs) need program cores "
                       "(plasticore sim run --core program) or the golden model (plasticore golden run)")


def load_host_signals(args, bundle, samples: int) -> tuple[dict, np.ndarray | None]:
    """The contract v2 host inputs in ``--inputs``: ``m{l}`` (third factor of layer l) and ``teach``
    (the last layer's teaching current), in the shapes of ``docs/run-format.md``; ({}, None) if absent."""
    from plasticore.golden import run_inputs
    from plasticore.rules import RuleError

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
def check_against_golden(res, bundle, x, labels, source: str, m: dict | None = None, teach=None) -> int:
    """``--check``: compare run ``res`` (from ``source``, e.g. ``board``) with the golden model on the same
    inputs (and host inputs ``m`` / ``teach``); print the first mismatch (layer, step, index, both values)
    or the verdict.  0 if bit-exact."""
    from plasticore import golden, runs

    ref = runs.result_to_npz_dict(golden.run(bundle, x, labels=labels, m=m or None, teach=teach), "golden")
    msg = runs.compare_results(runs.result_to_npz_dict(res, source), ref)
    if msg:
        print(f"MISMATCH vs golden model: {msg}")
        return 1
    print("bit-exact with the golden model (spikes, membranes, plastic weights)")
    return 0


def cmd_golden_run(args) -> int:
    import time

    from plasticore import golden, runs
    from plasticore.bundle import load_bundle

    check_run_out(args)
    bundle = load_bundle(args.bundle)
    x, labels = load_inputs(args, bundle)
    m, teach = load_host_signals(args, bundle, len(x))
    t0 = time.perf_counter()
    res = golden.run(bundle, x, labels=labels, record_membranes=args.record_membranes, m=m, teach=teach)
    dt = time.perf_counter() - t0
    runs.save_result(res, args.out, source="golden")
    print(f"golden run of {args.bundle} -> {args.out}")
    print(summarise(res, bundle, dt))
    return 0


def cmd_bundle_random(args) -> int:
    from plasticore.bundle import BundleError, is_bundle_dir, save_bundle
    from plasticore.outputs import check_output_dir
    from plasticore.sim.random_bundle import random_bundle

    check_output_dir(args.out, "--out", force=args.force, same_kind=is_bundle_dir, kind="bundle")
    from plasticore import contract as C

    sizes = args.sizes
    if sizes is not None:
        text = ",".join(map(str, sizes))
        if not 2 <= len(sizes) <= C.MAX_LAYERS + 1:
            raise CliError(f"--sizes {text}: give 2..{C.MAX_LAYERS + 1} sizes (inputs, then every layer's outputs)")
        if max(sizes[:-1]) > C.MAX_AXONS:
            raise CliError(f"--sizes {text}: a layer's inputs must be at most MAX_AXONS={C.MAX_AXONS}")
        if sizes[-1] > C.MAX_AXONS:
            raise CliError(f"--sizes {text}: at most {C.MAX_AXONS} outputs")
    if args.timesteps is not None and args.timesteps > C.MAX_TIMESTEPS:
        raise CliError(f"--timesteps {args.timesteps}: at most MAX_TIMESTEPS={C.MAX_TIMESTEPS}")
    try:
        b = random_bundle(np.random.default_rng(args.seed), sizes=sizes, timesteps=args.timesteps,
                          coding=args.coding)
    except BundleError as e:
        raise CliError(f"--sizes/--timesteps: {e}") from None
    save_bundle(b, args.out, replace=args.force)
    print(f"wrote random bundle {[L.n_in for L in b.layers] + [b.n_out]} T={b.timesteps} to {args.out}")
    return 0


def cmd_bundle_check(args) -> int:
    from plasticore.bundle import load_bundle

    b = load_bundle(args.bundle)
    print(f"{args.bundle}: valid bundle '{b.name}', {len(b.layers)} layers, "
          f"{[L.n_in for L in b.layers] + [b.n_out]}, T={b.timesteps}, coding={b.coding.kind}")
    return 0


def cmd_demo(args) -> int:
    demo = importlib.import_module("plasticore.app.demo")
    return demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    from plasticore import __version__

    ap = ArgParser(prog="plasticore", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"plasticore {__version__}")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("golden", help="bit-exact golden model").add_subparsers(dest="golden_cmd", required=True)
    gr = g.add_parser("run", help="run a bundle on the golden model and write the run .npz")
    gr.add_argument("--bundle", type=Path, required=True)
    add_input_args(gr)
    add_out_args(gr)
    gr.add_argument("--record-membranes", action="store_true", help="also store u for every step")
    gr.set_defaults(func=cmd_golden_run)

    b = sub.add_parser("bundle", help="network bundles").add_subparsers(dest="bundle_cmd", required=True)
    br = b.add_parser("random", help="write a random valid bundle (for tests)")
    br.add_argument("--out", type=Path, required=True)
    br.add_argument("--force", action="store_true", help="replace a previous bundle directory at --out")
    br.add_argument("--seed", type=nonneg_int, default=0)
    br.add_argument("--sizes", type=int_list(1), help="comma separated layer sizes, e.g. 64,32,10")
    br.add_argument("--timesteps", type=positive_int, default=None)
    br.add_argument("--coding", choices=["direct", "rate"], default=None)
    br.set_defaults(func=cmd_bundle_random)
    bc = b.add_parser("check", help="validate a bundle")
    bc.add_argument("bundle", type=Path)
    bc.set_defaults(func=cmd_bundle_check)

    d = sub.add_parser("demo", help="the main job end to end (see README)")
    d.add_argument("--out", type=Path, default=Path("out/demo"))
    d.add_argument("--fast", action="store_true", help="fewer epochs and samples")
    d.add_argument("--force", action="store_true", help="replace a previous demo output at --out")
    d.set_defaults(func=cmd_demo)

    # the commands of each layer: each module exposes add_cli(subparsers)
    from plasticore.app import firmware_cli, host_cli, sim_cli, training_cli

    for m in (training_cli, host_cli, sim_cli, firmware_cli):
        m.add_cli(sub)
    return ap


#: errors a command may meet that are the user's or the machine's, not a bug: one line, exit 2
def _expected_errors() -> tuple[type[BaseException], ...]:
    return (PlasticoreError, OSError)  # OSError covers serial.SerialException and the transport's errors


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line."""
    msg = str(e).strip() or type(e).__name__
    return " | ".join(line.strip() for line in msg.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run a command; every expected error becomes ``plasticore: error: ...`` (one line) and exit 2.
    ``--debug`` anywhere on the line also prints the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(one_line(e).replace(": ", ": error: ", 1), file=sys.stderr)
        return 2
    except _expected_errors() as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"plasticore: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plasticore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
