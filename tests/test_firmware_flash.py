"""openFPGALoader command lines and errors (the real tool with no board attached when it is installed)."""

import shutil
import subprocess

import pytest

from plasticore.firmware import flash as F
from plasticore.firmware.errors import BoardNotFoundError, FlashError, ProgrammerNotFoundError

OFL = shutil.which("openFPGALoader")


def test_commands():
    assert F.flash_command("ulx3s", "b/top.bit") == ["openFPGALoader", "-b", "ulx3s", "-m", "b/top.bit"]
    assert F.flash_command("ulx3s", "top.bit", persist=True, verify=True) == [
        "openFPGALoader", "-b", "ulx3s", "-f", "--verify", "top.bit"]
    # iCE40 boots from SPI flash: always -f
    assert F.flash_command("icebreaker", "top.bin", tool="/usr/bin/openFPGALoader", ofl_board="ice40_generic") == [
        "/usr/bin/openFPGALoader", "-b", "ice40_generic", "-f", "top.bin"]
    assert F.flash_command("icebreaker", "top.bin", cable="ft2232", ftdi_serial="FT123") == [
        "openFPGALoader", "-c", "ft2232", "--ftdi-serial", "FT123", "-f", "top.bin"]


def test_board_name_falls_back_to_listed(monkeypatch):
    monkeypatch.setattr(F, "_listed_boards", lambda tool: frozenset({"ulx3s", "ice40_generic"}))
    assert F.ofl_board_name("icebreaker", "ofl") == "ice40_generic"
    monkeypatch.setattr(F, "_listed_boards", lambda tool: frozenset({"icebreaker", "ice40_generic"}))
    assert F.ofl_board_name("icebreaker", "ofl") == "icebreaker"
    assert F.ofl_board_name("icebreaker", None) == "icebreaker"


NO_BOARD = ("write to ram\nunable to open ftdi device: -3 (device not found)\n"
            "JTAG init failed with: unable to open ftdi device\n")


def test_classify_output():
    cmd = ["openFPGALoader", "-b", "ulx3s", "-m", "top.bit"]
    F.classify_output("ulx3s", 0, "Load SRAM: [====] 100.00%\nDone\n", cmd)
    with pytest.raises(BoardNotFoundError, match=r"no ulx3s found: .*plugged in") as e:
        F.classify_output("ulx3s", 1, NO_BOARD, cmd)
    assert "unable to open ftdi device" in str(e.value) and "-b ulx3s -m top.bit" in str(e.value)
    with pytest.raises(BoardNotFoundError, match="permission denied"):
        F.classify_output("ulx3s", 1, "libusb: error [x] LIBUSB_ERROR_ACCESS\n", cmd)
    with pytest.raises(FlashError, match="does not know board 'icebreaker'"):
        F.classify_output("icebreaker", 1, "Error: cannot find board 'icebreaker'\n",
                          ["openFPGALoader", "-b", "icebreaker", "-f", "top.bin"])
    with pytest.raises(FlashError, match="exit status 1"):
        F.classify_output("ulx3s", 1, "Error: bitstream is corrupt\n", cmd)


def test_missing_openfpgaloader(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "no-such-openFPGALoader"))
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\xff" * 16)
    with pytest.raises(ProgrammerNotFoundError, match="not found; install it .*apt-get install openfpgaloader"):
        F.flash("ulx3s", bit, progress=False)
    # a dry run still says what it would do
    assert F.flash("ulx3s", bit, dry_run=True)[1:] == ["-b", "ulx3s", "-m", str(bit)]


def test_wrong_bitstream(tmp_path):
    with pytest.raises(FlashError, match="not a icebreaker bitstream"):
        F.flash("icebreaker", tmp_path / "top.bit", dry_run=True)
    with pytest.raises(FlashError, match="does not exist"):
        F.flash("ulx3s", tmp_path / "top.bit")


def _usb_probes() -> int:
    out = subprocess.run([OFL, "--scan-usb"], capture_output=True, text=True, timeout=30).stdout
    rows = [line for line in out.splitlines()[1:] if line.strip() and not line.lower().startswith("bus")]
    return len(rows)


@pytest.mark.parametrize("board,name", [("ulx3s", "top.bit"), ("icebreaker", "top.bin")])
def test_real_openfpgaloader_without_board(tmp_path, monkeypatch, board, name):
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    # `make setup` installs Debian's openfpgaloader; its absence is a setup bug, not a reason to skip.
    assert OFL is not None, "openFPGALoader is not on PATH: run `make setup` (installs Debian's openfpgaloader)"
    if _usb_probes():
        pytest.skip("a USB programmer is attached; not flashing a dummy bitstream")
    bit = tmp_path / name
    bit.write_bytes(b"\xff" * 64)
    with pytest.raises(BoardNotFoundError, match=f"no {board} found"):
        F.flash(board, bit, progress=False, timeout=60)
