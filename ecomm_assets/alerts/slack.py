"""Slack: an alert is one message posted to a channel with ``chat.postMessage`` (slack_sdk).

Our text is escaped as Slack's formatting reference asks (``&``, ``<``, ``>`` only), so that an
alert's words are never read as a link, a mention or a quote; links are the ones we write.
A post whose connection breaks is not retried here: Slack may have posted it before the answer
was lost, and ``chat.postMessage`` has no idempotency key. The channel counts as down for the tick
and the sensor sends the alert again on the next one (at least once).
"""

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from ecomm_assets.alerts.alert import Alert


def escape(text: str) -> str:
    """``text`` as Slack shows it literally: its three control characters as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A Slack link ``<url|label>``; a ``|`` in the URL would end it early, so it is percent-encoded."""
    return f"<{escape(url).replace('|', '%7C')}|{escape(label)}>"


def _value(value: str) -> str:
    return link(value, value) if value.startswith(("https://", "http://")) else escape(value)


class SlackChannel:
    def __init__(self, token: str, channel: str, base_url: str = WebClient.BASE_URL):
        self.channel = channel
        # The only retries: Slack answers 429 with Retry-After past about one message per second
        # and channel; wait as told and try again, up to three times, before the channel counts as
        # down for the tick. Not slack_sdk's default ConnectionErrorRetryHandler (see above).
        self.client = WebClient(token=token, base_url=base_url, timeout=15,
                                retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])

    def send(self, alert: Alert) -> None:
        """Post ``alert``; raises ``SlackApiError`` when Slack does not take it."""
        fields = "\n".join(f"*{escape(name)}:* {_value(value)}" for name, value in alert.fields.items())
        try:
            self.client.chat_postMessage(
                channel=self.channel,
                text=escape(alert.text),  # the notification and the fallback of clients without blocks
                blocks=[
                    # plain_text is shown as is: no escaping
                    {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": fields[:3000]}},
                ],
                unfurl_links=False,
            )
        except SlackApiError as error:
            if error.response.get("error") != "not_in_channel":
                raise
            raise SlackApiError(f"the Slack app is not a member of {self.channel}: invite it to the channel "
                                "(/invite @app) or grant it the chat:write.public scope", error.response) from error

    def close(self) -> None:
        pass
