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

"""What the ``zooniverse-epo`` commands share: the options several
commands declare, the export service built from the group's options, the
progress reporter, and the error guard that turns the service's errors into
short command-line errors with secrets masked.

`lsst.epo.zooniverse.cli.epo` (the group and the service commands) and
`lsst.epo.zooniverse.cli.epo_subject_sets` (the Zooniverse commands) both
import this module; it imports neither.
"""

from __future__ import annotations

__all__ = [
    "ClickProgress",
    "context_progress",
    "context_service",
    "credentials_option",
    "guard_errors",
    "json_option",
    "operator_option",
    "project_argument",
    "project_option",
    "redacted_click_error",
    "subject_set_name_option",
]

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

_LOG = logging.getLogger("lsst.epo.zooniverse.export")

# Arguments and options that more than one command declares. Each is a
# decorator factory: call it, with keyword arguments to override what a
# command words differently (``@json_option(help="...")``).
project_argument = functools.partial(click.argument, "project")
project_option = functools.partial(click.option, "--project", default=None, help="Only this project.")
json_option = functools.partial(click.option, "--json", "as_json", is_flag=True, help="Print JSON.")
# Who acts, recorded in the audit log; each command says who that is.
operator_option = functools.partial(click.option, "--operator", default=None)
subject_set_name_option = functools.partial(
    click.option, "--name", "subject_set_name", required=True, help="Display name of the subject set."
)
credentials_option = functools.partial(
    click.option,
    "--credentials",
    "credentials_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file (mode 600) with endpoint and client_id/client_secret or username/password "
    "(default: the PANOPTES_* environment variables).",
)


class ClickProgress:
    """`~lsst.epo.zooniverse.export.service.Progress` on standard error: a
    click progress bar on a terminal, otherwise (``--progress`` into a log
    file) one line per tenth of the work.

    Parameters
    ----------
    enabled : `bool`
        Report progress at all.
    """

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None
        self._label = ""
        self._total = self._done = self._next_line = 0

    def start(self, label: str, total: int) -> None:
        if not self._enabled or total <= 0:
            return
        self._label, self._total, self._done = label, total, 0
        if sys.stderr.isatty():
            self._bar = click.progressbar(
                length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True
            )
            self._bar.__enter__()
        else:
            self._next_line = max(1, total // 10)
            click.echo(f"{label}: 0/{total}", err=True)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)
        elif self._total:
            self._done += n
            if self._done >= self._next_line or self._done == self._total:
                click.echo(f"{self._label}: {self._done}/{self._total}", err=True)
                self._next_line = self._done + max(1, self._total // 10)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        self._total = 0


def context_service(ctx: click.Context) -> Any:
    """Build the export service from the group's options, once.

    Parameters
    ----------
    ctx : `click.Context`
        The running command's context (the group's options are in its
        ``obj``).

    Returns
    -------
    service : `~lsst.epo.zooniverse.export.service.ExportService`
        The service, closed when the command ends.
    """
    obj = ctx.ensure_object(dict)
    if "service" not in obj:
        from ..export.service import ExportService
        from ..export.service_config import ServiceConfig

        config = ServiceConfig.load(obj["config"], **obj["overrides"])
        obj["service"] = ExportService(config)
        ctx.call_on_close(obj["service"].close)
    return obj["service"]


def guard_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the service's errors into clean command-line errors (with
    secrets masked).

    Parameters
    ----------
    function : `~collections.abc.Callable`
        A command's function.

    Returns
    -------
    wrapper : `~collections.abc.Callable`
        The function, raising `click.ClickException` instead.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..export.notify import NotificationError
        from ..export.policy import PolicyError
        from ..export.publication import PublicationError
        from ..export.redaction import default_redactor
        from ..export.service import ExportServiceError
        from ..export.service_config import ServiceConfigError
        from ..export.state import StateDatabaseError
        from ..zooniverse.errors import SubjectSetError

        redact = default_redactor().redact
        try:
            return function(*args, **kwargs)
        except click.ClickException:
            raise
        except (
            ExportServiceError,
            ServiceConfigError,
            StateDatabaseError,
            SubjectSetError,
            PolicyError,
            PublicationError,
            NotificationError,
        ) as err:
            raise click.ClickException(redact(err)) from None
        except Exception as err:
            # Anything unexpected: a short, redacted message; the redacted
            # traceback in the log at DEBUG (never the raw one on stderr).
            import traceback

            _LOG.debug("%s", redact("".join(traceback.format_exception(err))))
            raise click.ClickException(redact(f"{type(err).__name__}: {err}")) from None

    return wrapper


def context_progress(ctx: click.Context) -> ClickProgress:
    """Make the progress reporter the group's ``--progress`` option asks
    for.

    Parameters
    ----------
    ctx : `click.Context`
        The running command's context.

    Returns
    -------
    progress : `ClickProgress`
        On when asked for, or by default when standard error is a
        terminal.
    """
    enabled = ctx.ensure_object(dict).get("progress")
    return ClickProgress(sys.stderr.isatty() if enabled is None else enabled)


def redacted_click_error(err: Exception) -> click.ClickException:
    """Make a command-line error of an exception, secrets masked.

    Parameters
    ----------
    err : `Exception`
        The error.

    Returns
    -------
    error : `click.ClickException`
        Its message, with every known secret masked.
    """
    from ..export.redaction import default_redactor

    return click.ClickException(default_redactor().redact(err))
