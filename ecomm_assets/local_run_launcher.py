"""The local instance's run launcher: Dagster's default one, which can also tell whether a started
run's process is alive. With it, run monitoring (dagster-daemon, `make dev`) marks a run whose
process died (kill -9, an out-of-memory kill, a closed laptop) failed instead of leaving it
STARTED forever, and `make run` does the same before it starts a run.

A run's steps execute in one process (the in-process executor), which records its pid in the
run's event log. It runs on this machine: its pid is looked up in /proc, and a pid that now
belongs to a process started later (the pid was reused) counts as dead.
"""

import os
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus


def _run_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it said so) of the latest process that said it executes the run's steps."""
    for entry in reversed(instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        pid = entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def _process_started_at(pid: int) -> float | None:
    """When the live process ``pid`` started (Unix time), or None when there is none (a zombie is none)."""
    try:
        state, *fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if state in ("Z", "X"):
        return None
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return boot + int(fields[18]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: start time in ticks


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher, with a health check of the run's process."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return Path("/proc/stat").exists()

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        process = _run_process(self._instance, run.run_id)
        if process is None:  # not executing steps yet: run monitoring's start timeout judges it
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        pid, said_at = process
        started_at = _process_started_at(pid)
        if started_at is None or started_at > said_at + 1:  # gone, or another process has its pid now
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the process of the run (pid {pid}) is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every started run whose process is gone, as run monitoring does; returns their ids."""
    launcher = instance.run_launcher
    if not launcher.supports_check_run_worker_health:
        return []
    dead = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        health = launcher.check_run_worker_health(record.dagster_run)
        if health.status == WorkerStatus.FAILED:
            instance.report_run_failed(record.dagster_run, f"Marked failed: {health.msg}.")
            dead.append(record.dagster_run.run_id)
    return dead
