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

"""``zooniverse-epo replacements`` and ``replace-subjects``: pictures of a
PI's rerun that replaced public pictures, and the Zooniverse side of it.

When an approved rerun's picture is published, the old picture's subject
must be replaced in the subject set (a new subject with the same external
id; the old one unlinked, see `lsst.epo.zooniverse.zooniverse.replacement`)
before the old picture's public files can go.  ``replace-subjects`` does
both for every pending replacement of a project.  The commands are added
to the ``zooniverse-epo`` group by `lsst.epo.zooniverse.cli.epo`.
"""

from __future__ import annotations

__all__ = ["replace_subjects", "replacements"]

import json

import click

from .epo_common import (
    context_service,
    credentials_option,
    guard_errors,
    json_option,
    operator_option,
    project_argument,
    project_option,
    redacted_click_error,
    subject_set_name_option,
)


@click.command()
@project_option()
@click.option("--all", "show_all", is_flag=True, help="Completed replacements too.")
@json_option()
@click.pass_context
@guard_errors
def replacements(ctx: click.Context, project: str | None, show_all: bool, as_json: bool) -> None:
    """List public pictures replaced by a newer approved picture of the same
    object whose Zooniverse subject is still to be replaced (the old
    picture stays public until then): id, project, external id, old URL,
    new URL.
    """
    service = context_service(ctx)
    found = service.replacements.find(project, pending=not show_all)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for r in found:
        click.echo(
            f"{r['id']}\t{r['project']}\t{r['external_id']}\t{r['old']['url']}\t{r['new']['url']}"
            + (f"\tcompleted {r['completed_at']} by {r['completed_by']}" if r["completed_at"] else "")
        )


@click.command(name="replace-subjects")
@project_argument()
@subject_set_name_option()
@credentials_option(help="As for subject-set (default: the PANOPTES_* environment variables).")
@operator_option(help="Who does it (audit log; default: the current user).")
@click.pass_context
@guard_errors
def replace_subjects(
    ctx: click.Context,
    project: str,
    subject_set_name: str,
    credentials_file: str | None,
    operator: str | None,
) -> None:
    """Replace, in subject set --name of PROJECT, the subject of every
    pending picture replacement (a new subject with the new picture and
    the same external id, the old one unlinked), then remove the old
    picture's public files. Safe to run again after an error.
    """
    from ..zooniverse.subject_sets import SubjectSetError, SubjectSetPublisher, ZooniverseCredentials

    service = context_service(ctx)
    pending = service.pending_replacements(project)
    if not pending:
        click.echo(f"No pending picture replacements for {project}.")
        return
    try:
        publisher = SubjectSetPublisher(service, ZooniverseCredentials.load(credentials_file))
        for replacement in pending:
            done = publisher.replace_subject(
                project, replacement["external_id"], subject_set_name=subject_set_name, operator=operator
            )
            service.complete_replacement(replacement["id"], actor=operator)
            new_url = replacement["new"]["url"]
            click.echo(
                f"{replacement['external_id']}: subject {done.new_subject_id} shows {new_url}"
                + (f"; unlinked {', '.join(map(str, done.old_subject_ids))}" if done.old_subject_ids else "")
            )
    except SubjectSetError as err:
        raise redacted_click_error(err) from None
    click.echo(f"{len(pending)} subjects replaced in subject set {subject_set_name!r}.")
