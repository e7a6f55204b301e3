"""plasticore: hybrid global-local learning SNNs, from torch to bit-exact FPGA cores.

The ``plasticore`` package itself holds the shared contract (number formats, core geometry and chip
address map, wire protocol, bundle schema, the bit-exact golden model and the run format).  The other
top-level folders of the repository are mapped into this namespace: ``plasticore.rtl``, ``plasticore.host``,
``plasticore.sim``, ``plasticore.training``, ``plasticore.firmware`` and, on top, ``plasticore.app``.
Each imports only the layers below it (``tests/test_layering.py``).
"""

__version__ = "0.1.0"
