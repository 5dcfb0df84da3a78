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
batch per event.

`DigestNotifier` is a `~lsst.epo.zooniverse.export.notify.Notifier` to give
`~lsst.epo.zooniverse.export.service.ExportService`: it only collects.
`DigestNotifier.flush`, called at the end of each cycle (a worker's poll
and publish, an operator's bulk decision, or every ``digest_seconds`` in
the web application), groups what was collected by the project owner (the
PI's RSP user name) and sends one digest each: always to the inbox
(`.inbox.Inbox`) and, when configured, through the usual notifiers (e-mail,
webhook), as one `~lsst.epo.zooniverse.export.notify.Notification` whose
``details["events"]`` lists the events.
"""

from __future__ import annotations

__all__ = ["DigestNotifier", "digest_summary", "digest_text"]

import logging
import threading
from collections.abc import Sequence
from typing import Any

from ..export.notify import EVENTS, Notification, NotificationError, Notifier
from .inbox import Inbox

_LOG = logging.getLogger(__name__)

_PHRASES = {
    "retrieved": "retrieved: you may remove these files from your collection",
    "quarantined": "quarantined, waiting for EPO's review",
    "approved": "approved",
    "rejected": "rejected",
    "published": "published",
}


def _item(notification: Notification) -> dict[str, Any]:
    data = notification.to_dict()
    data.pop("recipients", None)
    data.pop("owner", None)
    data["what"] = _PHRASES.get(notification.event, notification.event)
    return data


def digest_summary(items: Sequence[dict[str, Any]]) -> str:
    """Return the one-line summary of a digest.

    Parameters
    ----------
    items : `~collections.abc.Sequence` [`dict`]
        The digest's events.

    Returns
    -------
    summary : `str`
        For example ``3 updates on galaxies: 1 retrieved, 2 quarantined``.
    """
    counts = dict.fromkeys(EVENTS, 0)
    projects: list[str] = []
    for item in items:
        counts[item["event"]] = counts.get(item["event"], 0) + 1
        if item["project"] not in projects:
            projects.append(item["project"])
    parts = ", ".join(f"{n} {event}" for event, n in counts.items() if n)
    noun = "update" if len(items) == 1 else "updates"
    return f"{len(items)} {noun} on {', '.join(projects)}: {parts}"


def digest_text(summary: str, items: Sequence[dict[str, Any]]) -> str:
    """Return a digest as text: its summary, then one line per event.

    Parameters
    ----------
    summary : `str`
        The digest's summary (`digest_summary`).
    items : `~collections.abc.Sequence` [`dict`]
        The events.

    Returns
    -------
    text : `str`
        What an e-mail says.
    """
    lines = [
        f"- {item['project']}, batch {item['batch'] or '-'}: {item['what']}. {item['summary']}"
        for item in items
    ]
    return "\n".join([summary + ".", "", *lines])


class DigestNotifier(Notifier):
    """Collects notifications and sends them as one digest per PI.

    Parameters
    ----------
    inbox : `~.inbox.Inbox` or `None`
        Where every digest goes; set the attribute before the first flush
        if `None` (the inbox needs the service's database engine).
    downstream : `~lsst.epo.zooniverse.export.notify.Notifier`, optional
        Also sends each digest (the configured e-mail and webhook
        notifiers); a failure is logged, the inbox message stays.
    """

    def __init__(self, inbox: Inbox | None, downstream: Notifier | None = None) -> None:
        self.inbox = inbox
        self.downstream = downstream
        self._lock = threading.Lock()
        self._pending: list[Notification] = []

    def __repr__(self) -> str:
        return f"DigestNotifier({self.downstream!r})"

    def notify(self, notification: Notification) -> None:
        # Docstring inherited.
        with self._lock:
            self._pending.append(notification)

    @property
    def pending(self) -> int:
        """Number of notifications waiting for the next digest."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> dict[str, int]:
        """Send one digest per PI of what was collected since the last
        flush.

        Returns
        -------
        sent : `dict` [`str`, `int`]
            Number of events in each user's digest.
        """
        if self.inbox is None:
            raise RuntimeError("DigestNotifier.flush needs an inbox.")
        with self._lock:
            pending, self._pending = self._pending, []
        by_owner: dict[str, list[Notification]] = {}
        for notification in pending:
            by_owner.setdefault(notification.owner, []).append(notification)
        sent = {}
        for owner, notifications in by_owner.items():
            items = [_item(n) for n in notifications]
            summary = digest_summary(items)
            try:
                self.inbox.add(owner, summary, items)
            except Exception:
                _LOG.exception("Cannot store the digest for %s; its %d events are kept", owner, len(items))
                with self._lock:
                    self._pending.extend(notifications)
                continue
            sent[owner] = len(items)
            if self.downstream is not None:
                self._send(owner, summary, notifications, items)
        return sent

    def _send(
        self, owner: str, summary: str, notifications: list[Notification], items: list[dict[str, Any]]
    ) -> None:
        recipients: list[str] = []
        for notification in notifications:
            recipients += [r for r in notification.recipients if r not in recipients]
        # A digest is sent as the latest kind of event it holds: the
        # notifiers accept only the events of EVENTS.
        event = max((n.event for n in notifications), key=EVENTS.index)
        projects = sorted({n.project for n in notifications})
        digest = Notification(
            event=event,
            project=",".join(projects),
            owner=owner,
            recipients=tuple(recipients),
            batch=None,
            summary=digest_text(summary, items),
            details={"digest": True, "events": items},
        )
        assert self.downstream is not None
        try:
            self.downstream.notify(digest)
        except NotificationError as err:
            _LOG.warning("Digest for %s not delivered: %s", owner, err)
