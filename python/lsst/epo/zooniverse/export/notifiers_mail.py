# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""`SmtpNotifier`: tell PIs by e-mail.

Import it from `lsst.epo.zooniverse.export.notify`.
"""

from __future__ import annotations

__all__ = ["SmtpNotifier"]

import base64
import email.utils
import json
import logging
import re
import smtplib
import ssl
from collections.abc import Iterable
from email.message import EmailMessage

from .notification import NOTIFY_LOGGER, Notification, NotificationError, Notifier, one_line
from .redaction import Redactor
from .secrets import SecretError, read_secret

_LOG = logging.getLogger(NOTIFY_LOGGER)

_SERVICE_NAME = "Rubin EPO export service"
_ADDRESS = re.compile(r"^[^\s@,;<>()\[\]\"\\]+@[^\s@,;<>()\[\]\"\\]+$")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class SmtpNotifier(Notifier):
    """Send each notification as a plain-text e-mail.

    Parameters
    ----------
    host : `str`
        SMTP server.
    port : `int`, optional
        SMTP port (25; use 587 with ``starttls`` or 465 with ``ssl`` as your
        server wants).
    sender : `str`
        ``From`` address.
    extra_recipients : `~collections.abc.Iterable` [`str`], optional
        Addresses (EPO staff) that receive every notification in ``Cc``.
    username : `str`, optional
        User name for SMTP AUTH; needs a password.
    password : `str`, optional
        Password, inline.  Discouraged: prefer ``password_env`` or
        ``password_file``.
    password_env : `str`, optional
        Environment variable holding the password.
    password_file : `str`, optional
        File holding the password.
    starttls : `bool`, optional
        Upgrade the connection with STARTTLS before authenticating.
    ssl : `bool`, optional
        Connect with implicit TLS (SMTPS).
    timeout : `float`, optional
        Socket timeout in seconds.
    subject_prefix : `str`, optional
        Start of every subject line.
    local_hostname : `str`, optional
        Name sent in ``EHLO``; the machine's fully qualified name by
        default.

    Raises
    ------
    ValueError
        Raised for inconsistent settings (a password source without user
        name, more than one password source, ``starttls`` with ``ssl``, a
        malformed sender).

    Notes
    -----
    One message goes to the notification's recipients (``To``) and
    ``extra_recipients`` (``Cc``).  When both are empty nothing is sent.
    Malformed recipient addresses are skipped with a warning.  The password
    is read when a message is sent.  Certificates are verified against
    the system's trust store.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int = 25,
        sender: str,
        extra_recipients: Iterable[str] = (),
        username: str | None = None,
        password: str | None = None,
        password_env: str | None = None,
        password_file: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 30.0,
        subject_prefix: str = "[Rubin EPO]",
        local_hostname: str | None = None,
    ) -> None:
        if not host or not isinstance(host, str):
            raise ValueError("SMTP host must be a non-empty string.")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"SMTP port must be an integer in 1..65535, not {port!r}.")
        if not isinstance(sender, str) or not _ADDRESS.match(sender):
            raise ValueError(f"SMTP sender {sender!r} is not an e-mail address.")
        if isinstance(extra_recipients, str):
            extra_recipients = extra_recipients.split(",")
        if not all(isinstance(a, str) for a in extra_recipients):
            raise ValueError("extra_recipients must be e-mail address strings.")
        extras = tuple(a.strip() for a in extra_recipients if a.strip())
        bad = [a for a in extras if not _ADDRESS.match(a)]
        if bad:
            raise ValueError(f"extra_recipients {bad} are not e-mail addresses.")
        sources = [
            name
            for name, value in (
                ("password", password),
                ("password_env", password_env),
                ("password_file", password_file),
            )
            if value is not None
        ]
        if len(sources) > 1:
            raise ValueError(f"Give only one of {', '.join(sources)}.")
        if sources and not username:
            raise ValueError(f"SMTP {sources[0]} given without username.")
        if username and not sources:
            raise ValueError("SMTP username given without password, password_env or password_file.")
        if starttls and ssl:
            raise ValueError("Use either starttls or ssl, not both.")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
            raise ValueError("SMTP timeout must be a positive number of seconds.")
        self.host = host
        self.port = port
        self.sender = sender
        self.extra_recipients = extras
        self.username = username
        self._password = password
        self.password_env = password_env
        self.password_file = password_file
        self.starttls = bool(starttls)
        self.ssl = bool(ssl)
        self.timeout = float(timeout)
        self.subject_prefix = subject_prefix
        self.local_hostname = local_hostname
        if username and not (starttls or ssl) and host.lower() not in _LOOPBACK:
            _LOG.warning(
                "SMTP credentials for %s:%d will be sent without TLS; set starttls or ssl.", host, port
            )

    def __repr__(self) -> str:
        return f"SmtpNotifier({self.host}:{self.port})"

    def _password_value(self) -> str | None:
        if self._password is not None:
            return self._password
        if self.password_env is None and self.password_file is None:
            return None
        try:
            return read_secret(env=self.password_env, file=self.password_file, what="SMTP password")
        except SecretError as err:
            raise NotificationError(str(err)) from None

    def _recipients(self, notification: Notification) -> tuple[list[str], list[str]]:
        seen: set[str] = set()
        lists: tuple[list[str], list[str]] = ([], [])
        for target, addresses in zip(lists, (notification.recipients, self.extra_recipients)):
            for address in addresses:
                if not _ADDRESS.match(address):
                    _LOG.warning(
                        "Skipping malformed recipient address %r of project %s.",
                        address,
                        notification.project,
                    )
                elif address.lower() not in seen:
                    seen.add(address.lower())
                    target.append(address)
        return lists

    def format_message(self, notification: Notification) -> EmailMessage:
        """Build the e-mail of a notification (without sending it).

        Parameters
        ----------
        notification : `Notification`
            What happened.

        Returns
        -------
        message : `email.message.EmailMessage`
            Plain-text message with ``From``, ``To``, ``Cc`` (if any),
            ``Subject``, ``Date`` and ``Message-ID`` headers.
        """
        return self._format(notification, *self._recipients(notification))

    def _format(self, notification: Notification, to: list[str], cc: list[str]) -> EmailMessage:
        what = notification.event
        if notification.batch:
            what = f"batch {notification.batch} {what}"
        message = EmailMessage()
        message["From"] = self.sender
        if to:
            message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        message["Subject"] = one_line(f"{self.subject_prefix} {notification.project}: {what}")
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = email.utils.make_msgid(domain=self.sender.rpartition("@")[2])
        message["Auto-Submitted"] = "auto-generated"
        lines = [
            notification.summary,
            "",
            f"Event:   {notification.event}",
            f"Project: {notification.project}",
            f"Owner:   {notification.owner}",
            f"Batch:   {notification.batch or '-'}",
        ]
        if notification.details:
            lines += ["", "Details:"]
            for key in sorted(notification.details, key=str):
                value = notification.details[key]
                text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
                lines.append(f"  {key}: {text}")
        lines += ["", "--", f"This message was sent automatically by the {_SERVICE_NAME}."]
        message.set_content("\n".join(lines) + "\n")
        return message

    def notify(self, notification: Notification) -> None:
        # Docstring inherited.
        to, cc = self._recipients(notification)
        if not to and not cc:
            _LOG.debug(
                "No recipients for the %s notification of project %s; no e-mail sent.",
                notification.event,
                notification.project,
            )
            return
        message = self._format(notification, to, cc)
        password = self._password_value()
        secrets = []
        if password is not None:
            secrets = [
                password,
                base64.b64encode(password.encode()).decode(),
                base64.b64encode(f"\0{self.username}\0{password}".encode()).decode(),
            ]
        try:
            smtp: smtplib.SMTP
            context = ssl.create_default_context() if self.ssl or self.starttls else None
            if self.ssl:
                smtp = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=context,
                )
            else:
                smtp = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            with smtp:
                if self.starttls:
                    smtp.starttls(context=context)
                if self.username and password is not None:
                    smtp.login(self.username, password)
                refused = smtp.send_message(message, from_addr=self.sender, to_addrs=to + cc)
        except (smtplib.SMTPException, OSError, UnicodeError) as err:
            if isinstance(err, smtplib.SMTPResponseException):
                response = err.smtp_error
                if isinstance(response, bytes):
                    response = response.decode("utf-8", "replace")
                reason = f"{err.smtp_code} {one_line(str(response))}"
            elif isinstance(err, smtplib.SMTPRecipientsRefused):
                reason = f"all {len(err.recipients)} recipients refused"
            else:
                reason = one_line(str(err)) or "no details"
            reason = Redactor(secrets, environ={}).redact(reason)
            raise NotificationError(
                f"E-mail of the {notification.event} notification of project {notification.project} "
                f"via {self.host}:{self.port} failed: {type(err).__name__}: {reason}"
            ) from None
        if refused:
            _LOG.warning(
                "SMTP server %s:%d refused %d of %d recipients of the %s notification of %s.",
                self.host,
                self.port,
                len(refused),
                len(to + cc),
                notification.event,
                notification.project,
            )
        _LOG.debug(
            "E-mailed the %s notification of project %s to %d recipients.",
            notification.event,
            notification.project,
            len(to + cc) - len(refused),
        )
