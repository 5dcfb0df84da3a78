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

"""``butler plan-zooniverse-submissions``: print the ``bps submit`` commands
of a large catalog split by tract.
"""

__all__ = ["check_outputs", "plan_zooniverse_submissions", "shell_line"]

import os
import shlex
from typing import Any

import click

from lsst.daf.butler import ButlerUserError, CollectionType, MissingCollectionError

from ..butler.config import get_butler
from ..pipeline.submission_plan import SubmissionPart, catalog_tracts, plan_submissions


def plan_zooniverse_submissions(
    repo: str,
    collections: list[str],
    skymap: str,
    submit_file: str,
    output: str,
    tracts_per_submission: int = 10,
    inputs: str | None = None,
    where: str = "",
) -> None:
    """Print one ``bps submit`` command a line, each with its own output
    run in the shared output chain, and a summary on standard error.

    Parameters
    ----------
    repo : `str`
        Repository (also each command's ``-b``; made absolute if it is a
        local path).
    collections : `list` [`str`]
        Collections holding the sharded catalog.
    skymap : `str`
        The sky map's name.
    submit_file : `str`
        The BPS submit file every part runs (made absolute).
    output : `str`
        The output chain all parts share.
    tracts_per_submission : `int`, optional
        Most tracts a submission.
    inputs : `str`, optional
        Input collections (``-i``), if the submit file does not name them.
    where : `str`, optional
        More constraints on the tracts and in every part's data query.

    Raises
    ------
    click.ClickException
        Raised (a one-line error) for a missing repository, collection or
        sky map, no sharded catalog, no tract, a bad sky map name or
        ``where``, an output that is a RUN collection, or runs of the plan
        that exist already.
    """
    try:
        butler = get_butler(repo)
        tracts = catalog_tracts(butler, collections, skymap, where)
        if not tracts:
            constraint = f" where {where}" if where else ""
            catalog = ", ".join(collections)
            raise LookupError(f"No tract of sky map {skymap!r}{constraint} overlaps the catalog in {catalog}")
        parts = plan_submissions(
            tracts,
            skymap=skymap,
            submit_file=os.path.abspath(submit_file),
            output=output,
            tracts_per_submission=tracts_per_submission,
            repo=os.path.abspath(repo) if os.path.exists(repo) else repo,
            inputs=inputs,
            where=where,
        )
        check_outputs(butler, parts)
    except (LookupError, ValueError, FileNotFoundError, ButlerUserError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise click.ClickException(" ".join(str(message).split())) from None
    for part in parts:
        click.echo(shell_line(part.command, part.data_query))
    run_root = parts[0].output_run.rsplit("/", 1)[0]
    n_tracts = f"{len(tracts)} tract{'s' if len(tracts) != 1 else ''}"
    n_parts = f"{len(parts)} submission{'s' if len(parts) != 1 else ''}"
    click.echo(
        f"{n_tracts} in {n_parts} of at most {tracts_per_submission} tracts; their runs are "
        f"{run_root}/part*, all in the chain {parts[0].output}. "
        "Run them side by side, e.g. 4 at a time: xargs -d '\\n' -n 1 -P 4 sh -c < FILE",
        err=True,
    )


def check_outputs(butler: Any, parts: list[SubmissionPart]) -> None:
    """Refuse a plan whose final jobs would fail after all the work: an
    output that exists and is not a chain, or a part's run that exists
    already.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The repository.
    parts : `list` [`~..pipeline.submission_plan.SubmissionPart`]
        The plan.

    Raises
    ------
    ValueError
        Raised for either.
    """

    def collection_type(name: str) -> CollectionType | None:
        try:
            return butler.collections.get_info(name).type
        except MissingCollectionError:
            return None

    output = parts[0].output
    kind = collection_type(output)
    if kind not in (None, CollectionType.CHAINED):
        raise ValueError(f"{output} is a {kind.name} collection: the output must be a new name or a chain.")
    for part in parts:
        if collection_type(part.output_run) is not None:
            raise ValueError(f"Run {part.output_run} exists already (were these commands run before?).")


def shell_line(command: tuple[str, ...], data_query: str) -> str:
    """Return a command as one shell line, its data query in double quotes
    where no character in it means anything to the shell there (it holds
    single-quoted literals, which `shlex.quote` would make unreadable).

    Parameters
    ----------
    command : `tuple` [`str`, ...]
        The arguments.
    data_query : `str`
        The argument to double-quote.

    Returns
    -------
    line : `str`
        What ``sh -c`` turns back into ``command``.
    """
    readable = not any(character in data_query for character in '"$`\\!')
    return " ".join(f'"{arg}"' if readable and arg == data_query else shlex.quote(arg) for arg in command)
