"""A PostgreSQL server the project starts and stops itself: the local stand-in for RDS.

It runs the PostgreSQL binaries found on the machine (``PATH``, ``pg_config --bindir`` or
``/usr/lib/postgresql/<version>/bin``), listens on 127.0.0.1 only and trusts local connections.
PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user.
"""

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ecomm_assets.source.postgres import SCHEMA_SQL, SourceDatabase


def _postgres_bin_dir() -> Path:
    if found := shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    if pg_config := shutil.which("pg_config"):
        return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    if candidates := sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")):
        return Path(candidates[-1]).parent
    raise RuntimeError(
        "No PostgreSQL server binaries found (pg_ctl). Install them, e.g. `apt-get install postgresql`."
    )


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int
    dbname: str = "ecomm"
    user: str = "ecomm"

    @property
    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        command = [str(_postgres_bin_dir() / args[0]), *args[1:]]
        result = subprocess.run(command, user=self._run_as, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def server_pid(self) -> int | None:
        """The pid of the server on ``data_dir``, or None when none runs. After a crash (kill -9)
        ``postmaster.pid`` stays behind and names a process that is gone (or a zombie)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return None
            return pid
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            return None

    def start(self) -> None:
        """Initialise the cluster on first use, start the server and create the database."""
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if self._run_as:
                shutil.chown(self.data_dir, user=self._run_as)
            self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
                      "--encoding=UTF8", "--no-instructions")
        if self.server_pid() is None:  # PostgreSQL itself replaces a stale postmaster.pid
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off"
            self._run("pg_ctl", "start", "-w", "-D", str(self.data_dir), "-o", options,
                      "-l", str(self.data_dir / "server.log"))
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{self.dbname}"')

    def stop(self) -> None:
        if self.server_pid() is not None:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
        else:  # nothing runs; a crashed server's postmaster.pid goes
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def create_source_schema(self) -> None:
        """(Re)create the four source tables, empty."""
        with psycopg.connect(self._conninfo(self.dbname), autocommit=True) as connection:
            connection.execute("DROP TABLE IF EXISTS order_items, orders, products, customers")
            connection.execute(SCHEMA_SQL.read_text())

    def resource(self) -> SourceDatabase:
        return SourceDatabase(host="127.0.0.1", port=self.port, dbname=self.dbname, user=self.user)


