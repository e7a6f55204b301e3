"""Test-suite defaults.

* Verilated models are compiled at -O1 (about 3x faster builds; same results).
* Hypothesis profiles: ``ci`` (the default, used by ``make test`` and CI) draws the same examples on
  every run and machine (``derandomize``, no example database, no deadline or too-slow health check,
  which depend on machine load); ``regress`` (``make regress``) explores with a fresh seed, which the
  Makefile picks, prints and passes as ``--hypothesis-seed``.  ``HYPOTHESIS_PROFILE`` or
  ``--hypothesis-profile`` selects another.
"""

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("PLASTICORE_SIM_OPT", "test")

_STEADY = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "print_blob": True}
settings.register_profile("ci", derandomize=True, database=None, **_STEADY)
settings.register_profile("regress", derandomize=False, database=None, **_STEADY)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
