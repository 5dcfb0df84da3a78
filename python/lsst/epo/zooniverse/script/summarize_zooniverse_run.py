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

__all__ = ["picture_level_fractions", "summarize_zooniverse_run"]

import math
import os
from collections.abc import Iterable

import click
import numpy as np

from lsst.daf.butler import Butler, DatasetRef, MissingCollectionError, MissingDatasetTypeError

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
    max_level_pictures: int = 2000,
) -> None:
    """Print what a pipeline run made: pictures per patch, the fractions
    of pure-black and saturated pixels, what happened to every catalog
    row, and write a contact sheet and the per-row table.

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
    max_level_pictures : `int`, optional
        Most pictures the pure-black and saturated fractions are measured
        on; beyond it, every n-th picture is (and the line says so).

    Raises
    ------
    click.ClickException
        Raised (a one-line error) if a collection does not exist or the
        collections hold no pipeline output.
    """
    butler = get_butler(repo)
    if isinstance(collections, str):
        collections = [c for c in collections.split(",") if c]
    refs = _rgb_refs(butler, collections)
    indexes = [butler.get(ref.makeComponentRef("index")) for ref in refs]
    n_pictures = sum(len(index) for index in indexes)
    stride = max(1, math.ceil(n_pictures / max_level_pictures))
    rgb_collections = []
    sampled: list[np.ndarray] = []
    click.echo(f"output collection: {','.join(collections)}")
    first = 0  # Number of the ZIP's first picture in the whole run.
    for ref, index in zip(refs, indexes):
        click.echo(f"  {RGB.name} tract {ref.dataId['tract']} patch {ref.dataId['patch']}: {len(index)} PNG")
        picked = [k for k in range(len(index)) if (first + k) % stride == 0]
        first += len(index)
        if picked or (contact_sheet and len(index)):
            rgb = butler.get(ref)
            sampled.extend(rgb.images[k] for k in picked)
            if contact_sheet and len(index):
                rgb_collections.append(rgb)
    click.echo(f"pictures: {n_pictures} in {len(refs)} ZIP files")
    black, saturated, n_pixels = picture_level_fractions(sampled)
    sample_text = f"1 picture in {stride}: {len(sampled)} of {n_pictures}" if stride > 1 else "all pictures"
    click.echo(
        f"pixels: {100 * black:.2f} % pure black (R=G=B=0), {100 * saturated:.2f} % saturated "
        f"(a channel at 255), over {n_pixels} pixels of {sample_text}"
    )
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


def picture_level_fractions(pictures: Iterable[np.ndarray]) -> tuple[float, float, int]:
    """Return the fractions of pure-black and saturated pixels of 8-bit
    RGB pictures.

    Parameters
    ----------
    pictures : `~collections.abc.Iterable` [`numpy.ndarray`]
        ``uint8`` arrays of shape ``(H, W, 3)``.

    Returns
    -------
    black : `float`
        Fraction of the pixels with all three channels 0 (NaN without
        pixels).
    saturated : `float`
        Fraction of the pixels with at least one channel at 255.
    n_pixels : `int`
        Number of pixels.
    """
    n_black = n_saturated = n_pixels = 0
    for picture in pictures:
        rgb = np.asarray(picture)
        n_black += int((rgb.max(axis=-1) == 0).sum())
        n_saturated += int((rgb == 255).any(axis=-1).sum())
        n_pixels += rgb.shape[0] * rgb.shape[1]
    if not n_pixels:
        return math.nan, math.nan, 0
    return n_black / n_pixels, n_saturated / n_pixels, n_pixels


def _rgb_refs(butler: Butler, collections: list[str]) -> list[DatasetRef]:
    """Return the run's `RGB` datasets by tract and patch, or raise a
    `click.ClickException` (a one-line error) if a collection does not
    exist or there are none.
    """
    names = ",".join(collections)
    try:
        for name in collections:
            butler.collections.get_info(name)
        found = butler.query_datasets(RGB.name, collections=collections, find_first=True, explain=False)
    except MissingCollectionError as err:
        raise click.ClickException(f"{err} (collections: {names})") from None
    except MissingDatasetTypeError:  # Nothing of this package was ever run in the repository.
        found = []
    if not found:
        raise click.ClickException(f"No {RGB.name} datasets in collection(s) {names}.")
    return sorted(found, key=lambda ref: (ref.dataId["tract"], ref.dataId["patch"]))
