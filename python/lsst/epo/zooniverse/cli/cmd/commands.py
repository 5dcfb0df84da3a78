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

__all__ = ["make_zooniverse_demo_repo"]

from typing import Any

import click
from lsst.daf.butler.cli.opt import repo_argument
from lsst.daf.butler.cli.utils import ButlerCommand

from ... import script
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
    script.make_zooniverse_demo_repo(**kwargs)
