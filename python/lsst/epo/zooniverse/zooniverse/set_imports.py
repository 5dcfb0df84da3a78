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

"""The subject-set imports of one set, as Zooniverse lists them:
`SetImports`.

Before anything is posted the set's imports are listed
(``GET /subject_set_imports?subject_set_id=``): every unfinished one is
waited for, whoever started it (a run whose answer was lost, another
machine), because two imports of one external id running at the same
time both create a subject.  An import whose counts stopped changing for
``import_stall_seconds`` is dead (its Sidekiq job is never retried); it
is remembered with its counts, and waited for again only if they change
(a queued job that started late).  A POST whose answer is lost is looked
for among the set's imports by its content-addressed manifest URL before
anything else is done.
"""

from __future__ import annotations

__all__ = ["ImportStalledError", "SetImports", "import_signature"]

import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .api_client import ApiNotFoundError, ApiServerError
from .errors import SubjectSetError

if TYPE_CHECKING:
    from .api_client import PanoptesApiClient
    from .records import SubjectSetRecords
    from .settings import SyncSettings

_LOG = logging.getLogger(__name__)


class ImportStalledError(SubjectSetError):
    """A subject-set import whose counts stopped changing (its worker
    failed; Zooniverse does not retry it).
    """


def import_signature(state: Mapping[str, Any]) -> str:
    """Return what changes while an import's job runs.

    Parameters
    ----------
    state : `~collections.abc.Mapping`
        The import resource.

    Returns
    -------
    signature : `str`
        ``stalled:`` and 8 hex digits of a hash of ``imported_count``,
        ``failed_count`` and ``updated_at`` (16 characters, the outcome
        column's size): the job saves ``imported_count`` (and
        ``updated_at``) every 5 to 500 rows, ``failed_count`` at once.
    """
    counts = f"{state.get('imported_count')}/{state.get('failed_count')}/{state.get('updated_at')}"
    return "stalled:" + hashlib.sha256(counts.encode()).hexdigest()[:8]


def is_finished(state: Mapping[str, Any]) -> bool:
    """Say whether an import's progress reached 1.

    Parameters
    ----------
    state : `~collections.abc.Mapping`
        The import resource.

    Returns
    -------
    finished : `bool`
        `True` if ``progress`` is 1.
    """
    try:
        return float(state.get("progress") or 0) >= 1.0
    except (TypeError, ValueError):
        return False


