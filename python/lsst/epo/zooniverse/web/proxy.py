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

"""The client's address and scheme behind trusted reverse proxies.

Like Safir's ``XForwardedMiddleware``, the client is the right-most
``X-Forwarded-For`` address that is not a trusted proxy and the scheme
comes from ``X-Forwarded-Proto``; unlike it, the headers are believed only
when the request's peer is itself one of the trusted proxies.  A client
talking to the application directly cannot choose its own address (and so
escape its rate limit) by sending the header.
"""

from __future__ import annotations

__all__ = ["TrustedProxyMiddleware", "forwarded_client"]

import ipaddress
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import Network, is_in_networks


def _addresses(headers: Headers) -> list[str]:
    found = []
    for header in headers.getlist("x-forwarded-for"):
        for part in header.split(","):
            part = part.strip()
            try:
                found.append(str(ipaddress.ip_address(part)))
            except ValueError:
                continue
    return found


def forwarded_client(peer: str | None, headers: Headers, proxies: Sequence[Network]) -> str | None:
    """Return the client address of a request.

    Parameters
    ----------
    peer : `str` or `None`
        The address the connection comes from.
    headers : `starlette.datastructures.Headers`
        The request's headers.
    proxies : `~collections.abc.Sequence`
        Trusted proxy networks.

    Returns
    -------
    client : `str` or `None`
        ``peer`` unless it is a trusted proxy that sent ``X-Forwarded-For``;
        then the right-most address of that header outside the trusted
        networks (the left-most if all are inside).
    """
    if not is_in_networks(peer, list(proxies)):
        return peer
    chain = _addresses(headers)
    if not chain:
        return peer
    for address in reversed(chain):
        if not is_in_networks(address, list(proxies)):
            return address
    return chain[0]


class TrustedProxyMiddleware:
    """ASGI middleware setting the client address and scheme from
    ``X-Forwarded-For`` and ``X-Forwarded-Proto`` sent by trusted proxies.

    Parameters
    ----------
    app : ASGI application
        The application.
    proxies : `~collections.abc.Sequence`
        Trusted proxy networks; with none, the headers are never used.
    """

    def __init__(self, app: ASGIApp, *, proxies: Sequence[Network]) -> None:
        self.app = app
        self.proxies = list(proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.proxies:
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        headers = Headers(scope=scope)
        client = forwarded_client(peer, headers, self.proxies)
        if client != peer:
            scope = dict(scope)
            scope["client"] = (client, scope["client"][1] if scope.get("client") else 0)
            scope.setdefault("state", {})
            scope["state"] = dict(scope["state"], proxy_peer=peer)
            protos = headers.getlist("x-forwarded-proto")
            if len(protos) == 1:
                proto = protos[0].split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto
        await self.app(scope, receive, send)
