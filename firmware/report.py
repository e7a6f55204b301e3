"""Parse Yosys and nextpnr output into one JSON-able report, and check timing.

Inputs (in the build's work directory, files named ``<name>.*``):

* ``<name>.rpt``: the Yosys log; its last ``Printing statistics`` block gives the cell counts
  (both the Yosys >= 0.5x layout ``  165   SB_LUT4`` and the older ``  SB_LUT4   165``).
* ``<name>.report.json``: nextpnr's ``--report`` (utilisation per resource, Fmax per clock);
  when it is missing the nextpnr log ``<name>.tim`` is parsed instead (``Device utilisation`` and
  ``Max frequency for clock`` lines).

Report layout (``report.json`` of a cache entry)::

    {"family": "ice40",
     "luts": {"used", "available"}, "ffs": {...}, "bram": {...}, "dsp": {...},
     "spram": {...} (iCE40), "logic_cells": {...} (iCE40 LCs), "io": {...}, "pll": {...},
     "fmax": {"<clock>": {"achieved_mhz", "constraint_mhz", "met"}},
     "timing_met": true,
     "critical_paths": {"<clock>": {"from", "to", "total_ns", "logic_ns", "routing_ns", "nets"}} (from the JSON report),
     "cells": {yosys cell type: count}, "utilization": {nextpnr resource: {"used", "available"}}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import BuildError, TimingError

__all__ = ["check_timing", "format_report", "overfull_resources", "parse_build_reports", "parse_nextpnr_log",
           "parse_nextpnr_report", "parse_yosys_stats", "summarize"]

_NEW_ROW = re.compile(r"^\s+(\d+)\s+([A-Za-z_$\\][\w$\\.]*)\s*$")
_OLD_ROW = re.compile(r"^\s+([A-Za-z_$\\][\w$\\.]*)\s+(\d+)\s*$")
_NOT_CELLS = {"wires", "cells", "submodules", "ports", "memories", "processes", "$scopeinfo"}


def parse_yosys_stats(text: str, top: str = "top") -> dict[str, int]:
    """Cell type -> count of the last statistics block (whole design, all submodules)."""
    blocks = [m.start() for m in re.finditer(r"Printing statistics\.", text)]
    if not blocks:
        return {}
    block = text[blocks[-1]:]
    end = re.search(r"\n\d+(\.\d+)*\. Executing ", block)
    if end:
        block = block[: end.start()]
    # prefer the hierarchy summary (counts including submodules), else the top module section
    sections = re.split(r"^=== (.+?) ===\s*$", block, flags=re.M)
    chosen = None
    named = {sections[i].strip(): sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    if "design hierarchy" in named:
        chosen = named["design hierarchy"]
        # the old layout lists per-module instance counts first; take from "Number of cells" onwards
    if chosen is None or not _rows(chosen):
        chosen = named.get(top) or (next(iter(named.values())) if named else block)
    return _rows(chosen)


def _rows(section: str) -> dict[str, int]:
    cells: dict[str, int] = {}
    for line in section.splitlines():
        m = _NEW_ROW.match(line)
        if m:
            count, name = int(m.group(1)), m.group(2)
        else:
            m = _OLD_ROW.match(line)
            if not m:
                continue
            name, count = m.group(1), int(m.group(2))
        if name in _NOT_CELLS or name.startswith("$scopeinfo"):
            continue
        if not (name.startswith("$") or name[:1].isupper()):
            continue  # module names in the hierarchy listing are lower case (amaranth: top, design, ...)
        cells[name] = cells.get(name, 0) + count
    return cells


def parse_nextpnr_report(data: dict) -> tuple[dict, dict]:
    """(utilization, fmax) from nextpnr's ``--report`` JSON."""
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in data.get("utilization", {}).items()}
    fmax = {k: {"achieved_mhz": float(v["achieved"]), "constraint_mhz": float(v["constraint"])}
            for k, v in data.get("fmax", {}).items()}
    return util, fmax


