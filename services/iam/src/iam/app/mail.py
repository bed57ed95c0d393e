"""Outgoing mail over SMTP (the standard library's smtplib, in a worker thread).

Messages leave after the transaction that made their token committed, in a background
task: a request answers in the same time whether or not a message was sent (sign-up and
registration must not tell an existing address from a new one by timing), and an SMTP
server that is down costs the user a resend, never a 500. The body carries the token;
nothing here logs it (a failure logs the recipient's domain and the error only).
"""

import asyncio
import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str

    def __repr__(self) -> str:  # the body holds a token
        return f"Mail(subject={self.subject!r})"


class Mailer:
    def __init__(self, host: str | None, port: int = 25, sender: str = "gpucloud@localhost"):
        self.host = host
        self.port = port
        self.sender = sender
        self._tasks: set[asyncio.Task[None]] = set()

    def send_later(self, mails: list[Mail]) -> None:
        for mail in mails:
            task = asyncio.get_running_loop().create_task(self._send(mail))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, mail: Mail) -> None:
        if not self.host:
            log.warning("GPUCLOUD_SMTP_HOST is not set: a message (%s) was not sent", mail.subject)
            return
        try:
            await asyncio.to_thread(self._deliver, mail)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(
                "sending a message to an address at %s failed: %s",
                mail.to.rpartition("@")[2], type(exc).__name__,
            )  # fmt: skip

    def _deliver(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        assert self.host is not None
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(message)

    async def drain(self) -> None:
        """Wait for the messages in flight (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
