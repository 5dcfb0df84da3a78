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

"""The afw mask planes this package writes: the default planes of
`lsst.afw.image.Mask` and those of a Rubin (non-cell) deep coadd.

Bits 0-8 are the same in both; a deep coadd then has its own planes where
afw's defaults have ``VIGNETTED`` and ``STREAK``.
"""

__all__ = ["COADD_MASK_PLANES", "DEFAULT_MASK_PLANES"]

DEFAULT_MASK_PLANES: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "VIGNETTED": 9,
    "STREAK": 10,
}
"""The default mask planes of `lsst.afw.image.Mask` and their bits."""

COADD_MASK_PLANES: dict[str, int] = {
    **{name: bit for name, bit in DEFAULT_MASK_PLANES.items() if bit <= DEFAULT_MASK_PLANES["NO_DATA"]},
    "SENSOR_EDGE": 9,
    "CLIPPED": 10,
    "REJECTED": 11,
    "INEXACT_PSF": 12,
    "CROSSTALK": 13,
    "NOT_DEBLENDED": 14,
    "UNMASKEDNAN": 15,
}
"""Mask planes of a Rubin (non-cell) deep coadd, as afw writes them, and
their bits (the demo coadds have these).
"""