def critical_paths(data: dict) -> dict[str, dict]:
    """Worst register-to-register path of each clock from nextpnr's ``--report`` JSON:
    ``{clock: {"from", "to", "total_ns", "logic_ns", "routing_ns", "nets"}}`` (``logic_ns``: cell
    delays, clock-to-out and setup; clock names as in ``fmax``, without nextpnr's ``$glbnet$``)."""
    out = {}
    for cp in data.get("critical_paths", []):
        path = cp.get("path") or []
        src, dst = cp.get("from", ""), cp.get("to", "")
        if not path or src != dst or not src.startswith("posedge "):
            continue  # asynchronous or cross-clock: not a clock's Fmax path
        total = sum(st["delay"] for st in path)
        routing = sum(st["delay"] for st in path if st["type"] == "routing")
        clk = src.removeprefix("posedge ").removeprefix("$glbnet$")
        out[clk] = {"from": path[0]["from"]["cell"], "to": path[-1]["to"]["cell"], "total_ns": round(total, 2),
                    "logic_ns": round(total - routing, 2), "routing_ns": round(routing, 2),
                    "nets": [st["net"] for st in path if st.get("net")]}
    return out


_UTIL_LINE = re.compile(r"^Info:\s+([A-Za-z_0-9]+):\s+(\d+)/\s*(\d+)\s+\d+%")
_FMAX_LINE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def parse_nextpnr_log(text: str) -> tuple[dict, dict]:
    """(utilization, fmax) from a nextpnr log (the last occurrence of each line wins: post-route)."""
    util: dict = {}
    fmax: dict = {}
    for line in text.splitlines():
        m = _UTIL_LINE.match(line)
        if m:
            util[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
            continue
        m = _FMAX_LINE.search(line)
        if m:
            fmax[m.group(1)] = {"achieved_mhz": float(m.group(2)), "constraint_mhz": float(m.group(4))}
    return util, fmax


def overfull_resources(util: dict) -> str:
    """"ICESTORM_LC 10991/5280 (208%), ..." for every over-used resource ("" if none)."""
    parts = [f"{k} {v['used']}/{v['available']} ({100 * v['used'] // max(v['available'], 1)}%)"
             for k, v in util.items() if v["used"] > v["available"]]
    return ", ".join(parts)


def _res(util: dict, key: str) -> dict:
    v = util.get(key)
    return dict(v) if v else {"used": 0, "available": 0}


def summarize(family: str, cells: dict, util: dict, fmax: dict) -> dict:
    """The normalised report (see the module docstring)."""
    ffs_yosys = sum(n for c, n in cells.items() if c.startswith(("SB_DFF", "TRELLIS_FF")))
    if family == "ecp5":
        luts = _res(util, "TRELLIS_COMB")
        if not luts["used"] and cells:
            luts["used"] = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        ffs = _res(util, "TRELLIS_FF")
        if not ffs["used"]:
            ffs["used"] = ffs_yosys
        rep = {"luts": luts, "ffs": ffs, "bram": _res(util, "DP16KD"), "dsp": _res(util, "MULT18X18D"),
               "lutram": _res(util, "TRELLIS_RAMW"), "io": _res(util, "TRELLIS_IO"), "pll": _res(util, "EHXPLLL")}
    elif family == "ice40":
        lcs = _res(util, "ICESTORM_LC")
        rep = {"luts": {"used": cells.get("SB_LUT4", lcs["used"]), "available": lcs["available"]},
               "ffs": {"used": ffs_yosys, "available": lcs["available"]},
               "logic_cells": lcs, "bram": _res(util, "ICESTORM_RAM"), "spram": _res(util, "ICESTORM_SPRAM"),
               "dsp": _res(util, "ICESTORM_DSP"), "io": _res(util, "SB_IO"), "pll": _res(util, "ICESTORM_PLL")}
    else:
        raise BuildError(f"no report summary for FPGA family {family!r}")
    clocks = {}
    for raw, f in sorted(fmax.items()):
        if raw.startswith("$PACKER_"):
            continue  # nextpnr-ice40 promotes the constant nets to globals and times them as "clocks"
        name = raw.removeprefix("$glbnet$")  # nextpnr names global clock nets "$glbnet$<net>"
        clocks[name] = {"achieved_mhz": round(f["achieved_mhz"], 2), "constraint_mhz": round(f["constraint_mhz"], 2),
                        "met": f["achieved_mhz"] + 1e-6 >= f["constraint_mhz"]}
    rep["fmax"] = clocks
    rep["timing_met"] = all(c["met"] for c in clocks.values())
    rep = {"family": family, **rep, "cells": dict(sorted(cells.items())), "utilization": util}
    return rep


def parse_build_reports(work_dir: Path, name: str = "top", *, family: str) -> dict:
    """Parse ``<name>.rpt`` and ``<name>.report.json`` (or ``<name>.tim``) in ``work_dir``."""
    work_dir = Path(work_dir)
    rpt = work_dir / f"{name}.rpt"
    cells = parse_yosys_stats(rpt.read_text(errors="replace")) if rpt.is_file() else {}
    rep_json = work_dir / f"{name}.report.json"
    tim = work_dir / f"{name}.tim"
    paths = {}
    if rep_json.is_file():
        data = json.loads(rep_json.read_text())
        util, fmax = parse_nextpnr_report(data)
        paths = critical_paths(data)
        source = rep_json.name
    elif tim.is_file():
        util, fmax = parse_nextpnr_log(tim.read_text(errors="replace"))
        source = tim.name
    else:
        raise BuildError(f"no nextpnr report in {work_dir} (expected {rep_json.name} or {tim.name})")
    if not fmax:
        raise BuildError(f"nextpnr report {work_dir / source} has no clock: is the design clock constrained?")
    rep = summarize(family, cells, util, fmax)
    if paths:
        rep["critical_paths"] = {k: v for k, v in paths.items() if k in rep["fmax"]}
    rep["source"] = source
    return rep


def check_timing(report: dict, *, where: str = "") -> None:
    """Raise :class:`TimingError` naming every clock that misses its constraint."""
    bad = {k: v for k, v in report.get("fmax", {}).items() if not v["met"]}
    if not bad:
        return
    parts = [f"{k}: {v['achieved_mhz']:.2f} MHz < {v['constraint_mhz']:.2f} MHz" for k, v in bad.items()]
    hint = " (use a lower --clock-mhz, or --allow-timing-fail to keep the bitstream anyway)"
    raise TimingError(f"timing not met: {'; '.join(parts)}{hint}" + (f"; report: {where}" if where else ""), report)


def format_report(report: dict) -> str:
    """Human-readable summary (the CLI prints this)."""
    lines = []
    for key in ("luts", "ffs", "logic_cells", "bram", "spram", "dsp", "lutram", "io", "pll"):
        v = report.get(key)
        if v is None or (not v["available"] and not v["used"]):
            continue
        pct = f"{100 * v['used'] / v['available']:5.1f}%" if v["available"] else "     "
        lines.append(f"  {key:12s} {v['used']:7d} / {v['available']:<7d} {pct}")
    for clk, f in report.get("fmax", {}).items():
        verdict = "ok" if f["met"] else "FAIL"
        lines.append(f"  fmax {clk}: {f['achieved_mhz']:.2f} MHz (target {f['constraint_mhz']:.2f} MHz) {verdict}")
        cp = report.get("critical_paths", {}).get(clk)
        if cp:
            lines.append(f"    worst path {cp['total_ns']:.2f} ns ({cp['routing_ns']:.2f} ns routing): "
                         f"{cp['from']} -> {cp['to']}")
    tried = report.get("seeds_tried")
    if tried:
        each = ", ".join(f"{t['seed']}: " + "/".join(f"{v:.2f}" for v in t["fmax_mhz"].values()) for t in tried)
        stopped = report.get("seeds_stopped") or []
        lines.append(f"  nextpnr seed {report.get('pnr_seed')} (Fmax per seed tried, MHz: {each}"
                     + (f"; stopped or not started: {', '.join(map(str, stopped))}" if stopped else "") + ")")
        if not stopped:
            lines.append(f"  timing met on {sum(bool(t['met']) for t in tried)} of {len(tried)} seeds")
    return "\n".join(lines)
