"""The alert sensor: one message per failed asset check and per failed run, on every channel.

The sensor reads the instance's run-end events (success, failure, cancellation) in storage order.
A run's check results are all recorded before its end, so at that point the run yields its alerts:
one per failed check evaluation (warning or error) and one if the run failed. Each channel keeps
its own place in the cursor: the last run whose alerts it delivered, plus the alerts already
delivered of the next run. A channel that is down keeps its place and catches up when it is back,
while the others go on; nothing is sent twice to a channel and nothing is skipped.
"""

import json
import logging
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field
from slack_sdk import WebClient

from ecomm_assets.alerts.alert import Alert
from ecomm_assets.alerts.alert_log import AlertLog
from ecomm_assets.alerts.slack import SlackChannel
from ecomm_assets.alerts.smtp import EmailChannel
from ecomm_assets.lakehouse.repair_sensor import IN_SYNC, REPAIR_TAG
from ecomm_assets.partitions import run_partitions

TEMPORARY_HOME = ".tmp_dagster_home_"  # the instance folder `dagster dev` makes when DAGSTER_HOME is not set
RUN_END_EVENTS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE,
                  dg.DagsterEventType.RUN_CANCELED)
PAGE = 100
# A tick ends well inside Dagster's 60 s sensor timeout, whatever the backlog: at most this many
# sends or seconds, then the cursor records how far each channel got and the next tick goes on.
SENDS_PER_TICK = 50
SECONDS_PER_TICK = 30
# A channel without a place in the cursor (the sensor's first tick, a newly configured channel)
# starts with the runs that ended in the last day, not with the instance's whole history.
FIRST_LOOK_BACK_SECONDS = 24 * 3600


class Alerting(dg.ConfigurableResource):
    """Where alerts go: the alert log always, Slack and email when configured; and the Dagster
    webserver their links point to."""

    dagster_url: str = "http://127.0.0.1:3000"
    alert_log: str = Field(description="The JSON-lines file every alert is appended to.")
    slack_token: str | None = None
    slack_channel: str | None = None
    slack_base_url: str = WebClient.BASE_URL
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: str | None = Field(default=None, description="starttls, ssl or none; by default ssl on port 465, "
                                      "else starttls (see ecomm_assets/alerts/smtp.py)")
    smtp_ca_file: str | None = Field(default=None, description="PEM file of the CAs to trust for the SMTP server, "
                                     "instead of the system's")
    email_from: str | None = None
    email_to: list[str] = []

    def channels(self, log: logging.Logger, instance: dg.DagsterInstance) -> dict[str, AlertLog | SlackChannel | EmailChannel]:
        """The configured channels; each has ``send(alert)`` and ``close()`` (at the end of a tick).
        The alerts of a throw-away instance (`dagster dev` without DAGSTER_HOME) are logged in its
        own folder, never in the project's alert log."""
        root = Path(instance.root_directory or "")
        alert_log = root / "alerts.jsonl" if root.name.startswith(TEMPORARY_HOME) else self.alert_log
        channels = {"alert_log": AlertLog(str(alert_log), log)}
        if self.slack_token:
            channels["slack"] = SlackChannel(self.slack_token, self.slack_channel, self.slack_base_url)
        if self.smtp_host:
            channels["email"] = EmailChannel(self.smtp_host, self.smtp_port, self.email_from, self.email_to,
                                             self.smtp_user, self.smtp_password, self.smtp_security, self.smtp_ca_file)
        return channels


def run_end_events(instance: dg.DagsterInstance, after: int | None, since: float) -> list[dg.EventLogRecord]:
    """The run-end events after storage id ``after`` (after time ``since`` when None), oldest first.
    When a kind of event fills its page, the list stops at that page's last one, so that the
    events left for the next tick all come after the ones returned."""
    records, horizon = [], None
    for event_type in RUN_END_EVENTS:
        page = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(
                event_type,
                after_storage_id=after,
                after_timestamp=since if after is None else None,
            ),
            limit=PAGE,
            ascending=True,
        ).records
        records += page
        if len(page) == PAGE:
            horizon = min(page[-1].storage_id, horizon or page[-1].storage_id)
    return sorted((r for r in records if horizon is None or r.storage_id <= horizon),
                  key=lambda r: r.storage_id)


def _partition(run: dg.DagsterRun) -> str:
    first, last = run_partitions(run)
    return "none" if first is None else first if first == last else f"{first}...{last}"


def _details(metadata: dict[str, dg.MetadataValue]) -> dict[str, str]:
    """The counts (numbers) of a check result, then its other entries, each kept short."""
    counts = {k: v.value for k, v in metadata.items() if isinstance(v, dg.IntMetadataValue | dg.FloatMetadataValue)}
    details = {"counts": ", ".join(f"{k}={v}" for k, v in counts.items())} if counts else {}
    for name, value in metadata.items():
        if name in counts or name.startswith("dagster"):
            continue
        text = json.dumps(value.value, default=str) if isinstance(value, dg.JsonMetadataValue) else str(value.value)
        details[name] = text if len(text) <= 300 else text[:299] + "…"
    return details


def _freshness(metadata: dict[str, dg.MetadataValue]) -> dict[str, str]:
    """The deadline a freshness check judged against, in its own time zone."""
    params, tick = metadata.get("dagster/freshness_params"), metadata.get("dagster/latest_cron_tick_timestamp")
    if params is None or tick is None:
        return {}
    zone = params.value.get("timezone", "UTC")
    deadline = datetime.fromtimestamp(tick.value, ZoneInfo(zone))
    return {"deadline": f"{deadline:%Y-%m-%d %H:%M} {zone} (cron {params.value.get('deadline_cron')})"}


