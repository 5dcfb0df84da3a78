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

"""``butler shard-zooniverse-catalog``: shard a PI's catalog and print a
summary.
"""

__all__ = ["shard_zooniverse_catalog"]

from collections.abc import Sequence

import click

from ..butler.config import ButlerConfigError
from ..pipeline.sharding import CatalogError, ShardingSummary, shard_target_catalog


def shard_zooniverse_catalog(
    repo: str,
    catalog: str,
    output_run: str,
    id_column: str | None = None,
    row_number_ids: bool = False,
    ra_column: str = "ra",
    dec_column: str = "dec",
    size_column: str | None = None,
    size_unit: str = "pixel",
    extra_columns: Sequence[str] = (),
    frame: str = "icrs",
    coordinate_unit: str | None = None,
    file_format: str | None = None,
    chunk_rows: int = 500_000,
) -> ShardingSummary:
    # Over 80 lines only for its numpydoc docstring (one entry per option).
    """Shard a catalog into ``zooniverse_targets`` datasets and print a
    summary.

    Parameters
    ----------
    repo : `str`
        Butler repository.
    catalog : `str`
        Catalog file (CSV, Parquet, FITS, VOTable).
    output_run : `str`
        RUN collection to write.
    id_column : `str`, optional
        Column of the object ids (default ``object_id``).
    row_number_ids : `bool`, optional
        The catalog has no id column: each row's 0-based row number is
        its id (excludes ``id_column``).
    ra_column, dec_column : `str`, optional
        Columns of the coordinates.
    size_column : `str`, optional
        Column of per-object cutout sizes.
    size_unit : `str`, optional
        ``pixel`` or ``arcsec``.
    extra_columns : `~collections.abc.Sequence` [`str`], optional
        Columns carried into the shards.
    frame : `str`, optional
        Astropy frame of the coordinates.
    coordinate_unit : `str`, optional
        Unit of the coordinates when the file records none.
    file_format : `str`, optional
        ``csv``, ``parquet``, ``fits`` or ``votable``; default from the
        extension.
    chunk_rows : `int`, optional
        Rows read at a time.

    Returns
    -------
    summary : `lsst.epo.zooniverse.pipeline.sharding.ShardingSummary`
        What was done.

    Raises
    ------
    click.ClickException
        Raised for a structural problem with the catalog or the request
        (nothing has been written).
    """
    if row_number_ids and id_column is not None:
        raise click.ClickException(
            f"--id-column {id_column} and --row-number-ids exclude each other: the ids come from a column "
            "or are the row numbers."
        )
    try:
        summary = shard_target_catalog(
            repo,
            catalog,
            run=output_run,
            id_column=None if row_number_ids else (id_column or "object_id"),
            ra_column=ra_column,
            dec_column=dec_column,
            size_column=size_column,
            size_unit=size_unit,
            extra_columns=tuple(extra_columns or ()),
            frame=frame,
            coordinate_unit=coordinate_unit,
            file_format=file_format,
            chunk_rows=chunk_rows,
        )
    except (CatalogError, ButlerConfigError) as err:
        raise click.ClickException(str(err)) from None
    _echo_summary(summary, repo)
    return summary


def _echo_summary(summary: ShardingSummary, repo: str) -> None:
    """Print what the sharding did and where the rejected rows are."""
    click.echo(f"catalog:        {summary.catalog}")
    if summary.id_column is None:
        click.echo("object ids:     row numbers (0-based data row, as text; the catalog has no id column)")
    else:
        click.echo(f"object ids:     column {summary.id_column}")
    click.echo(f"rows read:      {summary.n_rows}")
    click.echo(f"accepted:       {summary.n_accepted}")
    click.echo(f"rejected:       {summary.n_rejected}")
    for reason, count in summary.rejected_by_reason.items():
        click.echo(f"  {reason + ':':<18} {count}")
    _echo_normalised(summary, repo)
    click.echo(f"shards written: {summary.n_shards} zooniverse_targets datasets (htm7)")
    click.echo(f"run:            {summary.run}")
    click.echo(f"time:           {summary.seconds:.1f} s")
    click.echo(
        "rejected rows:  butler query-datasets "
        f"{repo} zooniverse_targets_rejected --collections {summary.run}\n"
        "                or in Python: Butler.from_config("
        f"{repo!r}).get('zooniverse_targets_rejected', collections={summary.run!r}).pprint_all()"
    )


def _echo_normalised(summary: ShardingSummary, repo: str, listed: int = 5) -> None:
    """Print how many RAs were wrapped into [0, 360), the first few rows
    and where the full list is.
    """
    click.echo(
        f"RA normalised:  {summary.n_ra_normalised} (RA in [-360, 0) or [360, 720) deg wrapped into [0, 360))"
    )
    if not summary.n_ra_normalised:
        return
    for row_index, object_id, ra, ra_normalised in summary.ra_normalised_first[:listed]:
        click.echo(
            f"  row_index {row_index} (object_id {object_id}): ra {ra!r} {summary.ra_unit} -> "
            f"{ra_normalised!r} deg"
        )
    shown = min(listed, len(summary.ra_normalised_first))
    if summary.n_ra_normalised > shown:
        click.echo(f"  ... and {summary.n_ra_normalised - shown} more")
    click.echo(
        "  every one:    Butler.from_config("
        f"{repo!r}).get('zooniverse_targets_normalised', collections={summary.run!r}).pprint_all()"
    )
