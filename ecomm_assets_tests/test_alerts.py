"""Alerts reach a person: every failed check and every failed run, once on each channel.

The pipeline runs for real on a Dagster instance; the alert sensor ticks over that instance and
sends to a loopback Slack Web API and a loopback SMTP server, which can be taken down.
"""

import re
import smtplib
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import dagster as dg
import pytest
import trustme
from alert_peers import SLACK_TOKEN, SMTP_PASSWORD, SMTP_USER, SlackPeer, SmtpPeer, shown
from dagster._core.utils import make_new_run_id
from slack_sdk.errors import SlackApiError
from support import DAYS, NIGHTLY, free_port, source_rows

from ecomm_assets.alerts.alert import Alert
from ecomm_assets.alerts.sensor import SENDS_PER_TICK, Alerting, failure_alerts
from ecomm_assets.alerts.slack import SlackChannel
from ecomm_assets.alerts.smtp import EmailChannel

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


@pytest.fixture
def ca():
    """A certificate authority of the test's own, which no system trusts."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def smtp_peer(request, **tls) -> SmtpPeer:
    peer = SmtpPeer(free_port(), **tls)
    request.addfinalizer(peer.stop)
    return peer


def email_channel(peer: SmtpPeer, **settings) -> EmailChannel:
    return EmailChannel("127.0.0.1", peer.port, "Dagster <dagster@ecomm.example>", ["data-oncall@ecomm.example"],
                        **settings)


def fail_a_run(instance: dg.DagsterInstance) -> str:
    run = instance.add_run(dg.DagsterRun(job_name="batch_ecomm_pipeline", run_id=make_new_run_id()))
    instance.report_run_failed(run, "planted failure")
    return run.run_id


ALERT = Alert(id="run:0f6c", title="Run failed: batch_ecomm_pipeline, partition none",
              fields={"job": "batch_ecomm_pipeline", "run": f"{DAGSTER_URL}/runs/0f6c"})


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


def test_a_login_is_never_sent_without_tls(request, tmp_path):
    """A server that offers no STARTTLS but takes AUTH in clear (or a man in the middle who removed
    the offer): with a login configured the channel refuses before AUTH, whatever its security."""
    peer = smtp_peer(request, auth_in_clear=True)
    with smtplib.SMTP("127.0.0.1", peer.port) as anyone:  # the peer does take passwords in clear
        anyone.login(SMTP_USER, SMTP_PASSWORD)
    assert peer.logins == [SMTP_USER]

    for security in (None, "starttls", "none"):
        channel = email_channel(peer, user=SMTP_USER, password=SMTP_PASSWORD, security=security)
        with pytest.raises(smtplib.SMTPNotSupportedError, match="the login is never sent in clear"):
            channel.send(ALERT)
        channel.close()
    assert peer.logins == [SMTP_USER] and peer.messages == []

    # through the sensor: the email channel is down with the reason, the alert waits
    with dg.instance_for_test() as instance:
        fail_a_run(instance)
        result = AlertSensor(instance, Alerting(
            alert_log=str(tmp_path / "alerts.jsonl"), smtp_host="127.0.0.1",
            smtp_port=peer.port, smtp_user=SMTP_USER, smtp_password=SMTP_PASSWORD,
            email_from="dagster@ecomm.example", email_to=["data-oncall@ecomm.example"])).tick()
    assert (f"email: SMTPNotSupportedError: SMTP server 127.0.0.1:{peer.port} does not offer STARTTLS: "
            "the login is never sent in clear") in result.skip_reason.skip_message
    assert peer.logins == [SMTP_USER] and peer.messages == []


def test_starttls_verifies_the_server_certificate(request, ca, ca_file):
    """STARTTLS with a certificate from a CA the system does not trust fails before AUTH, with a
    login or without (no fall back to clear text); trusting that CA (ECOMM_SMTP_CA_FILE) it goes
    through, encrypted, and the login is accepted."""
    peer = smtp_peer(request, tls="starttls", ca=ca)
    for login in ({"user": SMTP_USER, "password": SMTP_PASSWORD}, {}):
        channel = email_channel(peer, **login)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            channel.send(ALERT)
        channel.close()
    assert peer.logins == [] and peer.messages == []

    channel = email_channel(peer, user=SMTP_USER, password=SMTP_PASSWORD, ca_file=ca_file)
    channel.send(ALERT)
    channel.send(ALERT)
    channel.close()
    assert peer.logins == [SMTP_USER] and peer.encrypted == [True, True] and peer.sessions == 3


def test_implicit_tls_on_port_465s_kind_of_listener(request, ca, ca_file, tmp_path):
    """ECOMM_SMTP_SECURITY=ssl (the default on port 465): TLS from the first byte, verified."""
    assert EmailChannel("smtp.ecomm.example", 465, "dagster@ecomm.example", []).security == "ssl"
    assert EmailChannel("smtp.ecomm.example", 587, "dagster@ecomm.example", []).security == "starttls"
    peer = smtp_peer(request, tls="ssl", ca=ca)
    settings = dict(alert_log=str(tmp_path / "alerts.jsonl"), smtp_host="127.0.0.1", smtp_port=peer.port,
                    smtp_security="ssl", smtp_user=SMTP_USER, smtp_password=SMTP_PASSWORD,
                    email_from="dagster@ecomm.example", email_to=["data-oncall@ecomm.example"])
    with dg.instance_for_test() as instance:
        run_id = fail_a_run(instance)
        untrusted = AlertSensor(instance, Alerting(**settings)).tick().skip_reason.skip_message
        assert "email: SSLCertVerificationError" in untrusted and peer.logins == []
        trusted = AlertSensor(instance, Alerting(**settings, smtp_ca_file=ca_file)).tick()  # a first tick again
        assert trusted.skip_reason.skip_message == "2 alert(s) sent"  # the alert log's and the email
    assert peer.logins == [SMTP_USER] and peer.encrypted == [True]
    assert peer.messages[0].get_content().strip().endswith(f"/runs/{run_id}")


def test_smtp_security_settings_are_checked_when_the_code_location_loads(monkeypatch, ca_file):
    from ecomm_assets.environment import alerting

    for name, value in {"ECOMM_SMTP_HOST": "smtp.ecomm.example", "ECOMM_SMTP_PORT": "465",
                        "ECOMM_ALERT_EMAIL_FROM": "dagster@ecomm.example", "ECOMM_ALERT_EMAIL_TO": "a@ecomm.example",
                        "ECOMM_SMTP_CA_FILE": ca_file}.items():
        monkeypatch.setenv(name, value)
    settings = alerting()
    assert (settings.smtp_security, settings.smtp_ca_file) == (None, ca_file)  # None: ssl, from port 465
    monkeypatch.setenv("ECOMM_SMTP_SECURITY", "tls")
    with pytest.raises(ValueError, match="ECOMM_SMTP_SECURITY='tls': expected one of starttls, ssl, none"):
        alerting()
    monkeypatch.setenv("ECOMM_SMTP_SECURITY", "starttls")
    monkeypatch.setenv("ECOMM_SMTP_CA_FILE", ca_file + ".missing")
    with pytest.raises(ValueError, match="ECOMM_SMTP_CA_FILE=.*: no such file"):
        alerting()


def test_an_alert_sent_again_carries_the_same_message_id(smtp):
    """Delivery is at least once: a re-sent alert has the Message-ID of the first sending, so that
    the receiver can drop the copy; every message has an RFC 5322 Date."""
    other = Alert(id="run:7a21", title="Run failed: batch_ecomm_pipeline, partition none")
    for alert in (ALERT, ALERT, other):  # ALERT again on a later tick: a connection of its own
        channel = email_channel(smtp)
        channel.send(alert)
        channel.close()
    first, again, second = smtp.messages
    assert re.fullmatch(r"<alert\.[0-9a-f]{32}@ecomm\.example>", first["Message-ID"])
    assert again["Message-ID"] == first["Message-ID"] != second["Message-ID"]
    for message in smtp.messages:
        date = parsedate_to_datetime(message["Date"])
        assert date.tzinfo is not None and abs(datetime.now(UTC) - date) < timedelta(minutes=1)


def test_slack_shows_the_alert_s_words_as_written_and_links_as_links(slack):
    """&, < and > in an alert are escaped (Slack's only three control characters): no mention, no
    link, no quote is made of them, while the run link stays a link."""
    run = f"{DAGSTER_URL}/runs/0f6c?logs=step&level=error"
    alert = Alert(id="check:1", title="Check failed (WARN): <!channel> amounts < 0 & refunds > sales",
                  fields={"reason": "> 3 rows with <b>negative</b> totals & <@U024BE7LH> <https://evil.example|run>",
                          "run": run})
    SlackChannel(SLACK_TOKEN, "#data-alerts", slack.base_url).send(alert)
    message, = slack.messages
    section = message["blocks"][1]["text"]["text"]
    assert shown(message["text"]) == alert.text
    assert shown(section) == "\n".join(f"*{name}:* {value}" for name, value in alert.fields.items())
    assert section.endswith(f"*run:* <{run.replace('&', '&amp;')}|{run.replace('&', '&amp;')}>")
    assert message["blocks"][0]["text"] == {"type": "plain_text", "text": alert.title}


def test_slack_429_is_waited_for_as_retry_after_says(slack):
    slack.rate_limit_every, slack.retry_after = 2, 2
    channel = SlackChannel(SLACK_TOKEN, "#data-alerts", slack.base_url)
    channel.send(ALERT)
    channel.send(ALERT)  # 429, Retry-After: 2
    assert slack.rate_limited == 1 and len(slack.messages) == 2
    assert 2 <= slack.request_times[2] - slack.request_times[1] < 4


def test_slack_not_in_channel_says_how_to_fix_it(slack, tmp_path):
    slack.outside = {"#data-alerts"}
    with pytest.raises(SlackApiError, match="invite it to the channel .* or grant it the chat:write.public scope"):
        SlackChannel(SLACK_TOKEN, "#data-alerts", slack.base_url).send(ALERT)
    with dg.instance_for_test() as instance:
        fail_a_run(instance)
        sensor = AlertSensor(instance, Alerting(alert_log=str(tmp_path / "alerts.jsonl"), slack_token=SLACK_TOKEN,
                                                slack_channel="#data-alerts", slack_base_url=slack.base_url))
        result = sensor.tick()
        assert ("slack: SlackApiError: the Slack app is not a member of #data-alerts: invite it to the channel "
                "(/invite @app) or grant it the chat:write.public scope") in result.skip_reason.skip_message
        # Invited: the alert Slack never had (its very first) arrives, though the alert log went on.
        slack.outside = set()
        assert sensor.tick().skip_reason.skip_message == "1 alert(s) sent"
        assert len(slack.messages) == 1


def test_a_post_whose_answer_is_lost_is_not_posted_again_within_the_tick(slack, smtp, tmp_path):
    """Slack took the post, then the connection broke before its answer: slack_sdk's default
    connection-error retry would post it a second time at once. It is not retried: Slack counts
    as down for the tick and the next tick sends the alert again (at least once: a copy is the
    price of never losing one)."""
    with dg.instance_for_test() as instance:
        sensor = AlertSensor(instance, Alerting(
            alert_log=str(tmp_path / "alerts.jsonl"), slack_token=SLACK_TOKEN, slack_channel="#data-alerts",
            slack_base_url=slack.base_url, smtp_host="127.0.0.1", smtp_port=smtp.port,
            email_from="dagster@ecomm.example", email_to=["data-oncall@ecomm.example"]))
        fail_a_run(instance)
        assert sensor.tick().skip_reason.skip_message == "3 alert(s) sent"
        run_id = fail_a_run(instance)
        slack.drop_after_post = 1
        assert "slack: RemoteDisconnected: Remote end closed connection without response" in \
            sensor.tick().skip_reason.skip_message
        assert len(slack.messages) == 2 and len(smtp.messages) == 2  # posted once, not retried
        assert sensor.tick().skip_reason.skip_message == "1 alert(s) sent"
        assert sensor.tick().skip_reason.skip_message == "0 alert(s) sent"
    assert [m["text"] for m in slack.messages[1:]] == ["Run failed: batch_ecomm_pipeline, partition none\n"
                                                        "job: batch_ecomm_pipeline\npartition: none\n"
                                                        "reason: planted failure\n"
                                                        f"run: http://127.0.0.1:3000/runs/{run_id}"] * 2
    assert len(smtp.messages) == 2
