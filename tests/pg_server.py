"""A throwaway PostgreSQL server for tests: ``initdb`` into a fresh temporary folder, ``pg_ctl start`` on a
free loopback port (unix socket in the same folder), one database, ``pg_ctl stop`` and removal after.

Uses the Debian/Ubuntu server binaries under ``/usr/lib/postgresql/<version>/bin`` (``make postgres``
installs them: ``apt-get install postgresql``); ``PLASTICORE_PG_BIN`` points elsewhere. PostgreSQL
refuses to run as root, so under root the server runs as ``nobody`` (``runuser``) and the folder is
handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest version), or None."""
    env = os.environ.get("PLASTICORE_PG_BIN")
    cands = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                     key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                                     reverse=True)
    for c in cands:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(db: str = "sweep", user: str = "nobody") -> Iterator[str]:
    """Start a server, yield ``postgresql://postgres@127.0.0.1:PORT/db``, stop it and delete its folder."""
    bindir = find_pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run "
                           "`make postgres` (apt-get install postgresql) or set PLASTICORE_PG_BIN")
    root = Path(tempfile.mkdtemp(prefix="plasticore-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    data, sock, log = root / "data", root / "sock", root / "server.log"
    port = _free_port()

    def run(*cmd: str) -> None:
        r = subprocess.run([*as_user, *cmd], cwd=root, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            tail = (log.read_text()[-2000:] if log.exists() else "")
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{tail}")

    started = False
    try:
        run("mkdir", "-m", "700", str(sock))
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections=40"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
        started = True
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db)
        yield f"postgresql://postgres@127.0.0.1:{port}/{db}"
    finally:
        if started:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           cwd=root, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
