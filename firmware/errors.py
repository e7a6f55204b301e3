"""User-facing errors of the firmware layer (all :class:`plasticore.errors.PlasticoreError`).

The ``plasticore`` CLI prints these as one line without a traceback; each message says what failed
and what to do about it.
"""

from __future__ import annotations

from plasticore.errors import PlasticoreError

__all__ = [
    "BoardNotFoundError",
    "BuildError",
    "DeployNotAvailableError",
    "FirmwareError",
    "FlashError",
    "ProgrammerNotFoundError",
    "TimingError",
    "ToolchainError",
    "UnknownBoardError",
]


class FirmwareError(PlasticoreError):
    """Base class of every firmware error."""


class UnknownBoardError(FirmwareError):
    """A board name that is not in :data:`plasticore.firmware.boards.BOARDS`."""


class ToolchainError(FirmwareError):
    """A synthesis/place-and-route/packing tool is missing (the pip-only YoWASP toolchain)."""


class BuildError(FirmwareError):
    """A bitstream build failed (the message carries the tail of the tool log and the log path)."""


class TimingError(BuildError):
    """Place and route finished but a clock misses its constraint (Fmax below the target)."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class ProgrammerNotFoundError(FirmwareError):
    """The programming tool (openFPGALoader) is not installed."""


class BoardNotFoundError(FirmwareError):
    """The programmer found no board / no USB programmer (nothing attached, or no permission)."""


class FlashError(FirmwareError):
    """openFPGALoader ran but programming failed for another reason."""


class DeployNotAvailableError(FirmwareError):
    """A part of ``plasticore deploy`` needs a host API that this tree does not provide yet."""
