"""Loopback peers for the alert channels: a Slack Web API server (``chat.postMessage``) and an
SMTP server (aiosmtpd). Each records what it accepted and can be told to refuse for a while."""

import email
import email.policy
import json
import re
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SLACK_TOKEN = "xoxb-0000-test-secret"
SMTP_USER, SMTP_PASSWORD = "dagster@ecomm.example", "smtp-test-secret"


class SlackPeer:
    """POST /api/chat.postMessage with a bot token; ``down = True`` answers 503 as Slack does in an
    outage; ``rate_limit_every = n`` answers every n-th message 429 with Retry-After:
    ``retry_after``, as Slack does past its rate limit. A channel in ``outside`` (the app is not a
    member, nor has chat:write.public) answers ``not_in_channel``. ``drop_after_post = n``: the
    next n messages are posted, then the connection closes without an answer (a connection lost
    after Slack took the post). ``messages`` are the posted request bodies; ``request_times`` when
    each message request arrived."""

    def __init__(self):
        self.messages: list[dict] = []
        self.refused = 0
        self.down = False
        self.outside: set[str] = set()
        self.drop_after_post = 0
        self.rate_limit_every, self.rate_limited, self.requests, self.retry_after = 0, 0, 0, 1
        self.request_times: list[float] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/api/chat.postMessage":
                    return self._answer(404, {"ok": False, "error": "unknown_method"})
                if self.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
                    return self._answer(200, {"ok": False, "error": "invalid_auth"})
                if peer.down:
                    peer.refused += 1
                    return self._answer(503, {"ok": False, "error": "service_unavailable"})
                peer.requests += 1
                peer.request_times.append(time.monotonic())
                if peer.rate_limit_every and peer.requests % peer.rate_limit_every == 0:
                    peer.rate_limited += 1
                    return self._answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(peer.retry_after)})
                message = json.loads(body)
                if message["channel"] in peer.outside:
                    return self._answer(200, {"ok": False, "error": "not_in_channel"})
                peer.messages.append(message)
                if peer.drop_after_post:
                    peer.drop_after_post -= 1
                    self.close_connection = True  # no answer: the client sees the connection end
                    return
                return self._answer(200, {"ok": True, "channel": message["channel"], "ts": f"{len(peer.messages)}.0001"})

            def _answer(self, status: int, payload: dict, headers: dict[str, str] | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def shown(mrkdwn: str) -> str:
    """What Slack shows for ``mrkdwn`` (its formatting reference): ``<url|label>`` as the label,
    ``<url>`` as the URL, ``<!channel>``, ``<@U…>`` and ``<#C…>`` as mentions (``@channel``,
    ``@U…``, ``#C…``), then ``&lt;``, ``&gt;`` and ``&amp;`` as the characters."""
    def control(match: re.Match) -> str:
        target, _, label = match.group(1).partition("|")
        return "@" + target[1:] if target.startswith("!") else label or target

    return re.sub(r"<([^<>]*)>", control, mrkdwn).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def server_certificate(ca: trustme.CA) -> ssl.SSLContext:
    """A server's TLS context with a certificate for 127.0.0.1 issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


class SmtpPeer:
    """An SMTP server on 127.0.0.1; ``down = True`` answers every message with a temporary
    failure (451). ``messages`` are the accepted ones, parsed, and ``encrypted`` says for each
    whether it came over TLS; ``sessions`` counts the connections (their first EHLO); ``logins``
    the AUTH attempts (the user names).

    ``tls``: None (plain SMTP), ``"starttls"`` (offers STARTTLS, AUTH only after it, as a
    submission server on 587 does) or ``"ssl"`` (implicit TLS, as on 465), with a certificate
    from ``ca``. ``auth_in_clear`` offers AUTH without TLS: a server that does not offer STARTTLS
    (or whose offer a man in the middle removed) but takes passwords in clear. The one account is
    SMTP_USER with SMTP_PASSWORD."""

    def __init__(self, port: int, tls: str | None = None, ca: trustme.CA | None = None, auth_in_clear: bool = False):
        self.messages: list[email.message.EmailMessage] = []
        self.encrypted: list[bool] = []
        self.logins: list[str] = []
        self.sessions = 0
        self.down = False
        self.port = port
        context = server_certificate(ca) if tls else None
        self.controller = Controller(
            self, hostname="127.0.0.1", port=port, authenticator=self._authenticate,
            # aiosmtpd sees no TLS on an implicit TLS connection: AUTH must be allowed "in clear" there
            auth_require_tls=not (auth_in_clear or tls == "ssl"),
            **({"ssl_context": context} if tls == "ssl" else {"tls_context": context} if tls == "starttls" else {}),
        )
        self.controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append(auth_data.login.decode())
        return AuthResult(success=auth_data == LoginPassword(SMTP_USER.encode(), SMTP_PASSWORD.encode()))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if session.ssl is None:  # not the EHLO that follows STARTTLS on the same connection
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.down:
            return "451 4.3.0 Mail server temporarily unavailable"
        # SMTP carries CRLF line ends; the message as a mail client shows it has plain ones
        content = envelope.content.replace(b"\r\n", b"\n")
        self.messages.append(email.message_from_bytes(content, policy=email.policy.default))
        self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted for delivery"

    def stop(self):
        self.controller.stop()
