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

"""A large catalog split by tract into ``bps submit`` commands that can run
side by side (doc/batch_sites.md, "Large catalogs: several submissions
side by side").

Every submission gets its own output RUN, all under one invocation's
name, and puts it in the same output chain: BPS's default run name,
``{output}/{timestamp}``, has one-second resolution, and two submissions
that share a run fail in the later one's final job after all its work.
An invocation's name is the UTC time as BPS writes it and a random
suffix, so that two plans made in the same second (two notebooks of one
PI) do not share runs either.
"""

from __future__ import annotations

__all__ = ["SubmissionPart", "catalog_tracts", "plan_name", "plan_submissions", "split_evenly"]

import dataclasses
import datetime
import re
import secrets
from collections.abc import Sequence
from typing import Any

from ..butler.dataset_types import TARGETS


@dataclasses.dataclass(frozen=True)
class SubmissionPart:
    """One ``bps submit`` of a split catalog.

    Parameters
    ----------
    tracts : `tuple` [`int`, ...]
        The tracts it runs, ascending.
    data_query : `str`
        Its ``-d`` expression.
    output : `str`
        The output chain every part shares (``-o``).
    output_run : `str`
        Its own RUN collection (``--output-run``).
    command : `tuple` [`str`, ...]
        The whole command, one argument per item.
    """

    tracts: tuple[int, ...]
    data_query: str
    output: str
    output_run: str
    command: tuple[str, ...]


def catalog_tracts(butler: Any, collections: Sequence[str], skymap: str, where: str = "") -> list[int]:
    """Return the tracts of a sky map whose sky overlaps the sharded
    catalog's ``zooniverse_targets`` datasets.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The repository.
    collections : `~collections.abc.Sequence` [`str`]
        Collections holding the sharded catalog.
    skymap : `str`
        The sky map's name.
    where : `str`, optional
        More constraints on the tracts (a Butler query expression).

    Returns
    -------
    tracts : `list` [`int`]
        Tract ids, ascending.

    Raises
    ------
    LookupError
        Raised if the sky map is not registered or the collections hold
        no sharded catalog (the dataset type not registered included).
    lsst.daf.butler.MissingCollectionError
        Raised if a collection does not exist.
    lsst.daf.butler.InvalidQueryError
        Raised if ``where`` is not a valid expression.
    """
    from lsst.daf.butler import MissingDatasetTypeError

    if not butler.query_dimension_records(
        "skymap", where="skymap = name", bind={"name": skymap}, explain=False
    ):
        raise LookupError(f"Sky map {skymap!r} is not registered in this repository.")
    no_catalog = f"No {TARGETS.name} datasets in {', '.join(collections)}: give the sharding command's run."
    try:
        if not butler.query_datasets(TARGETS.name, collections=list(collections), limit=1, explain=False):
            raise LookupError(no_catalog)
    except MissingDatasetTypeError:
        raise LookupError(no_catalog) from None
    with butler.query() as query:
        query = query.join_dataset_search(TARGETS.name, collections=list(collections))
        data_ids = query.data_ids(["tract"]).where("skymap = name", bind={"name": skymap})
        if where:
            # A separate term: ``where`` cannot close the parenthesis of
            # the sky map's.
            data_ids = data_ids.where(where)
        return sorted({int(data_id["tract"]) for data_id in data_ids})


