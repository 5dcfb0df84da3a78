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

"""``zooniverse-epo``: the EPO export service's command-line program.

Thin click wrappers around `lsst.epo.zooniverse.export.service.ExportService`;
the Zooniverse commands (``subject-set``, ``link-workflow``, ``subjects``)
come from `lsst.epo.zooniverse.cli.epo_subject_sets`, ``classifications``
from `~lsst.epo.zooniverse.cli.epo_classifications`, ``worker`` from
`~lsst.epo.zooniverse.cli.epo_worker`, ``replacements`` and
``replace-subjects`` from `~lsst.epo.zooniverse.cli.epo_replacements`, and
the web application's ``token`` and ``serve-api`` from
`~lsst.epo.zooniverse.cli.epo_web`; they are added to the group here.
"""

from __future__ import annotations

__all__ = ["main"]

import csv
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from .epo_classifications import classifications
from .epo_common import (
    context_progress,
    context_service,
    guard_errors,
    json_option,
    operator_option,
    project_argument,
    project_option,
)
from .epo_replacements import replace_subjects, replacements
from .epo_subject_sets import link_workflow, subject_set, subjects
from .epo_web import serve_api, token
from .epo_worker import worker


@click.group(name="zooniverse-epo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Service configuration YAML (default: $ZOONIVERSE_EPO_CONFIG, else built-in defaults "
    "under ./epo_service).",
)
@click.option(
    "--database",
    default=None,
    envvar="ZOONIVERSE_EPO_DATABASE",
    help="State database URL (sqlite:///FILE or postgresql+psycopg://USER@HOST/DB); "
    "put the password in the variable the config's database_password_env names.",
)
@click.option("--staging", default=None, help="Private staging directory.")
@click.option("--public-root", default=None, help="Public location (directory or lsst.resources URI).")
@click.option("--public-url", default=None, help="URL prefix that serves the public location.")
@click.option("--policy", default=None, type=click.Path(dir_okay=False), help="Data-rights policy YAML.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress on standard error: a bar on a terminal, else a line per tenth (default: on a terminal).",
)
@click.option(
    "--log-level",
    default="INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    show_default=True,
    help="Logging level.",
)
@click.pass_context
def main(
    ctx: click.Context, config: str | None, log_level: str, progress: bool | None, **overrides: Any
) -> None:
    """Run the Rubin EPO export service: find what PIs put in their registered
    Butler collections, validate it against the data-rights policy, hold it
    in quarantine until an operator approves it, and publish it at a public
    HTTP location.
    """
    from ..export.redaction import install_log_redaction

    logging.basicConfig(
        level=getattr(logging, log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    obj = ctx.ensure_object(dict)
    obj["config"] = config

    # Paths given on the command line are relative to the current
    # directory (those in the configuration file to the file).
    def absolute(value: str | None) -> str | None:
        return value if value is None or "://" in value else os.path.abspath(value)

    database = overrides["database"]
    if database and database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        path = database[len("sqlite:///") :]
        if path and path != ":memory:":
            database = "sqlite:///" + os.path.abspath(path)
    obj["overrides"] = {
        "database": database,
        "staging": absolute(overrides["staging"]),
        "public_root": absolute(overrides["public_root"]),
        "public_url": overrides["public_url"],
        "policy": absolute(overrides["policy"]),
    }
    obj["progress"] = progress


@main.command()
@click.argument("name")
@click.option(
    "--zooniverse-project",
    "zooniverse_project_id",
    type=int,
    required=True,
    help="The Zooniverse project id.",
)
@click.option("--owner", required=True, help="The PI's RSP user name (collections must be under u/OWNER/).")
@click.option("--repo", required=True, help="Butler repository (path, URI or label).")
@click.option("--collections", required=True, help="Collection name or glob under u/OWNER/.")
@click.option(
    "--dataset-type",
    "dataset_types",
    multiple=True,
    default=("zooniverse_rgb",),
    show_default=True,
    help="Dataset type to retrieve (repeatable).",
)
@click.option("--contact", default=None, help="PI e-mail address(es), comma-separated, for notifications.")
@click.option(
    "--metadata-policy",
    type=click.Choice(["full", "anonymised"]),
    default="full",
    show_default=True,
    help="anonymised: PNG text chunks with ids or coordinates are stripped at validation.",
)
@operator_option(help="Who registers (default: the current user).")
@click.pass_context
@guard_errors
def register(ctx: click.Context, name: str, operator: str | None, **kwargs: Any) -> None:
    """Register the PI project NAME: which collections of which repository
    the service polls, and for which Zooniverse project.
    """
    record = context_service(ctx).register_project(name, actor=operator, **kwargs)
    from ..export.redaction import default_redactor

    record["repo"] = default_redactor().redact(record["repo"])
    click.echo(
        f"Registered project {record['name']} (owner {record['owner']}, {record['collections']} "
        f"in {record['repo']})."
    )


@main.command()
@json_option()
@click.pass_context
@guard_errors
def projects(ctx: click.Context, as_json: bool) -> None:
    """List the registered projects."""
    from ..export.redaction import default_redactor

    records = context_service(ctx).projects()
    for r in records:
        r["repo"] = default_redactor().redact(r["repo"])
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    if not records:
        click.echo("No projects registered.")
    for r in records:
        click.echo(
            f"{r['name']}\towner={r['owner']}\tzooniverse={r['zooniverse_project_id']}\t"
            f"{r['collections']}\t{','.join(r['dataset_types'])}\t{r['metadata_policy']}\t{r['repo']}"
        )


@main.command()
@project_option()
@click.option("--watch", is_flag=True, help="Poll again every --interval seconds until interrupted.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="Seconds between polls with --watch.",
)
@click.pass_context
@guard_errors
def poll(ctx: click.Context, project: str | None, watch: bool, interval: float) -> None:
    """Find new datasets in the registered collections, retrieve them,
    validate them and put them in quarantine.
    """
    service = context_service(ctx)
    while True:
        summary = service.poll(project, progress=context_progress(ctx))
        click.echo(
            f"Poll: {summary.discovered} new datasets; {summary.quarantined} batches quarantined "
            f"({summary.images_quarantined} images), {summary.rejected} rejected, "
            f"{summary.images_rejected} images refused, {len(summary.refused)} refused by ownership rules"
            + (f", {summary.skipped} busy elsewhere" if summary.skipped else "")
            + "."
        )
        for error in summary.errors:
            click.echo(f"error: {error}", err=True)
        if not watch:
            if summary.errors:
                raise click.ClickException(f"{len(summary.errors)} datasets or projects failed; see above.")
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@main.command()
@project_option()
@click.pass_context
@guard_errors
def status(ctx: click.Context, project: str | None) -> None:
    """Print counts of datasets and images by state, as JSON."""
    click.echo(json.dumps(context_service(ctx).status(project), indent=2, sort_keys=True))


@main.command()
@project_option()
@click.option("--batch", default=None, help="Show this batch, whatever its state, image by image.")
@json_option()
@click.pass_context
@guard_errors
def review(ctx: click.Context, project: str | None, batch: str | None, as_json: bool) -> None:
    """List quarantined batches (or one batch) with their images and the
    validation findings.
    """
    batches = context_service(ctx).review(project, batch)
    if as_json:
        click.echo(json.dumps(batches, indent=2, default=str))
        return
    if not batches:
        click.echo("Nothing in quarantine.")
    for b in batches:
        states: dict[str, int] = {}
        for image in b["images"]:
            states[image["state"]] = states.get(image["state"], 0) + 1
        click.echo(
            f"{b['batch']}\t{b['project']}\t{b['state']}\t{b['dataset_type']} {b['data_id']}\t"
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            + (f"\t{b['reason']}" if b["reason"] else "")
        )
        if batch:
            for image in b["images"]:
                click.echo(
                    f"  {image['entry']}\t{image['object_id']}\t{image['state']}\t"
                    f"{image['width']}x{image['height']}\t{image['size']}\t{image['reason'] or ''}"
                )


def _decision_command(approve: bool) -> Callable[..., None]:
    verb = "approve" if approve else "reject"

    @click.argument("batches", nargs=-1, required=True)
    @operator_option(required=True, help="Who decides (recorded in the audit log).")
    @click.option("--reason", required=not approve, default=None, help="Why (recorded; sent to the PI).")
    @click.option(
        "--image", "entries", multiple=True, help=f"Only {verb} this image (entry name; repeatable)."
    )
    @click.pass_context
    @guard_errors
    def command(
        ctx: click.Context,
        batches: tuple[str, ...],
        operator: str,
        reason: str | None,
        entries: tuple[str, ...],
    ) -> None:
        if entries and len(batches) != 1:
            # Image names belong to one batch; checking them batch by batch
            # would leave the first batches decided when a later one fails.
            raise click.UsageError("--image needs exactly one batch.")
        service = context_service(ctx)
        for batch in batches:
            if approve:
                n = service.approve(batch, operator=operator, reason=reason, entries=entries or None)
            else:
                n = service.reject(batch, operator=operator, reason=reason or "", entries=entries or None)
            click.echo(f"{batch}: {n} images {'approved' if approve else 'rejected'}.")

    command.__doc__ = (
        f"{verb.capitalize()} quarantined BATCHES (all their images, or those given with --image)."
        + ("" if approve else " Published images cannot be rejected.")
    )
    return command


main.command(name="approve")(_decision_command(True))
main.command(name="reject")(_decision_command(False))


@main.command()
@project_option()
@click.pass_context
@guard_errors
def publish(ctx: click.Context, project: str | None) -> None:
    """Publish every approved image at the public location, exactly once."""
    summary = context_service(ctx).publish(project, progress=context_progress(ctx))
    for error in summary.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(
        f"Published {summary.published} images"
        + (
            f" (and recorded {summary.already_present} written by an interrupted run)"
            if summary.already_present
            else ""
        )
        + f"; {summary.batches} batches complete"
        + (f"; {summary.rejected} refused (staging copy changed)" if summary.rejected else "")
        + (
            f"; {summary.superseded} not published: another picture of the same object is"
            if summary.superseded
            else ""
        )
        + "."
    )
    if summary.errors:
        raise click.ClickException(f"{len(summary.errors)} batches failed; see above.")


@main.command()
@project_argument()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="CSV file to write (default: standard output).",
)
@click.option(
    "--catalog",
    "catalog_collection",
    default=None,
    help="The PI's pipeline output collection: write one line per row of the original catalog instead.",
)
@click.pass_context
@guard_errors
def report(ctx: click.Context, project: str, output: str | None, catalog_collection: str | None) -> None:
    """Write a CSV with one line per image (and per rejected batch) of
    PROJECT: its state, the reason, and its public URL.  With --catalog,
    one line per row of the PI's original catalog: its public URL or why it
    has none (sharding, pipeline or EPO), the lines adding up to the
    catalog's row count.  Cells that a spreadsheet would run as formulas
    are escaped (`~lsst.epo.zooniverse.export.csv_cells.escape_csv_cell`).
    """
    from ..export.csv_cells import escape_csv_row

    if catalog_collection:
        rows = context_service(ctx).catalog_report(project, catalog_collection)
        fields = ["row_index", "object_id", "outcome", "stage", "reason", "url"]
    else:
        rows = context_service(ctx).report(project)
        fields = ["batch", "dataset_type", "data_id", "entry", "object_id", "state", "reason", "url"]
    stream = open(output, "w", newline="") if output else sys.stdout
    try:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(escape_csv_row(row) for row in rows)
    finally:
        if output:
            stream.close()
    if output:
        click.echo(f"Wrote {len(rows)} lines to {output}.", err=True)


@main.command()
@click.option("--batch", default=None, help="Only this batch.")
@project_option()
@click.pass_context
@guard_errors
def audit(ctx: click.Context, batch: str | None, project: str | None) -> None:
    """Print the audit log (JSON lines, oldest first)."""
    for record in context_service(ctx).audit_log(batch=batch, project=project):
        click.echo(json.dumps(record, default=str))


@main.command()
@project_argument()
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory for the manifest parts.",
)
@click.pass_context
@guard_errors
def manifest(ctx: click.Context, project: str, output: str) -> None:
    """Write PROJECT's Zooniverse subject manifests (subject_set_imports
    CSV, at most 10,000 rows per part) from its published images, one
    subject per catalog object, and validate them.
    """
    paths = context_service(ctx).write_manifests(project, output)
    if not paths:
        click.echo(f"{project} has no published images yet.")
    for path in paths:
        click.echo(path)


