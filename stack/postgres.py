"""The native stack's PostgreSQL: Debian's server binaries, a cluster made by initdb in the run
directory, and the `hitl` database. PostgreSQL refuses to run as root, so as root it runs as the
`postgres` system user, with its files where that user can reach them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

# As root the run dir usually sits under /root, which the postgres user cannot enter.
ROOT_OWNED_RUNS = Path("/var/tmp/hitl-stack-postgres")


def bin_dir() -> Path:
    """HITL_STACK_PG_BIN, or the newest /usr/lib/postgresql/*/bin."""
    override = os.environ.get("HITL_STACK_PG_BIN")
    if override:
        return Path(override)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server not found (apt-get install postgresql)")
    return found[-1].parent


def system_user() -> str | None:
    """The user PostgreSQL runs as: 'postgres' when we are root, else ourselves (None)."""
    return "postgres" if os.geteuid() == 0 else None


class Postgres:
    def __init__(self, *, run_dir: Path, data_dir: Path, port: int):
        self.run_dir, self.link, self.port = run_dir, data_dir / "postgres", port

    def root(self) -> Path:
        """Its own directory (data/ and socket/): data/postgres of the run dir, or as root a
        directory under ROOT_OWNED_RUNS that data/postgres links to."""
        if system_user() is None:
            return self.link
        if self.link.is_symlink() or self.link.exists():
            return self.link.resolve()
        key = re.sub(r"[^A-Za-z0-9]+", "-", str(self.run_dir)).strip("-")
        return ROOT_OWNED_RUNS / key

    def _run_as_owner(self, argv: list[str]) -> subprocess.CompletedProcess:
        user = system_user()
        return subprocess.run(argv, capture_output=True, text=True, user=user, group=user,
                              extra_groups=[] if user else None, cwd="/")

    def prepare(self) -> None:
        """The cluster, made once by initdb (as its owner)."""
        pg = self.root()
        user = system_user()
        if user:
            ROOT_OWNED_RUNS.mkdir(mode=0o755, exist_ok=True)
            if not self.link.exists():
                self.link.parent.mkdir(parents=True, exist_ok=True)
                self.link.symlink_to(pg)
        (pg / "socket").mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(pg, user, user)
            shutil.chown(pg / "socket", user, user)
        if (pg / "data" / "PG_VERSION").exists():
            return
        pwfile = pg / "pwfile"
        pwfile.write_text("hitl\n")
        if user:
            shutil.chown(pwfile, user, user)
        # Superuser "hitl" (password "hitl") - a local development database only. Local socket
        # connections are trusted; TCP needs the password.
        done = self._run_as_owner([str(bin_dir() / "initdb"), "-D", str(pg / "data"), "-U", "hitl",
                                   f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                                   "-E", "UTF8", "--locale=C.UTF-8"])
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")

    def create_database(self) -> None:
        """The `hitl` database, once the server answers."""
        psql = [str(bin_dir() / "psql"), "-h", str(self.root() / "socket"),
                "-p", str(self.port), "-U", "hitl", "-d", "postgres", "-tAc"]
        exists = self._run_as_owner(psql + ["SELECT 1 FROM pg_database WHERE datname = 'hitl'"])
        if exists.stdout.strip() != "1":
            created = self._run_as_owner(psql + ["CREATE DATABASE hitl"])
            if created.returncode != 0:
                raise RuntimeError(f"CREATE DATABASE failed: {created.stderr}")
