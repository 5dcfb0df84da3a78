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


"""A small HTTP server for the public directory and the service status.

`PublicServer` serves the regular files below a root directory read-only
and the JSON of a status callback at ``/status.json``.  It is meant for
demonstrations and tests, or to sit behind a reverse proxy; production
deployments may serve the public location with any web server or object
store instead.

What it refuses (404): anything outside the root (``..`` segments, plain
or percent-encoded, backslashes, NUL bytes, symbolic links that lead
out), any path component starting with ``.`` (publication writes
temporary dot-files before renaming them), directories (no listings) and
anything that is not a regular file.  Methods other than GET and HEAD get
405.  Every request is logged through `logging` on the
``lsst.epo.zooniverse.export.serve`` logger.

With a `~lsst.epo.zooniverse.export.review_page.ReviewPage`, the server
also answers the operators' review page under ``/_review/`` (GET, HEAD
and POST; see that module).  The first path segment ``_review`` (in any
letter case or percent-encoding) is reserved: without a review page it is
404, and files under a ``_review`` directory of the root are never
served.  Publication cannot write there: public keys start with a project
name, which never starts with ``_``.
"""

from __future__ import annotations

__all__ = ["PublicServer"]

import email.utils
import http.server
import json
import logging
import os
import socket
import socketserver
import stat
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from .log_escape import escape_for_log

_LOG = logging.getLogger(__name__)

_CONTENT_TYPES = {
    ".png": "image/png",
    ".csv": "text/csv",
    ".json": "application/json",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain; charset=utf-8",
}
_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_FILE_CACHE_CONTROL = "public, max-age=300"
_CHUNK = 1 << 16
# First path segment reserved for the review page (review_page.REVIEW_PREFIX).
_REVIEW_SEGMENT = "_review"


class _Server(http.server.ThreadingHTTPServer):
    """Threading HTTP server that knows its `PublicServer` settings."""

    daemon_threads = True
    # Do not wait for slow clients when stopping.
    block_on_close = False
    # listen() backlog: socketserver's default of 5 refuses connections
    # (resets) under a burst of clients.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], public: PublicServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.public = public
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Log instead of printing to stderr.
        _LOG.error("Error while answering %s.", client_address[0], exc_info=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS, which can
        # be slow; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Request handler of `PublicServer`."""

    server: _Server
    server_version = "epo-zooniverse"
    sys_version = ""
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"
    # Seconds a client may stay silent before its connection is closed.
    timeout = 30

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _other_method(self) -> None:
        if not self._review():
            self._method_not_allowed()

    def _review(self) -> bool:
        """Answer a request of the review page; `False` if the path is not
        the review page's.
        """
        review = self.server.public.review
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if review is None or not self.path.startswith("/") or not review.handles(path):
            return False
        response = review.handle(self.command, self.path, self.headers, self.rfile, self.client_address[0])
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
        return True

    def _method_not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        body = b"405 Method Not Allowed\n"
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _other_method

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        # Escaped so that a request line cannot forge log records.
        message = escape_for_log(format % args)
        _LOG.info("%s %s", self.client_address[0], message)

    def _not_found(self) -> None:
        self.send_error(404)

    def _respond(self, head: bool) -> None:
        public = self.server.public
        target = self.path
        if not target.startswith("/"):
            self.send_error(400, "Bad request target")
            return
        path = target.split("?", 1)[0].split("#", 1)[0]
        if self._review():
            return
        if path == public.status_path:
            self._send_status(head)
            return
        real = public._resolve(path)
        if real is None:
            self._not_found()
            return
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            self._not_found()
            return
        try:
            info = os.fstat(fd)
            regular = stat.S_ISREG(info.st_mode)
        except OSError:
            regular = False
        if not regular:
            os.close(fd)
            self._not_found()
            return
        with os.fdopen(fd, "rb") as stream:
            etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
            last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
            if self._not_modified(etag, info.st_mtime):
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", _FILE_CACHE_CONTROL)
                self.end_headers()
                return
            extension = os.path.splitext(real)[1].lower()
            self.send_response(200)
            self.send_header("Content-Type", _CONTENT_TYPES.get(extension, _DEFAULT_CONTENT_TYPE))
            self.send_header("Content-Length", str(info.st_size))
            self.send_header("Last-Modified", last_modified)
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", _FILE_CACHE_CONTROL)
            self.end_headers()
            if head:
                return
            remaining = info.st_size
            try:
                while remaining > 0:
                    chunk = stream.read(min(_CHUNK, remaining))
                    if not chunk:
                        # The file shrank: the client sees a short body.
                        self.close_connection = True
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _not_modified(self, etag: str, mtime: float) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            return etag in tags or "*" in tags
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since is not None:
            try:
                since = email.utils.parsedate_to_datetime(if_modified_since)
            except (TypeError, ValueError):
                return False
            if since.tzinfo is None:
                return False
            return int(mtime) <= since.timestamp()
        return False

    def _send_status(self, head: bool) -> None:
        public = self.server.public
        code = 200
        try:
            data = public.status() if public.status is not None else {}
            body = json.dumps(data, default=str, sort_keys=True).encode("utf-8")
        except Exception as err:
            # The exception text may describe private things (database
            # URLs, paths): log only its type, the traceback at DEBUG.
            _LOG.error("Status callback failed: %s.", type(err).__name__)
            _LOG.debug("Status callback traceback.", exc_info=True)
            code = 500
            body = json.dumps({"error": "status unavailable"}).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)


