"""``ecomm-dbt``: the dbt CLI as Dagster runs it, in a process that dies with the run that started it.

dagster-dbt starts dbt as a child process. When the run's process is killed (kill -9, the OOM
killer), a plain dbt goes on and keeps writing to the warehouse; on Linux this entry point asks
the kernel to kill it as soon as its parent is gone (``PR_SET_PDEATHSIG``), then runs dbt itself.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# The pid of the process that starts dbt (set by DbtCli): a parent that died while this one was
# still starting up cannot be told from the process that adopted it otherwise.
PARENT_PID = "ECOMM_DBT_PARENT_PID"


def main() -> None:
    parent = int(os.environ.get(PARENT_PID, os.getppid()))
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit("ecomm-dbt: the process that started dbt is gone; not running.")
    from dbt.cli.main import cli

    cli()


if __name__ == "__main__":
    main()
