"""Host library: transports, the serial link, the chip bus, the compiler and the device API.

``connect(url)`` opens a board (real, ``/dev/ttyUSB0``; simulated, a pty path or ``sim://``) and
returns a :class:`~plasticore.host.device.Device`.
"""


def connect(port: str, baudrate: int | None = None, expected_design_id: int | None = None, **link_kw):
    """Open the board on ``port`` (a pyserial URL) and return a connected Device."""
    from .linkbus import open_board

    return open_board(port, expected_design_id=expected_design_id, baudrate=baudrate, **link_kw)
