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

"""``zooniverse-epo worker``: the export service's worker process.

It polls the registered collections and publishes approved pictures in a
loop (`lsst.epo.zooniverse.export.worker.WorkerLoop`), apart from the web
application; run one or several against the PostgreSQL state database.
Each cycle's notifications go out as one digest per PI
(`lsst.epo.zooniverse.web.digest.DigestNotifier`): into the PIs' inbox of
the web application (same database) and through the configured notifiers.
The command is added to the ``zooniverse-epo`` group by
`lsst.epo.zooniverse.cli.epo`.
"""

from __future__ import annotations

__all__ = ["worker", "worker_service"]

from typing import Any

import click

from .epo_common import guard_errors, project_option


def worker_service(ctx: click.Context) -> tuple[Any, Any]:
    """Build the export service of a worker: its notifier collects the
    cycle's notifications into one digest per PI.

    Parameters
    ----------
    ctx : `click.Context`
        The running command's context (the group's options are in its
        ``obj``).

    Returns
    -------
    service : `~lsst.epo.zooniverse.export.service.ExportService`
        The service, closed when the command ends.
    digest : `~lsst.epo.zooniverse.web.digest.DigestNotifier`
        Its notifier, to flush at the end of each cycle.
    """
    # Deferred: the command group loads without the service's dependencies.
    # web.digest and web.inbox need SQLAlchemy only, not FastAPI.
    from ..export.notify import notifier_from_config
    from ..export.service import ExportService
    from ..export.service_config import ServiceConfig
    from ..web.digest import DigestNotifier
    from ..web.inbox import Inbox

    obj = ctx.ensure_object(dict)
    config = ServiceConfig.load(obj["config"], **obj["overrides"])
    digest = DigestNotifier(None, notifier_from_config(list(config.notify)))
    service = ExportService(config, notifier=digest)
    ctx.call_on_close(service.close)
    obj["service"] = service
    digest.inbox = Inbox(service.engine)
    return service, digest


@click.command()
@project_option()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds from the start of one cycle to the start of the next.",
)
@click.option("--once", is_flag=True, help="Run one cycle (poll, then publish) and exit.")
@click.option(
    "--publish/--no-publish",
    default=True,
    show_default=True,
    help="Publish approved pictures in each cycle (--no-publish: poll only).",
)
@click.pass_context
@guard_errors
def worker(ctx: click.Context, project: str | None, interval: float, once: bool, publish: bool) -> None:
    """Poll the registered collections and publish approved pictures, cycle
    after cycle, logging one line per cycle.

    Several workers may run at once against one PostgreSQL state database;
    each dataset is worked on by one of them and each picture is published
    exactly once. Each cycle sends every PI one digest of its
    notifications (the web application's inbox, and the configured
    notifiers). SIGTERM or SIGINT stops a worker after the dataset it is
    working on. With --once, the exit status is 1 if the cycle had errors.
    """
    from ..export.worker import WorkerLoop

    service, digest = worker_service(ctx)
    loop = WorkerLoop(service, project=project, interval=interval, publish=publish, digest=digest)
    with loop.signals_stop():
        errors = loop.run(once=once)
    if once and errors:
        raise click.ClickException(f"{errors} datasets or projects failed; see the log.")
