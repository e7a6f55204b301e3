"""Bus and chip-harness opcodes are defined once (plasticore/bus_ops.py); the C++ harness gets them generated."""

import shutil
import subprocess
from pathlib import Path

from plasticore import bus_ops as B
from plasticore.rtl import bus as rtl_bus
from plasticore.sim import chipsim

HARNESS = Path(chipsim.__file__).parent / "chipsim" / "harness.cpp"


def test_one_definition():
    assert rtl_bus.BusOp is B.BusOp
    assert (chipsim.OP_READ, chipsim.OP_QUIT, chipsim.MAX_N) == (B.HarnessOp.READ, B.HarnessOp.QUIT, B.HARNESS_MAX_N)
    src = HARNESS.read_text()
    assert '#include "bus_ops.h"' in src and "case 0" not in src and "enum {" not in src


def test_generated_header_matches_python(tmp_path):
    """The generated header compiles and holds the Python values (checked by the C++ compiler)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    assert cxx, "a C++ compiler is a prerequisite (README)"
    (tmp_path / "bus_ops.h").write_text(B.cpp_header())
    checks = [f"static_assert(BUS_{op.name} == {int(op)}, \"{op.name}\");" for op in B.BusOp]
    checks += [f"static_assert(H_{op.name} == {int(op)}, \"{op.name}\");" for op in B.HarnessOp]
    checks.append(f"static_assert(H_MAX_N == {B.HARNESS_MAX_N}u, \"max n\");")
    (tmp_path / "t.cpp").write_text('#include "bus_ops.h"\n' + "\n".join(checks) + "\nint main() { return 0; }\n")
    r = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-I", str(tmp_path), str(tmp_path / "t.cpp")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
