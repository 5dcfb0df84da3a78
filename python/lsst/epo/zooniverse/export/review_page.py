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

"""The operators' review page of ``zooniverse-epo serve``.

`ReviewPage` answers every request under ``/_review/`` for a
`~lsst.epo.zooniverse.export.serve.PublicServer`: a login form, the list
of quarantined batches with their findings, a page per batch with a
contact sheet, thumbnails and approve / reject buttons, and a "publish
now" button.  Decisions call `ExportService.approve` and
`ExportService.reject` with the logged-in operator's name, exactly as the
``approve`` and ``reject`` commands do, so the audit records are the same.

Routes (``P`` is ``/_review``)::

    GET  P/login                          login form
    POST P/login                          operator name + token -> session
    POST P/logout                         end the session
    GET  P/                               quarantined batches, findings
    GET  P/batch/<batch>                  one batch (?page=N for images)
    GET  P/batch/<batch>/contact-sheet.png
    GET  P/batch/<batch>/thumb/<entry>    thumbnail (PNG)
    GET  P/batch/<batch>/image/<entry>    the quarantined PNG itself
    POST P/batch/<batch>/approve          approve (all or ticked images)
    POST P/batch/<batch>/reject           reject (needs a reason)
    POST P/publish                        publish every approved image

Security: the prefix starts with ``_``, which no project name (hence no
published key) can; every route but the login form needs a session
cookie (random, ``HttpOnly``, ``SameSite=Strict``, ``Path=/_review/``,
expiring), without which pages redirect to the login form and images and
POSTs get 401.  Every POST carries the session's CSRF token (the login
form a one-off nonce paired with a cookie), and a foreign ``Origin`` is
refused.  Secrets are compared in constant time and never written in
pages, logs or errors; failed logins are logged (name and address, never
the secret) and an address with too many recent failures gets 429.
Pages are server-side HTML with everything escaped, inline CSS allowed by
its hash in a strict ``Content-Security-Policy``, no scripts, and
``Cache-Control: no-store``.  Sessions live in memory: restarting the
server logs everyone out.
"""

from __future__ import annotations

__all__ = ["REVIEW_PREFIX", "ReviewPage", "ReviewResponse"]

import base64
import collections
import dataclasses
import hashlib
import hmac
import html
import io
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from .log_escape import escape_for_log
from .redaction import default_redactor
from .service_config import ReviewSettings

_LOG = logging.getLogger(__name__)

REVIEW_PREFIX = "/_review/"
"""URL prefix of the review page (no project name starts with ``_``)."""

