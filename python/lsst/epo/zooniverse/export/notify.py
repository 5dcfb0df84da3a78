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


"""Tell PIs what happened to their images.

The export service builds a `Notification` whenever a PI's batch changes
state (retrieved, quarantined, approved, rejected, published) and hands it
to a `Notifier`.  Three notifiers exist: `LogNotifier` writes to the
service log, `SmtpNotifier` sends a plain-text e-mail and
`WebhookNotifier` POSTs JSON to a URL; `MultiNotifier` combines them.
`notifier_from_config` builds one from the ``notify`` list of the service
configuration::

    notify:
      - type: log
      - type: smtp
        host: localhost
        port: 2525
        sender: epo@example.org
        username: epo
        password_env: EPO_SMTP_PASSWORD
      - type: webhook
        url: https://hooks.example.org/epo
        header_env: {Authorization: EPO_WEBHOOK_TOKEN}

Secrets (SMTP passwords, webhook tokens) are read from environment
variables (``password_env``, ``header_env``, ``url_env``) or files
(``password_file``) when a notification is sent, so they stay out of the
configuration file and follow rotation.  Error messages never contain
them.
"""

from __future__ import annotations

__all__ = [
    "EVENTS",
    "LogNotifier",
    "MultiNotifier",
    "Notification",
    "NotificationError",
    "Notifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "notifier_from_config",
]

import abc
import base64
import dataclasses
import email.utils
import http.client
import json
import logging
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any

_LOG = logging.getLogger(__name__)

EVENTS = ("retrieved", "quarantined", "approved", "rejected", "published")
"""Events a PI is told about, in the order a batch usually meets them."""

_SERVICE_NAME = "Rubin EPO export service"
_USER_AGENT = "lsst-epo-zooniverse-export"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ADDRESS = re.compile(r"^[^\s@,;<>()\[\]\"\\]+@[^\s@,;<>()\[\]\"\\]+$")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclasses.dataclass(frozen=True)
class Notification:
    """What happened to a PI's project or batch.

    Parameters
    ----------
    event : `str`
        One of `EVENTS`.
    project : `str`
        Project name.
    owner : `str`
        User name of the PI who owns the project.
    recipients : `tuple` [`str`, ...]
        E-mail addresses of the PI's contacts; may be empty.  A single
        comma-separated string is accepted and split.
    batch : `str` or `None`
        Batch the event concerns, if any.
    summary : `str`
        One human-readable line.
    details : `~collections.abc.Mapping` [`str`, `~typing.Any`], optional
        JSON-serialisable extra facts (counts, URLs, reasons).  Values that
        are not JSON types are written as strings.

    Raises
    ------
    ValueError
        Raised if ``event`` is not one of `EVENTS` or a field has the
        wrong type.
    """

    event: str
    project: str
    owner: str
    recipients: tuple[str, ...]
    batch: str | None
    summary: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"Unknown notification event {self.event!r}; known: {', '.join(EVENTS)}.")
        for name in ("project", "owner", "summary"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"Notification {name} must be a string.")
        if self.batch is not None and not isinstance(self.batch, str):
            raise ValueError("Notification batch must be a string or None.")
        recipients = self.recipients
        if isinstance(recipients, str):
            recipients = recipients.split(",")
        recipients = tuple(str(address).strip() for address in recipients if str(address).strip())
        object.__setattr__(self, "recipients", recipients)
        if not isinstance(self.details, Mapping):
            raise ValueError("Notification details must be a mapping.")
        object.__setattr__(self, "details", dict(self.details))

    def to_dict(self) -> dict[str, Any]:
        """Return the notification as JSON-compatible built-in types.

        Returns
        -------
        data : `dict` [`str`, `~typing.Any`]
            Keys ``event``, ``project``, ``owner``, ``recipients``,
            ``batch``, ``summary`` and ``details``.
        """
        return {
            "event": self.event,
            "project": self.project,
            "owner": self.owner,
            "recipients": list(self.recipients),
            "batch": self.batch,
            "summary": self.summary,
            "details": json.loads(json.dumps(dict(self.details), default=str)),
        }


