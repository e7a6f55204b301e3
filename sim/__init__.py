"""Golden model, Verilator testbenches and the simulated board (``plasticore.sim``)."""
