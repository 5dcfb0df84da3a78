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


"""What the Zooniverse ``subject_set_imports`` API reads from a manifest.

The facts both the writing (`lsst.epo.zooniverse.export.manifest`) and
the offline check (`lsst.epo.zooniverse.export.manifest_validation`) of
import manifests rely on: the row limit, the ``external_id`` header and
what makes a location URL import as an image.
"""

from __future__ import annotations

__all__ = [
    "EXTERNAL_ID_HEADER",
    "LOCATION_EXTENSIONS",
    "MANIFEST_ROW_LIMIT",
    "is_loopback_url",
    "location_problems",
]

import ipaddress
import urllib.parse

MANIFEST_ROW_LIMIT = 10_000
"""Most data rows in one import manifest (Panoptes
``SUBJECT_SET_IMPORT_MANIFEST_ROW_LIMIT``, default 10,000; a larger
manifest is refused when the import is created).
"""
LOCATION_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif")
"""Lowercase URL path extensions the import maps to an image MIME type
that Panoptes accepts (we publish ``.png``).
"""
EXTERNAL_ID_HEADER = "external_id"
"""Header of the column the import upserts subjects on (`str`)."""


def is_loopback_url(url: str) -> bool:
    """Say whether a URL's host is this machine (``localhost``, an address
    in 127.0.0.0/8, or ``::1``), where plain http is acceptable for the
    demo and tests.

    Parameters
    ----------
    url : `str`
        An absolute URL.

    Returns
    -------
    loopback : `bool`
        `True` if the host is a loopback name or address.
    """
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def location_problems(url: object, url_prefix: str | None = None) -> list[tuple[str, str]]:
    """Say how a location is not one the import turns into a valid medium.

    Parameters
    ----------
    url : `object`
        The location (a manifest cell or a `SubjectRow` location).
    url_prefix : `str`, optional
        If given, the location must start with it.

    Returns
    -------
    problems : `list` [`tuple` [`str`, `str`]]
        ``(rule, message)`` for each problem, rules as in
        `lsst.epo.zooniverse.export.manifest_validation.RULES`; empty for
        a good location.
    """
    if not isinstance(url, str) or not url:
        return [("manifest.empty_location", "empty location")]
    shown = url if len(url) <= 200 else url[:200] + "..."
    problems = []
    parts = urllib.parse.urlsplit(url) if url.isprintable() and " " not in url else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(("manifest.location_not_url", f"{shown!r} is not an absolute http(s) URL"))
        return problems
    if "?" in url:
        problems.append(("manifest.location_query", f"{shown!r} has a query string (MIME type lost)"))
    if "#" in url:
        problems.append(("manifest.location_fragment", f"{shown!r} has a fragment (MIME type lost)"))
    last = parts.path.rsplit("/", 1)[-1]
    if "." not in last or "." + last.rsplit(".", 1)[1] not in LOCATION_EXTENSIONS:
        problems.append(
            (
                "manifest.location_extension",
                f"{shown!r} does not end in a lowercase {', '.join(LOCATION_EXTENSIONS)}",
            )
        )
    if url_prefix is not None and not url.startswith(url_prefix):
        problems.append(("manifest.location_prefix", f"{shown!r} does not start with {url_prefix!r}"))
    return problems
