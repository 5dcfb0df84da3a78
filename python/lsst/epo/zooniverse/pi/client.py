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

"""The PI's client of EPO's web application, for a notebook on the Rubin
Science Platform: HTTP only (httpx), no database, no export service.

::

    from lsst.epo.zooniverse.pi.client import EpoClient

    epo = EpoClient(
        "https://data.lsst.cloud/epo-zooniverse"
    )  # token: $ACCESS_TOKEN
    epo.register(
        "my-galaxies",
        zooniverse_project_id=12345,
        repo="dp1",
        collections="u/jdoe/zooniverse/*",
        contact="jdoe@example.org",
    )
    epo.project("my-galaxies")  # counts by state
    epo.batches("my-galaxies")  # each batch: state, image counts, stretch
    epo.subjects("my-galaxies")  # published pictures and their URLs
    for message in epo.notifications(unread=True):
        print(message["summary"])
    epo.mark_read()

The token is, in order: the ``token`` argument, the ``ACCESS_TOKEN``
environment variable (set in every RSP notebook), the file named by
``token_file`` or ``EPO_ZOONIVERSE_TOKEN_FILE``, or
``~/.config/epo-zooniverse/token``.  It is sent only to the given URL and
never shown in errors or ``repr``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TOKEN_FILE", "EpoClient", "EpoClientError"]

import os
import time
from collections.abc import Sequence
from typing import Any

import httpx

DEFAULT_TOKEN_FILE = "~/.config/epo-zooniverse/token"
"""Where the token is read from when no other source has one."""

_RETRY_STATUS = (429, 502, 503, 504)
_MAX_WAIT = 30.0


class EpoClientError(RuntimeError):
    """EPO refused a request or could not be reached.

    Parameters
    ----------
    message : `str`
        What happened.
    status : `int` or `None`
        The HTTP status (`None` if there was no answer).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _read_token(token: str | None, token_file: str | os.PathLike | None) -> str:
    if token:
        return token.strip()
    if os.environ.get("ACCESS_TOKEN", "").strip():
        return os.environ["ACCESS_TOKEN"].strip()
    path = token_file or os.environ.get("EPO_ZOONIVERSE_TOKEN_FILE") or DEFAULT_TOKEN_FILE
    path = os.path.expanduser(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as stream:
            value = stream.read().strip()
    except OSError:
        value = ""
    if not value:
        raise EpoClientError(
            "No token: pass token=..., set ACCESS_TOKEN (the RSP sets it in notebooks) or write it to "
            f"{path}."
        )
    return value


class EpoClient:
    """A PI's connection to EPO's web application.

    Parameters
    ----------
    url : `str`, optional
        The application's base URL (``https://HOST/epo-zooniverse``); on
        the RSP, ``$EXTERNAL_INSTANCE_URL/epo-zooniverse`` if not given.
    token : `str`, optional
        The bearer token (see the module's documentation for where it is
        found otherwise).
    token_file : `str` or `os.PathLike`, optional
        A file holding the token.
    timeout : `float`, optional
        Seconds to wait for each answer.
    retries : `int`, optional
        How many times a request refused as too many (429) or by an
        unavailable server (502-504) is tried again, after the wait the
        server asks for (at most 30 s).
    transport : `httpx.BaseTransport`, optional
        For tests.

    Raises
    ------
    EpoClientError
        Raised if no URL or no token is found.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        token_file: str | os.PathLike | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if url is None:
            instance = os.environ.get("EXTERNAL_INSTANCE_URL", "").rstrip("/")
            if not instance:
                raise EpoClientError("No URL: pass url=... (EXTERNAL_INSTANCE_URL is not set).")
            url = f"{instance}/epo-zooniverse"
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.url + "/v1/",
            headers={"Authorization": f"Bearer {_read_token(token, token_file)}"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"EpoClient({self.url!r})"

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> EpoClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as err:
                raise EpoClientError(f"Cannot reach EPO at {self.url}: {type(err).__name__}") from None
            if response.status_code in _RETRY_STATUS and attempt < self.retries:
                try:
                    wait = float(response.headers.get("Retry-After", "1"))
                except ValueError:
                    wait = 1.0
                time.sleep(min(max(wait, 0.1), _MAX_WAIT))
                continue
            break
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = None
            if not isinstance(detail, str):
                detail = response.reason_phrase if detail is None else str(detail)
            if response.status_code == 401:
                detail += " (is the token expired? get a new one)"
            raise EpoClientError(f"EPO answered {response.status_code}: {detail}", response.status_code)
        return response.json()

    def register(
        self,
        name: str,
        *,
        zooniverse_project_id: int,
        repo: str,
        collections: str,
        dataset_types: Sequence[str] = ("zooniverse_rgb",),
        contact: str | None = None,
        metadata_policy: str = "full",
    ) -> dict[str, Any]:
        """Register a project; you are its owner.

        Parameters
        ----------
        name : `str`
            Short name (``[a-z0-9][a-z0-9_-]*``).
        zooniverse_project_id : `int`
            Your Zooniverse project's id.
        repo : `str`
            Butler repository (label or URI) EPO reads from.
        collections : `str`
            Collection or glob under ``u/<your user name>/``.
        dataset_types : `~collections.abc.Sequence` [`str`], optional
            What EPO takes (``zooniverse_rgb``, ``zooniverse_cutout``).
        contact : `str`, optional
            E-mail address(es) for notifications.
        metadata_policy : `str`, optional
            ``full`` or ``anonymised``.

        Returns
        -------
        project : `dict`
            The registered project.

        Raises
        ------
        EpoClientError
            Raised if EPO refuses (403 for a collection outside your
            namespace, 400 for a bad or duplicate name).
        """
        body = {
            "name": name,
            "zooniverse_project_id": zooniverse_project_id,
            "repo": repo,
            "collections": collections,
            "dataset_types": list(dataset_types),
            "contact": contact,
            "metadata_policy": metadata_policy,
        }
        return self._request("POST", "projects", json=body)

    def projects(self) -> list[dict[str, Any]]:
        """Return your projects with their counts by state.

        Returns
        -------
        projects : `list` [`dict`]
            One per project.
        """
        return self._request("GET", "projects")["projects"]

    def project(self, name: str) -> dict[str, Any]:
        """Return one of your projects with its counts by state.

        Parameters
        ----------
        name : `str`
            Project name.

        Returns
        -------
        project : `dict`
            The project; ``datasets`` and ``images`` count batches and
            pictures by state.
        """
        return self._request("GET", f"projects/{_part(name)}")

    def _paged(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._request("GET", path, params={**(params or {}), "offset": offset, "limit": 1000})
            items += page[key]
            offset += len(page[key])
            if not page[key] or offset >= page["total"]:
                return items

    def batches(self, name: str) -> list[dict[str, Any]]:
        """Return a project's batches: state, pictures by state, stretch.

        Parameters
        ----------
        name : `str`
            Project name.

        Returns
        -------
        batches : `list` [`dict`]
            One per batch.
        """
        return self._paged(f"projects/{_part(name)}/batches", "batches")

    def images(
        self, name: str, *, state: str | None = None, batch: str | None = None
    ) -> list[dict[str, Any]]:
        """Return a project's pictures with their state, reason and URL.

        Parameters
        ----------
        name : `str`
            Project name.
        state : `str`, optional
            Only pictures in this state.
        batch : `str`, optional
            Only this batch's.

        Returns
        -------
        images : `list` [`dict`]
            ``batch, dataset_type, data_id, entry, object_id, state,
            reason, url``.
        """
        params = {key: value for key, value in (("state", state), ("batch", batch)) if value}
        return self._paged(f"projects/{_part(name)}/images", "images", params)

    def subjects(self, name: str) -> list[dict[str, Any]]:
        """Return a project's published subjects and their public URLs.

        Parameters
        ----------
        name : `str`
            Project name.

        Returns
        -------
        subjects : `list` [`dict`]
            ``batch, entry, object_id, url, frames``.
        """
        return self._paged(f"projects/{_part(name)}/subjects", "subjects")

    def catalog_report(self, name: str, collection: str) -> list[dict[str, Any]]:
        """Say, for every row of your catalog, its public URL or why it has
        none.

        Parameters
        ----------
        name : `str`
            Project name.
        collection : `str`
            Your pipeline's output collection.

        Returns
        -------
        rows : `list` [`dict`]
            One per catalog row, in catalog order.
        """
        path = f"projects/{_part(name)}/catalog-report"
        return self._request("GET", path, params={"collection": collection})["rows"]

    def subject_sets(self, name: str) -> list[dict[str, Any]]:
        """Return the Zooniverse subject sets EPO filled with your
        project's published subjects.

        Parameters
        ----------
        name : `str`
            Project name.

        Returns
        -------
        sets : `list` [`dict`]
            ``subject_set_id, name, zooniverse_project_id, subjects`` (how
            many EPO sent), ``last_sent_at``.
        """
        return self._request("GET", f"projects/{_part(name)}/subject-sets")["subject_sets"]

    def classifications(self, name: str, *, collection: str | None = None) -> Any:
        """Return the volunteers' answers to your project, from
        Zooniverse's classification export (EPO fetches it with its own
        Zooniverse credentials).

        Parameters
        ----------
        name : `str`
            Project name.
        collection : `str`, optional
            Your sharded catalog's collection (``zooniverse_targets``):
            its columns are joined to the answers.

        Returns
        -------
        table : `astropy.table.Table`
            One row per subject, workflow version, task and answer
            (``object_id``, ``in_catalog``, ``subject_id``, ``task``,
            ``answer``, ``n_votes``, ``fraction``, ...; see
            doc/classifications.md), the summary in
            ``meta["zooniverse_classifications"]``; write it to your
            repository with
            `lsst.epo.zooniverse.zooniverse.classifications.write_classifications`.

        Raises
        ------
        EpoClientError
            Raised if EPO cannot read the export (400) or the project is
            not yours (404).
        """
        params = {"collection": collection} if collection else None
        answer = self._request("GET", f"projects/{_part(name)}/classifications", params=params)
        return _table(answer)

    def manifests(self, name: str) -> list[str]:
        """Return the public URLs of a project's Zooniverse import
        manifests.

        Parameters
        ----------
        name : `str`
            Project name.

        Returns
        -------
        urls : `list` [`str`]
            The manifests.
        """
        return self._request("GET", f"projects/{_part(name)}/manifests")["manifests"]

    def withdraw(
        self, name: str, reason: str, *, batch: str | None = None, entry: str | None = None
    ) -> dict[str, Any]:
        """Ask EPO to withdraw a picture, a batch or the whole project.

        Parameters
        ----------
        name : `str`
            Project name.
        reason : `str`
            Why.
        batch : `str`, optional
            Only this batch.
        entry : `str`, optional
            Only this picture of ``batch``.

        Returns
        -------
        request : `dict`
            The request as EPO recorded it (an operator acts on it).
        """
        body = {"reason": reason, "batch": batch, "entry": entry}
        return self._request("POST", f"projects/{_part(name)}/withdrawals", json=body)

    def notifications(self, *, unread: bool = False) -> list[dict[str, Any]]:
        """Return your notification digests, newest first.

        Parameters
        ----------
        unread : `bool`, optional
            Only the unread ones.

        Returns
        -------
        messages : `list` [`dict`]
            ``id, created_at, summary, items, read``; each item is one
            event (``retrieved``: you may remove those files,
            ``quarantined``, ``approved``, ``rejected`` with the reason,
            ``published``).
        """
        params = {"unread": "true" if unread else "false", "limit": 1000}
        return self._request("GET", "notifications", params=params)["notifications"]

    def mark_read(self, ids: Sequence[int] | None = None) -> int:
        """Mark notifications as read.

        Parameters
        ----------
        ids : `~collections.abc.Sequence` [`int`], optional
            These; all of yours if not given.

        Returns
        -------
        count : `int`
            How many became read.
        """
        body = {"ids": list(ids) if ids is not None else None}
        return self._request("POST", "notifications/read", json=body)["marked"]


def _part(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _table(answer: dict[str, Any]) -> Any:
    """Make an astropy table of the classifications answer."""
    import numpy as np
    from astropy.table import Column, MaskedColumn, Table

    table = Table(meta={"zooniverse_classifications": answer.get("summary", {})})
    for spec in answer["columns"]:
        name = spec["name"]
        dtype = np.dtype(spec["dtype"])
        raw = [row.get(name) for row in answer["rows"]]
        mask = [value is None for value in raw]
        fill = "" if dtype.kind == "U" else (False if dtype.kind == "b" else 0)
        data = np.array([fill if m else value for value, m in zip(raw, mask, strict=True)])
        data = data.astype(dtype if dtype.kind != "U" else "U") if len(data) else np.zeros(0, dtype)
        kwargs = {"unit": spec.get("unit"), "description": spec.get("description")}
        if any(mask):
            table[name] = MaskedColumn(data, mask=mask, **kwargs)
        else:
            table[name] = Column(data, **kwargs)
    return table
