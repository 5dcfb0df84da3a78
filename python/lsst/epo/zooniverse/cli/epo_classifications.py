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

"""``zooniverse-epo classifications``: volunteers' answers back into the
PI's Butler collection.

A thin click wrapper around
`lsst.epo.zooniverse.zooniverse.classifications`; it is added to the
``zooniverse-epo`` group by `lsst.epo.zooniverse.cli.epo` (this module
does not import that one; what both need is in
`lsst.epo.zooniverse.cli.epo_common`).
"""

from __future__ import annotations

__all__ = ["classifications"]

import datetime
import json
import os
from typing import Any

import click

from .epo_common import context_service, credentials_option, guard_errors, json_option, project_argument


def _registered(ctx: click.Context, project: str) -> tuple[dict[str, Any] | None, Any]:
    """Return PROJECT's registration and the service, if the group was
    given a service configuration (else `None`, `None`).
    """
    obj = ctx.ensure_object(dict)
    if obj.get("config") is None and not any((obj.get("overrides") or {}).values()):
        if not os.environ.get("ZOONIVERSE_EPO_CONFIG"):
            return None, None
    service = context_service(ctx)
    return service.project(project), service


def _external_ids(service: Any, project: str) -> dict[str, str]:
    """Subject id → external id, as EPO recorded when sending."""
    from ..zooniverse.subject_sets import SubjectSetPublisher

    rows = SubjectSetPublisher(service).recorded_subjects(project)
    return {str(r["subject_id"]): r["external_id"] for r in rows if r.get("subject_id")}


@click.command(name="classifications")
@project_argument()
@click.option(
    "--export-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A classification export downloaded from the project builder (Data Exports); "
    "without it the latest export is fetched from Zooniverse.",
)
@click.option(
    "--download-to",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to keep the fetched export (default: classifications-<project>-<time>.csv here).",
)
@click.option("--generate", is_flag=True, help="Ask Zooniverse for a new export first and wait for it.")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds to wait for a new export (with --generate).",
)
@click.option(
    "--zooniverse-project",
    type=int,
    default=None,
    help="Zooniverse project id (default: the one PROJECT is registered with).",
)
@credentials_option()
@click.option("--repo", default=None, help="Butler repository (default: the one PROJECT is registered with).")
@click.option(
    "--collection",
    "collections",
    default=None,
    help="Collection(s), comma-separated, holding the sharded catalog (zooniverse_targets) to join.",
)
@click.option(
    "--output-run",
    default=None,
    help="RUN collection to write zooniverse_classifications into (default with a registered project: "
    "u/<owner>/zooniverse_classifications/<UTC time>); without --repo nothing is written.",
)
@json_option(help="Print the summary as JSON (every problem row and unknown subject).")
@click.pass_context
@guard_errors
def classifications(
    ctx: click.Context,
    project: str,
    export_file: str | None,
    download_to: str | None,
    generate: bool,
    wait_timeout: float,
    zooniverse_project: int | None,
    credentials_file: str | None,
    repo: str | None,
    collections: str | None,
    output_run: str | None,
    as_json: bool,
) -> None:
    """Count PROJECT's volunteers' answers per subject, task and answer
    from Zooniverse's classification export, join them to the catalog's
    object ids and columns, and write them to the Butler as
    zooniverse_classifications (doc/classifications.md).  Unusable rows,
    unknown and retired subjects are counted and listed, never dropped.
    With a service configuration (--config or $ZOONIVERSE_EPO_CONFIG),
    PROJECT's registration gives the defaults and the subject ids EPO
    recorded; without one, PROJECT only names the external ids.
    """
    from ..zooniverse.classification_export import (
        fetch_classification_export,
        panoptes_export_fetcher,
    )
    from ..zooniverse.classifications import aggregate_classifications, classifications_to_butler
    from ..zooniverse.credentials import ZooniverseCredentials

    record, service = _registered(ctx, project)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    if export_file is None:
        zooniverse_project = zooniverse_project or (record or {}).get("zooniverse_project_id")
        if not zooniverse_project:
            raise click.ClickException(
                f"Project {project}: give --export-file, or --zooniverse-project to fetch the export."
            )
        export_file = download_to or f"classifications-{project}-{stamp}.csv"
        fetcher = panoptes_export_fetcher(
            ZooniverseCredentials.load(credentials_file), generate=generate, wait_timeout=wait_timeout
        )
        fetch_classification_export(int(zooniverse_project), export_file, fetcher)
        click.echo(f"Fetched the classification export to {export_file}.", err=True)
    external_ids = _external_ids(service, project) if service is not None else {}
    repo = repo or (record or {}).get("repo")
    if repo is None:
        _, summary = aggregate_classifications(export_file, project=project, external_ids=external_ids)
    else:
        from ..butler.config import get_butler

        if output_run is None:
            if record is None:
                raise click.ClickException(f"Project {project}: --repo needs --output-run.")
            output_run = f"u/{record['owner']}/zooniverse_classifications/{stamp}"
        names = [c.strip() for c in collections.split(",") if c.strip()] if collections else None
        butler = get_butler(repo, writeable=True)
        summary = classifications_to_butler(
            export_file, butler, project=project, run=output_run, collections=names, external_ids=external_ids
        )
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(str(summary))
        for problem in summary.problems[:10]:
            click.echo(
                f"{summary.source}:{problem.line}: classification {problem.classification_id or '?'} "
                f"{problem.rule}: {problem.message}",
                err=True,
            )
        if len(summary.problems) > 10:
            click.echo(
                f"... {len(summary.problems) - 10} more problem rows (--json lists them all).", err=True
            )
