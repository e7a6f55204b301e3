"""``plasticore build | flash | deploy`` (registered by ``plasticore.app.cli`` through :func:`add_cli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plasticore.argtypes import nonneg_int, positive_float, positive_int
from plasticore.firmware.boards import BOARDS
from plasticore.firmware.errors import FirmwareError

__all__ = ["add_cli"]


#: design parameters whose value is a name, not an integer (``core=compact``)
_NAME_PARAMS = ("core",)


def _parse_param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    k, v = (t.strip() for t in text.split("=", 1))
    if not k.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: {k!r} is not a parameter name")
    if k in _NAME_PARAMS:
        if not v.isidentifier():
            raise argparse.ArgumentTypeError(f"{text!r}: {k} takes a name (e.g. {k}=compact)")
        return k, v
    try:
        value = int(v, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {k} takes an integer, got {v!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: {k} must be >= 0")
    return k, value


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, choices=sorted(BOARDS), help="target board")
    p.add_argument("--design", default="auto", help="design to build: auto (default: the best available), chip, "
                                                    "link, echo")
    p.add_argument("--clock-mhz", type=positive_float, default=None, help="design clock (default: the board's)")
    p.add_argument("--baud", type=positive_int, default=None, help="UART baud rate (default: the board's)")
    p.add_argument("--param", action="append", type=_parse_param, default=[], metavar="NAME=VALUE",
                   help="design parameter, e.g. --param mesh_x=2 --param lanes=8 (repeatable)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="bitstream cache root (default: $PLASTICORE_BITSTREAMS or build/bitstreams)")


def _config(args) -> dict:
    cfg: dict = {"design": args.design}
    if args.clock_mhz:
        cfg["clk_hz"] = int(round(args.clock_mhz * 1e6))
    if args.baud:
        cfg["baud"] = args.baud
    cfg.update(dict(args.param))
    return cfg


def _print_build(res) -> None:
    from plasticore.firmware.report import format_report

    state = "cached" if res.cached else f"built in {res.manifest.get('build_seconds', '?')} s"
    print(f"{res.board}: design {res.config.design} {res.config.params} @ {res.config.clk_hz / 1e6:g} MHz, "
          f"{res.config.baud} baud")
    print(f"  design id {res.design_id_hex} ({state})")
    print(f"  bitstream {res.bitstream}")
    print(format_report(res.report))


def cmd_build(args) -> int:
    from plasticore.firmware.build import build

    if args.list:
        return cmd_list(args)
    res = build(args.board, _config(args), root=args.out_dir, force=args.force, progress=not args.quiet,
                allow_timing_fail=args.allow_timing_fail, seed=args.seed, seeds=args.seeds, jobs=args.jobs,
                all_seeds=args.all_seeds)
    if args.json:
        print(json.dumps({"design_id": res.design_id_hex, "bitstream": str(res.bitstream), "cached": res.cached,
                          "report": res.report}, indent=2))
    else:
        _print_build(res)
    return 0


def cmd_list(args) -> int:
    from plasticore.firmware.design_id import expected_design_id, resolve_config
    from plasticore.firmware.designs import DESIGNS, default_design

    print("boards:")
    for b in BOARDS.values():
        cfg = resolve_config(b.name)
        print(f"  {b.name:11s} {b.description}; {b.clk_hz / 1e6:g} MHz, {b.baud} baud; "
              f"default {cfg.design} {cfg.params} @ {cfg.clk_hz / 1e6:g} MHz -> design id "
              f"{expected_design_id(b.name):08x}")
    print("designs (auto = the first of chip, link, echo that is available and sized for the board):")
    for d in DESIGNS.values():
        auto = [b.name for b in BOARDS.values() if default_design(b.name) is d]
        mark = f" (auto on {', '.join(auto)})" if auto else ""
        sized = ", ".join(b for b in BOARDS if d.sized_for(b))
        print(f"  {d.name:6s} {'available' if d.available() else 'missing  '} {d.description}; sized for: {sized}"
              f"{mark}")
    return 0


def _bitstream_for(args) -> Path:
    if args.bitstream is not None:
        return args.bitstream
    from plasticore.firmware.build import cached_build

    hit = cached_build(args.board, _config(args), root=args.out_dir)
    if hit is None:
        from plasticore.firmware.design_id import expected_design_id

        ident = expected_design_id(args.board, _config(args), root=args.out_dir)
        raise FirmwareError(f"no bitstream for {args.board} with design id {ident:08x} in the cache; run "
                            f"`plasticore build --board {args.board}` first (or pass --bitstream FILE)")
    return hit.bitstream


def cmd_flash(args) -> int:
    from plasticore.firmware.flash import flash

    bit = _bitstream_for(args)
    cmd = flash(args.board, bit, dry_run=args.dry_run, persist=args.persist, cable=args.cable,
                ftdi_serial=args.ftdi_serial, verify=args.verify, progress=not args.quiet)
    if args.dry_run:
        print(" ".join(cmd))
    else:
        print(f"flashed {bit} onto {args.board}")
    return 0


def _check_fits_board(bundle, args) -> None:
    """Refuse a bundle that does not fit the chip this board build carries, before any build or flash."""
    from plasticore import core_map as CM
    from plasticore.chip_map import ChipGeometry
    from plasticore.firmware.design_id import resolve_config
    from plasticore.host.compiler import CompileError, place

    cfg = resolve_config(args.board, _config(args))
    p = cfg.params
    if cfg.design != "chip" or not all(k in p for k in ("mesh_x", "mesh_y", "a_max", "n_max", "lanes")):
        return
    geom = ChipGeometry(p["mesh_x"], p["mesh_y"], CM.CoreGeometry(p["a_max"], p["n_max"], p["lanes"]),
                        p.get("out_fifo", 2048))
    try:
        place(bundle, geom)
    except CompileError as e:
        raise FirmwareError(f"--bundle {args.bundle} does not fit the {args.board} chip ({p['mesh_x']}x{p['mesh_y']} "
                            f"cores of {p['a_max']}x{p['n_max']}): {e}") from None


def cmd_deploy(args) -> int:
    from plasticore.app.cli import check_run_out
    from plasticore.firmware.deploy import deploy

    check_run_out(args)
    from plasticore.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    _check_fits_board(bundle, args)
    x = labels = None
    if args.inputs is not None or args.dataset is not None:
        from plasticore.app.cli import load_inputs, refuse_host_signals

        refuse_host_signals(args)
        x, labels = load_inputs(args, bundle)
    res = deploy(args.board, args.bundle, args.port, config=_config(args), root=args.out_dir,
                 skip_flash=args.skip_flash, dry_run=args.dry_run, persist=args.persist, cable=args.cable,
                 inputs=x, labels=labels, progress=not args.quiet)
    _print_build(res.build)
    if res.flash_cmd:
        print(("would run: " if args.dry_run else "flashed: ") + " ".join(res.flash_cmd))
    if res.run is not None and args.out is not None:
        from plasticore import runs

        runs.save_result(res.run, args.out, source=f"board:{args.board}")
        print(f"run -> {args.out}")
    return 0


def add_cli(sub) -> None:
    """Register ``build``, ``flash`` and ``deploy`` on the ``plasticore`` subparsers."""
    b = sub.add_parser("build", help="build (or fetch the cached) bitstream for a board")
    _add_config_args(b)
    b.add_argument("--force", action="store_true", help="rebuild even if the cached bitstream is fresh")
    b.add_argument("--allow-timing-fail", action="store_true", help="keep a bitstream that misses timing")
    b.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                   help="nextpnr placement seeds to try; the lowest that meets the clock wins (default 4)")
    b.add_argument("--seed", type=nonneg_int, default=None, metavar="S", help="first seed of the sweep (default 1)")
    b.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="seeds placed at once (default: the CPU count, at most --seeds)")
    b.add_argument("--all-seeds", action="store_true",
                   help="place every seed instead of stopping at the first that meets the clock "
                        "(the report's seeds_met says how many do); the lowest passing seed still wins")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.add_argument("--list", action="store_true", help="list boards and designs, then exit")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)

    f = sub.add_parser("flash", help="program a board with openFPGALoader")
    _add_config_args(f)
    f.add_argument("--bitstream", type=Path, default=None, help="bitstream file (default: the cached build)")
    f.add_argument("--dry-run", action="store_true", help="print the openFPGALoader command, do not run it")
    f.add_argument("--persist", action="store_true", help="ULX3S: write the SPI flash instead of SRAM")
    f.add_argument("--verify", action="store_true", help="verify after writing flash")
    f.add_argument("--cable", default=None, help="openFPGALoader cable (-c) instead of the board's default")
    f.add_argument("--ftdi-serial", default=None, help="pick the programmer by FTDI serial number")
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_flash)

    d = sub.add_parser("deploy", help="build if stale, flash, stream a bundle to the board and run it")
    _add_config_args(d)
    d.add_argument("--bundle", type=Path, required=True, help="exported network bundle (directory)")
    d.add_argument("--port", required=True, help="serial port URL of the board (e.g. /dev/ttyUSB0)")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--inputs", type=Path, default=None, help=".npz inputs to run after deploying")
    src.add_argument("--dataset", default=None, help="bundled dataset to run after deploying")
    d.add_argument("--count", type=positive_int, default=None, help="number of samples")
    d.add_argument("--data-root", type=Path, default=None, help="folder of user-supplied datasets")
    d.add_argument("--out", type=Path, default=None, help="write the run .npz here")
    d.add_argument("--force", action="store_true", help="replace an existing run .npz at --out")
    d.add_argument("--skip-flash", action="store_true", help="the board already carries this bitstream")
    d.add_argument("--dry-run", action="store_true", help="build and print the flash command only")
    d.add_argument("--persist", action="store_true", help="ULX3S: write the SPI flash instead of SRAM")
    d.add_argument("--cable", default=None, help="openFPGALoader cable (-c)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_deploy)
