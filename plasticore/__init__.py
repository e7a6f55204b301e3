"""plasticore: hybrid global-local learning SNNs, from torch to bit-exact FPGA cores.

The ``plasticore`` package itself holds the shared contract (number formats, core geometry,
wire protocol, bundle schema).  The other top-level folders of the repository are mapped into
this namespace: ``plasticore.rtl``, ``plasticore.sim``, ``plasticore.host``,
``plasticore.training`` and ``plasticore.firmware``.
"""

__version__ = "0.1.0"
