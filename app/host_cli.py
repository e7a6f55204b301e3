"""`plasticore run`: deploy a bundle to a board over a serial port and run inputs on it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def check_sim_port_fits(port: str, bundle) -> None:
    """For a ``sim://`` port carrying the chip: refuse a bundle that does not fit that chip before the
    board is built or spawned, naming the URL that asks for a chip it fits."""
    from plasticore.app.cli import CliError
    from plasticore.host.compiler import CompileError, place
    from plasticore.sim.chipboard import chip_url, fitting_chip, url_chip

    try:
        cfg = url_chip(port)
    except ValueError as e:
        raise CliError(f"--port {port}: {e}") from None
    if cfg is None:
        return
    try:
        place(bundle, cfg.geometry())
    except CompileError as e:
        fit = fitting_chip(bundle, cfg.a_max, cfg.n_max, cfg.lanes)
        raise CliError(f"--port {port}: the bundle does not fit the simulated chip ({cfg.mesh_x}x{cfg.mesh_y} cores "
                       f"of {cfg.a_max}x{cfg.n_max}): {e}; ask for a bigger one: --port '{chip_url(fit)}'") from None


def cmd_run(args) -> int:
    from tqdm import tqdm

    from plasticore import runs
    from plasticore.app.cli import (
        CliError,
        check_against_golden,
        check_run_out,
        load_host_signals,
        load_inputs,
        refuse_host_signals,
        summarise,
    )
    from plasticore.bundle import load_bundle
    from plasticore.host import connect
    from plasticore.host.device import stream_refusal
    from plasticore.rules import needs_program_core
    from plasticore.sim.chipboard import url_chip

    check_run_out(args)
    bundle = load_bundle(args.bundle)
    x, labels, feats = load_inputs(args, bundle, with_features=True)
    m, teach = load_host_signals(args, bundle, len(x))
    programs = needs_program_core(bundle) or bool(m) or teach is not None  # the run needs program cores
    if args.port.startswith("sim://"):
        check_sim_port_fits(args.port, bundle)
    sim_chip = url_chip(args.port) if args.port.startswith("sim://") else None
    if programs and (args.stream or (args.port.startswith("sim://") and getattr(sim_chip, "core", None) != "program")):
        refuse_host_signals(args)
        raise CliError(f"--bundle {args.bundle}: its rule programs need program cores"
                       + (" (a full run: leave out --stream)" if args.stream else
                          f" (--port 'sim://?core=program'), not {args.port}"))
    if args.stream and args.record_membranes:
        raise CliError("--stream returns compact records; --record-membranes needs a full run (leave out --stream)")
    events = args.stream and feats is None  # coded inputs stream as events (every non-zero input a word)
    if args.stream and (why := stream_refusal(bundle, events)):
        raise CliError(f"--stream: {args.bundle}: {why}")
    with connect(args.port, baudrate=args.baud, expected_design_id=args.design_id) as dev:
        info = dev.identify()
        print(f"board on {args.port}: {info['cores']} cores ({info['mesh'][0]}x{info['mesh'][1]}) of "
              f"{info['core'][0]}x{info['core'][1]}, P={info['core'][2]}, design 0x{info['design_id']:08x}")
        if args.stream and (why := dev.why_not_stream(bundle, events)):
            raise CliError(f"--stream: {why}")
        if programs and not dev.geom.programs:
            raise CliError(f"--port {args.port}: the board's cores run the v1 rule; the bundle's rule programs "
                           "or the m / teach inputs need a build of program cores")
        dev.deploy(bundle)
        w0 = dev.bus.wire_bytes()
        t0 = time.perf_counter()
        with tqdm(total=len(x), unit="sample", disable=args.quiet, desc="stream" if args.stream else "run") as bar:
            if events:
                res = dev.stream_inputs(x, labels=labels, progress=bar.update)
            elif args.stream:
                res = dev.stream(feats, labels=labels, progress=bar.update)
            else:
                res = dev.run(x, labels=labels, record_membranes=args.record_membranes, progress=bar.update,
                              m=m or None, teach=teach)
        dt = time.perf_counter() - t0
        w1 = dev.bus.wire_bytes()
        wire = None if w0 is None or w1 is None else (w1[0] - w0[0], w1[1] - w0[1])
    runs.save_result(res, args.out, source=f"board:{args.port}")
    print(f"board run of {args.bundle} -> {args.out}{' (compact records)' if args.stream else ''}")
    if args.stream:
        if labels is not None:
            print(f"  accuracy {np.mean(res.predictions == labels):.4f} on {len(x)} samples")
    else:
        print(summarise(res, bundle, dt))
    print(f"  {len(x) / dt:.2f} inferences/s over the link" + (
        f", {wire[0] / len(x):.0f} B to the board and {wire[1] / len(x):.0f} B back per sample" if wire else ""))
    if args.check:
        if args.stream:
            return check_compact_against_golden(res, bundle, x, labels, "board")
        return check_against_golden(res, bundle, x, labels, "board", m=m, teach=teach)
    return 0


def check_compact_against_golden(res, bundle, x, labels, source: str) -> int:
    """``--check`` of a streamed run: its compact records (output membranes, predictions, final H) against
    the golden model's run of the same inputs.  0 if bit-exact."""
    from plasticore import golden, runs

    msg = runs.compare_compact(res, runs.CompactResult.of(golden.run(bundle, x, labels=labels)))
    if msg:
        print(f"MISMATCH vs golden model ({source}): {msg}")
        return 1
    print("bit-exact with the golden model (output membranes, predictions, plastic weights)")
    return 0


def add_cli(sub) -> None:
    from plasticore.app.cli import add_input_args, add_out_args
    from plasticore.argtypes import positive_int, u32

    r = sub.add_parser("run", help="deploy a bundle to a board (serial port URL) and run inputs on it")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--port", required=True, help="pyserial URL: /dev/ttyUSB0, a pty path, sim:// (a simulated "
                   "board carrying the default chip; sim://?mesh_x=3&a_max=256... for another), ...")
    add_input_args(r)
    add_out_args(r)
    r.add_argument("--baud", type=positive_int, default=None, help="UART baud rate (default: the transport's)")
    r.add_argument("--design-id", type=u32, default=None,
                   help="refuse a board whose design ID differs (e.g. 0x1234abcd)")
    r.add_argument("--record-membranes", action="store_true")
    r.add_argument("--stream", action="store_true",
                   help="run on the chip's sample engine: features queued on the chip, coded there (an "
                        "inputs file with 'x': its non-zero inputs queued as events), compact records back "
                        "(output membranes, predictions, final H; docs/protocol.md)")
    r.add_argument("--check", action="store_true", help="also run the golden model and compare bit for bit")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)
