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

__all__ = ["plan_zooniverse_submissions", "shell_line"]

import shlex

import click

from lsst.daf.butler import InvalidQueryError, MissingCollectionError

from ..butler.config import get_butler
from ..pipeline.submission_plan import catalog_tracts, plan_submissions


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
        Repository (also each command's ``-b``).
    collections : `list` [`str`]
        Collections holding the sharded catalog.
    skymap : `str`
        The sky map's name.
    submit_file : `str`
        The BPS submit file every part runs.
    output : `str`
        The output chain all parts share.
    tracts_per_submission : `int`, optional
        Most tracts a submission.
    inputs : `str`, optional
        Input collections (``-i``), if the submit file does not name them.
    where : `str`, optional
        More constraints on the tracts.

    Raises
    ------
    click.ClickException
        Raised (a one-line error) for a missing collection or sky map, no
        sharded catalog, no tract, a bad sky map name or ``where``.
    """
    butler = get_butler(repo)
    try:
        tracts = catalog_tracts(butler, collections, skymap, where)
        if not tracts:
            constraint = f" where {where}" if where else ""
            catalog = ", ".join(collections)
            raise LookupError(f"No tract of sky map {skymap!r}{constraint} overlaps the catalog in {catalog}")
        parts = plan_submissions(
            tracts,
            skymap=skymap,
            submit_file=submit_file,
            output=output,
            tracts_per_submission=tracts_per_submission,
            repo=repo,
            inputs=inputs,
        )
    except (LookupError, ValueError, MissingCollectionError, InvalidQueryError) as err:
        raise click.ClickException(str(err)) from None
    for part in parts:
        click.echo(shell_line(part.command, part.data_query))
    run_root = parts[0].output_run.rsplit("/", 1)[0]
    click.echo(
        f"{len(tracts)} tracts in {len(parts)} submissions of at most {tracts_per_submission} tracts; "
        f"their runs are {run_root}/part*, all in the chain {output}. Run them side by side, e.g. "
        "4 at a time: xargs -d '\\n' -n 1 -P 4 sh -c < FILE",
        err=True,
    )


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
