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

"""The rules of the Stamps FITS layout that every writer and reader of it
shares: its keywords, what its primary header says, which stamps a read
selects, where a stamp's parent origin and mask planes are recorded, and
how a stamp's celestial WCS is made when first asked for.

The layout is described in `.stamps`; the writers and readers that use
these rules are `.stamps_fast` and `.stamps_astropy`.
"""

from __future__ import annotations

__all__ = [
    "LAYOUT_KEYS",
    "PLANES",
    "PROVENANCE_PREFIX",
    "STAMPCLS",
    "STAMP_ARRAYS",
    "STRUCTURAL_KEYS",
    "PrimaryInfo",
    "StampsRead",
    "array_value",
    "celestial_wcs",
    "check_metadata_key",
    "get_stamp_wcs",
    "index_table",
    "is_celestial",
    "parent_origin",
    "select_stamps",
    "set_stamp_wcs",
    "set_wcs_factory",
    "shifted_wcs",
    "stamp_planes",
    "wcs_factory",
]

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np
from astropy.table import Table

from .afw_wcs import a_wcs_origin
from .fits_cards import Header, read_value

PROVENANCE_PREFIX = "LSST BUTLER"
"""Prefix of the Butler provenance cards (as written by obs_base)."""

STAMPCLS = "lsst.meas.algorithms.stamps.Stamps"
"""``STAMPCLS`` value that makes the Rubin stack read a file as `Stamps`."""

STAMP_ARRAYS: dict[str, tuple[str, type]] = {
    "OBJ_ID": ("object_id", str),
    "BBOX_X0": ("x0", int),
    "BBOX_Y0": ("y0", int),
    "BBOX_W": ("width", int),
    "BBOX_H": ("height", int),
    "COVERAGE": ("coverage", float),
    "EDGEDIST": ("edge_distance", float),
}
"""Per-stamp primary-header arrays beyond ``RA_DEG``/``DEC_DEG``: keyword
to (`Stamp` attribute, type).  All keywords are at most 8 characters, so no
HIERARCH.
"""

LAYOUT_KEYS = frozenset(
    {"RA_DEG", "DEC_DEG", "HAS_MASK", "HAS_VARIANCE", "HAS_ARCHIVE", "N_STAMPS", "STAMPCLS", "VERSION"}
    | set(STAMP_ARRAYS)
    | {"ARCHIVE_IDS"}
)
"""Keywords written by the layout itself; never part of user metadata."""

STRUCTURAL_KEYS = frozenset({"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", ""})
"""Primary-header keywords that are FITS structure, never metadata."""

PLANES = ("IMAGE", "MASK", "VARIANCE")
"""``EXTNAME`` of the HDUs of a stamp, in the order they are written."""

# -- Writing -------------------------------------------------------------


def check_metadata_key(key: str) -> None:
    """Refuse a metadata key the layout reserves.

    Parameters
    ----------
    key : `str`
        The key.

    Raises
    ------
    ValueError
        Raised if the key is a layout or structure keyword.
    """
    if key.upper() in LAYOUT_KEYS or key.upper() in STRUCTURAL_KEYS:
        raise ValueError(f"Stamps metadata key {key!r} is reserved by the Stamps layout.")


def array_value(stamp: Any, attribute: str, kind: type) -> Any:
    """Return the value a stamp writes in one of the `STAMP_ARRAYS`.

    Parameters
    ----------
    stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
        The stamp.
    attribute : `str`
        Its attribute.
    kind : `type`
        Type of the array (`str` arrays write ``""`` for `None`).

    Returns
    -------
    value : `object`
        The value, before `~.fits_cards.header_value`.
    """
    value = getattr(stamp, attribute)
    if kind is str and value is None:
        return ""
    return value


def stamp_planes(stamps: Any) -> list[list[tuple[str, np.ndarray]]]:
    """Return the planes written for each stamp.

    Parameters
    ----------
    stamps : `~lsst.epo.zooniverse.formats.stamps.Stamps`
        The stamps.

    Returns
    -------
    planes : `list` [`list` [`tuple` [`str`, `numpy.ndarray`]]]
        For each stamp, ``(EXTNAME, pixels)`` of each plane written.

    Raises
    ------
    ValueError
        Raised if the collection writes a plane a stamp does not have.
    """
    result = []
    for number, stamp in enumerate(stamps, start=1):
        planes = [("IMAGE", stamp.image)]
        if stamps.use_mask:
            if stamp.mask is None:
                raise ValueError(f"Stamp {number} has no mask but the collection writes masks.")
            planes.append(("MASK", stamp.mask))
        if stamps.use_variance:
            if stamp.variance is None:
                raise ValueError(f"Stamp {number} has no variance but the collection writes variance.")
            planes.append(("VARIANCE", stamp.variance))
        result.append(planes)
    return result


