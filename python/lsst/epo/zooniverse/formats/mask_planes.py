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
afw's defaults have ``VIGNETTED`` and ``STREAK``.  afw records the planes
of a ``MASK`` HDU as ``MP_<name>`` cards (`mask_plane_cards`).
"""

__all__ = ["COADD_MASK_PLANES", "DEFAULT_MASK_PLANES", "mask_plane_cards", "mask_planes_from_cards"]

from collections.abc import Iterable, Mapping
from typing import Any

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


def mask_plane_cards(mask_planes: Mapping[str, int]) -> list[tuple[str, int]]:
    """Return the cards by which afw records mask planes in a ``MASK``
    header.

    Parameters
    ----------
    mask_planes : `~collections.abc.Mapping` [`str`, `int`]
        Plane name to bit number.

    Returns
    -------
    cards : `list` [`tuple` [`str`, `int`]]
        ``(MP_<name>, bit)``, sorted by name (written as HIERARCH cards
        when longer than 8 characters).
    """
    return [(f"MP_{name}", int(mask_planes[name])) for name in sorted(mask_planes)]


def mask_planes_from_cards(cards: Iterable[tuple[str, Any]]) -> dict[str, int]:
    """Return the mask planes recorded by the cards of a ``MASK`` header.

    Parameters
    ----------
    cards : `~collections.abc.Iterable` [`tuple` [`str`, `object`]]
        (keyword, value) of the header's cards.

    Returns
    -------
    mask_planes : `dict` [`str`, `int`]
        Plane name to bit number, from the ``MP_<name>`` cards.
    """
    return {key[3:]: int(value) for key, value in cards if key.startswith("MP_")}