class NotificationError(RuntimeError):
    """A notification could not be delivered.

    The message names the notifier and the reason but never contains
    passwords, tokens, header values or URL credentials.  An error raised
    by `MultiNotifier` lists every failure in ``failures``.
    """

    failures: tuple[tuple[Notifier, Exception], ...] = ()
    """The notifiers that failed and their errors (`MultiNotifier`)."""


class Notifier(abc.ABC):
    """Something that tells people about a `Notification`."""

    @abc.abstractmethod
    def notify(self, notification: Notification) -> None:
        """Deliver a notification.

        Parameters
        ----------
        notification : `Notification`
            What happened.

        Raises
        ------
        NotificationError
            Raised if the notification could not be delivered.
        """
        raise NotImplementedError()


class LogNotifier(Notifier):
    """Write notifications to the log.

    Parameters
    ----------
    logger : `logging.Logger`, optional
        Logger; ``lsst.epo.zooniverse.export.notify`` by default.
    level : `int`, optional
        Level of the records (`logging.INFO` by default).

    Notes
    -----
    Recipient addresses are not logged.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger if logger is not None else _LOG
        self.level = level

    def __repr__(self) -> str:
        return f"LogNotifier({self.logger.name!r})"

    def notify(self, notification: Notification) -> None:
        # Docstring inherited.
        self.logger.log(
            self.level,
            "Notification %s: project %s (owner %s), batch %s: %s %s",
            notification.event,
            notification.project,
            notification.owner,
            notification.batch or "-",
            notification.summary,
            json.dumps(dict(notification.details), default=str, sort_keys=True),
        )


def _read_secret(env: str | None, path: str | None, what: str) -> str:
    """Read a secret from an environment variable or a file.

    Parameters
    ----------
    env : `str` or `None`
        Environment variable holding the secret.
    path : `str` or `None`
        File holding the secret (one trailing newline is removed).
    what : `str`
        What the secret is, for error messages.

    Returns
    -------
    secret : `str`
        The secret.

    Raises
    ------
    NotificationError
        Raised if the variable is unset or the file unreadable; the
        message names the variable or file, never the secret.
    """
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise NotificationError(f"The environment variable {env} for the {what} is not set.")
        return value
    assert path is not None
    try:
        with open(path, encoding="utf-8") as stream:
            value = stream.read()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise NotificationError(f"Cannot read the {what} from {path}: {reason}.") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise NotificationError(f"The {what} file {path} is empty.")
    return value


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of the secrets in a text by ``***``.

    Parameters
    ----------
    text : `str`
        Text to clean.
    secrets : `~collections.abc.Iterable` [`str`]
        Values that must not appear.

    Returns
    -------
    text : `str`
        The cleaned text.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _one_line(text: str) -> str:
    """Collapse all white space (line breaks included) to single spaces.

    Parameters
    ----------
    text : `str`
        Text.

    Returns
    -------
    line : `str`
        One line.
    """
    return " ".join(text.split())


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
        return _read_secret(self.password_env, self.password_file, "SMTP password")

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
        message["Subject"] = _one_line(f"{self.subject_prefix} {notification.project}: {what}")
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
                reason = f"{err.smtp_code} {_one_line(str(response))}"
            elif isinstance(err, smtplib.SMTPRecipientsRefused):
                reason = f"all {len(err.recipients)} recipients refused"
            else:
                reason = _one_line(str(err)) or "no details"
            raise NotificationError(
                f"E-mail of the {notification.event} notification of project {notification.project} "
                f"via {self.host}:{self.port} failed: {type(err).__name__}: {_scrub(reason, secrets)}"
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: they would carry the webhook's headers to
    another URL.
    """

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


