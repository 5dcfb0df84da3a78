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
"""Notices to a project's PI about its batches (retrieved, quarantined,
approved, rejected, published), sent through the configured notifiers.
"""

from __future__ import annotations

__all__ = ["ProjectNotices"]

import logging
from typing import Any

from .notify import Notification, NotificationError, Notifier
from .records import ProjectRecord
from .redaction import Redactor

_LOG = logging.getLogger(__name__)


class ProjectNotices:
    """Sends notices about a project's batches to its contacts.

    Parameters
    ----------
    notifier : `~.notify.Notifier`
        Delivers the notices.
    redactor : `~.redaction.Redactor`
        Masks secrets in the warnings of failed deliveries.
    """

    def __init__(self, notifier: Notifier, redactor: Redactor) -> None:
        self.notifier = notifier
        self.redactor = redactor

    def send(
        self, project: ProjectRecord, event: str, batch: str | None, summary: str, **details: Any
    ) -> None:
        """Send a notice; a failed delivery is logged, not raised (a PI's
        mail server being down must not stop the service).

        Parameters
        ----------
        project : `~.records.ProjectRecord`
            The project (its contacts are the recipients).
        event : `str`
            What happened (``retrieved``, ``quarantined``, ...).
        batch : `str` or `None`
            The batch it happened to.
        summary : `str`
            One sentence for the PI.
        **details
            Event-specific details (JSON-serialisable).
        """
        notification = Notification(
            event=event,
            project=project.name,
            owner=project.owner,
            recipients=project.recipients,
            batch=batch,
            summary=summary,
            details=details,
        )
        try:
            self.notifier.notify(notification)
        except NotificationError as err:
            _LOG.warning(
                "Notification of %s for %s failed: %s",
                event,
                batch or project.name,
                self.redactor.redact(err),
            )
