"""The pipeline monitoring page: a second local HTML page, offline like the dashboard, drawn from
the run metrics in ecomm_ops. Each chart takes, per ingestion date, the latest run that covered it;
a range backfill counts on its last date (its rows and durations are the whole range's)."""

from pathlib import Path

import plotly.graph_objects as go
import psycopg

from ecomm_assets.serving.dashboard import html_page, panel, write

LATEST = "DISTINCT ON ({keys}) {columns} FROM ecomm_ops.runs AS r JOIN ecomm_ops.{table} AS t USING (run_id) " \
         "WHERE {where} ORDER BY {keys}, r.ended_at DESC"
QUERIES = {
    # seconds per step, of the latest run ending on each day
    "durations": "SELECT " + LATEST.format(keys="r.partition_end, t.step_key", table="steps", where="r.partition_end IS NOT NULL",
                                           columns="r.partition_end, t.step_key, t.duration_seconds"),
    # rows landed per table and day, by the runs of one day
    "landed": "SELECT " + LATEST.format(
        keys="t.partition, t.asset_key", table="asset_metrics", columns="t.partition, t.asset_key, t.value",
        where="t.asset_key LIKE 'landing/%' AND t.metric = 'dagster/row_count' AND r.partition_start = r.partition_end"),
    "quality": "SELECT " + LATEST.format(
        keys="t.partition, t.metric", table="asset_metrics", columns="t.partition, t.metric, t.value",
        where="t.asset_key = 'silver/data_quality' AND t.metric LIKE 'quality\\_score\\_%'"),
    # the latest result of each check on each day
    "checks": "SELECT " + LATEST.format(
        keys="t.partition, t.asset_key, t.check_name", table="check_results", where="t.partition <> ''",
        columns="t.partition, t.asset_key, t.check_name, t.passed, t.failed_records"),
}


def _by_day(traces: list) -> go.Figure:
    """A figure whose x axis lists the ingestion dates as they are (no time of day in between)."""
    return go.Figure(traces).update_xaxes(type="category", categoryorder="category ascending")


def _lines(rows: list[tuple], name: str = "") -> go.Figure:
    """One line per series of (day, series, value) rows."""
    series = sorted({r[1] for r in rows})
    return _by_day([go.Scatter(x=[r[0] for r in rows if r[1] == s], y=[r[2] for r in rows if r[1] == s],
                               mode="lines+markers", name=s.removeprefix(name)) for s in series])


def render(data: dict[str, list[tuple]]) -> str:
    durations = _by_day([go.Bar(x=[r[0] for r in data["durations"] if r[1] == step],
                                  y=[r[2] for r in data["durations"] if r[1] == step], name=step)
                           for step in sorted({r[1] for r in data["durations"]})])
    durations.update_layout(barmode="stack")
    failed = [r for r in data["checks"] if not r[3]]
    per_day = sorted({r[0] for r in failed})
    quarantined = [(r[0], r[1], r[4] or 0) for r in data["checks"] if r[2].startswith("valid_") and r[4]]
    day = "Ingestion date (Asia/Bangkok)"
    views = [
        ("runs", "Runs", [
            panel("durations", "Run duration per step (s)", durations, day, "Seconds"),
            panel("rows-landed", "Rows landed per table", _lines(data["landed"], "landing/"), day, "Rows"),
        ]),
        ("quality", "Quality", [
            panel("failed-checks", "Failed checks per day", _by_day([go.Bar(
                x=per_day, y=[sum(1 for r in failed if r[0] == d) for d in per_day], name="failed checks",
                customdata=[", ".join(sorted(f"{r[1]} {r[2]}" for r in failed if r[0] == d)) for d in per_day],
                hovertemplate="%{x}: %{y} (%{customdata})<extra></extra>")]), day, "Checks"),
            panel("quarantine", "Rows failing a contract rule (quarantined or warned of)", _lines(
                [(d, a, sum(r[2] for r in quarantined if (r[0], r[1]) == (d, a)))
                 for d, a in sorted({(r[0], r[1]) for r in quarantined})]), day, "Rows"),
            panel("quality-trend", "Overall quality score", _lines(data["quality"], "quality_score_"), day, "Score"),
        ]),
    ]
    return html_page("Pipeline monitoring", "From the run metrics in PostgreSQL schema ecomm_ops.", views)


def write_monitoring_page(conninfo: str, path: Path) -> Path:
    with psycopg.connect(conninfo, connect_timeout=10) as connection:
        data = {name: connection.execute(query).fetchall() for name, query in QUERIES.items()}
    return write(render(data), path)
