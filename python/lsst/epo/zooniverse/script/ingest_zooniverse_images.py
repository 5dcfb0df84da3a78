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

"""``butler ingest-zooniverse-images``: a user's own FITS images into a
repository as ``deep_coadd`` datasets on a new sky map.
"""

__all__ = ["ingest_zooniverse_images"]

from collections.abc import Sequence

import click

from ..butler.config import ButlerConfigError
from ..butler.own_images import OwnImagesError, ingest_own_images, parse_band_values, parse_image_specs


def _number(text: str) -> float:
    value = float(text)
    if value != value:
        raise ValueError(text)
    return value


def ingest_zooniverse_images(
    repo: str,
    skymap: str,
    image: Sequence[str],
    run: str | None = None,
    unit: Sequence[str] = (),
    zero_point: Sequence[str] = (),
    scale: Sequence[str] = (),
    pixel_scale: float | None = None,
    patch_size: int = 2000,
    patch_border: int = 100,
) -> None:
    """Ingest the images and print what was written.

    Parameters
    ----------
    repo : `str`
        Butler repository.
    skymap : `str`
        Name of the new sky map.
    image : `~collections.abc.Sequence` [`str`]
        ``BAND=FILE`` values.
    run : `str`, optional
        RUN collection (default ``images/<skymap>``).
    unit, zero_point, scale : `~collections.abc.Sequence` [`str`]
        ``BAND=VALUE`` (or ``VALUE`` for every band) flux options.
    pixel_scale : `float`, optional
        Tract pixel scale, arcseconds.
    patch_size, patch_border : `int`, optional
        Inner patch size and overlap border, pixels.

    Raises
    ------
    click.ClickException
        Raised, with a one-line message, for a bad file or option.
    """
    try:
        images = parse_image_specs(image)
        summary = ingest_own_images(
            repo,
            skymap=skymap,
            images=images,
            run=run,
            units=parse_band_values(unit, "--unit", images),
            zero_points=parse_band_values(zero_point, "--zero-point", images, _number),
            scales=parse_band_values(scale, "--scale", images, _number),
            pixel_scale=pixel_scale,
            patch_size=patch_size,
            patch_border=patch_border,
            progress=lambda message: click.echo(message, err=True),
        )
    except (OwnImagesError, ButlerConfigError) as err:
        raise click.ClickException(str(err).replace("\n", " ")) from None
    tract = summary.skymap.tracts[0]
    click.echo(f"skymap:     {summary.skymap.name} (tract {tract.tract_id}, {tract.nx}x{tract.ny} patches)")
    click.echo(f"run:        {summary.run}")
    click.echo(f"files:      {summary.n_files}")
    for band, patches in summary.coadds.items():
        click.echo(f"deep_coadd: band {band}: {len(patches)} patches")