class SetImports:
    """List, wait for and post the imports of a subject set.

    Parameters
    ----------
    api : `~lsst.epo.zooniverse.zooniverse.api_client.PanoptesApiClient`
        The signed-in client.
    records : `~lsst.epo.zooniverse.zooniverse.records.SubjectSetRecords`
        The state database's subject-set tables.
    settings : `~lsst.epo.zooniverse.zooniverse.set_sync.SyncSettings`
        Poll interval, stall and timeout.
    """

    def __init__(self, api: PanoptesApiClient, records: SubjectSetRecords, settings: SyncSettings) -> None:
        self.api = api
        self.records = records
        self.settings = settings

    def list(self, set_id: int) -> list[dict[str, Any]]:
        """Return the set's imports, oldest first.

        Parameters
        ----------
        set_id : `int`
            Zooniverse id of the set.

        Returns
        -------
        imports : `list` [`dict`]
            The import resources.
        """
        found = self.api.pages("subject_set_imports", {"subject_set_id": set_id, "page_size": 100})
        return sorted(found, key=lambda s: int(s["id"]))

    def settle(self, set_id: int, set_row_id: int) -> list[dict[str, Any]]:
        """Wait for every unfinished import of the set, except dead ones
        whose counts have not changed since.

        Parameters
        ----------
        set_id : `int`
            Zooniverse id of the set.
        set_row_id : `int`
            Row id of the set's record.

        Returns
        -------
        imports : `list` [`dict`]
            The set's imports after the waits.
        """
        dead = self.records.dead_imports(set_row_id)
        recorded_open = set(self.records.unfinished_imports(set_row_id))
        states = self.list(set_id)
        for number, state in enumerate(states):
            import_id = int(state["id"])
            if is_finished(state):
                if import_id in recorded_open:
                    self.records.finish_import(set_row_id, import_id, "done")
                continue
            if dead.get(import_id) == import_signature(state):
                continue  # still dead
            # Started here, by a run whose answer was lost, or elsewhere.
            self.records.record_import(
                set_row_id, import_id, str(state.get("source_url")), int(state.get("manifest_count") or 0)
            )
            _LOG.info("Waiting for import %d of subject set %d to finish.", import_id, set_id)
            try:
                states[number] = self.wait(import_id)
            except ImportStalledError as err:
                _LOG.warning("%s; it is left alone until its counts change.", err)
                self.records.finish_import(set_row_id, import_id, import_signature(err.state))
                continue
            except ApiNotFoundError:
                self.records.finish_import(set_row_id, import_id, "gone")
                continue
            self.records.finish_import(set_row_id, import_id, "done")
        return states

    def wait(self, import_id: int) -> dict[str, Any]:
        """Poll an import until it is done; time is counted in polls (so an
        injected ``sleep`` gives the same decisions).

        Parameters
        ----------
        import_id : `int`
            Zooniverse id of the import.

        Returns
        -------
        state : `dict`
            Its last state (progress 1).

        Raises
        ------
        ImportStalledError
            Raised if its counts stop changing for
            ``import_stall_seconds`` (``err.state`` is the last state).
        SubjectSetError
            Raised after ``import_timeout``.
        """
        waited = unchanged = 0.0
        last: str | None = None
        while True:
            answer = self.api.request("GET", f"/subject_set_imports/{import_id}", idempotent=True) or {}
            state = (answer.get("subject_set_imports") or [{}])[0]
            if is_finished(state):
                return state
            signature = import_signature(state)
            unchanged = unchanged + self.settings.poll_interval if signature == last else 0.0
            last = signature
            if unchanged >= self.settings.import_stall_seconds:
                error = ImportStalledError(
                    f"Import {import_id} stopped: {state.get('imported_count')} of "
                    f"{state.get('manifest_count')} imported and no change for {unchanged:.3g} s "
                    "(Zooniverse's import worker does not retry)"
                )
                error.state = state
                raise error
            if waited >= self.settings.import_timeout:
                raise SubjectSetError(
                    f"Import {import_id} is still running after {self.settings.import_timeout:.0f} s "
                    f"({state.get('imported_count')} of {state.get('manifest_count')} imported); "
                    "a rerun waits for it before sending anything"
                )
            self.settings.sleep(self.settings.poll_interval)
            waited += self.settings.poll_interval

    def post(self, set_id: int, set_row_id: int, url: str, rows: int) -> int:
        """Create an import of a published manifest; after a lost answer,
        find the import the server made of it instead of posting again.

        Parameters
        ----------
        set_id : `int`
            Zooniverse id of the set.
        set_row_id : `int`
            Row id of the set's record.
        url : `str`
            Public, content-addressed URL of the manifest.
        rows : `int`
            Rows in the manifest.

        Returns
        -------
        import_id : `int`
            Zooniverse id of the import.

        Raises
        ------
        SubjectSetError
            Raised if the answer was lost and no import of ``url`` shows
            up within ``lost_answer_grace`` seconds (a rerun lists the
            set's imports before sending anything).
        """
        before = {int(s["id"]) for s in self.list(set_id)}
        try:
            answer = self.api.request(
                "POST",
                "/subject_set_imports",
                body={"subject_set_imports": {"source_url": url, "links": {"subject_set": str(set_id)}}},
                idempotent=False,
            )
            import_id = int(answer["subject_set_imports"][0]["id"])
        except ApiServerError as err:
            import_id = self._find_posted(set_id, url, before, err)
        self.records.record_import(set_row_id, import_id, url, rows)
        return import_id

    def _find_posted(self, set_id: int, url: str, before: set[int], err: Exception) -> int:
        """Look for the import a POST with a lost answer made."""
        waited = 0.0
        while True:
            made = [s for s in self.list(set_id) if s.get("source_url") == url and int(s["id"]) not in before]
            if made:
                _LOG.warning("%s; the server made import %s of %s all the same.", err, made[0]["id"], url)
                return int(made[0]["id"])
            if waited >= self.settings.lost_answer_grace:
                raise SubjectSetError(
                    f"{err}; no import of {url} appeared in subject set {set_id} within "
                    f"{self.settings.lost_answer_grace:.0f} s"
                )
            self.settings.sleep(self.settings.poll_interval)
            waited += self.settings.poll_interval
