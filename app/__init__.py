"""The applications on top of every layer (``plasticore.app``): the ``plasticore`` command line and the
subcommands of each layer, the end-to-end demo, and the benchmarks."""