# -- Reading -------------------------------------------------------------


def _arrays(header: Header) -> dict[str, list[Any]]:
    """Values of each keyword, in order (repeated keywords are arrays;
    astropy's ``header[key]`` returns only the first).
    """
    arrays: dict[str, list[Any]] = {}
    for keyword, _, value in header.cards:
        values = arrays.get(keyword)
        if values is None:
            arrays[keyword] = [value]
        else:
            values.append(value)
    return arrays


class PrimaryInfo:
    """What the primary header of a Stamps file says.

    Parameters
    ----------
    header : `~.fits_cards.Header`
        The primary header.
    name : `str`
        Name of the file, for messages.

    Raises
    ------
    ValueError
        Raised if the header is not that of a Stamps file, or its arrays
        disagree with ``N_STAMPS``.
    """

    def __init__(self, header: Header, name: str) -> None:
        missing = [key for key in ("N_STAMPS", "HAS_ARCHIVE") if key not in header]
        if missing:
            raise ValueError(
                f"{name} is not a Stamps file: primary header lacks {', '.join(missing)} "
                "(files from before 2021-05 are not supported, as in lsst.meas.algorithms)."
            )
        self.n_stamps = int(header["N_STAMPS"])
        self.has_mask = bool(header.get("HAS_MASK", True))
        self.has_variance = bool(header.get("HAS_VARIANCE", True))
        arrays = _arrays(header)

        def array(keyword: str) -> list[Any]:
            return [read_value(value) for value in arrays.get(keyword, ())]

        self.ras = array("RA_DEG")
        self.decs = array("DEC_DEG")
        self.arrays = {keyword: array(keyword) for keyword in STAMP_ARRAYS}
        for keyword, values in [("RA_DEG", self.ras), ("DEC_DEG", self.decs), *self.arrays.items()]:
            if values and len(values) != self.n_stamps:
                raise ValueError(
                    f"{name}: {len(values)} {keyword} values for N_STAMPS={self.n_stamps} stamps."
                )
        self.metadata: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        for keyword, value in header.items():
            if keyword in LAYOUT_KEYS or keyword in STRUCTURAL_KEYS:
                continue
            target = self.provenance if keyword.startswith(PROVENANCE_PREFIX) else self.metadata
            target[keyword] = read_value(value)

    def stamp_fields(self, k: int) -> dict[str, Any]:
        """Return the per-stamp values the primary header gives a stamp.

        Parameters
        ----------
        k : `int`
            0-based stamp number.

        Returns
        -------
        fields : `dict` [`str`, `object`]
            `Stamp` fields (``ra``, ``dec``, ``object_id``, ``coverage``,
            ``edge_distance``; not the bbox, which the pixel HDUs give).
        """
        fields: dict[str, Any] = {
            "ra": float(self.ras[k]) if self.ras and self.ras[k] is not None else math.nan,
            "dec": float(self.decs[k]) if self.decs and self.decs[k] is not None else math.nan,
        }
        for keyword, (attribute, kind) in STAMP_ARRAYS.items():
            values = self.arrays[keyword]
            if not values or values[k] is None:
                continue
            if attribute in ("x0", "y0", "width", "height"):
                continue  # The pixel HDUs are the authority for the bbox.
            fields[attribute] = (values[k] or None) if kind is str else kind(values[k])
        return fields

    def index_rows(self) -> list[tuple]:
        """Return the rows of `index_table` (bbox -1 where not recorded)."""
        rows = []
        for k in range(self.n_stamps):
            fields = self.stamp_fields(k)
            bbox = [
                int(self.arrays[key][k]) if self.arrays[key] else -1
                for key in ("BBOX_X0", "BBOX_Y0", "BBOX_W", "BBOX_H")
            ]
            rows.append(
                (
                    fields.get("object_id"),
                    fields["ra"],
                    fields["dec"],
                    *bbox,
                    fields.get("coverage", math.nan),
                    fields.get("edge_distance", math.nan),
                )
            )
        return rows


