"""Test-suite defaults: Verilated models are compiled at -O1 (about 3x faster builds; same results)."""

import os

os.environ.setdefault("PLASTICORE_SIM_OPT", "test")
