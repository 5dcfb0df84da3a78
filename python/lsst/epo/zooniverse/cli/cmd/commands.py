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

"""Thin click wrappers; the work is done in `lsst.epo.zooniverse.script`."""

from __future__ import annotations

__all__ = [
    "ingest_zooniverse_images",
    "make_zooniverse_demo_repo",
    "plan_zooniverse_submissions",
    "shard_zooniverse_catalog",
    "summarize_zooniverse_run",
]

from typing import Any

import click

from lsst.daf.butler.cli.opt import repo_argument
from lsst.daf.butler.cli.utils import ButlerCommand, split_commas

# The script modules (and the package's heavy imports behind them) are
# imported when a command runs: daf_butler imports this module for every
# `butler` command, BPS final jobs included.
from ..opt import overwrite_option, seed_option


@click.command(short_help="Build the epo_zooniverse demo repository.", cls=ButlerCommand)
@repo_argument(required=True)
@overwrite_option()
@seed_option()
def make_zooniverse_demo_repo(**kwargs: Any) -> None:
    """Build a complete local Butler repository for demonstrations and
    tests: this package's storage classes, a sky map registered as
    skymap/tract/patch records, synthetic g/r/i deep_coadd datasets (with a
    saturated star, a survey edge without data and a patch missing g), the
    real 2MASS J/H/K Galactic-Centre images as one more tract, and sample
    catalogs under REPO/catalogs.

    REPO is the directory to create; it must not exist unless --overwrite.
    """
    from ...script.make_zooniverse_demo_repo import make_zooniverse_demo_repo as run

    run(**kwargs)


@click.command(short_help="Shard a target catalog into zooniverse_targets datasets.", cls=ButlerCommand)
@repo_argument(required=True)
@click.argument("catalog", type=click.Path(dir_okay=False))
@click.option("--output-run", required=True, help="RUN collection to write (must not hold targets already).")
@click.option("--id-column", default=None, help="Column of the object ids [default: object_id].")
@click.option(
    "--row-number-ids",
    is_flag=True,
    default=False,
    help="The catalog has no id column: each row's 0-based row number in the file is its object id "
    "(excludes --id-column; no row can then be a duplicate).",
)
@click.option("--ra-column", default="ra", show_default=True, help="Column of the RA (frame longitude).")
@click.option("--dec-column", default="dec", show_default=True, help="Column of the Dec (frame latitude).")
@click.option("--size-column", default=None, help="Column of per-object cutout sizes (optional).")
@click.option(
    "--size-unit",
    type=click.Choice(["pixel", "arcsec"]),
    default="pixel",
    show_default=True,
    help="Unit of --size-column.",
)
@click.option(
    "--extra-columns",
    multiple=True,
    callback=split_commas,
    metavar="COLUMN[,COLUMN...]",
    help="Columns carried unchanged into the shards (comma-separated, repeatable).",
)
@click.option(
    "--frame",
    default="icrs",
    show_default=True,
    help="Astropy frame of the coordinates (icrs, fk5, galactic, ...); transformed to ICRS.",
)
@click.option(
    "--coordinate-unit",
    default=None,
    help="Unit of the coordinates if the file records none [default: deg].",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "parquet", "fits", "votable"]),
    default=None,
    help="Catalog format [default: from the file extension].",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=500_000,
    show_default=True,
    help="Rows read at a time.",
)
def shard_zooniverse_catalog(**kwargs: Any) -> None:
    """Validate a PI's target catalog and write it into REPO as
    zooniverse_targets datasets, one per HTM level-7 trixel, in the RUN
    collection --output-run, with every refused row (and why) in the
    zooniverse_targets_rejected dataset of the same run, and every row
    whose RA was wrapped into [0, 360) in zooniverse_targets_normalised.
    Nothing is written if the file has a structural problem.

    CATALOG is a CSV (.csv, .csv.gz), Parquet (.parquet, .pq), FITS table
    (.fits, .fit, .fits.gz) or VOTable (.vot, .xml, .votable) file.
    """
    from ...script.shard_zooniverse_catalog import shard_zooniverse_catalog as run

    run(**kwargs)


