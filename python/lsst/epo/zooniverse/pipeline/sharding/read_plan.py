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

"""The read plan: which catalog columns hold the id, the coordinates, the
size and the extra columns, and the frame and units they are in.
"""

from __future__ import annotations

__all__ = ["SIZE_COLUMNS", "ReadPlan", "make_plan", "resolve_frame"]

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .catalog_readers import CatalogReader, parse_unit
from .errors import CatalogError

_LOG = logging.getLogger("lsst.epo.zooniverse.sharding")

SIZE_COLUMNS = {"pixel": "cutout_size_pixels", "arcsec": "cutout_size_arcsec"}
"""Published column of the cutout size, by ``size_unit``."""
_RESERVED_COLUMNS = ("object_id", "ra", "dec", "row_index", *SIZE_COLUMNS.values())


_NO_ID_HINT = (
    " If the catalog has no id column, pass --row-number-ids (id_column=None in Python): each row's "
    "0-based row number then is its object id."
)


def _resolve_column(name: str, available: Sequence[str]) -> str | None:
    if name in available:
        return name
    folded = [c for c in available if c.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def resolve_frame(frame: str) -> tuple[str, Any]:
    """Return astropy's name and class of a coordinate frame.

    Parameters
    ----------
    frame : `str`
        Frame name (``icrs``, ``fk5``, ``galactic``, ...; any case).

    Returns
    -------
    name : `str`
        The frame's astropy name.
    frame_class : `type`
        Its astropy frame class.

    Raises
    ------
    CatalogError
        Raised if astropy does not know the frame or cannot transform it
        to ICRS without more information.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord, frame_transform_graph

    name = frame.strip().lower()
    frame_class = frame_transform_graph.lookup_name(name)
    if frame_class is None:
        known = ", ".join(sorted(n for n in frame_transform_graph.get_names() if n.isalnum())[:40])
        raise CatalogError(f"Unknown coordinate frame {frame!r}; astropy knows: {known}, ...")
    try:
        SkyCoord(0.0 * u.deg, 0.0 * u.deg, frame=name).icrs
    except Exception as err:
        raise CatalogError(
            f"Coordinates in frame {frame!r} cannot be transformed to ICRS without more information: {err}"
        ) from None
    return name, frame_class


def _frame_component_names(frame_class: Any) -> tuple[str, str]:
    names = {v: k for k, v in frame_class().representation_component_names.items()}
    return names.get("lon", "ra"), names.get("lat", "dec")


@dataclasses.dataclass
class ReadPlan:
    """What to read and how to interpret it (see `make_plan`).

    The ``*_column`` fields are the catalog's own column names
    (``id_column`` is `None` when the ids are the rows' 0-based row
    numbers); ``size_output`` is the published size column; the factors
    turn file values into degrees (coordinates) or the published size unit.
    """

    catalog: Path
    fmt: str
    id_column: str | None
    ra_column: str
    dec_column: str
    size_column: str | None
    size_output: str | None
    size_factor: float
    extras: list[str]
    frame: str
    ra_factor: float
    dec_factor: float
    ra_unit: str
    dec_unit: str


def make_plan(
    reader: CatalogReader,
    *,
    path: Path,
    fmt: str,
    id_column: str | None,
    ra_column: str,
    dec_column: str,
    size_column: str | None,
    size_unit: str,
    extra_columns: list[str],
    frame_name: str,
    frame_class: Any,
    fallback_unit: Any,
) -> ReadPlan:
    # Over 80 lines only for its numpydoc docstring; the code is 38 lines.
    """Find the requested columns in a catalog and the factors that turn
    their values into degrees (coordinates) and the published size unit.

    Parameters
    ----------
    reader : `CatalogReader`
        The open catalog.
    path : `pathlib.Path`
        The catalog file.
    fmt : `str`
        Its format (one of ``CATALOG_FORMATS``).
    id_column : `str` or `None`
        Requested column of the id (`None`: each row's 0-based row number
        is its id).
    ra_column, dec_column : `str`
        Requested columns of the coordinates (exact names, else
        case-insensitive; the frame's own component names for the default
        ``ra``/``dec``).
    size_column : `str` or `None`
        Requested column of the cutout size.
    size_unit : `str`
        A key of `SIZE_COLUMNS`.
    extra_columns : `list` [`str`]
        Columns carried unchanged.
    frame_name : `str`
        Astropy name of the coordinate frame.
    frame_class : `type`
        Its astropy frame class (see `resolve_frame`).
    fallback_unit : `astropy.units.UnitBase` or `None`
        Coordinate unit when the file records none (default degrees).

    Returns
    -------
    plan : `ReadPlan`
        What to read and how to interpret it.

    Raises
    ------
    CatalogError
        Raised if a column is missing, listed twice, not numeric or in a
        unit that does not fit.
    """
    import astropy.units as u

    id_found, ra_found, dec_found, size_found, extras = _find_columns(
        reader, path, id_column, ra_column, dec_column, size_column, extra_columns, frame_class
    )

    def angle_factor(column: str, longitude: bool) -> tuple[float, str]:
        unit = parse_unit(reader.units.get(column), f"column {column!r}") or fallback_unit or u.deg
        if longitude and unit.physical_type == "time":
            # An RA in hours (``h``, as VizieR writes it): 1 h = 15 deg.
            return float(unit.to(u.h)) * 15.0, unit.to_string()
        if unit.physical_type != "angle":
            raise CatalogError(
                f"Column {column!r} of catalog {path.name} has unit {unit.to_string()!r}, which is not an "
                "angle; coordinates must be in an angular unit (deg, rad, arcsec, ...; the RA may also be "
                "in hours, h or hourangle)."
            )
        return float(unit.to(u.deg)), unit.to_string()

    ra_factor, ra_unit = angle_factor(ra_found, longitude=True)
    dec_factor, dec_unit = angle_factor(dec_found, longitude=False)
    size_factor = _size_factor(reader, path, size_found, size_unit) if size_found is not None else 1.0
    if ra_factor != 1.0 or dec_factor != 1.0:
        _LOG.info("Coordinates of %s are in %s/%s; converting to degrees", path.name, ra_unit, dec_unit)
    return ReadPlan(
        catalog=path,
        fmt=fmt,
        id_column=id_found,
        ra_column=ra_found,
        dec_column=dec_found,
        size_column=size_found,
        size_output=SIZE_COLUMNS[size_unit] if size_found else None,
        size_factor=size_factor,
        extras=extras,
        frame=frame_name,
        ra_factor=ra_factor,
        dec_factor=dec_factor,
        ra_unit=ra_unit,
        dec_unit=dec_unit,
    )


def _find_columns(
    reader: CatalogReader,
    path: Path,
    id_column: str | None,
    ra_column: str,
    dec_column: str,
    size_column: str | None,
    extra_columns: list[str],
    frame_class: Any,
) -> tuple[str | None, str, str, str | None, list[str]]:
    """Return the catalog's names of the id, longitude, latitude and size
    columns and of the extra columns, checking that the coordinate and
    size columns are numeric.
    """
    available = reader.columns
    listing = ", ".join(available) if available else "(none)"

    def resolve(name: str, what: str, alternatives: Sequence[str] = (), hint: str = "") -> str:
        found = _resolve_column(name, available)
        for alternative in alternatives:
            if found is None:
                found = _resolve_column(alternative, available)
        if found is None:
            raise CatalogError(
                f"Column {name!r} ({what}) is not in catalog {path.name}; its columns are: {listing}.{hint}"
            )
        return found

    lon_name, lat_name = _frame_component_names(frame_class)
    ra_alternatives = [lon_name] if ra_column == "ra" and lon_name != "ra" else []
    dec_alternatives = [lat_name] if dec_column == "dec" and lat_name != "dec" else []
    id_found = None if id_column is None else resolve(id_column, "object id", hint=_NO_ID_HINT)
    ra_found = resolve(ra_column, "longitude/RA", ra_alternatives)
    dec_found = resolve(dec_column, "latitude/Dec", dec_alternatives)
    size_found = resolve(size_column, "cutout size") if size_column else None
    extras = []
    for name in extra_columns:
        found = resolve(name, "extra column")
        if found in _RESERVED_COLUMNS:
            raise CatalogError(
                f"Extra column {found!r} clashes with a column the shards define "
                f"({', '.join(_RESERVED_COLUMNS)}); rename it in the catalog."
            )
        if found in extras:
            raise CatalogError(f"Extra column {found!r} is listed twice.")
        extras.append(found)
    for name, what in ((ra_found, "longitude/RA"), (dec_found, "latitude/Dec"), (size_found, "cutout size")):
        if name is not None and reader.is_numeric(name) is False:
            raise CatalogError(
                f"Column {name!r} ({what}) of catalog {path.name} is not numeric "
                f"({reader.describe_type(name)})."
            )
    return id_found, ra_found, dec_found, size_found, extras


def _size_factor(reader: CatalogReader, path: Path, size_found: str, size_unit: str) -> float:
    """Return the factor from the size column's recorded unit to
    ``size_unit`` (1 if the file records none).
    """
    import astropy.units as u

    size_factor = 1.0
    size_file_unit = parse_unit(reader.units.get(size_found), f"column {size_found!r}")
    if size_file_unit is not None:
        is_angle = size_file_unit.physical_type == "angle"
        is_pixel = size_file_unit in (u.pix, u.dimensionless_unscaled) or size_file_unit.to_string() in (
            "pix",
            "pixel",
        )
        if size_unit == "arcsec" and is_angle:
            size_factor = float(size_file_unit.to(u.arcsec))
        elif not (size_unit == "pixel" and is_pixel):
            raise CatalogError(
                f"Column {size_found!r} of catalog {path.name} has unit {size_file_unit.to_string()!r}, "
                f"which does not match size_unit={size_unit!r}."
            )
    return size_factor