def select_stamps(
    info: PrimaryInfo, indices: Sequence[int] | None, object_ids: Sequence[str] | None, name: str
) -> list[int]:
    """Return the stamps a read gives back.

    Parameters
    ----------
    info : `PrimaryInfo`
        What the primary header says.
    indices : `~collections.abc.Sequence` [`int`] or `None`
        0-based stamp numbers asked for.
    object_ids : `~collections.abc.Sequence` [`str`] or `None`
        Object ids asked for.
    name : `str`
        Name of the file, for messages.

    Returns
    -------
    selected : `list` [`int`]
        0-based stamp numbers, in the order asked for (all without
        ``indices`` or ``object_ids``).

    Raises
    ------
    ValueError
        Raised if both are given, or one asks for a stamp not in the file.
    """
    if indices is not None and object_ids is not None:
        raise ValueError("Give either indices or object_ids, not both.")
    if object_ids is not None:
        if isinstance(object_ids, str):
            object_ids = [object_ids]
        known = info.arrays["OBJ_ID"]
        position = {str(value): k for k, value in enumerate(known)}
        missing = [str(oid) for oid in object_ids if str(oid) not in position]
        if missing:
            raise ValueError(f"{name}: no stamps for object ids {missing}.")
        return [position[str(oid)] for oid in object_ids]
    if indices is not None:
        result = []
        for k in indices:
            k = int(k)
            if not 0 <= k < info.n_stamps:
                raise ValueError(f"{name}: stamp index {k} out of range for {info.n_stamps} stamps.")
            result.append(k)
        return result
    return list(range(info.n_stamps))


def parent_origin(header: Header) -> tuple[int, int]:
    """Return a stamp's parent origin from afw's A-WCS.

    Parameters
    ----------
    header : `~.fits_cards.Header`
        The header of a stamp plane.

    Returns
    -------
    x0, y0 : `int`
        Parent-frame origin; as in afw, ``(0, 0)`` unless ``CRPIX?A`` is 1.
    """
    return a_wcs_origin(header) or (0, 0)


def index_table(rows: list[tuple], metadata: Mapping[str, Any]) -> Table:
    """Make the per-stamp metadata table of `Stamps.index_table` and
    `read_stamps_index`.

    Parameters
    ----------
    rows : `list` [`tuple`]
        Per stamp: object id, ra, dec, bbox x0, y0, width, height,
        coverage, edge distance.
    metadata : `~collections.abc.Mapping` [`str`, `object`]
        Collection metadata; scalar values become the table's ``meta``.

    Returns
    -------
    table : `astropy.table.Table`
        The table, with an ``index`` column first.
    """
    names = (
        "object_id",
        "ra",
        "dec",
        "bbox_x0",
        "bbox_y0",
        "bbox_width",
        "bbox_height",
        "coverage",
        "edge_distance",
    )
    dtypes = (object, np.float64, np.float64, np.int64, np.int64, np.int64, np.int64, np.float64, np.float64)
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    table = Table(
        [np.arange(len(rows), dtype=np.int64)]
        + [np.array(col, dtype=dtype) for col, dtype in zip(columns, dtypes)],
        names=("index",) + names,
    )
    table["object_id"] = np.array(["" if v is None else v for v in table["object_id"]], dtype=str)
    table.meta.update({k: v for k, v in metadata.items() if isinstance(v, (bool, int, float, str))})
    return table


@dataclasses.dataclass
class StampsRead:
    """What a reader found in a Stamps file, before it becomes `Stamps`.

    Attributes
    ----------
    info : `PrimaryInfo`
        What the primary header says.
    selected : `list` [`int`]
        0-based numbers of the stamps to give back, in order.
    parts : `dict` [`int`, `dict` [`str`, `object`]]
        For each 1-based stamp number read: its planes (``IMAGE``,
        ``MASK``, ``VARIANCE``), its parent origin (``xy0``) and its
        celestial WCS or a function that makes it (``wcs``).
    mask_planes : `dict` [`str`, `int`] or `None`
        Mask planes of the first ``MASK`` header, `None` without one.
    name : `str`
        Name of the file, for messages.
    with_variance : `bool`
        Whether the variance planes were read.
    """

    info: PrimaryInfo
    selected: list[int]
    parts: dict[int, dict[str, Any]]
    mask_planes: dict[str, int] | None
    name: str
    with_variance: bool


