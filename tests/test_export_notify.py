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


"""Tests of the export service's notifiers against real SMTP and HTTP
servers on the loopback interface.
"""

import base64
import email
import email.policy
import http.server
import json
import logging
import socket
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from lsst.epo.zooniverse.export.notify import (
    EVENTS,
    LogNotifier,
    MultiNotifier,
    Notification,
    NotificationError,
    Notifier,
    SmtpNotifier,
    WebhookNotifier,
    notifier_from_config,
)

PASSWORD = "s3cret-Pa55word"
TOKEN = "Bearer tok-9f8e7d6c5b4a"

# The test servers speak plain text on the loopback interface.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notification(**changes) -> Notification:
    values = {
        "event": "published",
        "project": "galaxy-zoo-rubin",
        "owner": "pi_smith",
        "recipients": ("pi@example.org", "co-pi@example.org"),
        "batch": "batch-0001",
        "summary": "12 images of batch batch-0001 are public.",
        "details": {"n_images": 12, "url": "https://epo.example.org/galaxy-zoo-rubin/batch-0001/"},
    }
    values.update(changes)
    return Notification(**values)


# ----------------------------------------------------------------------
# Servers.


class _Mailbox:
    """aiosmtpd handler that keeps every message."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=email.policy.default),
                "login": session.auth_data,
            }
        )
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"epo"
        and auth_data.password == (PASSWORD.encode())
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@pytest.fixture
def smtp_server():
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_auth_server():
    mailbox = _Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=_authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


class _Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.requests = []
        self.status = 200
        self.location = None
        self.delay = 0.0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        # The timeout test hangs up before the answer: not an error here.
        pass


class _ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.server.delay:
            time.sleep(self.server.delay)
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):
        pass


@pytest.fixture
def receiver():
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _secrets_absent(text, *secrets):
    for secret in secrets:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text


class _Recorder(Notifier):
    def __init__(self):
        self.received = []

    def notify(self, notification):
        self.received.append(notification)


class _Broken(Notifier):
    def notify(self, notification):
        raise KeyError("bug")


# ----------------------------------------------------------------------
# Notification.


def test_notification_validation():
    assert "published" in EVENTS
    with pytest.raises(ValueError, match="deleted"):
        _notification(event="deleted")
    with pytest.raises(ValueError, match="details"):
        _notification(details=[1, 2])
    notification = _notification(recipients=" a@example.org, ,b@example.org ")
    assert notification.recipients == ("a@example.org", "b@example.org")
    assert _notification(details={}).details == {}
    assert hash(notification) == hash(notification)


def test_notification_to_dict():
    notification = _notification(details={"n": 3, "when": time.gmtime(0), "path": object()})
    data = notification.to_dict()
    json.dumps(data)
    assert data["event"] == "published"
    assert data["recipients"] == ["pi@example.org", "co-pi@example.org"]
    assert data["details"]["n"] == 3
    assert isinstance(data["details"]["path"], str)


def test_log_notifier(caplog):
    caplog.set_level(logging.INFO, logger="lsst.epo.zooniverse.export.notify")
    LogNotifier().notify(_notification())
    (record,) = [r for r in caplog.records if r.name == "lsst.epo.zooniverse.export.notify"]
    assert record.levelno == logging.INFO
    text = record.getMessage()
    assert "published" in text and "galaxy-zoo-rubin" in text and "batch-0001" in text
    assert "pi@example.org" not in text


# ----------------------------------------------------------------------
# SMTP.


def test_smtp_sends_mail(smtp_server):
    controller, mailbox = smtp_server
    notifier = SmtpNotifier(
        "127.0.0.1", port=controller.port, sender="epo@example.org", extra_recipients=["staff@example.org"]
    )
    notifier.notify(_notification())
    (sent,) = mailbox.messages
    assert sent["from"] == "epo@example.org"
    assert sent["to"] == ["pi@example.org", "co-pi@example.org", "staff@example.org"]
    message = sent["message"]
    assert "published" in message["Subject"] and "galaxy-zoo-rubin" in message["Subject"]
    assert message["To"] == "pi@example.org, co-pi@example.org"
    assert message["Cc"] == "staff@example.org"
    assert message["From"] == "epo@example.org"
    assert message["Message-ID"]
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "12 images of batch batch-0001 are public." in body
    assert "n_images: 12" in body
    assert "https://epo.example.org/galaxy-zoo-rubin/batch-0001/" in body
    assert "pi_smith" in body


def test_smtp_recipients(smtp_server, caplog):
    controller, mailbox = smtp_server
    notifier = SmtpNotifier("127.0.0.1", port=controller.port, sender="epo@example.org")
    caplog.set_level(logging.DEBUG, logger="lsst.epo.zooniverse.export.notify")
    # Nobody to tell: nothing sent.
    notifier.notify(_notification(recipients=()))
    assert mailbox.messages == []
    assert any("no e-mail sent" in r.getMessage() for r in caplog.records)
    # Duplicates and malformed addresses are dropped.
    notifier.notify(
        _notification(recipients=("PI@example.org", "pi@example.org", "bad\r\nBcc: x@evil.org"), batch=None)
    )
    (sent,) = mailbox.messages
    assert sent["to"] == ["PI@example.org"]
    assert "batch" not in sent["message"]["Subject"]
    assert any("malformed" in r.getMessage() for r in caplog.records)


def test_smtp_auth(smtp_auth_server, monkeypatch, tmp_path):
    controller, mailbox = smtp_auth_server
    monkeypatch.setenv("EPO_SMTP_PASSWORD", PASSWORD)
    notifier = notifier_from_config(
        [
            {
                "type": "smtp",
                "host": "127.0.0.1",
                "port": controller.port,
                "sender": "epo@example.org",
                "username": "epo",
                "password_env": "EPO_SMTP_PASSWORD",
            }
        ]
    )
    assert isinstance(notifier, SmtpNotifier)
    notifier.notify(_notification())
    assert mailbox.messages[-1]["login"] == b"epo"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    SmtpNotifier(
        "127.0.0.1",
        port=controller.port,
        sender="epo@example.org",
        username="epo",
        password_file=str(password_file),
    ).notify(_notification())
    assert len(mailbox.messages) == 2


def test_smtp_wrong_password(smtp_auth_server, caplog):
    controller, mailbox = smtp_auth_server
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-" + PASSWORD
    notifier = SmtpNotifier(
        "127.0.0.1", port=controller.port, sender="epo@example.org", username="epo", password=wrong
    )
    assert wrong not in repr(notifier)
    with pytest.raises(NotificationError) as info:
        notifier.notify(_notification())
    message = str(info.value)
    assert "535" in message and "127.0.0.1" in message
    _secrets_absent(message, wrong, PASSWORD)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    for record in caplog.records:
        assert wrong not in record.getMessage()
        if record.name.startswith("lsst"):
            _secrets_absent(record.getMessage(), wrong)
    assert mailbox.messages == []


def test_smtp_secret_problems(smtp_auth_server, monkeypatch, tmp_path):
    controller, _ = smtp_auth_server
    monkeypatch.delenv("EPO_SMTP_MISSING", raising=False)
    notifier = SmtpNotifier(
        "127.0.0.1",
        port=controller.port,
        sender="epo@example.org",
        username="epo",
        password_env="EPO_SMTP_MISSING",
    )
    with pytest.raises(NotificationError, match="EPO_SMTP_MISSING"):
        notifier.notify(_notification())
    notifier = SmtpNotifier(
        "127.0.0.1",
        port=controller.port,
        sender="epo@example.org",
        username="epo",
        password_file=str(tmp_path / "absent"),
    )
    with pytest.raises(NotificationError, match="absent"):
        notifier.notify(_notification())


def test_smtp_connection_failures(smtp_server):
    with pytest.raises(NotificationError, match="ConnectionRefusedError"):
        SmtpNotifier("127.0.0.1", port=_free_port(), sender="epo@example.org", timeout=5).notify(
            _notification()
        )
    # The test server offers no STARTTLS.
    controller, mailbox = smtp_server
    with pytest.raises(NotificationError, match="STARTTLS"):
        SmtpNotifier("127.0.0.1", port=controller.port, sender="epo@example.org", starttls=True).notify(
            _notification()
        )
    assert mailbox.messages == []


def test_smtp_settings():
    with pytest.raises(ValueError, match="sender"):
        SmtpNotifier("localhost", sender="not an address")
    with pytest.raises(ValueError, match="without username"):
        SmtpNotifier("localhost", sender="epo@example.org", password_env="X")
    with pytest.raises(ValueError, match="only one"):
        SmtpNotifier("localhost", sender="epo@example.org", username="u", password="p", password_env="X")
    with pytest.raises(ValueError, match="starttls or ssl"):
        SmtpNotifier("localhost", sender="epo@example.org", starttls=True, ssl=True)
    with pytest.raises(ValueError, match="extra_recipients"):
        SmtpNotifier("localhost", sender="epo@example.org", extra_recipients=["nobody"])


# ----------------------------------------------------------------------
# Webhooks.


def test_webhook_posts_json(receiver, monkeypatch):
    monkeypatch.setenv("EPO_WEBHOOK_TOKEN", TOKEN)
    notifier = notifier_from_config(
        {
            "notify": [
                {
                    "type": "webhook",
                    "url": receiver.url + "/epo?channel=pis",
                    "headers": {"X-Epo-Source": "test"},
                    "header_env": {"Authorization": "EPO_WEBHOOK_TOKEN"},
                }
            ]
        }
    )
    assert isinstance(notifier, WebhookNotifier)
    notification = _notification()
    notifier.notify(notification)
    (request,) = receiver.requests
    assert request["path"] == "/epo?channel=pis"
    assert request["headers"]["Authorization"] == TOKEN
    assert request["headers"]["X-Epo-Source"] == "test"
    assert request["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(request["body"]) == notification.to_dict()


def test_webhook_url_credentials(receiver):
    url = receiver.url.replace("http://", "http://hook:pa%3Ass@") + "/epo"
    WebhookNotifier(url).notify(_notification())
    (request,) = receiver.requests
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"hook:pa:ss").decode()


def test_webhook_http_error(receiver, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EPO_WEBHOOK_TOKEN", TOKEN)
    receiver.status = 500
    url = receiver.url.replace("http://", "http://user:urlpass@") + "/hooks/T0123/secretpath?token=qs-secret"
    notifier = WebhookNotifier(url, header_env={"Authorization": "EPO_WEBHOOK_TOKEN"})
    with pytest.raises(NotificationError) as info:
        notifier.notify(_notification())
    message = str(info.value)
    assert "500" in message and "127.0.0.1" in message
    for secret in (TOKEN, "tok-9f8e7d6c5b4a", "urlpass", "user:", "qs-secret", "secretpath"):
        assert secret not in message
        assert secret not in repr(notifier)
        assert all(secret not in r.getMessage() for r in caplog.records if r.name.startswith("lsst"))
    assert len(receiver.requests) == 1


def test_webhook_redirect_not_followed(receiver):
    other = _Receiver()
    thread = threading.Thread(target=other.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        receiver.status = 307
        receiver.location = other.url + "/stolen"
        with pytest.raises(NotificationError, match="307"):
            WebhookNotifier(receiver.url + "/epo", headers={"Authorization": TOKEN}).notify(_notification())
        assert other.requests == []
    finally:
        other.shutdown()
        other.server_close()
        thread.join()


def test_webhook_connection_failures(receiver, monkeypatch):
    with pytest.raises(NotificationError, match="ConnectionRefusedError"):
        WebhookNotifier(f"http://127.0.0.1:{_free_port()}/epo?token=abc").notify(_notification())
    receiver.delay = 1.0
    start = time.monotonic()
    with pytest.raises(NotificationError, match="(?i)timed? ?out"):
        WebhookNotifier(receiver.url + "/epo", timeout=0.3).notify(_notification())
    assert time.monotonic() - start < 1.0
    monkeypatch.delenv("EPO_WEBHOOK_MISSING", raising=False)
    with pytest.raises(NotificationError, match="EPO_WEBHOOK_MISSING"):
        WebhookNotifier(receiver.url, header_env={"Authorization": "EPO_WEBHOOK_MISSING"}).notify(
            _notification()
        )


def test_webhook_url_from_env(receiver, monkeypatch):
    monkeypatch.setenv("EPO_WEBHOOK_URL", receiver.url + "/services/T0/B0/xyz")
    notifier = notifier_from_config({"type": "webhook", "url_env": "EPO_WEBHOOK_URL"})
    assert "xyz" not in repr(notifier)
    notifier.notify(_notification())
    assert receiver.requests[0]["path"] == "/services/T0/B0/xyz"


def test_webhook_settings():
    for url in ("ftp://example.org/", "file:///etc/passwd", "http:///nohost", "https://example.org:99999/"):
        with pytest.raises(ValueError, match="not a valid"):
            WebhookNotifier(url)
    with pytest.raises(ValueError, match="header name"):
        WebhookNotifier("https://example.org/", headers={"Bad Header": "x"})
    with pytest.raises(ValueError, match="Invalid value"):
        WebhookNotifier("https://example.org/", headers={"X-A": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="both"):
        WebhookNotifier(
            "https://example.org/", headers={"authorization": "x"}, header_env={"Authorization": "Y"}
        )
    with pytest.raises(ValueError, match="exactly one"):
        WebhookNotifier()


# ----------------------------------------------------------------------
# Several notifiers.


def test_multi_notifier_continues(receiver, smtp_server, caplog):
    controller, mailbox = smtp_server
    receiver.status = 503
    recorder = _Recorder()
    notifier = MultiNotifier(
        [
            WebhookNotifier(receiver.url + "/epo"),
            _Broken(),
            SmtpNotifier("127.0.0.1", port=controller.port, sender="epo@example.org"),
            recorder,
        ]
    )
    with pytest.raises(NotificationError) as info:
        notifier.notify(_notification())
    assert "2 of 4" in str(info.value)
    assert "WebhookNotifier" in str(info.value) and "503" in str(info.value)
    assert "_Broken" in str(info.value) and "KeyError" in str(info.value)
    assert [type(n) for n, _ in info.value.failures] == [WebhookNotifier, _Broken]
    assert len(mailbox.messages) == 1
    assert len(recorder.received) == 1
    MultiNotifier([recorder, LogNotifier()]).notify(_notification())
    assert len(recorder.received) == 2


# ----------------------------------------------------------------------
# Configuration.


def test_config_defaults():
    assert isinstance(notifier_from_config(None), LogNotifier)
    assert isinstance(notifier_from_config([]), LogNotifier)
    assert isinstance(notifier_from_config({}), LogNotifier)
    assert isinstance(notifier_from_config({"notify": None}), LogNotifier)
    assert notifier_from_config([{"type": "log", "level": "debug"}]).level == logging.DEBUG
    notifier = notifier_from_config(
        {
            "notify": [
                {"type": "log"},
                {
                    "type": "smtp",
                    "host": "localhost",
                    "port": 2525,
                    "sender": "epo@example.org",
                    "username": "epo",
                    "password_env": "EPO_SMTP_PASSWORD",
                },
                {
                    "type": "webhook",
                    "url": "https://hooks.example.org/epo",
                    "header_env": {"Authorization": "EPO_WEBHOOK_TOKEN"},
                },
            ]
        }
    )
    assert isinstance(notifier, MultiNotifier)
    assert [type(n) for n in notifier.notifiers] == [LogNotifier, SmtpNotifier, WebhookNotifier]
    assert notifier.notifiers[1].port == 2525


@pytest.mark.parametrize(
    "config, match",
    [
        ([{"type": "pigeon"}], "pigeon"),
        ([{"host": "x"}], "unknown notifier type None"),
        (["log"], "mapping"),
        ("log", "list"),
        ({"notfy": []}, "notfy"),
        ([{"type": "log", "colour": "red"}], "colour"),
        ([{"type": "smtp", "host": "h", "sender": "a@b.org", "passwd": "x", "prot": 1}], r"passwd.*prot"),
        ([{"type": "smtp", "host": "h"}], "sender"),
        ([{"type": "smtp", "host": "h", "sender": "a@b.org", "port": "25"}], "port"),
        ([{"type": "smtp", "host": "h", "sender": "a@b.org", "starttls": "yes"}], "starttls"),
        ([{"type": "smtp", "host": "h", "sender": "a@b.org", "starttls": True, "ssl": True}], "ssl"),
        ([{"type": "webhook"}], "url"),
        ([{"type": "webhook", "url": "https://h/", "header_env": ["X"]}], "header_env"),
        ([{"type": "webhook", "url": "https://h/", "timeout": -1}], "timeout"),
        ([{"type": "log", "level": "LOUD"}], "level"),
    ],
)
def test_config_errors(config, match):
    with pytest.raises(ValueError, match=match):
        notifier_from_config(config)


def test_config_error_hides_password():
    with pytest.raises(ValueError) as info:
        notifier_from_config(
            [{"type": "smtp", "host": "h", "sender": "a@b.org", "username": "u", "password": 12345678}]
        )
    assert "12345678" not in str(info.value)
    assert "password" in str(info.value)
