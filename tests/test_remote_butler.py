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

"""Retrieval through the RSP's client/server Butler: the export service
reads the PI's collections with a `RemoteButler` connected to daf_butler's
own test server (`lsst.daf.butler.tests.server`: a FastAPI app with an S3
datastore mocked by moto), downloads files through the URLs the server
signs, and still checks their size and checksum against the datastore's
records.
"""

from __future__ import annotations

import contextlib
import io
import zipfile

import pytest
from export_test_utils import assert_public_invariant, make_collection
from test_export_frames import frames_zip

from lsst.daf.butler import CollectionType, DatasetRef, FileDataset
from lsst.epo.zooniverse.butler.config import enable_butler_config
from lsst.epo.zooniverse.butler.dataset_types import register_dataset_types
from lsst.epo.zooniverse.butler.formatters import RgbCollectionFormatter
from lsst.epo.zooniverse.demo.repo import make_demo_skymap
from lsst.epo.zooniverse.export.retrieval_checks import is_remote_butler
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig

server_available = pytest.importorskip("lsst.daf.butler.tests.server_available")
if not server_available.butler_server_is_available:
    pytest.skip(server_available.butler_server_import_error, allow_module_level=True)

REPO = "https://test.example/api/butler/repo/testrepo/butler.yaml"
# A FileDatastore on S3 (moto), with checksums of ingested files.
SERVER_CONFIG = """\
datastore:
  cls: lsst.daf.butler.datastores.fileDatastore.FileDatastore
  root: s3://mutable-bucket/repo
  checksum: true
"""


class _RegistryServer:
    """What daf_butler's `TemporaryPostgresInstance` needs of a server."""

    def __init__(self, url):
        self._url = url

    def url(self):
        return self._url


@contextlib.contextmanager
def postgres_registry(postgres_server):
    """A PostgreSQL database for the Butler server's registry, on the
    tests' throw-away server.
    """
    import sqlalchemy

    from lsst.daf.butler.tests.postgresql import TemporaryPostgresInstance

    with postgres_server.temporary_registry_database("butler") as url:
        engine = sqlalchemy.create_engine(url)
        try:
            yield TemporaryPostgresInstance(_RegistryServer(url), engine)
        finally:
            engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", "postgresql"], ids=["registry-sqlite", "registry-postgresql"]
)
def server(request, tmp_path_factory):
    """daf_butler's test Butler server (registry on SQLite or PostgreSQL,
    datastore on S3 through moto) with this package's storage classes, a
    sky map and the dataset types; yields (server, sky map name).
    """
    from lsst.daf.butler.tests.server import create_test_server

    directory = tmp_path_factory.mktemp("butler_server")
    (directory / "config" / "basic").mkdir(parents=True)
    (directory / "config" / "basic" / "server.yaml").write_text(SERVER_CONFIG)
    enable_butler_config()
    with contextlib.ExitStack() as stack:
        postgres = None
        if request.param == "postgresql":
            postgres = stack.enter_context(postgres_registry(request.getfixturevalue("postgres_server")))
        instance = stack.enter_context(create_test_server(str(directory), postgres=postgres))
        butler = instance.direct_butler
        skymap = make_demo_skymap()
        skymap.register(butler)
        register_dataset_types(butler)
        yield instance, skymap.name


def s3_object(ref, server):
    """(client, bucket, key) of a dataset's file in the mocked S3."""
    from lsst.resources.s3utils import getS3Client

    uri = server.direct_butler.getURI(ref)
    return getS3Client(), uri.netloc, uri.relativeToPathRoot


def make_service(tmp_path, server):
    config = ServiceConfig.load(
        None,
        database=f"sqlite:///{tmp_path}/state.sqlite3",
        staging=str(tmp_path / "staging"),
        public_root=str(tmp_path / "public"),
        public_url="http://127.0.0.1:1/",
    )
    service = ExportService(config)
    service.butlers.add(REPO, server.remote_butler)
    return service


def register(service, owner):
    service.register_project(
        f"p-{owner}",
        zooniverse_project_id=1,
        owner=owner,
        repo=REPO,
        collections=f"u/{owner}/zoo/*",
    )


def put_rgb(server, skymap, owner, patch, seed):
    butler = server.direct_butler
    run = f"u/{owner}/zoo/run1"
    butler.registry.registerCollection(run, CollectionType.RUN)
    return butler.put(
        make_collection(2, seed=seed, first_id=10 * patch),
        "zooniverse_rgb",
        skymap=skymap,
        tract=0,
        patch=patch,
        run=run,
    )