# -- Celestial WCS ---------------------------------------------------------


def is_celestial(header: Header) -> bool:
    """Return whether a header's primary WCS is celestial.

    Parameters
    ----------
    header : `~.fits_cards.Header`
        The header.

    Returns
    -------
    celestial : `bool`
        Whether ``CTYPE1`` is a celestial longitude.
    """
    ctype = str(header.get("CTYPE1", ""))
    return ctype.startswith("RA") or ctype.startswith("GLON") or ctype.startswith("ELON")


def celestial_wcs(header: fits.Header) -> astropy.wcs.WCS:
    """Make the celestial WCS (key ``" "``) of a stamp's ``IMAGE`` header.

    Parameters
    ----------
    header : `astropy.io.fits.Header`
        The header.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        Its 2-axis WCS.
    """
    return astropy.wcs.WCS(header, naxis=2, key=" ")


def shifted_wcs(base: astropy.wcs.WCS, crpix: list[float]) -> astropy.wcs.WCS:
    """Return a copy of a WCS with another reference pixel.

    Parameters
    ----------
    base : `astropy.wcs.WCS`
        The WCS (not changed).
    crpix : `list` [`float`]
        The new ``CRPIX`` (1-based); SIP polynomials follow it.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        The shifted copy.

    Notes
    -----
    A WCS without distortion tables is copied as its ``Wcsprm`` in a new
    `astropy.wcs.WCS` made without `~astropy.wcs.WCS.fix` (which
    ``deepcopy`` runs on an empty WCS and then replaces): the same WCS,
    pixel shape and bounds, at a fifth of the cost (one copy per stamp
    read and per picture made).
    """
    if any(table is not None for table in (base.cpdis1, base.cpdis2, base.det2im1, base.det2im2)):
        wcs = base.deepcopy()
    else:
        # astropy 6.1 (which pyproject allows) has no preserve_units: pass
        # it only for a WCS that has it set.
        units = {"preserve_units": True} if getattr(base, "preserve_units", False) else {}
        wcs = astropy.wcs.WCS(naxis=base.naxis, fix=False, **units)
        wcs.wcs = copy.deepcopy(base.wcs)
        wcs.sip = base.sip
        wcs.pixel_shape = base.pixel_shape
        wcs.pixel_bounds = base.pixel_bounds
    wcs.wcs.crpix = crpix
    if wcs.sip is not None:  # SIP polynomials are about their own CRPIX.
        wcs.sip = astropy.wcs.Sip(wcs.sip.a, wcs.sip.b, wcs.sip.ap, wcs.sip.bp, crpix)
    wcs.wcs.set()
    return wcs


def get_stamp_wcs(stamp: Any) -> astropy.wcs.WCS | None:
    """Return a stamp's WCS, making it if it is made when first asked for.

    Parameters
    ----------
    stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
        The stamp.

    Returns
    -------
    wcs : `astropy.wcs.WCS` or `None`
        Its WCS.
    """
    state = stamp.__dict__
    make = state.get("_wcs_factory")
    if make is not None:
        state["_wcs"] = make()
        state["_wcs_factory"] = None
    return state.get("_wcs")


def set_stamp_wcs(stamp: Any, value: astropy.wcs.WCS | None) -> None:
    """Set a stamp's WCS.

    Parameters
    ----------
    stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
        The stamp.
    value : `astropy.wcs.WCS` or `None`
        Its WCS.
    """
    stamp.__dict__["_wcs"] = value
    stamp.__dict__["_wcs_factory"] = None


def set_wcs_factory(stamp: Any, make: Callable[[], astropy.wcs.WCS]) -> None:
    """Give ``stamp`` the WCS ``make()`` returns, made when first asked for.

    Parameters
    ----------
    stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
        The stamp.
    make : callable
        Makes the WCS.
    """
    stamp.__dict__["_wcs"] = None
    stamp.__dict__["_wcs_factory"] = make


def wcs_factory(stamp: Any) -> Callable[[], astropy.wcs.WCS] | None:
    """Return the function that will make a stamp's WCS when it is first
    asked for, or `None` if the WCS is made already (or was set).

    Parameters
    ----------
    stamp : `~lsst.epo.zooniverse.formats.stamps.Stamp`
        The stamp.

    Returns
    -------
    make : callable or `None`
        What `set_wcs_factory` was given, if not called yet.
    """
    return stamp.__dict__.get("_wcs_factory")
