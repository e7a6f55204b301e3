"""`plasticore sim ...`: run a bundle on the Verilated multi-core RTL directly (no serial link)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def parse_mesh(s: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mesh {s!r}: expected e.g. 2x2") from None
    return x, y


def add_chip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mesh", type=parse_mesh, default=None, help="mesh size XxY (default: fits the bundle)")
    p.add_argument("--axons", type=int, default=128, help="axons per core (a_max)")
    p.add_argument("--neurons", type=int, default=128, help="neurons per core (n_max)")
    p.add_argument("--lanes", type=int, default=16, help="lanes P")


def chip_config_for(bundle, args):
    """The chip configuration for the CLI arguments; the mesh defaults to the smallest that fits."""
    from plasticore.sim.chipsim import ChipConfig

    if args.mesh is not None:
        mx, my = args.mesh
    else:
        need = sum(-(-L.n_out // args.neurons) for L in bundle.layers)
        mx, my = (need, 1) if need <= 8 else (8, -(-need // 8))
    return ChipConfig(mx, my, args.axons, args.neurons, args.lanes)


def cmd_sim_run(args) -> int:
    from plasticore.bundle import load_bundle
    from plasticore.cli import load_inputs, summarise
    from plasticore.host.device import Device
    from plasticore.sim import golden
    from plasticore.sim.chipsim import ChipSimBus

    bundle = load_bundle(args.bundle)
    x, labels = load_inputs(args, bundle)
    cfg = chip_config_for(bundle, args)
    print(f"building/reusing the Verilated chip: {cfg.mesh_x}x{cfg.mesh_y} cores of {cfg.a_max}x{cfg.n_max}, "
          f"P={cfg.lanes}", flush=True)
    with ChipSimBus(cfg) as bus:
        dev = Device(bus, cfg.geometry())
        dev.identify()
        dev.deploy(bundle)
        t0 = time.perf_counter()
        res = dev.run(x, labels=labels, record_membranes=args.record_membranes)
        dt = time.perf_counter() - t0
        cyc = bus.cycles()
    golden.save_result(res, args.out, source="rtl")
    print(f"RTL run of {args.bundle} -> {args.out}  ({cyc} clock cycles simulated)")
    print(summarise(res, bundle, dt))
    if args.check:
        ref = golden.result_to_npz_dict(golden.run(bundle, x, labels=labels), "golden")
        msg = golden.compare_results(golden.result_to_npz_dict(res, "rtl"), ref)
        if msg:
            print(f"MISMATCH vs golden model: {msg}")
            return 1
        print("bit-exact with the golden model (spikes, membranes, plastic weights)")
    return 0


def add_cli(sub) -> None:
    s = sub.add_parser("sim", help="the Verilated RTL without a serial link").add_subparsers(dest="sim_cmd",
                                                                                         required=True)
    r = s.add_parser("run", help="run a bundle on the Verilated multi-core chip and write the run .npz")
    r.add_argument("--bundle", type=Path, required=True)
    from plasticore.cli import add_input_args

    add_input_args(r)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--record-membranes", action="store_true")
    r.add_argument("--check", action="store_true", help="also run the golden model and compare bit for bit")
    add_chip_args(r)
    r.set_defaults(func=cmd_sim_run)