@main.command(name="validate-manifest")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--url-prefix", default=None, help="Every location must start with this public URL prefix.")
@click.option(
    "--metadata-policy",
    type=click.Choice(["full", "anonymised"]),
    default=None,
    help="anonymised: no identifying metadata, external ids or locations.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=10_000, show_default=True, help="Rows per manifest."
)
@click.option(
    "--allow-http", is_flag=True, help="Accept http:// locations to any host (default: https or loopback)."
)
def validate_manifest(
    manifests: tuple[str, ...],
    url_prefix: str | None,
    metadata_policy: str | None,
    limit: int,
    allow_http: bool,
) -> None:
    """Check Zooniverse subject manifests (subject_set_imports CSV) against
    Zooniverse's import rules before anything is sent; print every finding
    with its line, column and rule (doc/zooniverse_manifest.md).
    """
    from ..export.manifest import format_finding
    from ..export.manifest import validate_manifest as validate

    n_findings = 0
    for path in manifests:
        findings = validate(
            path, limit=limit, url_prefix=url_prefix, metadata_policy=metadata_policy, allow_http=allow_http
        )
        for finding in findings:
            click.echo(format_finding(path, finding))
        n_findings += len(findings)
        if not findings:
            click.echo(f"{path}: OK")
    if n_findings:
        raise click.ClickException(f"{n_findings} findings.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port (0: any free port).")
