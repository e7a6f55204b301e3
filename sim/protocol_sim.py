"""pyserial protocol handler for ``sim://`` URLs (found via ``serial.protocol_handler_packages``,
to which :mod:`plasticore.sim.simboard` adds ``plasticore.sim``)."""

from plasticore.sim.simboard import SimSerial as Serial

__all__ = ["Serial"]
