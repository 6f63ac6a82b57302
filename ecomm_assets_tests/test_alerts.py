"""Alerts reach a person: every failed check and every failed run, once on each channel.

The pipeline runs for real on a Dagster instance; the alert sensor ticks over that instance and
sends to a loopback Slack Web API and a loopback SMTP server, which can be taken down.
"""

import re

import dagster as dg
import pytest
from alert_peers import SLACK_TOKEN, SlackPeer, SmtpPeer
from dagster._core.utils import make_new_run_id
from support import DAYS, NIGHTLY, free_port, source_rows

from ecomm_assets.alerts.sensor import SENDS_PER_TICK, Alerting, failure_alerts

DAGSTER_URL = "http://dagster.ecomm.example:3000"


@pytest.fixture
def slack():
    peer = SlackPeer()
    yield peer
    peer.stop()


@pytest.fixture
def smtp():
    peer = SmtpPeer(free_port())
    yield peer
    peer.stop()


class AlertSensor:
    """The alert sensor as the daemon runs it: one tick after another, the cursor carried over."""

    def __init__(self, instance: dg.DagsterInstance, alerting: Alerting):
        self.instance, self.alerting, self.cursor = instance, alerting, None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"alerting": self.alerting})
        result = failure_alerts(context)
        self.cursor = result.cursor
        return result


def test_every_failed_check_and_run_reaches_each_channel_once(shop, new_pipeline, slack, smtp, tmp_path):
    (day,), = source_rows(shop, """SELECT DISTINCT to_char(updated_at AT TIME ZONE 'Asia/Bangkok', 'YYYY-MM-DD')
        FROM orders WHERE status NOT IN ('shipped', 'delivered', 'cancelled', 'pending') LIMIT 1""")
    # The day's file holds its changes and, by the lookback, those of the day before.
    (invalid_that_day,), = source_rows(shop, f"""SELECT count(*) FROM orders
        WHERE status NOT IN ('shipped', 'delivered', 'cancelled', 'pending')
          AND (updated_at AT TIME ZONE 'Asia/Bangkok')::date BETWEEN DATE '{day}' - 1 AND '{day}'""")
    alert_log = tmp_path / "alerts.jsonl"
    with dg.instance_for_test() as instance:
        pipeline = new_pipeline(instance=instance)
        # the 01:00 job alone: the shop as of its last day placed too few orders with lines on that
        # day for dbt's orders_on_every_day, which is not what this test is about
        checked = pipeline.materialize(day, selection=NIGHTLY)
        failed_checks = [e for e in checked.get_asset_check_evaluations() if not e.passed]
        sensor = AlertSensor(instance, Alerting(
            dagster_url=DAGSTER_URL, alert_log=str(alert_log),
            slack_token=SLACK_TOKEN, slack_channel="#data-alerts", slack_base_url=slack.base_url,
            smtp_host="127.0.0.1", smtp_port=smtp.port,
            email_from="dagster@ecomm.example", email_to=["data-oncall@ecomm.example"],
        ))

        # One message per failed check, on every channel.
        sensor.tick()
        assert len(failed_checks) >= 1
        assert len(slack.messages) == len(smtp.messages) == len(alert_log.read_text().splitlines()) == len(failed_checks)
        status_alert = next(m["text"] for m in slack.messages if "silver/orders valid_status" in m["text"])
        lines = status_alert.splitlines()
        assert lines[:4] == [f"Check failed (WARN): silver/orders valid_status, partition {day}",
                             "asset: silver/orders", f"partition: {day}", "check: valid_status"]
        assert re.fullmatch(rf"counts: failed_records={invalid_that_day}, partition_failed_records={invalid_that_day}, "
                            r"partition_records=\d+, passed_records=\d+", lines[4])
        assert f'failed_by_ingestion_date: {{"{day}": {invalid_that_day}}}' in lines
        assert lines[-3:] == [
            "quarantine: ecomm_dw.silver.orders_quarantine",
            "quarantined_rows: `SELECT * FROM ecomm_dw.silver.orders_quarantine "
            "WHERE array_contains(_failed_rules, 'valid_status')`",
            f"run: {DAGSTER_URL}/runs/{checked.run_id}",
        ]
        email = next(m for m in smtp.messages if m["Subject"] == status_alert.splitlines()[0])
        assert email["To"] == "data-oncall@ecomm.example"
        assert email.get_content().strip() == status_alert

        # Nothing new, nothing sent.
        sensor.tick()
        assert len(slack.messages) == len(smtp.messages) == len(failed_checks)

        # Slack is down for two ticks while a run fails: email has it at once, Slack once back.
        slack.down = True
        failed_run = pipeline.materialize(DAYS[2], DAYS[0], raise_on_error=False)
        assert not failed_run.success
        for _ in range(2):
            assert "slack: SlackApiError" in sensor.tick().skip_reason.skip_message
        assert slack.refused == 2
        assert len(smtp.messages) == len(failed_checks) + 1
        run_alert = smtp.messages[-1].get_content().strip().splitlines()
        assert run_alert[0] == f"Run failed: __ephemeral_asset_job__, partition {DAYS[2]}...{DAYS[0]}"
        assert any(line.startswith("step landing_extracts: ") and "selects no ingestion date" in line
                   for line in run_alert)
        assert run_alert[-1] == f"run: {DAGSTER_URL}/runs/{failed_run.run_id}"

        slack.down = False
        sensor.tick()
        sensor.tick()
        texts = [m["text"] for m in slack.messages]
        assert len(texts) == len(set(texts)) == len(failed_checks) + 1
        assert texts[-1] == "\n".join(run_alert)
        assert len(smtp.messages) == len(alert_log.read_text().splitlines()) == len(failed_checks) + 1


