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

"""Duplicate object ids: 64-bit hashes of every id, repeated hashes
confirmed on the real strings.
"""

from __future__ import annotations

__all__ = ["find_duplicates", "hash_strings", "in_sorted_set"]

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MAX_LISTED_ROWS = 10
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def hash_strings(array: pa.Array) -> np.ndarray:
    """Return the 64-bit FNV-1a hash of every string of an Arrow array
    (nulls hash like empty strings), vectorised over the rows.

    Parameters
    ----------
    array : `pyarrow.Array`
        Strings (any Arrow string type).

    Returns
    -------
    hashes : `numpy.ndarray` [`numpy.uint64`]
        One hash per row.
    """
    array = array.cast(pa.large_string())
    n = len(array)
    hashes = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if n == 0:
        return hashes
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=array.offset * 8)
    if buffers[2] is None or buffers[2].size == 0:
        return hashes
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    sorted_starts = starts[order]
    sorted_hashes = hashes[order]
    negative = -sorted_lengths
    for k in range(int(sorted_lengths[0])):
        # Strings longer than k come first.
        m = int(np.searchsorted(negative, -k, side="left"))
        sorted_hashes[:m] ^= data[sorted_starts[:m] + k]
        sorted_hashes[:m] *= _FNV_PRIME
    hashes[order] = sorted_hashes
    return hashes


def in_sorted_set(values: np.ndarray, sorted_set: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """Return whether each value is in ``sorted_set`` (sorted, unique), in
    blocks to bound the temporary memory (``np.isin`` sorts a copy of
    everything).

    Parameters
    ----------
    values : `numpy.ndarray`
        Values to look up.
    sorted_set : `numpy.ndarray`
        Sorted unique values of the same dtype.
    block : `int`, optional
        Values looked up at a time.

    Returns
    -------
    member : `numpy.ndarray` [`bool`]
        Whether each value is in ``sorted_set``.
    """
    result = np.zeros(len(values), dtype=bool)
    if not len(sorted_set):
        return result
    for start in range(0, len(values), block):
        chunk = values[start : start + block]
        positions = np.searchsorted(sorted_set, chunk)
        np.minimum(positions, len(sorted_set) - 1, out=positions)
        result[start : start + block] = sorted_set[positions] == chunk
    return result


def find_duplicates(acc: Any, accepted_ids: pa.Array, accepted_rows: np.ndarray) -> dict[int, str]:
    """Find the rows whose (stripped) id is also on another row.

    Parameters
    ----------
    acc : `RowAccumulator`
        The accumulator, after the last chunk (its per-row id hashes are
        consumed; its rejected ids are read).
    accepted_ids : `pyarrow.Array`
        Ids of the accepted rows (``finish_accepted``'s ``ids``).
    accepted_rows : `numpy.ndarray` [`numpy.int64`]
        Their sorted row indices.

    Returns
    -------
    duplicates : `dict` [`int`, `str`]
        Detail by ``row_index`` (the id and the other rows holding it);
        empty when the ids are row numbers.
    """
    if acc.plan.id_column is None:
        return {}  # Row numbers are unique.
    # Repeated hashes: sort the hashes of rows with an id (one 8-byte copy,
    # sorted in place), then find the rows holding them.
    hashes, has_id = acc.hashes.finish(), acc.has_id.finish()
    present = hashes[has_id]
    if len(present) < 2:
        return {}
    present.sort()
    repeated = np.unique(present[1:][present[1:] == present[:-1]])
    del present
    if not len(repeated):
        return {}
    candidates = np.flatnonzero(has_id & in_sorted_set(hashes, repeated))
    del hashes, has_id
    # The real (stripped) strings of the candidates.
    texts: dict[int, str] = {}
    positions = np.searchsorted(accepted_rows, candidates)
    positions = np.minimum(positions, max(len(accepted_rows) - 1, 0))
    in_accepted = (
        (accepted_rows[positions] == candidates) if len(accepted_rows) else np.zeros(len(candidates), bool)
    )
    if in_accepted.any():
        values = accepted_ids.take(pa.array(positions[in_accepted])).to_pylist()
        texts.update(zip(candidates[in_accepted].tolist(), values))
    if (~in_accepted).any():
        rej_rows = np.concatenate(acc.rej_row_index)
        rej_ids = pa.concat_arrays(acc.rej_ids) if len(acc.rej_ids) > 1 else acc.rej_ids[0]
        wanted = candidates[~in_accepted]
        where = np.searchsorted(rej_rows, wanted)
        values = pc.utf8_trim_whitespace(rej_ids.take(pa.array(where))).to_pylist()
        texts.update(zip(wanted.tolist(), values))
    groups: dict[str, list[int]] = {}
    for row in candidates.tolist():
        groups.setdefault(texts[row], []).append(row)
    duplicates: dict[int, str] = {}
    id_column = acc.plan.id_column
    for text, group in groups.items():
        if len(group) < 2:
            continue  # A hash collision between different ids.
        for row in group:
            others = [r for r in group if r != row]
            listed = ", ".join(str(r) for r in others[:_MAX_LISTED_ROWS])
            more = f" and {len(others) - _MAX_LISTED_ROWS} more" if len(others) > _MAX_LISTED_ROWS else ""
            duplicates[row] = (
                f"{id_column} {text!r} is on {len(group)} rows; also on row_index {listed}{more}"
            )
    return duplicates
