"""Verilator testbenches, the Verilated chip and the simulated board (``plasticore.sim``)."""
