"""The design ID comes from the elaborated design: comments and whitespace do not change it, logic does."""

import importlib
import shutil
import sys
from pathlib import Path

from plasticore.rtl import design_id as D

RTL = Path(D.__file__).parent


def _copy_rtl(tmp_path: Path, tag: str, edit=None):
    """A copy of the rtl package, importable as ``rtl_<tag>``; ``edit(text) -> text`` rewrites framing.py."""
    pkg = tmp_path / tag / f"rtl_{tag}"
    shutil.copytree(RTL, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        f = pkg / "framing.py"
        new = edit(f.read_text())
        assert new != f.read_text(), "the edit changed nothing"
        f.write_text(new)
    sys.path.insert(0, str(pkg.parent))
    try:
        return importlib.import_module(f"rtl_{tag}.board")
    finally:
        sys.path.remove(str(pkg.parent))


def _link_id(board_mod) -> int:
    return D.design_id(lambda ident: board_mod.link_test_top(8, ram_words=64, design_id=ident), {"test": 1})


def _comments(text: str) -> str:
    """Comments, blank lines, a changed docstring and a reflowed call: no logic change."""
    text = text.replace('"""Raw bytes in,', '"""(Edited docstring.)  Raw bytes in,')
    text = text.replace("        count = Signal(8)", "        # a new comment\n\n        count = Signal(8)  # trailing")
    return text.replace("m.d.sync += count.eq(count - 1)", "m.d.sync += count.eq(\n                    count - 1\n"
                        "                )")


def test_design_id_ignores_comments_and_whitespace_but_not_logic(tmp_path):
    base = _link_id(_copy_rtl(tmp_path, "base"))
    assert 0 < base < 2**32
    assert _link_id(_copy_rtl(tmp_path, "comment", _comments)) == base
    logic = _copy_rtl(tmp_path, "logic", lambda t: t.replace("count.eq(count - 1)", "count.eq(count - 2)"))
    assert _link_id(logic) != base
    # the salt (configuration) and the design's parameters count too
    mod = _copy_rtl(tmp_path, "salt")
    assert D.design_id(lambda i: mod.link_test_top(8, ram_words=64, design_id=i), {"test": 2}) != base
    assert D.design_id(lambda i: mod.link_test_top(8, ram_words=128, design_id=i), {"test": 1}) != base


def test_design_id_memo(tmp_path):
    """The memo returns the stored ID for its key, and a new key recomputes it from the netlist."""
    mod = _copy_rtl(tmp_path, "memo")
    calls = []

    def make(ident):
        calls.append(ident)
        return mod.link_test_top(8, ram_words=64, design_id=ident)

    a = D.design_id(make, {"test": 1}, memo_dir=tmp_path / "ids", memo_key="k1")
    assert a == _link_id(mod) and calls == [0]
    assert D.design_id(make, {"test": 1}, memo_dir=tmp_path / "ids", memo_key="k1") == a and calls == [0]
    assert D.design_id(make, {"test": 1}, memo_dir=tmp_path / "ids", memo_key="k2") == a and calls == [0, 0]
    for f in (tmp_path / "ids").iterdir():
        assert f.read_text() == f"{a:08x}\n"
