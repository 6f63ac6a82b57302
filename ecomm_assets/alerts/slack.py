"""Slack: an alert is one message posted to a channel with ``chat.postMessage`` (slack_sdk)."""

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from ecomm_assets.alerts.alert import Alert


class SlackChannel:
    def __init__(self, token: str, channel: str, base_url: str = WebClient.BASE_URL):
        self.channel = channel
        self.client = WebClient(token=token, base_url=base_url, timeout=15)
        # Slack answers 429 with Retry-After past about one message per second and channel: wait
        # as told and try again, up to three times, before the channel counts as down for the tick.
        self.client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))

    def send(self, alert: Alert) -> None:
        """Post ``alert``; raises ``SlackApiError`` when Slack does not take it."""
        fields = "\n".join(f"*{name}:* {value}" for name, value in alert.fields.items())
        self.client.chat_postMessage(
            channel=self.channel,
            text=alert.text,  # the notification and the fallback of clients without blocks
            blocks=[
                {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": fields[:3000]}},
            ],
            unfurl_links=False,
        )

    def close(self) -> None:
        pass
