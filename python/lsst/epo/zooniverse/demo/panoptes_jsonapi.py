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

"""JSON-API answers of the Panoptes stand-in
(`lsst.epo.zooniverse.demo.panoptes_standin`): the media type, error
answers and paginated index envelopes as Panoptes serializes them.
"""

from __future__ import annotations

__all__ = ["API_ACCEPT", "ApiAnswer", "error_answer", "page_answer", "scope_answer"]

import urllib.parse
from collections.abc import Callable
from typing import Any

API_ACCEPT = "application/vnd.api+json; version=1"
"""The media type Panoptes routes are constrained to."""


class ApiAnswer(Exception):  # noqa: N818 (an answer, not an error)
    """An answer other than the normal one, raised from a route.

    Parameters
    ----------
    status : `int`
        HTTP status.
    body : `object`, optional
        JSON body (`None`: empty).
    headers : `dict` [`str`, `str`], optional
        Extra headers.
    """

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def error_answer(status: int, message: str) -> ApiAnswer:
    """Make a JSON-API error answer.

    Parameters
    ----------
    status : `int`
        HTTP status.
    message : `str`
        The error's message.

    Returns
    -------
    answer : `ApiAnswer`
        ``{"errors": [{"message": message}]}`` with that status.
    """
    return ApiAnswer(status, {"errors": [{"message": message}]})


def scope_answer(scope: str) -> ApiAnswer:
    """Make Doorkeeper's answer to a token without a required scope.

    Parameters
    ----------
    scope : `str`
        The scope the action requires.

    Returns
    -------
    answer : `ApiAnswer`
        HTTP 403 with an empty body and the reason in
        ``WWW-Authenticate`` (Doorkeeper's ``ForbiddenTokenResponse``).
    """
    description = f'Access to this resource requires scope \\"{scope}\\".'
    header = f'Bearer realm="Panoptes", error="insufficient_scope", error_description="{description}"'
    return ApiAnswer(403, None, {"WWW-Authenticate": header})


def page_answer(
    slug: str,
    items: list[dict[str, Any]],
    query: dict[str, str],
    render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[int, Any]:
    """Answer one page of a paginated index.

    Parameters
    ----------
    slug : `str`
        Resource type (``subjects``, ``subject_sets``, …).
    items : `list` [`dict`]
        Every resource of the index.
    query : `dict` [`str`, `str`]
        The request's query (``page``, ``page_size`` and filters).
    render : `~collections.abc.Callable`, optional
        Makes the JSON of one resource (applied to the page only).

    Returns
    -------
    status : `int`
        200.
    body : `dict`
        ``{slug: [...], "links": {}, "meta": {slug: {page, page_size,
        count, page_count, next_href, ...}}}``.
    """
    page = max(1, int(query.get("page", 1)))
    size = min(100, max(1, int(query.get("page_size", 20))))
    count = len(items)
    page_count = max(1, -(-count // size))

    def href(number: int | None) -> str | None:
        if number is None:
            return None
        return f"/{slug}?" + urllib.parse.urlencode({**query, "page": number, "page_size": size})

    next_page = page + 1 if page < page_count else None
    previous_page = page - 1 if page > 1 else None
    meta = {
        "page": page,
        "page_size": size,
        "count": count,
        "include": [],
        "page_count": page_count,
        "previous_page": previous_page,
        "next_page": next_page,
        "first_href": href(1),
        "previous_href": href(previous_page),
        "next_href": href(next_page),
        "last_href": href(page_count),
    }
    shown = items[(page - 1) * size : page * size]
    if render is not None:
        shown = [render(item) for item in shown]
    return 200, {slug: shown, "links": {}, "meta": {slug: meta}}
