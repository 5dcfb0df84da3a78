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

"""Change what a filled subject set shows: replace the picture of a
published subject (`replace_subject`), link the set to a workflow
(`link_set_to_workflow`).

Zooniverse's maintainers advise against changing the image of a subject
that already has classifications (the classifications would then describe
a picture nobody sees).  This package never changes a subject's
locations: a new picture is a **new subject** with the same
``external_id`` and the metadata ``!replaces_subject`` naming the old
subject id(s), linked to the set; the old subject is then unlinked from
the set (not deleted: its classifications stay in the project's exports).
The state database records the new subject for the external id (method
``replacement``) and the audit log the pair.

A subject with no classifications yet is treated the same way, on
purpose: whether it has any cannot be known without a race (a volunteer
may classify it while it is changed), the new subject costs one upload
against the account's limit, and one rule is easier to audit than two.

The call is idempotent: if the set already holds a subject of that
external id showing the new picture, nothing is created; any other
subject of that external id is unlinked.
"""

from __future__ import annotations

__all__ = ["REPLACES_METADATA_KEY", "SubjectReplacement", "link_set_to_workflow", "replace_subject"]

import dataclasses
import logging
from typing import TYPE_CHECKING

from .api_client import ApiNotFoundError, ApiServerError
from .errors import SubjectSetError
from .set_content import SetContent, subject_body, subject_urls

if TYPE_CHECKING:
    from ..export.manifest import SubjectRow
    from .api_client import PanoptesApiClient
    from .records import SubjectSetRecords

_LOG = logging.getLogger(__name__)

REPLACES_METADATA_KEY = "!replaces_subject"
"""Metadata of a replacing subject: the replaced subject id(s), comma
separated (``!``: hidden on the classify page, shown in Talk)."""


@dataclasses.dataclass(frozen=True)
class SubjectReplacement:
    """What `replace_subject` did."""

    external_id: str
    """The picture's external id (kept by the new subject)."""
    subject_set_id: int
    """Zooniverse id of the set."""
    new_subject_id: int
    """The subject showing the new picture, now in the set."""
    old_subject_ids: tuple[int, ...]
    """The subjects unlinked from the set (empty if the set held none)."""
    created: bool
    """A subject was created by this call (`False`: an earlier call had)."""


def replace_subject(
    api: PanoptesApiClient,
    records: SubjectSetRecords,
    *,
    set_id: int,
    set_row_id: int,
    zooniverse_project: int,
    row: SubjectRow,
    page_size: int = 100,
) -> SubjectReplacement:
    """Make a set show a new picture for an external id: create a new
    subject, then unlink the old one(s).

    Parameters
    ----------
    api : `~lsst.epo.zooniverse.zooniverse.api_client.PanoptesApiClient`
        The signed-in client.
    records : `~lsst.epo.zooniverse.zooniverse.records.SubjectSetRecords`
        The state database's subject-set tables.
    set_id : `int`
        Zooniverse id of the set.
    set_row_id : `int`
        Row id of the set's record.
    zooniverse_project : `int`
        Zooniverse project id.
    row : `~lsst.epo.zooniverse.export.manifest.SubjectRow`
        The new picture's row: same ``external_id``, new locations.
    page_size : `int`, optional
        Subjects per page when listing the set.

    Returns
    -------
    replacement : `SubjectReplacement`
        The new and old subject ids.

    Raises
    ------
    SubjectSetError
        Raised if the new subject cannot be made (nothing was unlinked:
        call again), or cannot be found after a lost answer.
    """
    content = SetContent(api, records, page_size)
    current = content.list_set(set_id).get(row.external_id, [])
    showing = [int(s["id"]) for s in current if subject_urls(s) == list(row.locations)]
    old = tuple(int(s["id"]) for s in current if int(s["id"]) not in showing[:1])
    created = not showing
    if showing:
        new_id = showing[0]
    else:
        extra = {REPLACES_METADATA_KEY: ",".join(str(i) for i in old)} if old else {}
        body = subject_body(row, zooniverse_project, set_id, extra)
        try:
            answer = api.request("POST", "/subjects", body=body, idempotent=False)
            new_id = int(answer["subjects"][0]["id"])
        except ApiServerError as err:
            made = [
                int(s["id"])
                for s in content.list_set(set_id).get(row.external_id, [])
                if subject_urls(s) == list(row.locations)
            ]
            if not made:
                raise SubjectSetError(
                    f"{err}; subject {row.external_id!r} of subject set {set_id} was not replaced; call again"
                ) from None
            new_id = made[0]
    records.replace_subject(set_row_id, row, new_id)
    if old:
        ids = ",".join(str(i) for i in old)
        api.request("DELETE", f"/subject_sets/{set_id}/links/subjects/{ids}", idempotent=True)
    _LOG.info(
        "Subject %r of subject set %d: subject %d replaces %s.",
        row.external_id,
        set_id,
        new_id,
        ", ".join(str(i) for i in old) or "none",
    )
    return SubjectReplacement(row.external_id, set_id, new_id, old, created)


def link_set_to_workflow(api: PanoptesApiClient, set_id: int, workflow: int, zooniverse_project: int) -> bool:
    """Link a subject set to a workflow of its project (once).

    Parameters
    ----------
    api : `~lsst.epo.zooniverse.zooniverse.api_client.PanoptesApiClient`
        The signed-in client.
    set_id : `int`
        Zooniverse id of the set.
    workflow : `int`
        Zooniverse workflow id.
    zooniverse_project : `int`
        The project the workflow must belong to.

    Returns
    -------
    linked : `bool`
        `True` if linked now, `False` if it already was.

    Raises
    ------
    SubjectSetError
        Raised if the workflow does not exist or belongs to another
        project.
    """
    try:
        answer = api.request("GET", f"/workflows/{workflow}", idempotent=True) or {}
    except ApiNotFoundError:
        raise SubjectSetError(f"Zooniverse has no workflow {workflow}.") from None
    (found,) = answer.get("workflows") or [{}]
    links = found.get("links") or {}
    if str(links.get("project")) != str(zooniverse_project):
        raise SubjectSetError(
            f"Workflow {workflow} belongs to Zooniverse project {links.get('project')}, not to "
            f"project {zooniverse_project}."
        )
    if str(set_id) in {str(i) for i in links.get("subject_sets") or ()}:
        return False
    api.request(
        "POST",
        f"/workflows/{workflow}/links/subject_sets",
        body={"subject_sets": [str(set_id)]},
        idempotent=True,
    )
    return True
