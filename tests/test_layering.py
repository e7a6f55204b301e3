"""Layers only point down: app → {training, firmware, sim} → host → rtl → plasticore (the contract).

The test walks the syntax tree of every module of the package -- imports at module level, inside functions and
classes, relative imports, and ``importlib.import_module("...")`` with a literal name -- maps importer and target to
their layer, and fails listing every import that points up or sideways (``training``, ``firmware`` and ``sim`` are
siblings and do not import each other). Entry points loaded through ``importlib.metadata`` are how a lower layer
reaches code above it; they are not imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each subpackage of ``plasticore``; everything else under ``plasticore.`` is the contract.
LAYERS: dict[str, tuple[str, int]] = {
    "app": ("app", 4),
    "training": ("training", 3),
    "firmware": ("firmware", 3),
    "sim": ("sim", 3),
    "host": ("host", 2),
    "rtl": ("rtl", 1),
}
CONTRACT = ("contract", 0)

#: Imports the check lets through: (importer module, imported module) -> reason. Empty: none are needed.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Violation:
    """One import that points up or sideways."""

    path: str
    line: int
    module: str
    layer: str
    target: str
    target_layer: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} ({self.layer}) imports {self.target} ({self.target_layer})"


def layer_of(module: str) -> tuple[str, int] | None:
    """The (name, rank) of a ``plasticore`` module's layer; None for modules outside the package."""
    parts = module.split(".")
    if parts[0] != "plasticore":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS[parts[1]]
    return CONTRACT


def package_modules() -> dict[str, Path]:
    """Module name -> source file for every ``.py`` file of the package, from pyproject's package-dir."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_dir: dict[str, str] = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for pkg, folder in package_dir.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(p in LAYERS for p in parts[:1]) and pkg == "plasticore":
                continue  # a subpackage folder nested inside plasticore/ is listed under its own key
            name = ".".join([pkg, *parts])
            modules[name] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imported_modules(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``source``, wherever it stands in the file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import mod`` imports the submodule when there is one, else a name of ``pkg``.
                found.append((node.lineno, sub if sub in known else base))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return sorted(set(found))


def violations(sources: dict[str, tuple[str, str, bool]], known: set[str]) -> list[Violation]:
    """Every upward or sideways import in ``sources`` (module -> (path, source text, is_package))."""
    out: list[Violation] = []
    for module, (path, source, is_package) in sorted(sources.items()):
        own = layer_of(module)
        assert own is not None, module
        for line, target in imported_modules(source, module, is_package, known):
            theirs = layer_of(target)
            if theirs is None or theirs[0] == own[0] or theirs[1] < own[1]:
                continue
            if (module, target) in ALLOWED:
                continue
            out.append(Violation(path, line, module, own[0], target, theirs[0]))
    return out


def package_violations() -> list[Violation]:
    """Every upward or sideways import in the package as it is on disk."""
    modules = package_modules()
    sources = {
        name: (str(path.relative_to(ROOT)), path.read_text(), path.name == "__init__.py")
        for name, path in modules.items()
    }
    return violations(sources, set(modules))


def test_layers_point_down() -> None:
    found = package_violations()
    assert not found, f"{len(found)} imports point up or sideways:\n" + "\n".join(map(str, found))


def test_every_package_has_a_layer() -> None:
    """A new subpackage must be placed in the order, not fall into the contract by default."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        packages: list[str] = tomllib.load(f)["tool"]["setuptools"]["packages"]
    assert {p.split(".")[1] for p in packages if p != "plasticore"} == set(LAYERS)


def test_allow_list_is_used() -> None:
    """Every allow-listed import still exists (a stale exception hides nothing and should go)."""
    modules = package_modules()
    pairs = {
        (name, target)
        for name, path in modules.items()
        for _, target in imported_modules(path.read_text(), name, path.name == "__init__.py", set(modules))
    }
    assert not set(ALLOWED) - pairs, sorted(set(ALLOWED) - pairs)


def test_walker_sees_every_kind_of_upward_import() -> None:
    """The check fails on upward imports at module level, in functions, relative, and via import_module."""
    source = (
        "import numpy\n"
        "from plasticore import protocol\n"
        "from plasticore.sim import chipsim\n"
        "def f():\n"
        "    from ..app import cli\n"
        "    import plasticore.firmware.report\n"
        "    return importlib.import_module('plasticore.training.model')\n"
    )
    known = {"plasticore.protocol", "plasticore.sim.chipsim", "plasticore.app.cli", "plasticore.rtl.core"}
    found = violations({"plasticore.host.device": ("host/device.py", source, False)}, known)
    assert [str(v) for v in found] == [
        "host/device.py:3: plasticore.host.device (host) imports plasticore.sim.chipsim (sim)",
        "host/device.py:5: plasticore.host.device (host) imports plasticore.app.cli (app)",
        "host/device.py:6: plasticore.host.device (host) imports plasticore.firmware.report (firmware)",
        "host/device.py:7: plasticore.host.device (host) imports plasticore.training.model (training)",
    ]
    sideways = violations({"plasticore.sim.x": ("sim/x.py", "from plasticore.training import model\n", False)}, known)
    assert [v.target_layer for v in sideways] == ["training"]
    down = "from plasticore.host import link\nfrom . import simboard\nfrom plasticore.rtl import core\n"
    assert violations({"plasticore.sim.x": ("sim/x.py", down, False)}, known) == []


def test_host_opens_sim_urls_without_importing_sim() -> None:
    """``sim://`` reaches pyserial through the ``plasticore.serial_url_handlers`` entry point: the host
    registers the handler package by name, and pyserial loads it only when such a port is made."""
    code = (
        "import sys, serial\n"
        "from plasticore.host import transport\n"
        "assert transport.register_url_handler('sim://?cpb=8')\n"
        "assert not transport.register_url_handler('/dev/ttyUSB0')\n"
        "assert not any(m.startswith('plasticore.sim') for m in sys.modules), 'host imported sim'\n"
        "assert 'plasticore.sim' in serial.protocol_handler_packages\n"
        "port = serial.serial_for_url('sim://', do_not_open=True)\n"
        "assert type(port).__name__ == 'SimSerial', type(port)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
