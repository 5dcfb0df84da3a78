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

This module answers requests; the pages' HTML is built by
`~lsst.epo.zooniverse.export.review_html` and the sessions are kept by
`~lsst.epo.zooniverse.export.review_sessions`.
"""

from __future__ import annotations

__all__ = ["REVIEW_PREFIX", "ReviewPage", "ReviewResponse"]

import collections
import dataclasses
import hmac
import io
import logging
import os
import re
import secrets
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from .log_escape import escape_for_log
from .redaction import default_redactor
from .review_html import (
    batch_body,
    batch_list_body,
    batch_url,
    is_viewable,
    login_body,
    page_layout,
    security_headers,
)
from .review_sessions import ReviewSession, ReviewSessions, parse_cookies
from .service_config import ReviewSettings

_LOG = logging.getLogger(__name__)

REVIEW_PREFIX = "/_review/"
"""URL prefix of the review page (no project name starts with ``_``)."""

_SESSION_COOKIE = "epo_review_session"
_LOGIN_COOKIE = "epo_review_login"
_LOGIN_NONCE_SECONDS = 900
_MAX_BODY = 4 << 20
_BATCH_NAME = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")
_THUMB_SIZE = 160
_SHEET_THUMB = 128
_SHEET_CACHE = 32


@dataclasses.dataclass
class ReviewResponse:
    """An answer of the review page."""

    status: int
    """HTTP status code."""
    headers: list[tuple[str, str]]
    """Header fields (besides ``Content-Length``)."""
    body: bytes = b""
    """Body."""


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
        self._sessions = ReviewSessions()
        self._sheets: collections.OrderedDict[str, tuple[Any, bytes]] = collections.OrderedDict()
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
        token = parse_cookies(headers).get(_SESSION_COOKIE, "")
        session = self._sessions.find(token)
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
                self._sessions.close(token)
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

    def _cookie(self, name: str, value: str, max_age: int, path: str | None = None) -> str:
        cookie = f"{name}={value}; Path={path or self.prefix}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        if self.settings.secure_cookie:
            cookie += "; Secure"
        return cookie

    def _login_form(
        self, headers: Mapping[str, str], message: str | None = None, status: int = 200
    ) -> ReviewResponse:
        nonce = secrets.token_urlsafe(24)
        body = login_body(self.prefix, nonce, message)
        response = self._html(self._layout("Login", body, None), status=status)
        response.headers.append(
            ("Set-Cookie", self._cookie(_LOGIN_COOKIE, nonce, _LOGIN_NONCE_SECONDS, self.prefix + "login"))
        )
        return response

    def _login(
        self, form: Mapping[str, list[str]], headers: Mapping[str, str], client: str
    ) -> ReviewResponse:
        nonce = (form.get("nonce") or [""])[0]
        expected = parse_cookies(headers).get(_LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(
            nonce.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        ):
            return self._login_form(headers, "The login form expired; please try again.", status=403)
        if self._sessions.throttled(client):
            _LOG.warning("Review login from %s refused: too many failures.", client)
            return self._login_form(headers, "Too many failed logins; wait a few minutes.", status=429)
        name = (form.get("operator") or [""])[0].strip()
        secret = (form.get("token") or [""])[0].strip()
        operator = self.settings.authenticate(name, secret)
        if operator is None:
            self._sessions.throttled(client, failed=True)
            # Never the secret; the name is escaped, shortened and redacted
            # (someone may type a token into the name field).
            _LOG.warning(
                "Failed review login as %r from %s.",
                escape_for_log(default_redactor().redact(name[:64])),
                client,
            )
            return self._login_form(headers, "Unknown operator name or wrong token.", status=401)
        token = self._sessions.open(operator, client, self.settings.session_seconds)
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

    def _text(
        self, status: int, text: str, extra: Sequence[tuple[str, str]] = (), *, close: bool = False
    ) -> ReviewResponse:
        headers = [("Content-Type", "text/plain; charset=utf-8"), *security_headers(), *extra]
        if close:
            headers.append(("Connection", "close"))
        return ReviewResponse(status, headers, f"{status} {text}\n".encode())

    def _html(self, page: str, status: int = 200) -> ReviewResponse:
        return ReviewResponse(
            status, [("Content-Type", "text/html; charset=utf-8"), *security_headers()], page.encode()
        )

    def _redirect(self, location: str, cookies: Sequence[str] = ()) -> ReviewResponse:
        headers = [("Location", location), *security_headers()]
        headers += [("Set-Cookie", c) for c in cookies]
        return ReviewResponse(303, headers, b"")

    def _png(self, data: bytes) -> ReviewResponse:
        return ReviewResponse(200, [("Content-Type", "image/png"), *security_headers()], data)

    def _layout(self, title: str, body: str, session: ReviewSession | None) -> str:
        if session is None:
            return page_layout(self.prefix, title, body)
        return page_layout(
            self.prefix,
            title,
            body,
            operator=session.operator,
            csrf=session.csrf,
            flashes=self._sessions.take_flashes(session),
        )

    def _flash(self, session: ReviewSession, kind: str, text: str) -> None:
        self._sessions.add_flash(session, kind, default_redactor().redact(text))

    # ------------------------------------------------------------------
    # Pages.

    def _list_page(self, session: ReviewSession) -> str:
        body = batch_list_body(self.prefix, self.service.review(), session.csrf)
        return self._layout("Quarantined batches", body, session)

    def _batch_url(self, batch: str) -> str:
        return batch_url(self.prefix, batch)

    def _batch(self, batch: str) -> dict[str, Any]:
        from .service import ExportServiceError

        try:
            return self.service.review(None, batch)[0]
        except ExportServiceError:
            raise _RefusedError(self._text(404, "No such batch.")) from None

    def _batch_page(self, session: ReviewSession, batch: str, page: int) -> str:
        record = self._batch(batch)
        body = batch_body(self.prefix, batch, record, page, self.page_size, session.csrf)
        return self._layout(f"Batch {batch}", body, session)

    # ------------------------------------------------------------------
    # Pictures.

    def _quarantined_file(self, image: Mapping[str, Any]) -> str | None:
        if not is_viewable(image):
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
        self, session: ReviewSession, batch: str, approve: bool, form: Mapping[str, list[str]]
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

    def _publish(self, session: ReviewSession) -> ReviewResponse:
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