@click.command(short_help="Summarize a Zooniverse cutout pipeline run.", cls=ButlerCommand)
@repo_argument(required=True)
@click.argument("collections", callback=split_commas)
@click.option(
    "--contact-sheet",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a PNG contact sheet (grid of thumbnails) of the pictures here.",
)
@click.option(
    "--accounting",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the per-catalog-row accounting table here (CSV).",
)
@click.option(
    "--max-pictures",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most pictures on the contact sheet.",
)
@click.option(
    "--max-level-pictures",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Most pictures the pure-black and saturated pixel fractions are measured on (every n-th "
    "picture beyond).",
)
def summarize_zooniverse_run(**kwargs: Any) -> None:
    """Print what a pipeline run made in COLLECTIONS (comma-separated; the
    run's output collection, which chains its inputs): the pictures per
    patch, the fractions of pure-black and saturated pixels, and what
    happened to every catalog row (pictured, rejected by the sharding
    command, no picture and why, outside every coadd).  A collection that
    does not exist, or holds no pictures, is a one-line error.
    """
    from ...script.summarize_zooniverse_run import summarize_zooniverse_run as run

    run(**kwargs)


@click.command(short_help="Print the bps submit commands of a catalog split by tract.", cls=ButlerCommand)
@repo_argument(required=True)
@click.argument("collections", callback=split_commas)
@click.option("--skymap", required=True, help="Name of the sky map (e.g. lsst_cells_v1).")
@click.option(
    "--submit-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The BPS submit file every submission runs.",
)
@click.option("--output", required=True, help="The output chain all submissions share.")
@click.option(
    "--tracts-per-submission",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Most tracts a submission.",
)
@click.option("--inputs", default=None, help="Input collections (-i), if the submit file does not name them.")
@click.option(
    "--where",
    default="",
    help="More constraints (a Butler query expression): on the tracts, and in every submission's data "
    "query, which replaces the submit file's dataQuery.",
)
def plan_zooniverse_submissions(**kwargs: Any) -> None:
    """Print one ``bps submit`` command a line for a large catalog, split
    by tract: the tracts of SKYMAP that overlap the sharded catalog in
    COLLECTIONS (comma-separated), in submissions of at most
    --tracts-per-submission tracts, each with its own output run
    OUTPUT/<time>-<random>/partNNN in the one output chain OUTPUT, so that
    they can run side by side (two submissions that share a run fail in
    the later one's final job).  Each command's data query (-d) replaces
    the submit file's dataQuery: give other constraints with --where.  A
    summary goes to standard error.
    """
    from ...script.plan_zooniverse_submissions import plan_zooniverse_submissions as run

    run(**kwargs)


@click.command(short_help="Ingest your own FITS images as deep_coadd on a new sky map.", cls=ButlerCommand)
@repo_argument(required=True)
@click.option("--skymap", required=True, help="Name of the new sky map (skymap dimension value).")
@click.option("--run", default=None, help="RUN collection to write [default: images/<skymap>].")
@click.option(
    "--image",
    "image",
    multiple=True,
    required=True,
    metavar="BAND=FILE",
    help="A FITS image of a band (repeatable; several files of one band are tiles of one pixel grid).",
)
@click.option(
    "--unit",
    multiple=True,
    metavar="[BAND=]UNIT",
    help="Flux unit of a band's pixels, overriding BUNIT: nJy, Jy, nanomaggy, MJy/sr, Jy/pix, or counts "
    "(DN, adu, ct, electron; also per second) with a zero point. Without BAND= it applies to every band.",
)
@click.option(
    "--zero-point",
    multiple=True,
    metavar="[BAND=]MAG",
    help="AB magnitude of one count, for count units "
    "[default: the MAGZP, MAGZERO, ZEROPT, PHOTZP or ZP card].",
)
@click.option(
    "--scale",
    multiple=True,
    metavar="[BAND=]FACTOR",
    help="Multiply a band's pixels by FACTOR to get nJy per pixel (overrides BUNIT and --unit).",
)
@click.option(
    "--pixel-scale",
    type=float,
    default=None,
    help="Tract pixel scale in arcseconds [default: the finest of the images'].",
)
@click.option("--patch-size", type=int, default=2000, show_default=True, help="Inner patch size, pixels.")
@click.option(
    "--patch-border", type=int, default=100, show_default=True, help="Patch overlap border, pixels."
)
def ingest_zooniverse_images(**kwargs: Any) -> None:
    """Resample your own FITS images onto a new sky map and write them
    into REPO as deep_coadd datasets (nJy per pixel), so that the cutout
    pipeline runs on them.

    The images may have any celestial WCS (ICRS, FK5, galactic, ecliptic;
    TAN, SIN, CAR, AIT, ...; SIP distortion; any orientation). They are
    resampled (bilinear, flux-conserving) onto one TAN ICRS tract, north
    up and east left, cut into overlapping patches; the sky map's
    skymap/tract/patch records, its zooniverse_skymap dataset and the
    bands are registered. VARIANCE, WEIGHT (inverse variance) and MASK
    extensions are used when present; otherwise the variance is the sky
    noise (MAD) of each image. Nothing is written if a file or option is
    bad.

    REPO is an existing repository with this package's configuration.
    """
    from ...script.ingest_zooniverse_images import ingest_zooniverse_images as run

    run(**kwargs)
