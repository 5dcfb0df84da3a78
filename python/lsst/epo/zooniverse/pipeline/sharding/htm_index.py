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

"""HTM trixel indices of sky positions, vectorised in numpy (the answer
is always lsst.sphgeom's).
"""

from __future__ import annotations

__all__ = ["HTM_LEVEL", "htm_indices"]

import numpy as np

HTM_LEVEL = 7
"""HTM subdivision level of the ``zooniverse_targets`` shards."""


# Vertices of the eight HTM root triangles S0-S3, N0-N3 (indices 8-15).
_HTM_ROOTS = np.array(
    [
        [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
        [[0, 1, 0], [0, 0, -1], [-1, 0, 0]],
        [[-1, 0, 0], [0, 0, -1], [0, -1, 0]],
        [[0, -1, 0], [0, 0, -1], [1, 0, 0]],
        [[1, 0, 0], [0, 0, 1], [0, -1, 0]],
        [[0, -1, 0], [0, 0, 1], [-1, 0, 0]],
        [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
        [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
    ],
    dtype=np.float64,
)
# Per level, (M, 9) tables: for every trixel of the level, the normals of
# the three planes that choose its child (see `_htm_tables`).
_HTM_TABLES: list[np.ndarray] = []
# A point closer than this (|determinant|; about 1e-10 rad from an edge at
# level 7) to a trixel edge, or to a root-triangle plane, is indexed by
# lsst.sphgeom itself, whose predicates are exact.
_HTM_EPS = 1e-12
_HTM_BLOCK = 32768


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _htm_tables(level: int) -> list[np.ndarray]:
    """Return, per level below ``level``, the normals (m01 x m20,
    m12 x m01, m20 x m12) of every trixel's child-choosing planes: a point
    is in child 0 if it is on the non-negative side of the first, else in
    child 1 for the second, child 2 for the third, else child 3.
    """
    if len(_HTM_TABLES) < level:
        _HTM_TABLES.clear()
        vertices = _HTM_ROOTS
        for _ in range(level):
            v0, v1, v2 = vertices[:, 0], vertices[:, 1], vertices[:, 2]
            m12, m20, m01 = _unit(v1 + v2), _unit(v2 + v0), _unit(v0 + v1)
            normals = np.stack([np.cross(m01, m20), np.cross(m12, m01), np.cross(m20, m12)], axis=1)
            _HTM_TABLES.append(np.ascontiguousarray(normals.reshape(-1, 9)))
            vertices = np.stack(
                [
                    np.stack([v0, m01, m20], axis=1),
                    np.stack([v1, m12, m01], axis=1),
                    np.stack([v2, m20, m12], axis=1),
                    np.stack([m12, m20, m01], axis=1),
                ],
                axis=1,
            ).reshape(-1, 3, 3)
    return _HTM_TABLES[:level]


def _htm_descend(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, index: np.ndarray, tables: list[np.ndarray]
) -> np.ndarray:
    """Descend from root triangles (``index`` 0-7, updated in place) to the
    last level; return the mask of points too close to a plane to trust.
    """
    buffer = np.empty((len(x), 9))
    uncertain = (np.abs(x) < _HTM_EPS) | (np.abs(y) < _HTM_EPS) | (np.abs(z) < _HTM_EPS)
    for table in tables:
        np.take(table, index, axis=0, out=buffer)
        d0 = x * buffer[:, 0] + y * buffer[:, 1] + z * buffer[:, 2]
        d1 = x * buffer[:, 3] + y * buffer[:, 4] + z * buffer[:, 5]
        d2 = x * buffer[:, 6] + y * buffer[:, 7] + z * buffer[:, 8]
        child = np.where(d0 >= 0, 0, np.where(d1 >= 0, 1, np.where(d2 >= 0, 2, 3)))
        uncertain |= (np.abs(d0) < _HTM_EPS) | (np.abs(d1) < _HTM_EPS) | (np.abs(d2) < _HTM_EPS)
        index *= 4
        index += child
    return uncertain


def htm_indices(ra: np.ndarray, dec: np.ndarray, level: int = HTM_LEVEL) -> np.ndarray:
    """Return HTM trixel indices of points, vectorised.

    Parameters
    ----------
    ra, dec : `numpy.ndarray`
        ICRS coordinates in degrees (finite, ``dec`` in [-90, 90]).
    level : `int`, optional
        HTM subdivision level.

    Returns
    -------
    indices : `numpy.ndarray` [`int64`]
        What ``lsst.sphgeom.HtmPixelization(level).index`` returns for
        ``UnitVector3d(LonLat.fromDegrees(ra, dec))``.

    Notes
    -----
    The trixel is found by descending the HTM tree in numpy with
    floating-point plane tests, in blocks that stay in the CPU cache;
    points within about 1e-10 rad of a plane (trixel edges, the equator,
    the RA 0/90/180/270 meridians) are handed to lsst.sphgeom, so the
    result is always sphgeom's. About 0.5 microsecond a point.
    """
    ra = np.ascontiguousarray(ra, dtype=np.float64)
    dec = np.ascontiguousarray(dec, dtype=np.float64)
    tables = _htm_tables(level)
    result = np.empty(len(ra), dtype=np.int64)
    uncertain = np.zeros(len(ra), dtype=bool)
    north = np.array([7, 6, 5, 4])  # South roots 0-3 map to north 7-4.
    for start in range(0, len(ra), _HTM_BLOCK):
        block = slice(start, start + _HTM_BLOCK)
        lon, lat = np.radians(ra[block]), np.radians(dec[block])
        cos_lat = np.cos(lat)
        x, y, z = cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)
        # Root triangle from the signs of x, y, z (as sphgeom chooses it).
        root = np.where(
            y > 0, np.where(x > 0, 0, 1), np.where(y == 0, np.where(x >= 0, 0, 2), np.where(x < 0, 2, 3))
        )
        index = np.where(z < 0, root, north[root]).astype(np.int64)
        uncertain[block] = _htm_descend(x, y, z, index, tables)
        result[block] = index
    result += 8 * 4**level
    if uncertain.any():
        from lsst.sphgeom import HtmPixelization, LonLat, UnitVector3d

        pixelization = HtmPixelization(level)
        positions = np.flatnonzero(uncertain)
        result[positions] = [
            pixelization.index(UnitVector3d(LonLat.fromDegrees(r, d)))
            for r, d in zip(ra[positions].tolist(), dec[positions].tolist())
        ]
    return result
