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
"""The export service's worker: poll and publish in a loop, in its own
process, apart from the web application.

A *cycle* polls the registered collections (discover, retrieve, validate
into quarantine) and publishes what operators approved since the last
cycle, then logs one line.  Several workers may run at once against one
PostgreSQL state database: every dataset is worked on under a claim
(`.claims`), the one-picture-per-object choice holds the project's row
lock, and an image is recorded ``published`` only by the worker that
moved it out of ``publishing``, so each picture is published exactly
once whatever the number of workers.

Given a *digest* (`lsst.epo.zooniverse.web.digest.DigestNotifier`, the
service's notifier), the worker flushes it at the end of every cycle, so
that each PI gets one notification digest per cycle (into the web
application's inbox and the configured notifiers) instead of one message
per batch per event.

`WorkerLoop.stop` (called from a SIGTERM or SIGINT handler) makes the
worker finish the dataset it is on, start nothing new, and return; a
worker killed outright leaves a claim that another worker takes over
when its lease ends (at once on the same host).
"""

from __future__ import annotations

__all__ = ["CycleSummary", "WorkerLoop"]

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .outcomes import PollSummary, PublishSummary

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CycleSummary:
    """What one worker cycle did."""

    number: int
    """The cycle's number in this worker (1 for the first)."""
    poll: PollSummary
    """What the poll did."""
    publish: PublishSummary | None
    """What the publication did (`None` if the worker stopped before it,
    or does not publish)."""
    seconds: float
    """How long the cycle took."""

    @property
    def errors(self) -> list[str]:
        """The unexpected failures of the poll and the publication."""
        return self.poll.errors + (self.publish.errors if self.publish else [])

    def log_line(self) -> str:
        """Return the cycle's one-line account.

        Returns
        -------
        line : `str`
            Counts of the poll and the publication, errors, duration.
        """
        poll = self.poll
        line = (
            f"cycle {self.number}: poll {poll.discovered} new, {poll.quarantined} quarantined "
            f"({poll.images_quarantined} images), {poll.rejected} rejected, {poll.skipped} busy elsewhere"
        )
        if self.publish is not None:
            done = self.publish
            line += (
                f"; publish {done.published} images ({done.batches} batches), "
                f"{done.already_present} already present, {done.superseded} superseded, "
                f"{done.replaced} replaced, {done.rejected} refused"
            )
        return line + f"; {len(self.errors)} errors; {self.seconds:.2f} s"


class WorkerLoop:
    """Poll and publish until stopped.

    Parameters
    ----------
    service : `~.service.ExportService`
        The service (its own state-database connections).
    project : `str`, optional
        Only this project.
    interval : `float`, optional
        Seconds from the start of one cycle to the start of the next.
    publish : `bool`, optional
        Publish approved images in each cycle (else only poll).
    digest : `object`, optional
        The service's collecting notifier (for instance
        `lsst.epo.zooniverse.web.digest.DigestNotifier`): its ``flush()``
        is called at the end of every cycle, even a failed one.
    """

    def __init__(
        self,
        service: Any,
        *,
        project: str | None = None,
        interval: float = 60.0,
        publish: bool = True,
        digest: Any = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"Worker interval {interval!r} must be positive.")
        self.service = service
        self.project = project
        self.interval = interval
        self.publish = publish
        self.digest = digest
        self.cycles = 0
        self._stop = threading.Event()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called."""
        return self._stop.is_set()

    def stop(self, *args: Any) -> None:
        """Ask the loop to stop after the dataset it is working on (usable
        as a signal handler).

        Parameters
        ----------
        *args
            Ignored (a signal handler's signal number and frame).
        """
        if not self._stop.is_set():
            _LOG.info("Worker %s: stopping after the current dataset.", self.service.worker)
        self._stop.set()

    def cycle(self) -> CycleSummary:
        """Run one cycle: poll, then publish unless stopping, then send the
        cycle's notification digests.

        Returns
        -------
        summary : `CycleSummary`
            What it did (also logged at INFO, errors at ERROR).
        """
        start = time.monotonic()
        self.cycles += 1
        try:
            polled = self.service.poll(self.project, stop=self._stop.is_set)
            published = None
            if self.publish and not self.stopping:
                published = self.service.publish(self.project, stop=self._stop.is_set)
        except BaseException:
            self._flush_digest()
            raise
        summary = CycleSummary(self.cycles, polled, published, time.monotonic() - start)
        _LOG.info("Worker %s %s", self.service.worker, summary.log_line())
        for error in summary.errors:
            _LOG.error("Worker %s: %s", self.service.worker, error)
        self._flush_digest()
        return summary

    def _flush_digest(self) -> None:
        if self.digest is None:
            return
        try:
            sent = self.digest.flush()
        except Exception:
            # The events stay collected for the next cycle's digest.
            _LOG.exception("Worker %s: cannot send the notification digests.", self.service.worker)
            return
        if sent:
            _LOG.info(
                "Worker %s: notification digests sent to %s.",
                self.service.worker,
                ", ".join(f"{user} ({n} events)" for user, n in sorted(sent.items())),
            )

    def run(self, *, once: bool = False, cycle_done: Callable[[CycleSummary], None] | None = None) -> int:
        """Run cycles until stopped (or one cycle).

        Parameters
        ----------
        once : `bool`, optional
            Run one cycle and return.
        cycle_done : `~collections.abc.Callable`, optional
            Called with each cycle's summary.

        Returns
        -------
        errors : `int`
            Errors of the last cycle.
        """
        _LOG.info(
            "Worker %s started (%s, every %.1f s%s).",
            self.service.worker,
            f"project {self.project}" if self.project else "all projects",
            self.interval,
            "" if self.publish else ", poll only",
        )
        errors = 0
        while not self.stopping:
            summary = self.cycle()
            errors = len(summary.errors)
            if cycle_done is not None:
                cycle_done(summary)
            if once:
                break
            self._stop.wait(max(0.0, self.interval - summary.seconds))
        _LOG.info("Worker %s stopped after %d cycles.", self.service.worker, self.cycles)
        return errors

    @contextmanager
    def signals_stop(self) -> Iterator[None]:
        """Make SIGTERM and SIGINT stop the loop gracefully while the
        context is open (main thread only); the previous handlers come
        back afterwards.

        Yields
        ------
        None
        """
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
