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


"""Tests of the public HTTP server with real sockets."""

import concurrent.futures
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from zooniverse_test_utils import run_in_fresh_process

from lsst.epo.zooniverse.export.serve import PublicServer

SECRET = b"root:x:0:0:not-public\n"


@pytest.fixture
def public(tmp_path):
    """A public directory next to private files, with traps."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key.png").write_bytes(SECRET)
    root = tmp_path / "public"
    batch = root / "proj" / "batch-1"
    batch.mkdir(parents=True)
    (batch / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(5000))
    (batch / "manifest.csv").write_bytes(b"id,file\n1,img.png\n")
    (batch / "manifest.json").write_bytes(b'{"n": 1}')
    (batch / "notes.fits").write_bytes(b"SIMPLE  =                    T")
    (batch / ".img2.png.partial-3f2a").write_bytes(SECRET)
    (root / ".hidden.png").write_bytes(SECRET)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(SECRET)
    (root / "big.png").write_bytes(os.urandom(1 << 20))
    os.symlink(tmp_path / "secret.txt", root / "out.png")
    os.symlink(tmp_path / "private", root / "outdir")
    os.symlink(batch / "img.png", root / "inside.png")
    os.symlink(root / ".hidden.png", root / "dotlink.png")
    os.mkfifo(root / "pipe.png")
    return root


@pytest.fixture
def server(public):
    with PublicServer(str(public)) as server:
        yield server


def _get(url, method="GET", headers=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def _raw(server, target, method="GET"):
    """Send a request line as is (no client-side path normalisation)."""
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


def test_url_and_lifecycle(public):
    server = PublicServer(str(public))
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/")
    assert int(server.url.rsplit(":", 1)[1].strip("/")) > 0
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    assert _get(server.url + "proj/batch-1/manifest.csv")[0] == 200
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "proj/batch-1/manifest.csv", timeout=5)
    with pytest.raises(RuntimeError):
        server.start()
    with pytest.raises(NotADirectoryError):
        PublicServer(str(public / "absent"))
    with pytest.raises(ValueError):
        PublicServer(str(public), status_path="status.json")


def test_get_files(server, public):
    status, headers, body = _get(server.url + "proj/batch-1/img.png")
    assert status == 200
    assert body == (public / "proj" / "batch-1" / "img.png").read_bytes()
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Cache-Control"] == "public, max-age=300"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["ETag"] and headers["Last-Modified"]
    assert "Python" not in headers.get("Server", "")
    for name, content_type in [
        ("manifest.csv", "text/csv"),
        ("manifest.json", "application/json"),
        ("notes.fits", "application/octet-stream"),
    ]:
        status, headers, body = _get(server.url + "proj/batch-1/" + name)
        assert status == 200
        assert headers["Content-Type"] == content_type
        assert body == (public / "proj" / "batch-1" / name).read_bytes()
    # Query strings are ignored; symbolic links within the root are followed.
    assert _get(server.url + "proj/batch-1/manifest.json?v=2")[2] == b'{"n": 1}'
    assert _get(server.url + "inside.png")[2] == (public / "proj" / "batch-1" / "img.png").read_bytes()


def test_conditional_get(server):
    url = server.url + "proj/batch-1/img.png"
    _, headers, _ = _get(url)
    status, headers2, body = _get(url, headers={"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")
    assert headers2["ETag"] == headers["ETag"]
    assert _get(url, headers={"If-None-Match": '"other"'})[0] == 200
    assert _get(url, headers={"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    assert _get(url, headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})[0] == 200


def test_head(server, public):
    size = (public / "proj" / "batch-1" / "img.png").stat().st_size
    status, headers, body = _raw(server, "/proj/batch-1/img.png", method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(size)
    assert headers["content-type"] == "image/png"
    assert _raw(server, "/.hidden.png", method="HEAD")[:3:2] == (404, b"")


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/proj/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/proj/%2e%2e/%2e%2e/secret.txt",
        "/proj/..%2f..%2fsecret.txt",
        "/a/..%2fb",
        "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/proj\\..\\..\\secret.txt",
        "/proj/batch-1/img.png%00.txt",
        "/%252e%252e/secret.txt",
        "/./proj/batch-1/img.png",
        "/proj//batch-1/img.png",
        "/%c0%ae%c0%ae/secret.txt",
        "/out.png",
        "/outdir/key.png",
    ],
)
def test_traversal_refused(server, target):
    status, _, body = _raw(server, target)
    assert status == 404
    assert SECRET not in body


def test_request_target_forms(server):
    assert _raw(server, "http://localhost/../secret.txt")[0] == 400
    assert _raw(server, "*")[0] == 400


@pytest.mark.parametrize(
    "target",
    [
        "/.hidden.png",
        "/%2ehidden.png",
        "/proj/batch-1/.img2.png.partial-3f2a",
        "/.git/config",
        "/dotlink.png",
    ],
)
def test_dot_files_refused(server, target):
    status, _, body = _raw(server, target)
    assert status == 404
    assert SECRET not in body


@pytest.mark.parametrize(
    "target", ["/", "/proj", "/proj/", "/proj/batch-1/", "/proj/batch-1/img.png/", "/absent"]
)
def test_directories_and_missing(server, target):
    status, headers, body = _raw(server, target)
    assert status == 404
    assert b"img.png" not in body and b"batch-1" not in body
    assert headers["x-content-type-options"] == "nosniff"


def test_special_files(server):
    start = time.monotonic()
    assert _raw(server, "/pipe.png")[0] == 404
    assert time.monotonic() - start < 5


def test_methods(server):
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = _raw(server, "/proj/batch-1/img.png", method=method)
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"
    status, _, _ = _get(server.url + "status.json", method="POST")
    assert status == 405
    assert _raw(server, "/proj/batch-1/img.png", method="BREW")[0] == 501


def test_status(public):
    state = {"datasets": {"published": 3, "quarantined": 1}, "updated": time.gmtime(0)}
    with PublicServer(str(public), status=lambda: state) as server:
        status, headers, body = _get(server.url + "status.json?x=1")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        data = json.loads(body)
        assert data["datasets"] == {"published": 3, "quarantined": 1}
        status, headers, body = _raw(server, "/status.json", method="HEAD")
        assert (status, body) == (200, b"")
    with PublicServer(str(public), status_path="/api/status") as server:
        assert json.loads(_get(server.url + "api/status")[2]) == {}
        assert _get(server.url + "status.json")[0] == 404


def test_status_failure(public, caplog):
    def broken():
        raise RuntimeError("postgresql://epo:hunter2@db/state is down")

    caplog.set_level(logging.DEBUG, logger="lsst.epo.zooniverse.export.serve")
    with PublicServer(str(public), status=broken) as server:
        status, headers, body = _get(server.url + "status.json")
    assert status == 500
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": "status unavailable"}
    assert b"hunter2" not in body
    assert any("RuntimeError" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert not any("hunter2" in r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)


def test_access_log(server, caplog):
    caplog.set_level(logging.INFO, logger="lsst.epo.zooniverse.export.serve")
    _get(server.url + "proj/batch-1/manifest.csv")
    _raw(server, "/a\x1b[31mred")
    messages = [r.getMessage() for r in caplog.records if r.name == "lsst.epo.zooniverse.export.serve"]
    assert any("/proj/batch-1/manifest.csv" in m and "200" in m for m in messages)
    assert any("\\x1b[31m" in m for m in messages)
    assert not any("\x1b" in m for m in messages)


def test_concurrent_fetches(server, public):
    expected = {
        "big.png": (public / "big.png").read_bytes(),
        "proj/batch-1/img.png": (public / "proj" / "batch-1" / "img.png").read_bytes(),
    }
    names = list(expected) * 16
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda name: _get(server.url + name), names))
    for name, (status, _, body) in zip(names, results):
        assert status == 200
        assert body == expected[name]


def test_listen_backlog(public):
    server = PublicServer(str(public))
    try:
        assert server._server.request_queue_size >= 128
    finally:
        server.stop()


def test_serve_forever_stop(public):
    server = PublicServer(str(public))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert _get(server.url + "proj/batch-1/manifest.csv")[0] == 200
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_serve_forever_keyboard_interrupt(public):
    """Ctrl-C (SIGINT) stops ``serve_forever`` promptly and closes the
    socket.  Run in a fresh process: pytest-xdist workers ignore SIGINT,
    and the process inherits how it is handled.
    """
    code = f"""
        import os, signal, threading, time, urllib.error, urllib.request
        from lsst.epo.zooniverse.export.serve import PublicServer

        # As in a terminal (a parent may have left SIGINT ignored, e.g. a
        # background job of a non-interactive shell).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server = PublicServer({str(public)!r})
        url = server.url
        served = []

        interrupted = []

        def fetch_then_interrupt():
            served.append(urllib.request.urlopen(url + "proj/batch-1/manifest.json", timeout=5).status)
            interrupted.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        client = threading.Timer(0.2, fetch_then_interrupt)
        client.start()
        server.serve_forever()
        returned = time.monotonic()
        client.join()
        print("served", served)
        print("returned after", returned - interrupted[0])
        try:
            urllib.request.urlopen(url, timeout=5)
            print("still serving")
        except urllib.error.URLError:
            print("closed")
    """
    lines = run_in_fresh_process(code).splitlines()
    assert lines[0] == "served [200]"
    assert lines[1].startswith("returned after ") and float(lines[1].split()[-1]) < 10
    assert lines[-1] == "closed"


def test_ipv6(public):
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with PublicServer(str(public), host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        assert _get(server.url + "proj/batch-1/manifest.json")[2] == b'{"n": 1}'
