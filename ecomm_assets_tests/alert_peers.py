"""Loopback peers for the alert channels: a Slack Web API server (``chat.postMessage``) and an
SMTP server (aiosmtpd). Each records what it accepted and can be told to refuse for a while."""

import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

SLACK_TOKEN = "xoxb-0000-test-secret"


class SlackPeer:
    """POST /api/chat.postMessage with a bot token; ``down = True`` answers 503 as Slack does in an
    outage; ``rate_limit_every = n`` answers every n-th message 429 with Retry-After: 1, as Slack
    does past its rate limit. ``messages`` are the accepted request bodies."""

    def __init__(self):
        self.messages: list[dict] = []
        self.refused = 0
        self.down = False
        self.rate_limit_every, self.rate_limited, self.requests = 0, 0, 0
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
                if peer.rate_limit_every and peer.requests % peer.rate_limit_every == 0:
                    peer.rate_limited += 1
                    return self._answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
                message = json.loads(body)
                peer.messages.append(message)
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


class SmtpPeer:
    """An SMTP server on 127.0.0.1; ``down = True`` answers every message with a temporary
    failure (451). ``messages`` are the accepted ones, parsed; ``sessions`` counts the EHLOs, one
    per connection."""

    def __init__(self, port: int):
        self.messages: list[email.message.EmailMessage] = []
        self.sessions = 0
        self.down = False
        self.port = port
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.controller.start()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.down:
            return "451 4.3.0 Mail server temporarily unavailable"
        # SMTP carries CRLF line ends; the message as a mail client shows it has plain ones
        content = envelope.content.replace(b"\r\n", b"\n")
        self.messages.append(email.message_from_bytes(content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def stop(self):
        self.controller.stop()
