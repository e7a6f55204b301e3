"""Amaranth HDL of the hybrid core, mesh and UART link (imported as ``plasticore.rtl``)."""