def split_evenly(tracts: Sequence[int], per_part: int) -> list[tuple[int, ...]]:
    """Split tracts into the fewest parts of at most ``per_part`` each,
    their sizes differing by at most one.

    Parameters
    ----------
    tracts : `~collections.abc.Sequence` [`int`]
        Tract ids, in the order to keep.
    per_part : `int`
        Most tracts a part.

    Returns
    -------
    parts : `list` [`tuple` [`int`, ...]]
        Consecutive runs of ``tracts``.

    Raises
    ------
    ValueError
        Raised if ``per_part`` is below 1.
    """
    if per_part < 1:
        raise ValueError(f"Tracts per submission must be at least 1, not {per_part}.")
    n_parts = -(-len(tracts) // per_part)
    base, extra = divmod(len(tracts), n_parts) if n_parts else (0, 0)
    parts, start = [], 0
    for k in range(n_parts):
        size = base + (1 if k < extra else 0)
        parts.append(tuple(tracts[start : start + size]))
        start += size
    return parts


def plan_submissions(
    tracts: Sequence[int],
    *,
    skymap: str,
    submit_file: str,
    output: str,
    tracts_per_submission: int = 10,
    repo: str | None = None,
    inputs: str | None = None,
    where: str = "",
    plan: str | None = None,
) -> list[SubmissionPart]:
    """Make the ``bps submit`` commands of a catalog split by tract.

    Parameters
    ----------
    tracts : `~collections.abc.Sequence` [`int`]
        The catalog's tracts (`catalog_tracts`).
    skymap : `str`
        The sky map's name.
    submit_file : `str`
        The BPS submit file every part runs.
    output : `str`
        The output chain all parts share (``-o``).
    tracts_per_submission : `int`, optional
        Most tracts a submission.
    repo : `str`, optional
        Repository (``-b``), if the submit file does not name it.
    inputs : `str`, optional
        Input collections (``-i``), if the submit file does not name them.
    where : `str`, optional
        More constraints, added to every part's data query (``-d``, which
        replaces the submit file's ``dataQuery``).
    plan : `str`, optional
        Names this plan's runs, ``{output}/{plan}/partNNN``; by
        default the current UTC time as BPS writes it and six random hex
        digits (``20261206T063000Z-5f3a9c``), unique even for plans made
        in the same second.

    Returns
    -------
    parts : `list` [`SubmissionPart`]
        One per submission.

    Raises
    ------
    ValueError
        Raised if there is no tract, ``tracts_per_submission`` is below 1,
        the sky map's name has characters a sky map name does not, a value
        holds a control character (a newline would split a command in
        two lines), ``where`` holds a double quote (ctrl_bps passes the
        data query to ``pipetask`` in double quotes) or unbalanced
        parentheses (which could escape the ``AND (...)`` it is put in),
        or ``output`` is empty.
    """
    _check_values(
        skymap, where, {"submit file": submit_file, "output": output, "repo": repo, "inputs": inputs}
    )
    output = output.rstrip("/")
    if not output:
        raise ValueError("The output collection is empty.")
    if len(tracts) == 0:
        raise ValueError("No tract to submit.")
    plan = plan or plan_name()
    groups = split_evenly(sorted({int(t) for t in tracts}), tracts_per_submission)
    width = max(3, len(str(len(groups))))
    common = ["bps", "submit", submit_file]
    if repo:
        common += ["-b", repo]
    if inputs:
        common += ["-i", inputs]
    parts = []
    for k, group in enumerate(groups, start=1):
        data_query = f"skymap = '{skymap}' AND tract IN ({', '.join(str(t) for t in group)})"
        if where:
            data_query += f" AND ({where})"
        output_run = f"{output}/{plan}/part{k:0{width}d}"
        command = (*common, "-o", output, "--output-run", output_run, "-d", data_query)
        parts.append(SubmissionPart(group, data_query, output, output_run, command))
    return parts


def plan_name(now: datetime.datetime | None = None) -> str:
    """Return a new plan's name: the UTC time to the second, as BPS names
    runs, and six random hex digits.

    Parameters
    ----------
    now : `datetime.datetime`, optional
        The time (aware); by default the current time.

    Returns
    -------
    name : `str`
        For example ``20261206T063000Z-5f3a9c``; names sort by time, and
        two made in the same second differ.
    """
    now = now or datetime.datetime.now(tz=datetime.UTC)
    return f"{now.astimezone(datetime.UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _check_values(skymap: str, where: str, values: dict[str, str | None]) -> None:
    """Raise `ValueError` for a sky map name, ``where`` or other value that
    `plan_submissions` refuses.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", skymap):
        raise ValueError(f"Sky map name {skymap!r}: only letters, digits and _ . + - are expected.")
    for name, value in values.items() | {("where", where)}:
        if value and any(ord(character) < 32 or ord(character) == 127 for character in value):
            raise ValueError(f"The {name} {value!r} holds a control character (a newline, a tab, ...).")
    if '"' in where:
        raise ValueError(f"The where expression {where!r} holds a double quote: use single quotes.")
    if not _parentheses_balanced(where):
        raise ValueError(f"The where expression {where!r} has unbalanced parentheses.")


def _parentheses_balanced(expression: str) -> bool:
    """Tell whether an expression's parentheses, outside its single-quoted
    strings, close in order and all close.
    """
    depth = 0
    for k, piece in enumerate(expression.split("'")):
        if k % 2:  # Inside a string literal.
            continue
        for character in piece:
            depth += {"(": 1, ")": -1}.get(character, 0)
            if depth < 0:
                return False
    return depth == 0