def ingest_rgb(server, skymap, owner, patch, path):
    butler = server.direct_butler
    run = f"u/{owner}/zoo/run1"
    butler.registry.registerCollection(run, CollectionType.RUN)
    dataset_type = butler.get_dataset_type("zooniverse_rgb")
    data_id = butler.registry.expandDataId(skymap=skymap, tract=0, patch=patch)
    ref = DatasetRef(dataset_type, data_id, run=run)
    butler.ingest(FileDataset(path=str(path), refs=[ref], formatter=RgbCollectionFormatter), transfer="copy")
    return ref


def test_publication_through_a_remote_butler(tmp_path, server):
    server, skymap = server
    refs = [put_rgb(server, skymap, "alice", patch, seed=patch) for patch in (0, 1)]
    remote = server.remote_butler
    assert is_remote_butler(remote) and not is_remote_butler(server.direct_butler)
    calls = []
    original = remote.retrieveArtifacts

    def spy(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    remote.retrieveArtifacts = spy
    try:
        with make_service(tmp_path, server) as service:
            register(service, "alice")
            summary = service.poll()
            assert (summary.discovered, summary.quarantined, summary.errors) == (2, 2, [])
            assert len(calls) == 2
            for batch in service.review():
                service.approve(batch["batch"], operator="eve")
            assert service.publish().published == 4
            files = assert_public_invariant(service)
            expected = {}
            for ref in refs:
                client, bucket, key = s3_object(ref, server)
                data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    expected.update({n: archive.read(n) for n in archive.namelist() if n.endswith(".png")})
            published = {}
            for key in files:
                with open(service.public.root.join(key).ospath, "rb") as stream:
                    published[key.rsplit("/", 1)[1]] = stream.read()
            assert published == expected
    finally:
        del remote.retrieveArtifacts


def test_a_changed_file_is_refused_by_size_and_checksum(tmp_path, server):
    server, skymap = server
    resized = put_rgb(server, skymap, "bob", 0, seed=10)
    client, bucket, key = s3_object(resized, server)
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=data + b"appended")
    # Ingested files have a checksum: same size, one byte changed.
    rewritten = ingest_rgb(server, skymap, "bob", 1, frames_zip(tmp_path / "in.zip", ["obj7"]))
    client, bucket, key = s3_object(rewritten, server)
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[-30] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    with make_service(tmp_path, server) as service:
        register(service, "bob")
        summary = service.poll()
        assert (summary.rejected, summary.quarantined, summary.errors) == (2, 0, [])
        reasons = sorted(r["reason"].split(":")[0] for r in service.report("p-bob"))
        assert reasons == ["retrieval.checksum_mismatch", "retrieval.size_mismatch"]
        assert assert_public_invariant(service) == {}


def test_a_missing_file_is_unavailable_then_refused_without_leaking_signed_urls(tmp_path, server):
    server, skymap = server
    ref = put_rgb(server, skymap, "carol", 0, seed=20)
    client, bucket, key = s3_object(ref, server)
    client.delete_object(Bucket=bucket, Key=key)
    with make_service(tmp_path, server) as service:
        register(service, "carol")
        for _ in range(2):
            summary = service.poll()
            assert len(summary.errors) == 1 and "missing from the datastore" in summary.errors[0]
        summary = service.poll()
        assert summary.rejected == 1
        (row,) = service.report("p-carol")
        assert row["reason"].startswith("retrieval.unavailable: ") and "(3 attempts)" in row["reason"]
        audit = "\n".join(str(record) for record in service.audit_log())
        assert "Signature=" not in audit.replace("Signature=***", "")


def test_signed_url_signatures_are_masked():
    from lsst.epo.zooniverse.export.redaction import Redactor

    text = Redactor(environ={}).redact(
        "GET https://b.s3.amazonaws.com/r/f.zip?AWSAccessKeyId=KEYID&Signature=r89n%3D&Expires=17 failed; "
        "https://h/x.zip?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef&X-Amz-Expires=60"
    )
    for secret in ("KEYID", "r89n", "AKIA", "deadbeef"):
        assert secret not in text
    assert "Expires=17" in text and "X-Amz-Algorithm=AWS4" in text