class WebhookNotifier(Notifier):
    """POST each notification as JSON to a URL.

    Parameters
    ----------
    url : `str`, optional
        ``http`` or ``https`` URL.  Credentials in the URL
        (``https://user:secret@host/``) are sent as HTTP Basic
        authentication.  Required unless ``url_env`` is given.
    headers : `~collections.abc.Mapping` [`str`, `str`], optional
        Extra request headers, inline (not for secrets).
    header_env : `~collections.abc.Mapping` [`str`, `str`], optional
        Extra request headers whose values are read from environment
        variables when sending, for example
        ``{"Authorization": "EPO_WEBHOOK_TOKEN"}`` with the variable set to
        ``Bearer <token>``.
    timeout : `float`, optional
        Timeout in seconds for connecting and for each read.
    url_env : `str`, optional
        Environment variable holding the URL, for services whose URL is
        itself the secret.

    Raises
    ------
    ValueError
        Raised for a malformed URL or header name, or a header given both
        inline and from the environment.

    Notes
    -----
    The body is `Notification.to_dict` as UTF-8 JSON.  Any answer outside
    2xx (redirects included: they are not followed, so that headers do not
    leak to another host) or a connection failure raises
    `NotificationError`.  Error messages name the webhook by scheme, host
    and port only.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        header_env: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        url_env: str | None = None,
    ) -> None:
        if (url is None) == (url_env is None):
            raise ValueError("Give exactly one of url and url_env for a webhook.")
        description = f"${url_env}"
        if url is not None:
            description = self._parse_url(url, ValueError)[1]
        headers = dict(headers or {})
        header_env = dict(header_env or {})
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"Invalid webhook header name {name!r}.")
            if not isinstance(value, str) or re.search(r"[\r\n\0]", value):
                raise ValueError(f"Invalid value for webhook header {name}.")
        for name, variable in header_env.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError(f"Invalid webhook header name {name!r}.")
            if not isinstance(variable, str) or not variable:
                raise ValueError(f"header_env of {name} must name an environment variable.")
        both = sorted({n.lower() for n in headers} & {n.lower() for n in header_env})
        if both:
            raise ValueError(f"Webhook headers {both} given both in headers and header_env.")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0:
            raise ValueError("Webhook timeout must be a positive number of seconds.")
        self._url = url
        self.url_env = url_env
        self._headers = headers
        self.header_env = header_env
        self.timeout = float(timeout)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._description = description

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._description})"

    @staticmethod
    def _parse_url(url: str, error: type[Exception]) -> tuple[str, str, str | None]:
        """Split credentials off a URL.

        Parameters
        ----------
        url : `str`
            Webhook URL.
        error : `type`
            Exception to raise for a malformed URL.

        Returns
        -------
        url : `str`
            URL without credentials.
        description : `str`
            ``scheme://host[:port]``, safe to show.
        authorization : `str` or `None`
            Basic ``Authorization`` header from the URL's credentials.
        """
        message = "The webhook URL is not a valid http(s) URL."
        if not isinstance(url, str) or re.search(r"[\s\0]", url):
            raise error(message)
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise error(message) from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise error(message)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if port is None else f"{host}:{port}"
        authorization = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            authorization = f"Basic {token}"
        clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        return clean, f"{parts.scheme.lower()}://{netloc}", authorization

    def _request_parts(self) -> tuple[str, str, dict[str, str], list[str]]:
        secrets: list[str] = []
        if self._url is not None:
            raw = self._url
        else:
            assert self.url_env is not None
            raw = _read_secret(self.url_env, None, "webhook URL")
        secrets.append(raw)
        url, description, authorization = self._parse_url(raw, NotificationError)
        parts = urllib.parse.urlsplit(raw)
        secrets += [p for p in (parts.username, parts.password, parts.query, parts.path) if p and p != "/"]
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT}
        if authorization is not None:
            headers["Authorization"] = authorization
            secrets.append(authorization)
        for name, value in self._headers.items():
            headers[name] = value
            secrets.append(value)
        for name, variable in self.header_env.items():
            value = _read_secret(variable, None, f"webhook header {name}")
            if re.search(r"[\r\n\0]", value):
                raise NotificationError(f"The environment variable {variable} holds an invalid header value.")
            headers[name] = value
            secrets.append(value)
        return url, description, headers, secrets

    def notify(self, notification: Notification) -> None:
        # Docstring inherited.
        url, description, headers, secrets = self._request_parts()
        data = json.dumps(notification.to_dict(), sort_keys=True).encode("utf-8")
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        what = f"The {notification.event} notification of project {notification.project}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                response.read(1 << 16)
        except urllib.error.HTTPError as err:
            err.close()
            reason = _scrub(_one_line(str(err.reason or "")), secrets)
            raise NotificationError(
                f"{what} to webhook {description} failed: HTTP {err.code} {reason}".rstrip()
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            cause = err.reason if isinstance(err, urllib.error.URLError) else err
            if isinstance(cause, OSError) and cause.strerror:
                reason = f"{type(cause).__name__}: {cause.strerror}"
            else:
                reason = f"{type(cause).__name__}: {_one_line(str(cause))}"
            reason = _scrub(reason, secrets)
            raise NotificationError(f"{what} to webhook {description} failed: {reason}") from None
        if not 200 <= status < 300:
            raise NotificationError(f"{what} to webhook {description} failed: HTTP {status}")
        _LOG.debug(
            "Posted the %s notification of project %s to webhook %s.",
            notification.event,
            notification.project,
            description,
        )


class MultiNotifier(Notifier):
    """Deliver each notification through several notifiers.

    Parameters
    ----------
    notifiers : `~collections.abc.Iterable` [`Notifier`]
        Notifiers, tried in order.

    Notes
    -----
    Every notifier is tried even when an earlier one fails; afterwards one
    `NotificationError` lists the failures.  An unexpected exception (a bug)
    of a notifier is logged with its traceback and counted as a failure.
    """

    def __init__(self, notifiers: Iterable[Notifier]) -> None:
        self.notifiers = tuple(notifiers)
        for notifier in self.notifiers:
            if not isinstance(notifier, Notifier):
                raise TypeError(f"{notifier!r} is not a Notifier.")

    def __repr__(self) -> str:
        return f"MultiNotifier({list(self.notifiers)!r})"

    def notify(self, notification: Notification) -> None:
        # Docstring inherited.
        failures: list[tuple[Notifier, Exception]] = []
        for notifier in self.notifiers:
            try:
                notifier.notify(notification)
            except NotificationError as err:
                failures.append((notifier, err))
            except Exception as err:
                _LOG.exception("Notifier %r failed unexpectedly.", notifier)
                failures.append((notifier, err))
        if failures:
            reasons = "; ".join(
                f"{notifier!r}: {err if isinstance(err, NotificationError) else type(err).__name__}"
                for notifier, err in failures
            )
            error = NotificationError(f"{len(failures)} of {len(self.notifiers)} notifiers failed: {reasons}")
            error.failures = tuple(failures)
            raise error


_KEYS = {
    "log": {"type", "level"},
    "smtp": {
        "type",
        "host",
        "port",
        "sender",
        "extra_recipients",
        "username",
        "password",
        "password_env",
        "password_file",
        "starttls",
        "ssl",
        "timeout",
        "subject_prefix",
        "local_hostname",
    },
    "webhook": {"type", "url", "url_env", "headers", "header_env", "timeout"},
}
_REQUIRED = {"log": set(), "smtp": {"host", "sender"}, "webhook": set()}


def _check(spec: Mapping[str, Any], where: str, key: str, types: type | tuple[type, ...]) -> None:
    """Raise `ValueError` if ``spec[key]`` is present with a wrong type.

    Parameters
    ----------
    spec : `~collections.abc.Mapping`
        Notifier settings.
    where : `str`
        Description of the settings for messages.
    key : `str`
        Key to check.
    types : `type` or `tuple` [`type`, ...]
        Allowed types.
    """
    if key not in spec:
        return
    value = spec[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in allowed:
        ok = False
    else:
        ok = isinstance(value, allowed)
    if not ok:
        names = " or ".join(t.__name__ for t in allowed)
        shown = "" if "password" in key else f", not {value!r}"
        raise ValueError(f"{where}: {key} must be {names}{shown}.")


def _string_mapping(spec: Mapping[str, Any], where: str, key: str) -> dict[str, str] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{where}: {key} must map header names to strings.")
    return dict(value)


def _build(spec: Any, index: int) -> Notifier:
    """Build one notifier from its settings.

    Parameters
    ----------
    spec : `~typing.Any`
        Settings mapping with a ``type`` key.
    index : `int`
        Position in the ``notify`` list, for messages.

    Returns
    -------
    notifier : `Notifier`
        The notifier.
    """
    where = f"notify[{index}]"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a mapping with a 'type' key, not {type(spec).__name__}.")
    kind = spec.get("type")
    if kind not in _KEYS:
        raise ValueError(f"{where}: unknown notifier type {kind!r}; known: {', '.join(sorted(_KEYS))}.")
    where = f"{where} ({kind})"
    unknown = sorted(set(map(str, spec)) - _KEYS[kind])
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(_KEYS[kind])}.")
    missing = sorted(_REQUIRED[kind] - set(spec))
    if missing:
        raise ValueError(f"{where}: missing keys {missing}.")
    if kind == "log":
        level = spec.get("level", "INFO")
        if isinstance(level, str):
            level = logging.getLevelNamesMapping().get(level.upper(), level)
        if not isinstance(level, int) or isinstance(level, bool):
            raise ValueError(f"{where}: level must be a logging level name, not {level!r}.")
        return LogNotifier(level=level)
    for key in (
        "host",
        "sender",
        "username",
        "password",
        "password_env",
        "password_file",
        "subject_prefix",
        "local_hostname",
        "url",
        "url_env",
    ):
        _check(spec, where, key, str)
    _check(spec, where, "port", int)
    _check(spec, where, "timeout", (int, float))
    _check(spec, where, "starttls", bool)
    _check(spec, where, "ssl", bool)
    _check(spec, where, "extra_recipients", (str, list, tuple))
    kwargs = {k: v for k, v in spec.items() if k != "type" and v is not None}
    try:
        if kind == "smtp":
            return SmtpNotifier(**kwargs)
        kwargs["headers"] = _string_mapping(spec, where, "headers")
        kwargs["header_env"] = _string_mapping(spec, where, "header_env")
        return WebhookNotifier(**kwargs)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def notifier_from_config(config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Notifier:
    """Build the notifier described by configuration.

    Parameters
    ----------
    config : `~collections.abc.Mapping`, `~collections.abc.Sequence` or `None`
        One of: the service configuration (a mapping with a ``notify``
        key); the ``notify`` list itself (one mapping per notifier, each
        with a ``type`` of ``log``, ``smtp`` or ``webhook`` and that
        notifier's keyword arguments); the mapping of a single notifier.
        `None` or empty means a `LogNotifier`.

    Returns
    -------
    notifier : `Notifier`
        A `LogNotifier` when nothing is configured, the notifier itself
        when one is, a `MultiNotifier` otherwise.

    Raises
    ------
    ValueError
        Raised for unknown types, unknown or missing keys, and bad values;
        the message names them (but never shows a password).

    Notes
    -----
    ``smtp`` keys: ``host``, ``sender`` (required), ``port``,
    ``extra_recipients``, ``username``, ``password_env`` or
    ``password_file`` (or the discouraged inline ``password``),
    ``starttls``, ``ssl``, ``timeout``, ``subject_prefix``,
    ``local_hostname``.  ``webhook`` keys: ``url`` or ``url_env``,
    ``headers``, ``header_env``, ``timeout``.  ``log`` keys: ``level``.
    Environment variables and files are read when a notification is sent.
    """
    if config is None:
        specs: Sequence[Any] = ()
    elif isinstance(config, Mapping):
        if "notify" in config:
            specs = config["notify"] or ()
            if isinstance(specs, Mapping):
                specs = (specs,)
        elif "type" in config:
            specs = (config,)
        elif not config:
            specs = ()
        else:
            keys = sorted(map(str, config))
            raise ValueError(f"Notifier configuration needs a 'notify' list or a 'type'; got keys {keys}.")
    else:
        specs = config
    if isinstance(specs, str | bytes) or not isinstance(specs, Sequence):
        raise ValueError("notify must be a list of notifier settings.")
    notifiers = [_build(spec, index) for index, spec in enumerate(specs)]
    if not notifiers:
        return LogNotifier()
    if len(notifiers) == 1:
        return notifiers[0]
    return MultiNotifier(notifiers)
