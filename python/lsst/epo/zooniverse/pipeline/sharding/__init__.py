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
dataset listing every refused row with the reason (README, "Data products and formats"). Every input
row ends up in exactly one of the two, identified by its ``row_index``. A
third table, ``zooniverse_targets_normalised``, names every published row
whose RA was wrapped into [0, 360). The validation rules are in the
docstring of `row_validation` and in ``doc/catalog_rules.md``.

How the work is split:

1. Read and validate the whole file, chunk by chunk. Accepted rows are
   kept in memory as numpy/Arrow columns (about 70 bytes a row plus the
   extra columns); each row's object id is also reduced to a 64-bit hash
   for duplicate detection. Structural problems (missing or non-numeric
   column, unreadable file, parse error) raise `CatalogError` here, before
   anything is written.
2. Find duplicated ids (repeated hashes, confirmed on the real strings)
   and reject every row of a duplicated id.
3. Sort the accepted rows by trixel, write one Parquet file per trixel
   with the layout of daf_butler's ``ArrowAstropy`` formatter into a
   staging directory next to the datastore, and ingest them all with
   ``transfer="move"`` in one Butler transaction together with the
   rejection and normalisation tables. That is 10-20 times faster than
   one ``butler.put`` per shard; the cost is about 1.2 ms a shard, so 10
   million rows over the 20,000 deg^2 of the Rubin wide survey (65,600
   shards) take about 85 s and peak at about 1.5 GB (see
   ``bench/RESULTS.md``).
"""

from .catalog_readers import CATALOG_FORMATS, detect_catalog_format
from .errors import CatalogError
from .htm_index import HTM_LEVEL, htm_indices
from .reports import TARGETS_NORMALISED
from .row_validation import RA_NORMALISABLE, REJECTION_REASONS
from .shard_targets import ShardingSummary, shard_target_catalog

__all__ = [
    "CATALOG_FORMATS",
    "HTM_LEVEL",
    "RA_NORMALISABLE",
    "REJECTION_REASONS",
    "TARGETS_NORMALISED",
    "CatalogError",
    "ShardingSummary",
    "detect_catalog_format",
    "htm_indices",
    "shard_target_catalog",
]
