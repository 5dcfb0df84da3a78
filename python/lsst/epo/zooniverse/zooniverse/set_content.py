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

"""What a subject set holds, by external id: `SetContent`, and the
subject bodies this package creates.
"""

from __future__ import annotations

__all__ = [
    "EXTERNAL_ID_METADATA_KEY",
    "SetContent",
    "external_id_of",
    "mime_type",
    "subject_body",
    "subject_urls",
]

import logging
import os
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import SubjectSetError

if TYPE_CHECKING:
    from ..export.manifest import SubjectRow
    from .api_client import PanoptesApiClient
    from .records import SubjectSetRecords
    from .summary import SubjectSetSummary

_LOG = logging.getLogger(__name__)

EXTERNAL_ID_METADATA_KEY = "#external_id"
"""Metadata key that also holds the external id of subjects created by
the ``subjects`` method (they carry the ``external_id`` attribute too,
doc/zooniverse_facts.md §2; the key is kept for readers of subject
metadata, such as classification exports' ``subject_data``).  ``#``
hides it in the web interface; the public API still returns it."""

_MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_UNLINK_BATCH = 50


def external_id_of(subject: Mapping[str, Any]) -> str | None:
    """Return the external id of a subject as the API gives it.

    Parameters
    ----------
    subject : `~collections.abc.Mapping`
        A subject resource.

    Returns
    -------
    external_id : `str` or `None`
        Its ``external_id``, else the metadata's
        `EXTERNAL_ID_METADATA_KEY` (older created subjects); `None` if
        neither.
    """
    value = subject.get("external_id") or (subject.get("metadata") or {}).get(EXTERNAL_ID_METADATA_KEY)
    return None if value in (None, "") else str(value)


def mime_type(url: str) -> str:
    """Return the MIME type of an image location, from its extension.

    Parameters
    ----------
    url : `str`
        The location.

    Returns
    -------
    mime : `str`
        ``image/png``, ``image/jpeg`` or ``image/gif``.

    Raises
    ------
    SubjectSetError
        Raised for any other extension.
    """
    extension = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    try:
        return _MIME_TYPES[extension]
    except KeyError:
        raise SubjectSetError(f"No image MIME type for location {url!r}.") from None


def subject_body(
    row: SubjectRow, zooniverse_project: int, set_id: int, extra: Mapping[str, str] = {}
) -> dict:
    """Return the ``POST /subjects`` body of a row, linked to a set.

    Parameters
    ----------
    row : `~lsst.epo.zooniverse.export.manifest.SubjectRow`
        The subject.
    zooniverse_project : `int`
        Zooniverse project id.
    set_id : `int`
        Zooniverse id of the set.
    extra : `~collections.abc.Mapping`, optional
        More metadata.

    Returns
    -------
    body : `dict`
        ``{"subjects": {external_id, locations, metadata, links}}``; the
        metadata also holds the external id (`EXTERNAL_ID_METADATA_KEY`).
    """
    return {
        "subjects": {
            "external_id": row.external_id,
            "locations": [{mime_type(url): url} for url in row.locations],
            "metadata": {**dict(row.metadata), **extra, EXTERNAL_ID_METADATA_KEY: row.external_id},
            "links": {"project": str(zooniverse_project), "subject_sets": [str(set_id)]},
        }
    }


class SetContent:
    """List a subject set and keep one subject per external id.

    Parameters
    ----------
    api : `~lsst.epo.zooniverse.zooniverse.api_client.PanoptesApiClient`
        The signed-in client.
    records : `~lsst.epo.zooniverse.zooniverse.records.SubjectSetRecords`
        The state database's subject-set tables.
    page_size : `int`
        Subjects per page.
    """

    def __init__(self, api: PanoptesApiClient, records: SubjectSetRecords, page_size: int) -> None:
        self.api = api
        self.records = records
        self.page_size = page_size

    def list_set(self, set_id: int) -> dict[str, list[dict[str, Any]]]:
        """Return the subjects of a set by external id.

        Parameters
        ----------
        set_id : `int`
            Zooniverse id of the set.

        Returns
        -------
        subjects : `dict` [`str`, `list` [`dict`]]
            Every subject with an external id, in the server's order.
        """
        found: dict[str, list[dict[str, Any]]] = {}
        for subject in self.api.pages("subjects", {"subject_set_id": set_id, "page_size": self.page_size}):
            external_id = external_id_of(subject)
            if external_id is not None:
                found.setdefault(external_id, []).append(subject)
        return found

    def reconcile(
        self,
        set_id: int,
        set_row_id: int,
        by_id: Mapping[str, SubjectRow],
        summary: SubjectSetSummary,
    ) -> dict[str, int]:
        """List the set, keep one subject per external id of ours and
        record what is there.

        An external id held more than once (two imports that ran at the
        same time, a create retried after a lost answer) keeps one subject
        showing the row's current picture (the recorded one if it does,
        else the oldest); the others are unlinked from the set (not
        deleted: a volunteer may have classified them).

        Parameters
        ----------
        set_id : `int`
            Zooniverse id of the set.
        set_row_id : `int`
            Row id of the set's record.
        by_id : `~collections.abc.Mapping` [`str`, `SubjectRow`]
            The rows the set should hold, by external id.
        summary : `~lsst.epo.zooniverse.zooniverse.summary.SubjectSetSummary`
            Receives the duplicates found and unlinked.

        Returns
        -------
        subjects : `dict` [`str`, `int`]
            Subject id by external id, one per external id.
        """
        listing = self.list_set(set_id)
        recorded = self.records.subject_ids(set_row_id)
        kept: dict[str, int] = {}
        extra: list[int] = []
        for external_id, subjects in listing.items():
            ids = [int(s["id"]) for s in subjects]
            row = by_id.get(external_id)
            if len(ids) > 1 and row is not None:
                showing = [int(s["id"]) for s in subjects if subject_urls(s) == list(row.locations)]
                choices = showing or ids
                keep = recorded.get(external_id)
                keep = keep if keep in choices else min(choices)
                extra += [i for i in ids if i != keep]
                summary.duplicates = sorted({*summary.duplicates, external_id})
            else:
                keep = ids[0]
            kept[external_id] = keep
        for start in range(0, len(extra), _UNLINK_BATCH):
            batch = ",".join(str(i) for i in extra[start : start + _UNLINK_BATCH])
            self.api.request("DELETE", f"/subject_sets/{set_id}/links/subjects/{batch}", idempotent=True)
        if extra:
            summary.unlinked += len(extra)
            _LOG.warning("Unlinked %d extra copies of subjects from subject set %d.", len(extra), set_id)
        known = [(by_id[e], s) for e, s in kept.items() if e in by_id and e not in recorded]
        self.records.record_subjects(set_row_id, "found", known)
        return kept


def subject_urls(subject: Mapping[str, Any]) -> list[str]:
    """Return the location URLs of a subject resource.

    Parameters
    ----------
    subject : `~collections.abc.Mapping`
        A subject resource (``locations``: ``[{mime: url}, ...]``).

    Returns
    -------
    urls : `list` [`str`]
        The URLs, in order.
    """
    return [next(iter(location.values())) for location in subject.get("locations") or [] if location]