@click.option(
    "--review/--no-review",
    default=None,
    help="Also serve the operators' review page at /_review/ (default: when the configuration has a "
    "review section, which --review requires).",
)
@click.pass_context
@guard_errors
def serve(ctx: click.Context, host: str, port: int, review: bool | None) -> None:
    """Serve the public location over HTTP, with the service's status as
    JSON at /status.json and, when the configuration names review
    operators, the operators' review page at /_review/: log in with an
    operator name and token, look at the quarantined batches (contact
    sheets, thumbnails, findings), approve or reject them (recorded in the
    audit log like the approve and reject commands) and publish
    (doc/review_page.md).  Quarantined files are only reachable through
    the review page, after login.
    """
    from ..export.serve import PublicServer

    service = context_service(ctx)
    if not service.public.root.isLocal:
        raise click.ClickException(f"serve needs a local public location, not {service.public.root}.")
    settings = service.config.review
    if review and settings is None:
        raise click.ClickException(
            "--review needs a review section (operators and where their tokens are) in the service "
            "configuration; see doc/review_page.md."
        )
    page = None
    if settings is not None and review is not False:
        from ..export.review_page import ReviewPage

        page = ReviewPage(service, settings)
    server = PublicServer(
        service.public.root.ospath, host=host, port=port, status=service.status, review=page
    )
    click.echo(
        f"Serving {service.public.root.ospath} at {server.url} (status: {server.url}status.json"
        + (f"; review page: {server.url}_review/ for {', '.join(settings.operators)}" if page else "")
        + ")",
        err=True,
    )
    sys.stderr.flush()
    server.serve_forever()


main.add_command(subject_set)
main.add_command(subjects)
main.add_command(link_workflow)
main.add_command(classifications)
main.add_command(worker)
main.add_command(replacements)
main.add_command(replace_subjects)
main.add_command(token)
main.add_command(serve_api)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
