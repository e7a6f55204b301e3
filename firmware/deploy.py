"""``plasticore deploy``: build if stale → flash → stream the network → run.

The first two steps are this layer's (:func:`plasticore.firmware.build.build`,
:func:`plasticore.firmware.flash.flash`); the last two go through the host device API
(``plasticore.host``).  :func:`open_device` is the one call into the host layer:
``plasticore.host.connect(port, baudrate=, expected_design_id=) -> Device`` (a
:class:`plasticore.host.device.Device`; connecting checks the board's design ID against the build's).
Should the host layer lack ``connect``, deploy builds and flashes and then stops with
:class:`DeployNotAvailableError`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from .boards import get_board
from .build import BuildResult, build
from .errors import DeployNotAvailableError
from .flash import flash

__all__ = ["DeployResult", "deploy", "open_device"]


@dataclass
class DeployResult:
    build: BuildResult
    flash_cmd: list[str] | None
    run: object | None  #: the host's run result (plasticore.runs.RunResult) when inputs were given


def open_device(port: str, *, baudrate: int, expected_design_id: int):
    """Connect to the board at ``port`` through the host API and check its design ID."""
    try:
        host = importlib.import_module("plasticore.host")
    except ModuleNotFoundError as e:  # pragma: no cover - the package exists in this tree
        raise DeployNotAvailableError("the host library (plasticore.host) is not installed") from e
    connect = getattr(host, "connect", None)
    if connect is None:
        raise DeployNotAvailableError(
            "streaming the network needs plasticore.host.connect(port, baudrate=, expected_design_id=), "
            "which is not available yet in this tree; the bitstream was built and flashed")
    return connect(port, baudrate=baudrate, expected_design_id=expected_design_id)


def deploy(board: str, bundle_dir: Path, port: str, *, config: dict | None = None, root: Path | None = None,
           skip_flash: bool = False, dry_run: bool = False, persist: bool = False, cable: str | None = None,
           inputs=None, labels=None, record_membranes: bool = False, progress: bool = True) -> DeployResult:
    """Build (if the cached bitstream is stale), flash, deploy ``bundle_dir`` and run ``inputs``.

    ``inputs``: per-step layer-0 inputs (S, T, A) or None (deploy only).  ``dry_run``: build, print
    the flash command, stop.
    """
    from plasticore.bundle import load_bundle

    b = get_board(board)
    bundle = load_bundle(bundle_dir)  # fail early on a bad bundle, before minutes of synthesis
    res = build(b.name, config, root=root, progress=progress)
    cmd = None
    if not skip_flash:
        cmd = flash(b, res.bitstream, dry_run=dry_run, persist=persist, cable=cable, progress=progress)
    if dry_run:
        return DeployResult(res, cmd, None)
    from tqdm import tqdm

    dev = open_device(port, baudrate=res.config.baud, expected_design_id=res.design_id)
    try:
        dev.deploy(bundle)
        run = None
        if inputs is not None:
            with tqdm(total=len(inputs), unit="sample", desc="run", disable=not progress) as bar:
                run = dev.run(inputs, labels=labels, record_membranes=record_membranes, progress=bar.update)
    finally:
        close = getattr(dev, "close", None)
        if close is not None:
            close()
    return DeployResult(res, cmd, run)
