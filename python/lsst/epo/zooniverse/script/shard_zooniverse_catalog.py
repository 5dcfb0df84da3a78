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
    id_column: str = "object_id",
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
    id_column, ra_column, dec_column : `str`, optional
        Columns of the object id and coordinates.
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
    try:
        summary = shard_target_catalog(
            repo,
            catalog,
            run=output_run,
            id_column=id_column,
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
    click.echo(f"rows read:      {summary.n_rows}")
    click.echo(f"accepted:       {summary.n_accepted}")
    click.echo(f"rejected:       {summary.n_rejected}")
    for reason, count in summary.rejected_by_reason.items():
        click.echo(f"  {reason + ':':<18} {count}")
    click.echo(f"RA normalised:  {summary.n_ra_normalised} (wrapped into [0, 360))")
    click.echo(f"shards written: {summary.n_shards} zooniverse_targets datasets (htm7)")
    click.echo(f"run:            {summary.run}")
    click.echo(f"time:           {summary.seconds:.1f} s")
    click.echo(
        "rejected rows:  butler query-datasets "
        f"{repo} zooniverse_targets_rejected --collections {summary.run}\n"
        "                or in Python: Butler.from_config("
        f"{repo!r}).get('zooniverse_targets_rejected', collections={summary.run!r}).pprint_all()"
    )