def run_alerts(instance: dg.DagsterInstance, run_end: dg.EventLogRecord, dagster_url: str) -> list[Alert]:
    """The alerts of the run that ``run_end`` ended: its failed checks, then its failure."""
    run = instance.get_run_by_id(run_end.run_id)
    link = f"{dagster_url.rstrip('/')}/runs/{run.run_id}"
    events = instance.get_records_for_run(
        run.run_id, of_type={dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.STEP_FAILURE}
    ).records
    failed_checks: dict[tuple[str, str], list] = {}  # a range run records a check on each of its days
    for record in events:
        if record.event_log_entry.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            if not evaluation.passed:
                failed_checks.setdefault((evaluation.asset_key.to_user_string(), evaluation.check_name),
                                         []).append(evaluation)
    alerts = []
    for (asset, check_name), evaluations in failed_checks.items():
        reason = evaluations[0].description
        days = sorted({e.partition for e in evaluations if e.partition})
        if not days and reason and (named := re.search(r"partition (\d{4}-\d{2}-\d{2})", reason)):
            days = [named.group(1)]  # a freshness check names the partition it expected
        partition = (", ".join(days) if len(days) <= 10 else f"{days[0]}, …, {days[-1]}") or _partition(run)
        metadata = evaluations[0].metadata
        if len(days) > 1:  # the counts of one day would mislead: keep the whole table's
            metadata = {k: v for k, v in metadata.items() if not k.startswith("partition_")}
            partition += f" ({len(days)} days)"
        alerts.append(Alert(
            id=f"check:{run.run_id}:{asset}:{check_name}",
            title=f"Check failed ({evaluations[0].severity.value}): {asset} {check_name}, partition {partition}",
            fields={"asset": asset, "partition": partition, "check": check_name,
                    **({"reason": reason} if reason else {}), **_freshness(metadata), **_details(metadata),
                    "run": link},
        ))
    if repaired := run.tags.get(REPAIR_TAG):
        if run_end.event_log_entry.dagster_event_type != dg.DagsterEventType.RUN_SUCCESS:
            title = f"Repair failed (ERROR): the automatic re-run of ingestion date {repaired} failed: a person must look"
        elif (IN_SYNC.asset_key.to_user_string(), IN_SYNC.name) in failed_checks:
            title = (f"Repair failed (ERROR): ingestion date {repaired}, re-run automatically, is still out of "
                     "sync with ecomm-db: a person must look")
        else:
            title = f"Repaired automatically: ingestion date {repaired} re-run, in sync with ecomm-db again"
        alerts.append(Alert(id=f"repair:{run.run_id}", title=title, fields={
            "partition": repaired, "why": "in_sync named it and the nightly lookback no longer reaches it",
            "run": link}))
    if run_end.event_log_entry.dagster_event_type == dg.DagsterEventType.RUN_FAILURE:
        steps = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.step_failure_data.error
                 for r in events if r.event_log_entry.dagster_event_type == dg.DagsterEventType.STEP_FAILURE}
        alerts.append(Alert(
            id=f"run:{run.run_id}",
            title=f"Run failed: {run.job_name}, partition {_partition(run)}",
            fields={
                "job": run.job_name,
                "partition": _partition(run),
                "reason": run_end.event_log_entry.message or "",
                **{f"step {step}": (error.message.strip().splitlines() or [""])[0] if error else "failed"
                   for step, error in steps.items()},
                "run": link,
            },
        ))
    return alerts


@dg.sensor(
    name="failure_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Tells the configured channels (alert log, Slack, email) about every failed asset "
    "check and every failed run, once each.",
)
def failure_alerts(context: dg.SensorEvaluationContext, alerting: Alerting) -> dg.SensorResult:
    channels = alerting.channels(context.log, context.instance)
    places = {name: place for name, place in json.loads(context.cursor or "{}").items() if name in channels}
    since = time.time() - FIRST_LOOK_BACK_SECONDS
    for name in channels:
        places.setdefault(name, {"after": None, "sent": []})
    # from where the channel furthest behind stands: one without a place yet starts at ``since``
    afters = [place["after"] for place in places.values()]
    start = None if None in afters else min(afters)
    down, sent, started = {}, 0, time.monotonic()

    def spent() -> bool:
        return sent >= SENDS_PER_TICK or time.monotonic() - started >= SECONDS_PER_TICK

    try:
        for run_end in run_end_events(context.instance, start, since):
            if spent():
                break
            alerts = None
            for name, channel in channels.items():
                place = places[name]
                if name in down or (run_end.storage_id <= place["after"] if place["after"] is not None
                                    else run_end.event_log_entry.timestamp < since):
                    continue
                alerts = alerts if alerts is not None else run_alerts(context.instance, run_end, alerting.dagster_url)
                for alert in alerts:
                    if alert.id in place["sent"]:
                        continue
                    if spent():
                        break
                    try:
                        channel.send(alert)
                    except Exception as error:  # noqa: BLE001 - any failure of a channel keeps its place
                        down[name] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
                        context.log.error(f"Alert channel {name} failed, will retry from {alert.id}: {down[name]}")
                        break
                    place["sent"].append(alert.id)
                    sent += 1
                else:
                    place.update(after=run_end.storage_id, sent=[])
    finally:
        for channel in channels.values():
            channel.close()
    cursor = json.dumps(places, sort_keys=True)
    report = f"{sent} alert(s) sent" + (", more wait for the next tick" if spent() else "")
    if down:
        return dg.SensorResult(skip_reason=f"{report}. Alert channels down, their alerts wait for the next tick: "
                                           + "; ".join(f"{n}: {e}" for n, e in down.items()), cursor=cursor)
    return dg.SensorResult(skip_reason=report, cursor=cursor)
