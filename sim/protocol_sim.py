"""pyserial protocol handler for ``sim://`` URLs, found via ``serial.protocol_handler_packages``: the host
adds ``plasticore.sim`` from the ``plasticore.serial_url_handlers`` entry point ``sim``, and importing
:mod:`plasticore.sim.simboard` adds it too."""

from plasticore.sim.simboard import SimSerial as Serial

__all__ = ["Serial"]
