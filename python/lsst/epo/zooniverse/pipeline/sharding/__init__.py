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

"""Shard a PI's target catalog into the Butler by HTM level-7 trixel.

`shard_target_catalog` reads a catalog (CSV, Parquet, FITS binary table or
VOTable), validates every row, and writes one ``zooniverse_targets``
dataset per HTM level-7 trixel plus one ``zooniverse_targets_rejected``
dataset listing every refused row with the reason (DESIGN §3).
"""

from .shard_targets import *  # noqa: F403
from .shard_targets import __all__  # noqa: F401
