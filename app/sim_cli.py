"""`plasticore sim ...`: run a bundle on the Verilated multi-core RTL directly (no serial link)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from plasticore.argtypes import int_range, positive_int

#: UART clocks per bit a board top accepts (rtl/uart.py needs >= 4; identify reports 16 bits)
cpb_type = int_range(4, 0xFFFF)


def parse_mesh(s: str) -> tuple[int, int]:
    """``XxY`` with 1 <= X, Y <= MAX_MESH."""
    from plasticore.chip_map import MAX_MESH

    try:
        x, y = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected XxY, e.g. 2x2") from None
    if not (1 <= x <= MAX_MESH and 1 <= y <= MAX_MESH):
        raise argparse.ArgumentTypeError(f"{s!r}: X and Y must be in 1..{MAX_MESH}")
    return x, y


def add_chip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mesh", type=parse_mesh, default=None, help="mesh size XxY (default: fits the bundle)")
    p.add_argument("--axons", type=positive_int, default=None,
                   help="axons per core (a_max; default: 128, or the next power of two above a wider layer's inputs)")
    p.add_argument("--neurons", type=positive_int, default=None,
                   help="neurons per core (n_max; default: 128, doubled while a layer spans too many cores)")
    p.add_argument("--lanes", type=positive_int, default=16, help="lanes P")


def check_fits(bundle, geometry, what: str) -> None:
    """Refuse a bundle that does not fit the chip before anything is built (names the limit)."""
    from plasticore.app.cli import CliError
    from plasticore.host.compiler import CompileError, place

    try:
        place(bundle, geometry)
    except CompileError as e:
        raise CliError(f"{what}: {e}") from None


def chip_config_for(bundle, args):
    """The chip configuration for the CLI arguments; what they leave out fits the bundle (the smallest mesh,
    cores wide enough for every layer's inputs)."""
    from plasticore.sim.chipboard import DEFAULT_CHIP, fitting_chip
    from plasticore.sim.chipsim import ChipConfig

    fit = fitting_chip(bundle, args.axons or DEFAULT_CHIP.a_max, args.neurons or DEFAULT_CHIP.n_max, args.lanes)
    a_max, n_max = args.axons or fit.a_max, args.neurons or fit.n_max
    mx, my = args.mesh or (fit.mesh_x, fit.mesh_y)
    return ChipConfig(mx, my, a_max, n_max, args.lanes, core=getattr(args, "core", None) or "hybrid")


def cmd_sim_run(args) -> int:
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
    from plasticore.host.device import Device
    from plasticore.rules import needs_program_core
    from plasticore.sim.chipsim import ChipSimBus

    check_run_out(args)
    bundle = load_bundle(args.bundle)
    x, labels = load_inputs(args, bundle)
    m, teach = load_host_signals(args, bundle, len(x))
    if args.core is None:  # program cores where the bundle's rules or the host inputs need them
        args.core = "program" if needs_program_core(bundle) or m or teach is not None else "hybrid"
    if args.core != "program":
        refuse_host_signals(args)
        if needs_program_core(bundle):
            raise CliError(f"--bundle {args.bundle}: its rule programs need --core program")
    cfg = chip_config_for(bundle, args)
    check_fits(bundle, cfg.geometry(), f"--bundle {args.bundle} on {cfg.mesh_x}x{cfg.mesh_y} cores of "
                                       f"{cfg.a_max}x{cfg.n_max} (--mesh/--axons/--neurons)")
    print(f"building/reusing the Verilated chip: {cfg.mesh_x}x{cfg.mesh_y} {cfg.core} cores of "
          f"{cfg.a_max}x{cfg.n_max}, P={cfg.lanes}", flush=True)
    with ChipSimBus(cfg) as bus:
        dev = Device(bus, cfg.geometry())
        dev.identify()
        dev.deploy(bundle)
        t0 = time.perf_counter()
        res = dev.run(x, labels=labels, record_membranes=args.record_membranes, m=m or None, teach=teach)
        dt = time.perf_counter() - t0
        cyc = bus.cycles()
    runs.save_result(res, args.out, source="rtl")
    print(f"RTL run of {args.bundle} -> {args.out}  ({cyc} clock cycles simulated)")
    print(summarise(res, bundle, dt))
    if args.check:
        return check_against_golden(res, bundle, x, labels, "rtl", m=m, teach=teach)
    return 0


def cmd_simboard(args) -> int:
    """Start a simulated board carrying the chip and print its serial port path until interrupted."""
    from plasticore.app.cli import CliError
    from plasticore.sim.chipboard import DEFAULT_CHIP, board_design_id, chip_board_top
    from plasticore.sim.simboard import SimBoard, check_link_path

    if args.board:  # the chip that board's build carries (firmware.designs.CHIP_DEFAULTS)
        from plasticore.firmware.designs import CHIP_DEFAULTS

        if args.board not in CHIP_DEFAULTS:
            raise CliError(f"--board {args.board}: no chip size for this board; "
                           f"known: {', '.join(sorted(CHIP_DEFAULTS))}")
        kw = dict(CHIP_DEFAULTS[args.board])
    else:
        mx, my = args.mesh or (DEFAULT_CHIP.mesh_x, DEFAULT_CHIP.mesh_y)
        kw = {"mesh_x": mx, "mesh_y": my, "a_max": args.axons or DEFAULT_CHIP.a_max,
              "n_max": args.neurons or DEFAULT_CHIP.n_max, "lanes": args.lanes}
    if args.link:
        check_link_path(args.link)
    board = SimBoard.start(chip_board_top, clocks_per_bit=args.cpb, link=args.link, **kw)
    print(board.port, flush=True)
    print(f"simulated board: {kw['mesh_x']}x{kw['mesh_y']} {kw.get('core', 'hybrid')} cores of "
          f"{kw['a_max']}x{kw['n_max']}, P={kw['lanes']}, design 0x{board_design_id(args.cpb, **kw):08x}; "
          "Ctrl-C to stop", flush=True)
    interrupted = False
    try:
        rc = board.proc.wait()
    except KeyboardInterrupt:
        interrupted, rc = True, 0
    finally:
        board.stop()
    if not interrupted and rc != 0:
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        raise CliError(f"simulated board on {board.port}: the harness {how}")
    return 0


def add_cli(sub) -> None:
    sb = sub.add_parser("simboard", help="start a simulated board (chip + UART link in Verilator) on a pty")
    sb.add_argument("--cpb", type=cpb_type, default=8, help="UART clocks per bit (>= 4)")
    sb.add_argument("--link", default=None, help="also create this symlink to the pty (e.g. /tmp/ttyPLC0)")
    sb.add_argument("--board", default=None, help="carry the chip this FPGA board builds (e.g. icebreaker: "
                    "one compact 128x128 core); overrides the geometry options")
    add_chip_args(sb)
    sb.set_defaults(func=cmd_simboard)

    s = sub.add_parser("sim", help="the Verilated RTL without a serial link").add_subparsers(dest="sim_cmd",
                                                                                         required=True)
    r = s.add_parser("run", help="run a bundle on the Verilated multi-core chip and write the run .npz")
    r.add_argument("--bundle", type=Path, required=True)
    from plasticore.app.cli import add_input_args, add_out_args

    add_input_args(r)
    add_out_args(r)
    r.add_argument("--record-membranes", action="store_true")
    r.add_argument("--check", action="store_true", help="also run the golden model and compare bit for bit")
    r.add_argument("--core", choices=["hybrid", "program"], default=None,
                   help="the chip's cores: v1 rule (hybrid) or rule programs with the host's m / teach inputs "
                        "(program); default: program where the bundle or --inputs needs it")
    add_chip_args(r)
    r.set_defaults(func=cmd_sim_run)
