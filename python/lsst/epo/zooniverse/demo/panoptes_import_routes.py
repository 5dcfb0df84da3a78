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

"""The subject-set import routes of the Panoptes stand-in
(`lsst.epo.zooniverse.demo.panoptes_standin`): ``POST`` counts the
manifest before the import is made (``CountManifestRows``), ``GET``
lists (``?subject_set_id=``) or shows imports the account may see; the
jobs themselves are in `lsst.epo.zooniverse.demo.panoptes_imports`.
"""

from __future__ import annotations

__all__ = ["IMPORT_ROW_LIMIT", "ImportRoutes", "required_scope"]

import urllib.parse
from typing import Any

from .panoptes_imports import MalformedCsvError, parse_ruby_csv
from .panoptes_jsonapi import ApiAnswer, error_answer, page_answer

IMPORT_ROW_LIMIT = 10_000
"""``SUBJECT_SET_IMPORT_MANIFEST_ROW_LIMIT``'s default."""


class ImportRoutes:
    """``/api/subject_set_imports`` of the stand-in (a mixin of
    `~lsst.epo.zooniverse.demo.panoptes_standin.PanoptesStandIn`).
    """

    imports: dict[str, dict[str, Any]]
    subject_sets: dict[str, dict[str, Any]]

    def _import_json(self, record: dict[str, Any]) -> dict[str, Any]:
        count, imported = record["manifest_count"], record["imported_count"]
        progress = 0.0 if count == 0 else min(1.0, max(0.0, imported / count))
        shown = {k: v for k, v in record.items() if k != "failed_uuids"}
        return {**shown, "progress": progress, "href": f"/subject_set_imports/{record['id']}"}

    def _post_subject_set_imports(self, parts, query, body) -> tuple[int, Any]:
        attributes = (body or {}).get("subject_set_imports")
        if not isinstance(attributes, dict) or set(attributes) - {"source_url", "links"}:
            raise error_answer(422, "schema: subject_set_imports takes source_url and links only")
        set_id = str((attributes.get("links") or {}).get("subject_set", ""))
        if self.fail_imports_after is not None and self.imports_created >= self.fail_imports_after:
            raise ApiAnswer(500, {"errors": [{"message": "Internal server error"}]})
        # CountManifestRows, before the resource is made: downloads the
        # manifest and counts its records (blank lines included).
        url = attributes.get("source_url") or ""
        split = urllib.parse.urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise error_answer(422, "Source url is malformed")
        try:
            rows = len(parse_ruby_csv(self.imports_queue.downloader(url))[1:])
        except OSError:
            raise error_answer(422, f"Failed to download manifest: {url}") from None
        except MalformedCsvError:
            raise ApiAnswer(500, {"errors": [{"message": "Internal Server Error"}]}) from None
        if rows > IMPORT_ROW_LIMIT:
            message = (
                f"Manifest row count ({rows}) exceeds the limit ({IMPORT_ROW_LIMIT}) and can not be imported"
            )
            raise error_answer(403, message)
        if set_id not in self.subject_sets or not self.collaborator:
            raise error_answer(422, "Couldn't find linked subject_set for current user")
        self._ids += 1
        now = self.clock()
        record = {
            "id": str(self._ids),
            "source_url": url,
            "imported_count": 0,
            "failed_count": 0,
            "manifest_count": rows,
            "created_at": now,
            "updated_at": now,
            "links": {"subject_set": set_id, "user": "1"},
        }
        self.imports[record["id"]] = record
        self.imports_created += 1
        self.imports_queue.add(record, set_id, self.subject_sets[set_id]["links"]["project"])
        return 201, {"subject_set_imports": [self._import_json(record)]}

    def _get_subject_set_imports(self, parts, query, body) -> tuple[int, Any]:
        # The policy scope: imports into sets the account may update.
        visible = [r for r in self.imports.values() if self.collaborator]
        if parts:
            found = [r for r in visible if r["id"] == parts[0]]
            if not found:
                raise error_answer(404, f"Could not find subject_set_import with id='{parts[0]}'")
            return 200, {"subject_set_imports": [self._import_json(found[0])]}
        if "subject_set_id" in query:
            visible = [r for r in visible if r["links"]["subject_set"] == str(query["subject_set_id"])]
        return page_answer("subject_set_imports", [self._import_json(r) for r in visible], query)


def required_scope(method: str, parts: list[str]) -> str | None:
    """Return the scope Panoptes' ``require_authentication`` asks of an
    action (link actions ask none).

    Parameters
    ----------
    method : `str`
        HTTP method.
    parts : `list` [`str`]
        The path's parts under ``/api/``.

    Returns
    -------
    scope : `str` or `None`
        ``project``, ``subject`` or `None`.
    """
    if parts[0] == "subject_set_imports":
        return "project"
    if method == "POST" and parts[0] == "projects" and parts[2:] == ["classifications_export"]:
        return "project"
    if method in ("POST", "PUT", "DELETE") and len(parts) == 1:
        return {"subjects": "subject", "subject_sets": "project", "workflows": "project"}.get(parts[0])
    return None
