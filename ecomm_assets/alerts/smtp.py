"""Email: an alert is one plain-text message sent over SMTP, all the alerts of a sensor tick over
one connection.

TLS always verifies the server's certificate and name (the system's CAs, or those of ``ca_file``).
``security`` is ``ssl`` (implicit TLS, the default on port 465), ``starttls`` (the default on other
ports: STARTTLS when the server offers it) or ``none`` (never TLS). A login is only ever sent over
TLS: without it the connection is refused before AUTH.
"""

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from ecomm_assets.alerts.alert import Alert

SECURITIES = ("starttls", "ssl", "none")


def message_id(alert: Alert, sender: str) -> str:
    """The Message-ID of ``alert``: the same each time it is sent, so that a receiver drops a copy
    the sensor sends again (at least once); the domain is the sender's."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    digest = hashlib.sha256(alert.id.encode()).hexdigest()[:32]
    return f"<alert.{digest}@{domain if at else 'ecomm-data-pipeline'}>"


class EmailChannel:
    def __init__(self, host: str, port: int, sender: str, recipients: list[str],
                 user: str | None = None, password: str | None = None,
                 security: str | None = None, ca_file: str | None = None):
        self.host, self.port = host, port
        self.sender, self.recipients = sender, recipients
        self.user, self.password = user, password
        self.security = security or ("ssl" if port == 465 else "starttls")
        if self.security not in SECURITIES:
            raise ValueError(f"SMTP security {self.security!r}: expected one of {', '.join(SECURITIES)}")
        self.ca_file = ca_file
        self._smtp: smtplib.SMTP | None = None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        tls = ssl.create_default_context(cafile=self.ca_file)
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=15, context=tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=15)
        try:
            smtp.ehlo()
            if self.security == "starttls" and smtp.has_extn("starttls"):
                smtp.starttls(context=tls)
                smtp.ehlo()
            if self.user:
                if not isinstance(smtp.sock, ssl.SSLSocket):
                    why = "does not offer STARTTLS" if self.security == "starttls" else "is used without TLS (security none)"
                    raise smtplib.SMTPNotSupportedError(
                        f"SMTP server {self.host}:{self.port} {why}: the login is never sent in clear. "
                        "Use a server or port with TLS (security ssl for implicit TLS on 465)")
                smtp.login(self.user, self.password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = alert.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = message_id(alert, self.sender)
        message.set_content(alert.text)
        self._connection().send_message(message)

    def close(self) -> None:
        """End the tick's connection, if there is one."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