def test_a_backlog_larger_than_a_tick_reaches_each_channel_once_over_several_ticks(slack, smtp, tmp_path):
    """200 failed runs at once (a night of backfills gone wrong), Slack rate limiting: each tick
    sends at most SENDS_PER_TICK alerts over one SMTP connection and says so; the ticks after it go
    on from its cursor until every alert reached every channel once."""
    alert_log = tmp_path / "alerts.jsonl"
    with dg.instance_for_test() as instance:
        for _ in range(200):
            run = instance.add_run(dg.DagsterRun(job_name="batch_ecomm_pipeline", run_id=make_new_run_id()))
            instance.report_run_failed(run, "planted failure")
        sensor = AlertSensor(instance, Alerting(
            alert_log=str(alert_log), slack_token=SLACK_TOKEN, slack_channel="#data-alerts",
            slack_base_url=slack.base_url, smtp_host="127.0.0.1", smtp_port=smtp.port,
            email_from="dagster@ecomm.example", email_to=["data-oncall@ecomm.example"]))
        slack.rate_limit_every = 40

        reports = [sensor.tick().skip_reason.skip_message]
        assert reports[0] == f"{SENDS_PER_TICK} alert(s) sent, more wait for the next tick"
        while "more wait" in reports[-1]:
            reports.append(sensor.tick().skip_reason.skip_message)
        assert len(reports) == 3 * 200 // SENDS_PER_TICK + 1 and reports[-1] == "0 alert(s) sent"

    assert {m["text"].splitlines()[0] for m in slack.messages} == {"Run failed: batch_ecomm_pipeline, partition none"}
    for delivered in ([m["text"] for m in slack.messages], [m.get_content() for m in smtp.messages],
                      alert_log.read_text().splitlines()):
        runs = [re.search(r"/runs/([0-9a-f-]+)", text).group(1) for text in delivered]
        assert len(runs) == len(set(runs)) == 200  # every run once, on every channel
    assert slack.rate_limited >= 4  # Slack said 429 and was waited for, nothing was lost to it
    assert smtp.sessions <= len(reports)  # one connection per tick that sent mail


def test_a_throw_away_instance_keeps_its_alerts_out_of_the_project_s_alert_log(tmp_path):
    """`dagster dev -w workspace.yaml` without DAGSTER_HOME runs on a temporary instance, whose runs
    and checks are not the project's: its alerts are logged in its own folder."""
    project_log = tmp_path / "alerts.jsonl"
    home = tmp_path / ".tmp_dagster_home_1a2b3c"
    home.mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        run = instance.add_run(dg.DagsterRun(job_name="batch_ecomm_pipeline", run_id=make_new_run_id()))
        instance.report_run_failed(run, "planted failure")
        AlertSensor(instance, Alerting(alert_log=str(project_log))).tick()
    assert not project_log.exists()
    assert "Run failed: batch_ecomm_pipeline" in (home / "alerts.jsonl").read_text()
