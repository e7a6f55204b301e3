"""Safe outputs: check an output path before any work starts, write next to it, rename into place.

Rules (the same for every command):

* the nearest existing ancestor of the output must be a writable directory;
* an existing output is refused unless ``force`` is given, and even then only an output *of the
  same kind* (a run ``.npz``, a bundle directory, a training output directory...) is replaced --
  an empty directory may always be used;
* the new output is written to a temporary file or directory next to the target and renamed into
  place, so a failure leaves nothing half-written and nothing the command did not create is
  deleted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import PlasticoreError

__all__ = ["OutputError", "check_output_dir", "check_output_file", "check_parent", "replace_dir",
           "temp_dir_for"]


class OutputError(PlasticoreError):
    """An output path cannot be used (exists, not writable, holds something else)."""


def check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable directory."""
    parent = path.absolute().parent
    while not parent.exists():
        if parent.is_symlink():  # dangling symlink on the way
            raise OutputError(f"{what} {path}: {parent} is a dangling symlink")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: directory {parent} is not writable")


def check_output_file(path: str | os.PathLike, what: str = "--out", force: bool = False,
                      same_kind: Callable[[Path], bool] | None = None, kind: str = "output") -> Path:
    """Validate an output file path before any work: see the module docstring."""
    path = Path(path)
    check_parent(path, what)
    if path.is_symlink() or path.exists():
        if path.is_dir():
            raise OutputError(f"{what} {path}: is a directory, expected a file")
        if not force:
            raise OutputError(f"{what} {path}: already exists (pass --force to replace a previous {kind})")
        if same_kind is not None and not same_kind(path):
            raise OutputError(f"{what} {path}: exists and is not a {kind}; refusing to replace it even with --force")
    return path


def check_output_dir(path: str | os.PathLike, what: str = "--out", force: bool = False,
                     same_kind: Callable[[Path], bool] | None = None, kind: str = "output") -> Path:
    """Validate an output directory path before any work: see the module docstring."""
    path = Path(path)
    check_parent(path, what)
    if path.is_symlink() or path.exists():
        if not path.is_dir() or path.is_symlink():
            raise OutputError(f"{what} {path}: exists and is not a directory")
        if any(path.iterdir()):
            if not force:
                raise OutputError(f"{what} {path}: directory exists and is not empty "
                                  f"(pass --force to replace a previous {kind})")
            if same_kind is None or not same_kind(path):
                raise OutputError(f"{what} {path}: directory does not hold a previous {kind}; refusing to "
                                  "replace it even with --force")
    return path


def temp_dir_for(path: Path, prefix: str = ".tmp-") -> Path:
    """A fresh temporary directory next to ``path`` (same filesystem, so a rename is atomic)."""
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{path.name}-", dir=path.absolute().parent))


def replace_dir(tmp: Path, path: Path) -> None:
    """Rename the finished directory ``tmp`` to ``path``.  An existing ``path`` (which the caller has
    checked with :func:`check_output_dir`) is moved aside first and removed only once the new one is
    in place; on failure it is moved back."""
    old = None
    if path.is_dir() and not path.is_symlink():
        if any(path.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".old-{path.name}-", dir=path.absolute().parent))
            os.replace(path, old)
        else:
            path.rmdir()
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
