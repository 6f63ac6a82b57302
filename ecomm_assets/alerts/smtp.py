"""Email: an alert is one plain-text message sent over SMTP (STARTTLS when the server offers it),
all the alerts of a sensor tick over one connection."""

import smtplib
from email.message import EmailMessage

from ecomm_assets.alerts.alert import Alert


class EmailChannel:
    def __init__(self, host: str, port: int, sender: str, recipients: list[str],
                 user: str | None = None, password: str | None = None):
        self.host, self.port = host, port
        self.sender, self.recipients = sender, recipients
        self.user, self.password = user, password
        self._smtp: smtplib.SMTP | None = None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp = smtplib.SMTP(self.host, self.port, timeout=15)
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls()
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
            self._smtp = smtp
        return self._smtp

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = alert.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
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
