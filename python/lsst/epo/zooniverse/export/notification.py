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

"""What the export service tells PIs, and the notifiers that do not need
a network service: `Notification`, the `Notifier` interface, `LogNotifier`
and `MultiNotifier`.

`lsst.epo.zooniverse.export.notify` is where these are normally imported
from, with the e-mail and webhook notifiers and `notifier_from_config`.
"""

from __future__ import annotations

__all__ = [
    "EVENTS",
    "NOTIFY_LOGGER",
    "LogNotifier",
    "MultiNotifier",
    "Notification",
    "NotificationError",
    "Notifier",
    "one_line",
]

import abc
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

NOTIFY_LOGGER = "lsst.epo.zooniverse.export.notify"
"""Name of the logger every notifier writes to (the default logger of
`LogNotifier`).
"""

_LOG = logging.getLogger(NOTIFY_LOGGER)

EVENTS = ("retrieved", "quarantined", "approved", "rejected", "published")
"""Events a PI is told about, in the order a batch usually meets them."""


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


def one_line(text: str) -> str:
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
