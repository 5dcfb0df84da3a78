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

"""``butler summarize-zooniverse-run``: count the pictures of a run, write
its contact sheet and account for every catalog row.
"""

__all__ = ["summarize_zooniverse_run"]

import os

import click

from ..butler.config import get_butler
from ..butler.dataset_types import RGB
from ..formats.contact_sheet import contact_sheet_from_collections
from ..pipeline.accounting import account_targets, summarize_accounting


def summarize_zooniverse_run(
    repo: str,
    collections: str | list[str],
    contact_sheet: str | None = None,
    accounting: str | None = None,
    max_pictures: int = 64,
) -> None:
    """Print what a pipeline run made: pictures per patch, what happened to
    every catalog row, and write a contact sheet and the per-row table.

    Parameters
    ----------
    repo : `str`
        Repository.
    collections : `str` or `list` [`str`]
        The run's output collection (with its inputs).
    contact_sheet : `str`, optional
        PNG file to write a contact sheet of the pictures to.
    accounting : `str`, optional
        CSV file to write the per-row accounting table to.
    max_pictures : `int`, optional
        Most pictures on the contact sheet.

    Raises
    ------
    click.ClickException
        Raised if the collections hold no pipeline output.
    """
    butler = get_butler(repo)
    if isinstance(collections, str):
        collections = [c for c in collections.split(",") if c]
    refs = sorted(
        butler.query_datasets(RGB.name, collections=collections, find_first=True, explain=False),
        key=lambda ref: (ref.dataId["tract"], ref.dataId["patch"]),
    )
    if not refs:
        raise click.ClickException(f"No {RGB.name} datasets in {collections}.")
    n_pictures = 0
    rgb_collections = []
    click.echo(f"output collection: {','.join(collections)}")
    for ref in refs:
        index = butler.get(ref.makeComponentRef("index"))
        n_pictures += len(index)
        click.echo(f"  {RGB.name} tract {ref.dataId['tract']} patch {ref.dataId['patch']}: {len(index)} PNG")
        if contact_sheet and len(index):
            rgb_collections.append(butler.get(ref))
    click.echo(f"pictures: {n_pictures} in {len(refs)} ZIP files")
    try:
        table = account_targets(butler, collections)
    except LookupError as err:
        click.echo(f"accounting skipped: {err}")
    else:
        click.echo(summarize_accounting(table))
        if accounting:
            os.makedirs(os.path.dirname(os.path.abspath(accounting)), exist_ok=True)
            table.write(accounting, format="ascii.csv", overwrite=True)
            click.echo(f"per-row accounting: {accounting}")
    if contact_sheet and rgb_collections:
        os.makedirs(os.path.dirname(os.path.abspath(contact_sheet)), exist_ok=True)
        sheet = contact_sheet_from_collections(
            rgb_collections,
            max_pictures=max_pictures,
            title=f"{','.join(collections)}: {n_pictures} pictures",
        )
        sheet.save(contact_sheet)
        click.echo(f"contact sheet: {contact_sheet}")
