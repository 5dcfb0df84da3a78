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

"""``zooniverse-epo subject-set``, ``link-workflow`` and ``subjects``:
send a project's published images to its Zooniverse project as a subject
set, link the set to a workflow, and list what was sent.

Thin click wrappers around
`lsst.epo.zooniverse.zooniverse.subject_sets.SubjectSetPublisher`; they are
added to the ``zooniverse-epo`` group by `lsst.epo.zooniverse.cli.epo`
(this module does not import that one; what both need is in
`lsst.epo.zooniverse.cli.epo_common`).
"""

from __future__ import annotations

__all__ = ["link_workflow", "subject_set", "subjects"]

import json

import click

from .epo_common import (
    context_progress,
    context_service,
    credentials_option,
    guard_errors,
    json_option,
    operator_option,
    project_argument,
    redacted_click_error,
    subject_set_name_option,
)


@click.command(name="subject-set")
@project_argument()
@subject_set_name_option()
@click.option(
    "--zooniverse-project",
    type=int,
    default=None,
    help="Zooniverse project id (default and only allowed value: the one PROJECT is registered with).",
)
@click.option(
    "--method",
    type=click.Choice(["import", "subjects"]),
    default="import",
    show_default=True,
    help="import: subject_set_imports of manifests at the public location; subjects: one create "
    "request per subject (remote image URLs).",
)
@credentials_option()
@click.option("--dry-run", is_flag=True, help="Write and validate the manifests; send nothing.")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the manifests of a dry run or of --method subjects (default: under staging).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between checks of a running subject-set import.",
)
@operator_option(help="Who runs it (audit log; default: the current user).")
@json_option(help="Print the summary as JSON.")
@click.pass_context
@guard_errors
def subject_set(
    ctx: click.Context,
    project: str,
    subject_set_name: str,
    zooniverse_project: int | None,
    method: str,
    credentials_file: str | None,
    dry_run: bool,
    output: str | None,
    poll_interval: float,
    operator: str | None,
    as_json: bool,
) -> None:
    """Create (or complete) subject set --name in PROJECT's Zooniverse
    project with one subject per published catalog object.  Subjects
    already in the set (by external id) are never sent again, so after an
    error just run the same command again.
    """
    from ..zooniverse.subject_sets import SubjectSetError, SubjectSetPublisher, ZooniverseCredentials

    service = context_service(ctx)
    try:
        credentials = None
        if credentials_file or not dry_run:
            credentials = ZooniverseCredentials.load(credentials_file)
        publisher = SubjectSetPublisher(service, credentials, poll_interval=poll_interval)
        summary = publisher.sync(
            project,
            subject_set_name=subject_set_name,
            zooniverse_project=zooniverse_project,
            method=method,
            dry_run=dry_run,
            progress=context_progress(ctx),
            output_directory=output,
            operator=operator,
        )
    except SubjectSetError as err:
        raise redacted_click_error(err) from None
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    where = f"subject set {summary.subject_set_name!r}" + (
        f" ({summary.subject_set_id})" if summary.subject_set_id else ""
    )
    if dry_run:
        click.echo(
            f"Dry run: would send {summary.pending} of {summary.total} subjects to {where} of Zooniverse "
            f"project {summary.zooniverse_project}; {summary.already_present} already sent."
        )
        for path in summary.manifests:
            click.echo(path)
        return
    click.echo(
        f"{where} of Zooniverse project {summary.zooniverse_project}"
        + (" (created)" if summary.subject_set_created else "")
        + f": {summary.created} subjects sent, {summary.already_present} already present"
        + (f", {summary.linked} linked again" if summary.linked else "")
        + f"; {summary.total} in all."
    )
    if summary.duplicates:
        click.echo(
            f"warning: {len(summary.duplicates)} external ids were in the set more than once "
            f"(e.g. {summary.duplicates[0]}); {summary.unlinked} extra copies were unlinked from it.",
            err=True,
        )


@click.command(name="link-workflow")
@project_argument()
@subject_set_name_option()
@click.option("--workflow", type=int, required=True, help="Zooniverse workflow id (of PROJECT's project).")
@credentials_option(help="As for subject-set (default: the PANOPTES_* environment variables).")
@operator_option(help="Who does it (audit log; default: the current user).")
@click.pass_context
@guard_errors
def link_workflow(
    ctx: click.Context,
    project: str,
    subject_set_name: str,
    workflow: int,
    credentials_file: str | None,
    operator: str | None,
) -> None:
    """Link subject set --name of PROJECT to a workflow of its Zooniverse
    project, so that volunteers classify its subjects (nothing happens if
    it is linked already).
    """
    from ..zooniverse.subject_sets import SubjectSetError, SubjectSetPublisher, ZooniverseCredentials

    try:
        publisher = SubjectSetPublisher(context_service(ctx), ZooniverseCredentials.load(credentials_file))
        linked = publisher.link_to_workflow(
            project, subject_set_name=subject_set_name, workflow=workflow, operator=operator
        )
    except SubjectSetError as err:
        raise redacted_click_error(err) from None
    state = "linked to" if linked else "was already linked to"
    click.echo(f"Subject set {subject_set_name!r} of {project} {state} workflow {workflow}.")


@click.command()
@project_argument()
@subject_set_name_option(required=False, default=None, help="Only this subject set.")
@json_option()
@click.pass_context
@guard_errors
def subjects(ctx: click.Context, project: str, subject_set_name: str | None, as_json: bool) -> None:
    """List the subjects sent to PROJECT's Zooniverse subject sets (as
    recorded in the state database): set, external id, Zooniverse subject
    id, image URL.
    """
    from ..zooniverse.subject_sets import SubjectSetPublisher

    rows = SubjectSetPublisher(context_service(ctx)).recorded_subjects(project, subject_set_name)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"No subjects of {project} have been sent to Zooniverse.")
        return
    for row in rows:
        click.echo(
            f"{row['subject_set_id']}\t{row['subject_set_name']}\t{row['external_id']}\t"
            f"{row['subject_id'] or '-'}\t{row['locations'][0] if row['locations'] else '-'}"
        )