class PublicServer:
    """Serve a public directory over HTTP plus a JSON status endpoint, in a
    background thread or the foreground.

    Parameters
    ----------
    root : `str`
        Directory to serve.  Only regular files below it are served.
    host : `str`, optional
        Address to listen on; an IPv6 address such as ``::1`` works too.
    port : `int`, optional
        Port; 0 picks a free one (see `url`).
    status : `~collections.abc.Callable`, optional
        Called for each request of ``status_path``; returns a
        JSON-serialisable mapping (values that are not JSON types are
        written as strings).  `None` serves ``{}``.
    status_path : `str`, optional
        URL path of the status endpoint; it takes precedence over a file
        of the same name.
    review : `~lsst.epo.zooniverse.export.review_page.ReviewPage`, optional
        The operators' review page, served under its prefix
        (``/_review/``); `None` (the default) serves no review page.

    Raises
    ------
    NotADirectoryError
        Raised if ``root`` is not a directory.
    ValueError
        Raised if ``status_path`` does not start with ``/``.
    OSError
        Raised if the address cannot be bound.

    Notes
    -----
    The socket is bound when the server is constructed, so `url` holds
    the actual port before `start`.  Files get ``Content-Type`` from their
    extension, ``Content-Length``, ``ETag``, ``Last-Modified``
    (conditional requests are answered with 304), ``Cache-Control: public,
    max-age=300`` and ``X-Content-Type-Options: nosniff``; the status gets
    ``Cache-Control: no-store``.  An exception in ``status`` gives a 500
    answer ``{"error": "status unavailable"}``; the exception's type is
    logged, not returned.  Query strings are ignored.
    """

    def __init__(
        self,
        root: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        status: Callable[[], Mapping[str, Any]] | None = None,
        status_path: str = "/status.json",
        review: Any = None,
    ) -> None:
        real_root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real_root):
            raise NotADirectoryError(f"Public directory {root} does not exist or is not a directory.")
        if not status_path.startswith("/") or any(c in status_path for c in "?#"):
            raise ValueError(f"status_path {status_path!r} must be a URL path starting with '/'.")
        self.root = real_root
        self.status = status
        if status_path.split("/")[1].lower() == _REVIEW_SEGMENT:
            raise ValueError(f"status_path {status_path!r} is in the review page's reserved prefix.")
        self.status_path = status_path
        self.review = review
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running = False
        self._closed = False

    def __repr__(self) -> str:
        return f"PublicServer({self.root!r}, url={self.url!r})"

    @property
    def url(self) -> str:
        """Base URL of the server, with the port actually bound and a
        trailing slash (`str`).
        """
        host, port = self._server.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def _claim(self) -> None:
        with self._lock:
            if self._closed or self._running:
                raise RuntimeError("The server is running or was stopped; create a new one.")
            self._running = True

    def start(self) -> None:
        """Serve in a background (daemon) thread.

        Raises
        ------
        RuntimeError
            Raised if the server is already running or was stopped.
        """
        self._claim()
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=f"PublicServer-{self.url}", daemon=True
        )
        self._thread.start()
        _LOG.info("Serving %s at %s.", self.root, self.url)

    def stop(self) -> None:
        """Stop serving and close the socket.

        Works for both `start` and `serve_forever` (called from another
        thread); calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running
        if running:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._server.server_close()
        _LOG.info("Stopped the server at %s.", self.url)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted
        (`KeyboardInterrupt`) or until `stop` is called from another
        thread; then close the socket.

        Raises
        ------
        RuntimeError
            Raised if the server is already running or was stopped.
        """
        self._claim()
        _LOG.info("Serving %s at %s.", self.root, self.url)
        try:
            self._server.serve_forever(0.1)
        except KeyboardInterrupt:
            _LOG.info("Interrupted; stopping the server at %s.", self.url)
        finally:
            with self._lock:
                self._closed = True
            self._server.server_close()

    def __enter__(self) -> PublicServer:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _resolve(self, path: str) -> str | None:
        """Map a URL path to a file below the root.

        Parameters
        ----------
        path : `str`
            Percent-encoded URL path without query string.

        Returns
        -------
        real : `str` or `None`
            Real path of the file (symbolic links resolved), or `None` if
            the path must not be served.
        """
        if "\\" in path or "\0" in path:
            return None
        try:
            decoded = urllib.parse.unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None
        if "\\" in decoded or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
            return None
        parts = decoded.split("/")[1:]
        # Empty parts are "//" or a trailing "/" (a directory); "." and
        # ".." start with a dot like temporary files.
        if not parts or any(not part or part.startswith(".") for part in parts):
            return None
        if parts[0].lower() == _REVIEW_SEGMENT:
            return None
        real = os.path.realpath(os.path.join(self.root, *parts))
        try:
            relative = os.path.relpath(real, self.root)
        except ValueError:
            return None
        if relative == os.curdir or relative.split(os.sep)[0] == os.pardir or os.path.isabs(relative):
            return None
        if any(part.startswith(".") for part in relative.split(os.sep)):
            return None
        if relative.split(os.sep)[0].lower() == _REVIEW_SEGMENT:
            return None
        return real
