"""Flashing with openFPGALoader (Debian package ``openfpgaloader``; or set ``$OPENFPGALOADER``).

* ULX3S: ``openFPGALoader -b ulx3s -m top.bit`` (SRAM, lost at power-off) or ``-f`` (SPI flash,
  ``persist=True``).
* iCEBreaker: ``openFPGALoader -b icebreaker -f top.bin`` (iCE40 is configured from SPI flash);
  openFPGALoader 0.10 (Debian 12) has no ``icebreaker`` board entry and uses the equivalent
  ``ice40_generic`` (FT2232H, SPI flash).

Errors: :class:`ProgrammerNotFoundError` when openFPGALoader is not installed,
:class:`BoardNotFoundError` when it finds no programmer/board (its "unable to open ftdi device"),
:class:`FlashError` for anything else.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from .boards import Board, get_board
from .errors import BoardNotFoundError, FlashError, ProgrammerNotFoundError

__all__ = ["classify_output", "find_openfpgaloader", "flash", "flash_command", "ofl_board_name"]

INSTALL_HINT = ("install it (Debian/Ubuntu: `sudo apt-get install openfpgaloader`; other systems: "
                "https://github.com/trabucayre/openFPGALoader) or point $OPENFPGALOADER at the binary")

#: output fragments meaning "no programmer / no board attached"
NO_BOARD_PATTERNS = (
    "unable to open ftdi device",
    "jtag init failed",
    "no device found",
    "fails to open device",
    "no cable found",
    "device not found",
    "no usb device",
)
#: output fragments meaning "a device is there but we may not open it"
PERMISSION_PATTERNS = ("libusb_error_access", "permission denied", "insufficient permissions")


def find_openfpgaloader(env: dict | None = None) -> str:
    """Path of openFPGALoader (``$OPENFPGALOADER`` or PATH); :class:`ProgrammerNotFoundError` if absent."""
    env = os.environ if env is None else env
    name = env.get("OPENFPGALOADER") or "openFPGALoader"
    path = shutil.which(name)
    if path is None:
        src = f"$OPENFPGALOADER={name}" if env.get("OPENFPGALOADER") else "openFPGALoader"
        raise ProgrammerNotFoundError(f"cannot flash: {src} not found; {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=8)
def _listed_boards(tool: str) -> frozenset[str]:
    try:
        out = subprocess.run([tool, "--list-boards"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names = set()
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split()
        if parts:
            names.add(parts[0])
    return frozenset(names)


def ofl_board_name(board: Board | str, tool: str | None = None) -> str:
    """The openFPGALoader ``-b`` name for ``board``: the first of ``board.ofl_boards`` that ``tool`` lists."""
    b = get_board(board)
    if tool is not None:
        listed = _listed_boards(tool)
        for name in b.ofl_boards:
            if name in listed:
                return name
    return b.ofl_boards[0]


def flash_command(board: Board | str, bitstream: Path | str, *, tool: str = "openFPGALoader",
                  ofl_board: str | None = None, persist: bool = False, cable: str | None = None,
                  ftdi_serial: str | None = None, verify: bool = False) -> list[str]:
    """The openFPGALoader command line that programs ``bitstream`` onto ``board``."""
    b = get_board(board)
    cmd = [tool]
    if cable:
        cmd += ["-c", cable]
    else:
        cmd += ["-b", ofl_board or b.ofl_boards[0]]
    if ftdi_serial:
        cmd += ["--ftdi-serial", ftdi_serial]
    to_flash = persist or not b.ofl_sram
    cmd.append("-f" if to_flash else "-m")
    if verify and to_flash:
        cmd.append("--verify")
    cmd.append(str(bitstream))
    return cmd


def classify_output(board: Board | str, rc: int, output: str, cmd: list[str]) -> None:
    """Raise the right error for a finished openFPGALoader run (nothing when it succeeded)."""
    b = get_board(board)
    low = output.lower()
    tail = "\n".join("    " + line for line in output.strip().splitlines()[-8:])
    if any(p in low for p in PERMISSION_PATTERNS):
        raise BoardNotFoundError(
            f"cannot open the {b.name} programmer: permission denied on the USB device; add a udev rule for it "
            f"(see docs/boards.md) or run as a user in the plugdev group.\n  command: {' '.join(cmd)}\n{tail}")
    if "cannot find board" in low:
        name = cmd[cmd.index("-b") + 1] if "-b" in cmd else b.ofl_boards[0]
        raise FlashError(f"this openFPGALoader does not know board {name!r}"
                         f" (see `openFPGALoader --list-boards`); pass --cable\n{tail}")
    if rc != 0 and any(p in low for p in NO_BOARD_PATTERNS):
        raise BoardNotFoundError(
            f"no {b.name} found: openFPGALoader could not open the board's USB programmer. Is the board "
            f"plugged in (USB port marked for programming), powered, and not held by another program?\n"
            f"  command: {' '.join(cmd)}\n  openFPGALoader said:\n{tail}")
    if rc != 0:
        raise FlashError(f"flashing {b.name} failed (openFPGALoader exit status {rc})\n"
                         f"  command: {' '.join(cmd)}\n{tail}")


def flash(board: Board | str, bitstream: Path | str, *, dry_run: bool = False, persist: bool = False,
          cable: str | None = None, ftdi_serial: str | None = None, verify: bool = False,
          timeout: float = 600, progress: bool = True) -> list[str]:
    """Program ``bitstream`` onto ``board``; returns the command line (``dry_run``: only that)."""
    b = get_board(board)
    bitstream = Path(bitstream)
    if bitstream.suffix != b.bitstream_ext:
        raise FlashError(f"{bitstream} is not a {b.name} bitstream (expected a {b.bitstream_ext} file)")
    if dry_run:
        try:
            tool = find_openfpgaloader()
        except ProgrammerNotFoundError:
            tool = None
        return flash_command(b, bitstream, tool=tool or "openFPGALoader", ofl_board=ofl_board_name(b, tool),
                             persist=persist, cable=cable, ftdi_serial=ftdi_serial, verify=verify)
    if not bitstream.is_file():
        raise FlashError(f"bitstream {bitstream} does not exist")
    tool = find_openfpgaloader()
    cmd = flash_command(b, bitstream, tool=tool, ofl_board=ofl_board_name(b, tool), persist=persist, cable=cable,
                        ftdi_serial=ftdi_serial, verify=verify)
    from tqdm import tqdm

    fmt = "{desc}: {n}/{total} [{elapsed}]"
    with tqdm(total=1, desc=f"flash {b.name}", disable=not progress, bar_format=fmt) as bar:
        try:
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise FlashError(f"openFPGALoader did not finish within {timeout:g} s: {' '.join(cmd)}") from e
        except OSError as e:
            raise ProgrammerNotFoundError(f"cannot run {tool}: {e}; {INSTALL_HINT}") from e
        classify_output(b, res.returncode, res.stdout or "", cmd)
        bar.update(1)
    return cmd
