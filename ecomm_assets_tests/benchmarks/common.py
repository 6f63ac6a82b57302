"""What every benchmark figure shares: timing by median, and one result row per figure."""

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One row of the results table: ours against a baseline, and the target on their ratio."""

    name: str
    ours_label: str
    ours: float  # median, in `unit`
    baseline_label: str
    baseline: float  # median, in `unit`
    target: str  # e.g. "ratio <= 1.5"
    met: bool
    runs: int
    unit: str = "s"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 3)}


def median_seconds(run: Callable[[], object], runs: int, setup: Callable[[], object] = lambda: None) -> float:
    """Median wall time of ``run`` over ``runs`` runs, ``setup`` untimed before each."""
    times = []
    for _ in range(runs):
        setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