_SESSION_COOKIE = "epo_review_session"
_LOGIN_COOKIE = "epo_review_login"
_LOGIN_NONCE_SECONDS = 900
_MAX_BODY = 4 << 20
_MAX_SESSIONS = 1000
_FAILURE_WINDOW = 300.0
_MAX_FAILURES = 10
_BATCH_NAME = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")
_THUMB_SIZE = 160
_SHEET_THUMB = 128
_SHEET_CACHE = 32

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f6;color:#1d1d22}
header{background:#1d2b3a;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center}
header h1{font-size:1.2em;margin:0;flex:1}header a{color:#fff}
main{padding:1em;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:.5em 0}
th,td{border:1px solid #ccd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#e6e8ee}
.flash{padding:.5em 1em;margin:.5em 0;border-radius:4px}
.ok{background:#dff3e3}.error{background:#f8dcdc}
.sheet{max-width:100%;border:1px solid #889;background:#282828}
.thumb{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;background:#282828}
.finding{color:#8a2b00}
form.inline{display:inline}
button{padding:.35em .9em;margin:.2em .2em .2em 0;cursor:pointer}
button.approve{background:#2e7d32;color:#fff;border:0}
button.reject{background:#b3261e;color:#fff;border:0}
textarea{width:100%;max-width:40em}
.muted{color:#666}
""".strip()
_CSP = (
    "default-src 'none'; img-src 'self'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclasses.dataclass
class ReviewResponse:
    """An answer of the review page."""

    status: int
    """HTTP status code."""
    headers: list[tuple[str, str]]
    """Header fields (besides ``Content-Length``)."""
    body: bytes = b""
    """Body."""


@dataclasses.dataclass
class _Session:
    operator: str
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _q(value: str) -> str:
    """Percent-encode one URL path segment."""
    return urllib.parse.quote(value, safe="")


class _RefusedError(Exception):
    """Answer with this response (raised deep in a route)."""

    def __init__(self, response: ReviewResponse) -> None:
        super().__init__(response.status)
        self.response = response


class ReviewPage:
    """The operators' review page, served by
    `~lsst.epo.zooniverse.export.serve.PublicServer`.

    Parameters
    ----------
    service : `~lsst.epo.zooniverse.export.service.ExportService`
        The service whose quarantine is reviewed.
    settings : `~lsst.epo.zooniverse.export.service_config.ReviewSettings`
        Operators and session settings.
    page_size : `int`, optional
        Images per batch page.
    sheet_pictures : `int`, optional
        Most pictures on a contact sheet (taken evenly across the batch).

    Notes
    -----
    The object is shared by the server's threads; its state (sessions,
    contact-sheet cache, login failures) is guarded by a lock.
    """

    prefix = REVIEW_PREFIX

    def __init__(
        self, service: Any, settings: ReviewSettings, *, page_size: int = 100, sheet_pictures: int = 96
    ) -> None:
        self.service = service
        self.settings = settings
        self.page_size = page_size
        self.sheet_pictures = sheet_pictures
        self._sessions: dict[bytes, _Session] = {}
        self._failures: dict[str, collections.deque[float]] = {}
        self._sheets: collections.OrderedDict[str, tuple[Any, bytes]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._sheet_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._staging = os.path.realpath(service.config.staging)

    def handles(self, path: str) -> bool:
        """Tell whether a URL path belongs to the review page.

        Parameters
        ----------
        path : `str`
            URL path, still percent-encoded, without query string.

        Returns
        -------
        mine : `bool`
            `True` for ``/_review`` and everything below ``/_review/``
            (in any letter case or encoding of the prefix, so that no
            public file can stand in for it).
        """
        first = urllib.parse.unquote(path.split("/", 2)[1] if path.count("/") else "").lower()
        return first == self.prefix.strip("/")

    # ------------------------------------------------------------------
    # Dispatch.

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: BinaryIO | None,
        client: str,
    ) -> ReviewResponse:
        """Answer one request.

        Parameters
        ----------
        method : `str`
            ``GET``, ``HEAD`` or ``POST`` (others get 405).
        target : `str`
            Request target (path and query string).
        headers : `~collections.abc.Mapping` [`str`, `str`]
            Request header fields (case-insensitive mapping, such as
            `email.message.Message`).
        body : `typing.BinaryIO`, optional
            Stream the body of a POST is read from (``Content-Length``
            bytes).
        client : `str`
            Client address (for the log and the login throttle).

        Returns
        -------
        response : `ReviewResponse`
            The answer; a HEAD request gets the GET answer (the caller
            drops the body).
        """
        try:
            return self._dispatch(method, target, headers, body, client)
        except _RefusedError as refused:
            return refused.response
        except Exception as err:
            # The text may describe private things: log its type only.
            _LOG.error("Review page error: %s.", type(err).__name__)
            _LOG.debug("Review page traceback.", exc_info=True)
            return self._text(500, "Internal error; see the server log.")

    def _dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: BinaryIO | None, client: str
    ) -> ReviewResponse:
        path, _, query = target.partition("?")
        raw_parts = path.split("/")[2:]
        try:
            parts = [urllib.parse.unquote(p, errors="strict") for p in raw_parts]
        except UnicodeDecodeError:
            parts = None
        method = "GET" if method == "HEAD" else method
        if method not in ("GET", "POST"):
            return ReviewResponse(
                405, [("Allow", "GET, HEAD, POST"), ("Content-Type", "text/plain; charset=utf-8")], b"405\n"
            )
        if not raw_parts:
            # "/_review": to the list (or the login form).
            return self._redirect(self.prefix)
        form: dict[str, list[str]] = {}
        if method == "POST":
            form = self._read_form(headers, body)
            self._check_origin(headers)
        if parts == ["login"]:
            if method == "POST":
                return self._login(form, headers, client)
            return self._login_form(headers)
        session, token_hash = self._session(headers)
        if session is None:
            if method == "GET" and parts is not None and self._is_page(parts):
                return self._redirect(self.prefix + "login")
            return self._text(401, "Log in first.", [("Link", f"<{self.prefix}login>")])
        if method == "POST" and not hmac.compare_digest(
            (form.get("csrf") or [""])[0].encode("utf-8", "surrogatepass"), session.csrf.encode()
        ):
            _LOG.warning("Review POST without a valid CSRF token from %s refused.", client)
            return self._text(403, "Missing or invalid CSRF token; reload the page.")
        if parts is None:
            return self._text(404, "Not found.")
        if method == "POST":
            if parts == ["logout"]:
                with self._lock:
                    self._sessions.pop(token_hash, None)
                return self._redirect(self.prefix + "login", cookies=[self._cookie(_SESSION_COOKIE, "", 0)])
            if parts == ["publish"]:
                return self._publish(session)
            if len(parts) == 3 and parts[0] == "batch" and parts[2] in ("approve", "reject"):
                return self._decide(session, parts[1], parts[2] == "approve", form)
            return self._text(404, "Not found.")
        if parts == [""]:
            return self._html(self._list_page(session))
        if len(parts) >= 2 and parts[0] == "batch" and _BATCH_NAME.match(parts[1]):
            batch = parts[1]
            if len(parts) == 2:
                params = urllib.parse.parse_qs(query)
                try:
                    page = max(1, int((params.get("page") or ["1"])[0]))
                except ValueError:
                    page = 1
                return self._html(self._batch_page(session, batch, page))
            if parts[2:] == ["contact-sheet.png"]:
                return self._contact_sheet(batch)
            if len(parts) == 4 and parts[2] in ("thumb", "image"):
                return self._image(batch, parts[3], thumbnail=parts[2] == "thumb")
        return self._text(404, "Not found.")

    @staticmethod
    def _is_page(parts: Sequence[str]) -> bool:
        return parts == [""] or (len(parts) == 2 and parts[0] == "batch")

    # ------------------------------------------------------------------
    # Requests, cookies and sessions.

    def _read_form(self, headers: Mapping[str, str], body: BinaryIO | None) -> dict[str, list[str]]:
        length_text = headers.get("Content-Length")
        if length_text is None or headers.get("Transfer-Encoding"):
            raise _RefusedError(self._text(411, "Content-Length required.", close=True))
        try:
            length = int(length_text)
        except ValueError:
            raise _RefusedError(self._text(400, "Bad Content-Length.", close=True)) from None
        if length < 0 or length > _MAX_BODY:
            raise _RefusedError(self._text(413, "Request body too large.", close=True))
        data = body.read(length) if body is not None and length else b""
        if len(data) != length:
            raise _RefusedError(self._text(400, "Short request body.", close=True))
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise _RefusedError(self._text(415, "Forms must be application/x-www-form-urlencoded."))
        try:
            return urllib.parse.parse_qs(
                data.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=100_000
            )
        except (UnicodeDecodeError, ValueError):
            raise _RefusedError(self._text(400, "Bad form data.")) from None

    def _check_origin(self, headers: Mapping[str, str]) -> None:
        origin = headers.get("Origin")
        if origin is None:
            return
        host = headers.get("Host")
        if origin == "null" or (host is not None and urllib.parse.urlsplit(origin).netloc != host):
            _LOG.warning("Review POST from a foreign origin refused.")
            raise _RefusedError(self._text(403, "Cross-origin requests are refused."))

    @staticmethod
    def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
        result: dict[str, str] = {}
        for line in headers.get_all("Cookie", []) if hasattr(headers, "get_all") else [headers.get("Cookie")]:
            for item in (line or "").split(";"):
                name, sep, value = item.strip().partition("=")
                if sep and name not in result:
                    result[name] = value.strip()
        return result

    def _cookie(self, name: str, value: str, max_age: int, path: str | None = None) -> str:
        cookie = f"{name}={value}; Path={path or self.prefix}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        if self.settings.secure_cookie:
            cookie += "; Secure"
        return cookie

    def _session(self, headers: Mapping[str, str]) -> tuple[_Session | None, bytes]:
        token = self._cookies(headers).get(_SESSION_COOKIE, "")
        token_hash = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        if not token:
            return None, token_hash
        now = time.time()
        with self._lock:
            session = self._sessions.get(token_hash)
            if session is not None and session.expires <= now:
                del self._sessions[token_hash]
                session = None
        return session, token_hash

    def _throttled(self, client: str, failed: bool = False) -> bool:
        now = time.time()
        with self._lock:
            failures = self._failures.setdefault(client, collections.deque())
            while failures and failures[0] < now - _FAILURE_WINDOW:
                failures.popleft()
            if failed:
                failures.append(now)
            if not failures:
                del self._failures[client]
                return False
            return len(failures) >= _MAX_FAILURES

    def _login_form(
        self, headers: Mapping[str, str], message: str | None = None, status: int = 200
    ) -> ReviewResponse:
        nonce = secrets.token_urlsafe(24)
        body = f"""<h2>Operator login</h2>
{f'<p class="flash error">{_e(message)}</p>' if message else ""}
<form method="post" action="{_e(self.prefix)}login">
<input type="hidden" name="nonce" value="{_e(nonce)}">
<p><label>Operator name<br><input name="operator" id="operator" autocomplete="username" required></label></p>
<p><label>Token or password<br><input type="password" name="token" id="token"
 autocomplete="current-password" required></label></p>
<p><button type="submit" id="login">Log in</button></p>
</form>"""
        response = self._html(self._layout("Login", body, None), status=status)
        response.headers.append(
            ("Set-Cookie", self._cookie(_LOGIN_COOKIE, nonce, _LOGIN_NONCE_SECONDS, self.prefix + "login"))
        )
        return response

    def _login(
        self, form: Mapping[str, list[str]], headers: Mapping[str, str], client: str
    ) -> ReviewResponse:
        nonce = (form.get("nonce") or [""])[0]
        expected = self._cookies(headers).get(_LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(
            nonce.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        ):
            return self._login_form(headers, "The login form expired; please try again.", status=403)
        if self._throttled(client):
            _LOG.warning("Review login from %s refused: too many failures.", client)
            return self._login_form(headers, "Too many failed logins; wait a few minutes.", status=429)
        name = (form.get("operator") or [""])[0].strip()
        secret = (form.get("token") or [""])[0].strip()
        operator = self.settings.authenticate(name, secret)
        if operator is None:
            self._throttled(client, failed=True)
            # Never the secret; the name is escaped, shortened and redacted
            # (someone may type a token into the name field).
            _LOG.warning(
                "Failed review login as %r from %s.",
                escape_for_log(default_redactor().redact(name[:64])),
                client,
            )
            return self._login_form(headers, "Unknown operator name or wrong token.", status=401)
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.expires <= now]:
                del self._sessions[key]
            while len(self._sessions) >= _MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
                del self._sessions[oldest]
            self._sessions[hashlib.sha256(token.encode()).digest()] = _Session(
                operator=operator, csrf=secrets.token_urlsafe(32), expires=now + self.settings.session_seconds
            )
            self._failures.pop(client, None)
        _LOG.info("Operator %s logged in to the review page from %s.", operator, client)
        return self._redirect(
            self.prefix,
            cookies=[
                self._cookie(_SESSION_COOKIE, token, int(self.settings.session_seconds)),
                self._cookie(_LOGIN_COOKIE, "", 0, self.prefix + "login"),
            ],
        )

    # ------------------------------------------------------------------
    # Responses.

    @staticmethod
    def _security_headers() -> list[tuple[str, str]]:
        return [
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", _CSP),
            ("X-Frame-Options", "DENY"),
            # Not "no-referrer": with it Chromium sends "Origin: null" on
            # the page's own form posts, which _check_origin refuses.
            ("Referrer-Policy", "same-origin"),
        ]

    def _text(
        self, status: int, text: str, extra: Sequence[tuple[str, str]] = (), *, close: bool = False
    ) -> ReviewResponse:
        headers = [("Content-Type", "text/plain; charset=utf-8"), *self._security_headers(), *extra]
        if close:
            headers.append(("Connection", "close"))
        return ReviewResponse(status, headers, f"{status} {text}\n".encode())

    def _html(self, page: str, status: int = 200) -> ReviewResponse:
        return ReviewResponse(
            status, [("Content-Type", "text/html; charset=utf-8"), *self._security_headers()], page.encode()
        )

    def _redirect(self, location: str, cookies: Sequence[str] = ()) -> ReviewResponse:
        headers = [("Location", location), *self._security_headers()]
        headers += [("Set-Cookie", c) for c in cookies]
        return ReviewResponse(303, headers, b"")

    def _png(self, data: bytes) -> ReviewResponse:
        return ReviewResponse(200, [("Content-Type", "image/png"), *self._security_headers()], data)

    def _layout(self, title: str, body: str, session: _Session | None) -> str:
        user = ""
        if session is not None:
            user = (
                f'<span>Signed in as <b id="operator-name">{_e(session.operator)}</b></span>'
                f'<form class="inline" method="post" action="{_e(self.prefix)}logout">'
                f'<input type="hidden" name="csrf" value="{_e(session.csrf)}">'
                '<button type="submit" id="logout">Log out</button></form>'
            )
        flashes = ""
        if session is not None:
            with self._lock:
                pending, session.flash = session.flash, []
            flashes = "".join(f'<p class="flash {_e(kind)}">{_e(text)}</p>' for kind, text in pending)
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} - EPO review</title><style>{_CSS}</style></head>
<body><header><h1><a href="{_e(self.prefix)}">EPO export review</a></h1>{user}</header>
<main>{flashes}{body}</main></body></html>
"""

    def _flash(self, session: _Session, kind: str, text: str) -> None:
        with self._lock:
            session.flash.append((kind, default_redactor().redact(text)))

    # ------------------------------------------------------------------
    # Pages.

    def _list_page(self, session: _Session) -> str:
        batches = self.service.review()
        rows = []
        for b in batches:
            counts = collections.Counter(image["state"] for image in b["images"])
            findings = [image for image in b["images"] if image["reason"]]
            finding_items = "".join(
                f'<li><span class="muted">{_e(i["entry"])}</span> {_e(i["state"])}: '
                f'<span class="finding">{_e(i["reason"])}</span></li>'
                for i in findings[:20]
            )
            if len(findings) > 20:
                finding_items += f"<li>... and {len(findings) - 20} more (see the batch page)</li>"
            rows.append(
                "<tr>"
                f"<td>{_e(b['project'])}</td>"
                f'<td><a class="batch-link" href="{_e(self._batch_url(b["batch"]))}">'
                f"{_e(b['batch'])}</a></td>"
                f"<td>{_e(b['run'])}</td>"
                f"<td>{_e(b['dataset_type'])}<br><span class='muted'>{_e(self._data_id(b))}</span></td>"
                f"<td>{_e(', '.join(f'{n} {s}' for s, n in sorted(counts.items())))}</td>"
                f"<td>{_e(b['reason'] or '')}<ul>{finding_items}</ul></td>"
                "</tr>"
            )
        table = (
            "<table id='batches'><thead><tr><th>Project</th><th>Batch</th><th>Collection</th>"
            "<th>Dataset</th><th>Images</th><th>Findings</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            if rows
            else "<p id='empty'>Nothing in quarantine.</p>"
        )
        publish = f"""<h2>Publication</h2>
<p>Approved images are published by <code>zooniverse-epo publish</code> (run it, or a scheduled job), or
now with this button; the approved batches' images then appear at their public URLs.</p>
<form method="post" action="{_e(self.prefix)}publish">
<input type="hidden" name="csrf" value="{_e(session.csrf)}">
<button type="submit" id="publish">Publish approved images now</button></form>"""
        body = f"<h2>Quarantined batches ({len(batches)})</h2>{table}{publish}"
        return self._layout("Quarantined batches", body, session)

    def _batch_url(self, batch: str) -> str:
        return f"{self.prefix}batch/{_q(batch)}"

    @staticmethod
    def _data_id(batch: Mapping[str, Any]) -> str:
        try:
            data_id = json.loads(batch["data_id"])
        except (TypeError, ValueError):
            return str(batch["data_id"])
        if isinstance(data_id, dict):
            return ", ".join(f"{k}={v}" for k, v in data_id.items())
        return str(data_id)

    def _batch(self, batch: str) -> dict[str, Any]:
        from .service import ExportServiceError

        try:
            return self.service.review(None, batch)[0]
        except ExportServiceError:
            raise _RefusedError(self._text(404, "No such batch.")) from None

    def _batch_page(self, session: _Session, batch: str, page: int) -> str:
        record = self._batch(batch)
        images = record["images"]
        counts = collections.Counter(image["state"] for image in images)
        pages = max(1, math.ceil(len(images) / self.page_size))
        page = min(page, pages)
        shown = images[(page - 1) * self.page_size : page * self.page_size]
        base = self._batch_url(batch)
        can_approve = record["state"] == "quarantined"
        can_reject = record["state"] in ("quarantined", "approved")
        rows = []
        for image in shown:
            entry = image["entry"]
            viewable = self._viewable(image)
            tick = (
                f'<input type="checkbox" name="entry" value="{_e(entry)}" form="decide" '
                f'aria-label="select {_e(entry)}">'
                if image["state"] in ("quarantined", "approved") and (can_approve or can_reject)
                else ""
            )
            picture = (
                f'<a href="{_e(base)}/image/{_e(_q(entry))}"><img class="thumb" loading="lazy" '
                f'src="{_e(base)}/thumb/{_e(_q(entry))}" alt="{_e(entry)}"></a>'
                if viewable
                else '<span class="muted">no picture</span>'
            )
            rows.append(
                "<tr>"
                f"<td>{tick}</td><td>{picture}</td><td>{_e(entry)}</td><td>{_e(image['object_id'])}</td>"
                f"<td>{_e(image['width'])}x{_e(image['height'])}<br>{_e(image['size'])} bytes</td>"
                f"<td class='state'>{_e(image['state'])}</td>"
                f"<td class='finding'>{_e(image['reason'] or '')}</td>"
                "</tr>"
            )
        nav = ""
        if pages > 1:
            links = []
            for n in range(1, pages + 1):
                links.append(f"<b>{n}</b>" if n == page else f'<a href="{_e(base)}?page={n}">{n}</a>')
            nav = "<p>Pages: " + " ".join(links) + "</p>"
        sheet = (
            f'<p><img class="sheet" id="contact-sheet" src="{_e(base)}/contact-sheet.png" '
            f'alt="contact sheet of {_e(batch)}"></p>'
            if any(self._viewable(image) for image in images)
            else "<p>No pictures to show.</p>"
        )
        buttons = ""
        if can_approve or can_reject:
            approve_button = '<button type="submit" class="approve" id="approve">Approve</button>'
            reject_button = (
                f'<button type="submit" class="reject" id="reject" formaction="{_e(base)}/reject">'
                "Reject</button>"
            )
            buttons = f"""<form id="decide" method="post" action="{_e(base)}/approve">
<input type="hidden" name="csrf" value="{_e(session.csrf)}">
<p><label>Reason (recorded in the audit log and sent to the PI; required to reject)<br>
<textarea name="reason" id="reason" rows="2"></textarea></label></p>
<p>With no image ticked, the decision applies to the whole batch; otherwise to the ticked images.</p>
<p>{approve_button if can_approve else ""} {reject_button if can_reject else ""}</p>
</form>"""
        body = f"""<h2>Batch <span id="batch-name">{_e(batch)}</span></h2>
<table><tr><th>Project</th><td>{_e(record["project"])}</td></tr>
<tr><th>State</th><td id="batch-state">{_e(record["state"])}</td></tr>
<tr><th>Collection</th><td>{_e(record["run"])}</td></tr>
<tr><th>Dataset</th><td>{_e(record["dataset_type"])} ({_e(self._data_id(record))})</td></tr>
<tr><th>Images</th><td>{_e(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))}</td></tr>
<tr><th>Findings</th><td class="finding">{_e(record["reason"] or "")}</td></tr></table>
{sheet}{buttons}{nav}
<table id="images"><thead><tr><th></th><th>Picture</th><th>Entry</th><th>Object</th><th>Size</th>
<th>State</th><th>Findings</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{nav}"""
        return self._layout(f"Batch {batch}", body, session)

    # ------------------------------------------------------------------
    # Pictures.

    def _viewable(self, image: Mapping[str, Any]) -> bool:
        # Rejected images may have failed validation (not decodable, too
        # big): never decode them.
        return bool(image["quarantine_path"]) and image["state"] != "rejected"

    def _quarantined_file(self, image: Mapping[str, Any]) -> str | None:
        if not self._viewable(image):
            return None
        real = os.path.realpath(image["quarantine_path"])
        if os.path.commonpath([real, self._staging]) != self._staging or not os.path.isfile(real):
            return None
        return real

    def _image(self, batch: str, entry: str, *, thumbnail: bool) -> ReviewResponse:
        record = self._batch(batch)
        image = next((i for i in record["images"] if i["entry"] == entry), None)
        path = self._quarantined_file(image) if image is not None else None
        if path is None:
            return self._text(404, "No such picture.")
        if not thumbnail:
            with open(path, "rb") as stream:
                return self._png(stream.read())
        from PIL import Image

        with Image.open(path) as picture:
            picture = picture.convert("RGB")
        picture.thumbnail((_THUMB_SIZE, _THUMB_SIZE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return self._png(buffer.getvalue())

    def _contact_sheet(self, batch: str) -> ReviewResponse:
        from PIL import Image

        from ..formats.contact_sheet import make_contact_sheet

        record = self._batch(batch)
        files = [(i, p) for i in record["images"] if (p := self._quarantined_file(i)) is not None]
        if not files:
            return self._text(404, "No pictures.")
        total = len(files)
        if total > self.sheet_pictures:
            step = (total - 1) / (self.sheet_pictures - 1)
            files = [files[round(k * step)] for k in range(self.sheet_pictures)]
        fingerprint = []
        for image, path in files:
            info = os.stat(path)
            fingerprint.append((image["entry"], info.st_size, info.st_mtime_ns))
        key = tuple(fingerprint)
        with self._sheet_lock:
            cached = self._sheets.get(batch)
            if cached is not None and cached[0] == key:
                self._sheets.move_to_end(batch)
                return self._png(cached[1])
            items = []
            for image, path in files:
                with Image.open(path) as picture:
                    picture = picture.convert("RGB")
                # Small cutouts are enlarged (pixels kept sharp) to fill
                # their cell; make_contact_sheet only shrinks.
                factor = _SHEET_THUMB // max(picture.size)
                if factor > 1:
                    picture = picture.resize(
                        (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
                    )
                items.append((picture, str(image["object_id"])))
            title = f"{record['project']} / {batch}: {len(files)} of {total} pictures"
            sheet = make_contact_sheet(items, thumb_size=_SHEET_THUMB, columns=8, title=title)
            buffer = io.BytesIO()
            sheet.save(buffer, format="PNG")
            data = buffer.getvalue()
            self._sheets[batch] = (key, data)
            while len(self._sheets) > _SHEET_CACHE:
                self._sheets.popitem(last=False)
        return self._png(data)

    # ------------------------------------------------------------------
    # Decisions.

    def _decide(
        self, session: _Session, batch: str, approve: bool, form: Mapping[str, list[str]]
    ) -> ReviewResponse:
        from .service import ExportServiceError

        if not _BATCH_NAME.match(batch):
            return self._text(404, "No such batch.")
        reason = (form.get("reason") or [""])[0].strip() or None
        entries = [e for e in form.get("entry", []) if e] or None
        verb = "approved" if approve else "rejected"
        try:
            if approve:
                n = self.service.approve(batch, operator=session.operator, reason=reason, entries=entries)
            else:
                if not reason:
                    raise ExportServiceError("A rejection needs a reason: write it in the Reason box.")
                n = self.service.reject(batch, operator=session.operator, reason=reason, entries=entries)
        except ExportServiceError as err:
            self._flash(session, "error", str(err))
            return self._redirect(self._batch_url(batch))
        _LOG.info("Operator %s %s %d images of %s on the review page.", session.operator, verb, n, batch)
        self._flash(
            session,
            "ok",
            f"{batch}: {n} images {verb}."
            + (" Publish them with the button below or 'zooniverse-epo publish'." if approve else ""),
        )
        # A whole batch leaves the list; after some images, back to the rest.
        return self._redirect(self.prefix if entries is None else self._batch_url(batch))

    def _publish(self, session: _Session) -> ReviewResponse:
        if not self._publish_lock.acquire(blocking=False):
            self._flash(session, "error", "A publication started from this page is still running.")
            return self._redirect(self.prefix)
        try:
            _LOG.info("Operator %s started a publication from the review page.", session.operator)
            summary = self.service.publish()
        finally:
            self._publish_lock.release()
        failed = ""
        if summary.errors:
            failed = f"; {len(summary.errors)} batches failed: {'; '.join(summary.errors[:3])}"
        self._flash(
            session,
            "error" if summary.errors else "ok",
            f"Published {summary.published} images; {summary.batches} batches complete{failed}.",
        )
        return self._redirect(self.prefix)
