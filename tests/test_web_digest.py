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

"""Notification digests: one message per PI per cycle instead of one per
batch per event, always to the inbox and through the configured notifiers
(here e-mail to a local SMTP server during a real poll).
"""

from __future__ import annotations

import email
import email.policy
import socket

import pytest
from aiosmtpd.controller import Controller
from export_test_utils import ExportRepo

from lsst.epo.zooniverse.export.notify import Notification, NotificationError, Notifier, SmtpNotifier
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.export.state import open_state_database
from lsst.epo.zooniverse.web.digest import DigestNotifier
from lsst.epo.zooniverse.web.inbox import Inbox


class Capture(Notifier):
    def __init__(self, fail=False):
        self.sent = []
        self.fail = fail

    def notify(self, notification):
        self.sent.append(notification)
        if self.fail:
            raise NotificationError("mail server down")


def note(event, owner, project, batch, recipients=()):
    return Notification(
        event=event,
        project=project,
        owner=owner,
        recipients=recipients,
        batch=batch,
        summary=f"Batch {batch}: {event}.",
        details={"images": 3},
    )


@pytest.fixture
def inbox(tmp_path):
    engine = open_state_database(f"sqlite:///{tmp_path}/state.sqlite3")
    yield Inbox(engine)
    engine.dispose()


def test_one_digest_per_user_per_cycle(inbox):
    capture = Capture()
    digest = DigestNotifier(inbox, capture)
    digest.notify(note("retrieved", "alice", "galaxies", "b1", ["a@example.org"]))
    digest.notify(note("quarantined", "alice", "galaxies", "b1", ["a@example.org"]))
    digest.notify(note("approved", "alice", "stars", "b2", ["a2@example.org", "a@example.org"]))
    digest.notify(note("rejected", "bob", "bobs", "b3", ["b@example.org"]))
    assert digest.pending == 4
    assert digest.flush() == {"alice": 3, "bob": 1}
    assert digest.pending == 0 and digest.flush() == {}
    assert len(capture.sent) == 2
    alice = next(n for n in capture.sent if n.owner == "alice")
    assert alice.recipients == ("a@example.org", "a2@example.org")
    assert alice.event == "approved"  # the latest kind of event it holds
    assert alice.project == "galaxies,stars" and alice.batch is None
    assert [e["event"] for e in alice.details["events"]] == ["retrieved", "quarantined", "approved"]
    assert (
        alice.summary.splitlines()[0]
        == "3 updates on galaxies, stars: 1 retrieved, 1 quarantined, 1 approved."
    )
    assert "you may remove these files" in alice.summary
    (message,) = inbox.messages("alice")
    assert message["summary"] == "3 updates on galaxies, stars: 1 retrieved, 1 quarantined, 1 approved"
    assert [i["batch"] for i in message["items"]] == ["b1", "b1", "b2"]
    assert "recipients" not in message["items"][0]
    assert [m["summary"] for m in inbox.messages("bob")] == ["1 update on bobs: 1 rejected"]


def test_failed_delivery_keeps_the_inbox_message(inbox, caplog):
    digest = DigestNotifier(inbox, Capture(fail=True))
    digest.notify(note("published", "alice", "galaxies", "b1"))
    assert digest.flush() == {"alice": 1}
    assert len(inbox.messages("alice")) == 1
    assert "not delivered" in caplog.text


def test_inbox_failure_keeps_the_events(inbox):
    digest = DigestNotifier(inbox)
    digest.notify(note("published", "alice", "galaxies", "b1"))
    inbox.engine.dispose()
    broken = Inbox.__new__(Inbox)
    broken.engine = None  # every add fails
    digest.inbox = broken
    assert digest.flush() == {}
    assert digest.pending == 1
    digest.inbox = inbox
    assert digest.flush() == {"alice": 1}
    with pytest.raises(RuntimeError):
        DigestNotifier(None).flush()


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_poll_sends_one_mail_per_pi(tmp_path):
    repo = ExportRepo(str(tmp_path / "repo"))
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=1, first_id=0)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=2, seed=2, first_id=10)
    repo.put_rgb("u/alice/zoo/run2", patch=2, n=2, seed=3, first_id=20)
    repo.put_rgb("u/bob/zoo/run1", patch=3, n=2, seed=4, first_id=30)
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        counts = {}
        for mode in ("per-event", "digest"):
            smtp = SmtpNotifier("127.0.0.1", port=controller.port, sender="epo@example.org")
            config = ServiceConfig.load(
                None,
                database=f"sqlite:///{tmp_path}/{mode}.sqlite3",
                staging=str(tmp_path / f"{mode}-staging"),
                public_root=str(tmp_path / f"{mode}-public"),
            )
            digest = DigestNotifier(None, smtp)
            service = ExportService(config, notifier=smtp if mode == "per-event" else digest)
            digest.inbox = Inbox(service.engine)
            try:
                for owner in ("alice", "bob"):
                    service.register_project(
                        f"{owner}-zoo",
                        zooniverse_project_id=1,
                        owner=owner,
                        repo=repo.root,
                        collections=f"u/{owner}/zoo/*",
                        contact=f"{owner}@example.org",
                        actor="test",
                    )
                before = len(mailbox.messages)
                assert service.poll().quarantined == 4
                if mode == "digest":
                    assert len(mailbox.messages) == before  # nothing until the cycle ends
                    assert digest.flush() == {"alice": 6, "bob": 2}
                counts[mode] = mailbox.messages[before:]
            finally:
                service.close()
    finally:
        controller.stop()
    assert len(counts["per-event"]) == 8  # retrieved and quarantined, per batch
    mails = {m["To"]: m for m in counts["digest"]}
    assert sorted(mails) == ["alice@example.org", "bob@example.org"]
    body = mails["alice@example.org"].get_content()
    assert body.startswith("6 updates on alice-zoo: 3 retrieved, 3 quarantined.")
    assert body.split("Details:")[0].count("you may remove these files") == 3
