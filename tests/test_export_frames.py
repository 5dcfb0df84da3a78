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

"""Multi-frame subjects on EPO's side: band frames listed in ``index.csv``
are validated with their picture, published with it (never alone), and
become the subject's further locations in manifests and subject sets.

The ZIPs here are written by hand with zipfile and Pillow, independently
of the package's writer, in the documented layout.
"""

import csv
import io
import os
import zipfile

import numpy as np
import pytest
from export_test_utils import ExportRepo, assert_public_invariant
from PIL import Image

from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn
from lsst.epo.zooniverse.export.manifest import validate_manifest
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.zooniverse.subject_sets import SubjectSetPublisher, ZooniverseCredentials

BANDS = ("g", "r", "i")


def png(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format="PNG")
    return stream.getvalue()


def frames_zip(path, objects, *, frames=BANDS, size=16, broken=None, frames_text=None, extra=()):
    """Write a zooniverse_rgb-layout ZIP: per object an RGB picture and a
    grey frame per band; ``broken`` names a frame entry written as junk.
    """
    rng = np.random.default_rng(len(objects))
    rows, entries = [], {}
    for k, object_id in enumerate(objects):
        entries[f"{object_id}.png"] = png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        pairs = []
        for band in frames:
            name = f"{object_id}+{band}.png"
            entries[name] = png(rng.integers(0, 256, (size, size), dtype=np.uint8))
            pairs.append(f"{band}={name}")
        text = " ".join(pairs) if frames_text is None else frames_text.get(object_id, " ".join(pairs))
        rows.append([f"{object_id}.png", object_id, 10 + k / 10, -5, "g,r,i", 1.0, "lupton", text])
    if broken:
        entries[broken] = b"\x89PNG\r\n\x1a\n" + b"junk" * 10
    entries.update(extra)
    index = io.StringIO()
    writer = csv.writer(index, lineterminator="\n")
    writer.writerow(["file", "object_id", "ra", "dec", "bands", "coverage", "stretch", "frames"])
    writer.writerows(rows)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.csv", index.getvalue())
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def service(tmp_path, state_db_url):
    config = ServiceConfig.load(
        None,
        database=state_db_url,
        staging=str(tmp_path / "staging"),
        public_root=str(tmp_path / "public"),
        public_url="https://epo.example.org/z/",
    )
    with ExportService(config) as service:
        yield service


def run(service, repo, metadata_policy="full"):
    service.register_project(
        "galaxies",
        zooniverse_project_id=77,
        owner="alice",
        repo=repo.root,
        collections="u/alice/zoo/*",
        metadata_policy=metadata_policy,
    )
    service.poll()
    for batch in service.review():
        service.approve(batch["batch"], operator="eve")
    service.publish()
    return assert_public_invariant(service)


@pytest.mark.parametrize("metadata_policy", ["full", "anonymised"])
def test_frames_are_published_with_their_picture(tmp_path, service, metadata_policy):
    repo = ExportRepo(str(tmp_path / "repo"))
    repo.ingest_raw_rgb("u/alice/zoo/run1", frames_zip(tmp_path / "a.zip", ["obj1", "obj2"]), patch=1)
    # obj4's r frame is junk: obj4 is refused with it, obj3 goes on.
    broken = frames_zip(tmp_path / "b.zip", ["obj3", "obj4"], broken="obj4+r.png")
    repo.ingest_raw_rgb("u/alice/zoo/run1", broken, patch=2)
    files = run(service, repo, metadata_policy)
    rows = {r["object_id"]: r for r in service.report("galaxies")}
    assert rows["obj4"]["state"] == "rejected" and "frame.rejected" in rows["obj4"]["reason"]
    assert "r frame" in rows["obj4"]["reason"]
    # 3 published subjects of 4 files each; nothing of obj4 is public.
    assert len(files) == 12
    images = service.published_images("galaxies")
    assert sorted(i["object_id"] for i in images) == ["obj1", "obj2", "obj3"]
    for image in images:
        assert len(image["frames"]) == 3
        for band, url in zip(BANDS, image["frames"]):
            assert url.startswith("https://epo.example.org/z/galaxies/") and url.endswith(f"+{band}.png")
            key = url.removeprefix("https://epo.example.org/z/")
            assert key in files
            with Image.open(os.path.join(service.public.root.ospath, key)) as frame:
                assert frame.mode == "L" and frame.size == (16, 16)
        if metadata_policy == "anonymised":
            assert image["object_id"] not in " ".join(image["frames"])
    (manifest,) = service.write_manifests("galaxies", str(tmp_path / "manifests"))
    assert validate_manifest(manifest, url_prefix="https://epo.example.org/z/") == []
    header = open(manifest).readline().strip().split(",")
    assert header[:5] == ["external_id", "location:1", "location:2", "location:3", "location:4"]


def test_a_subject_set_gets_every_frame_in_order(tmp_path, service):
    repo = ExportRepo(str(tmp_path / "repo"))
    repo.ingest_raw_rgb("u/alice/zoo/run1", frames_zip(tmp_path / "a.zip", ["obj1", "obj2"]), patch=1)
    # A run without frames in the same project: single-frame subjects.
    repo.ingest_raw_rgb("u/alice/zoo/run1", frames_zip(tmp_path / "b.zip", ["obj5"], frames=()), patch=2)
    run(service, repo)
    with PanoptesStandIn(project_id=77) as zooniverse:
        credentials = ZooniverseCredentials(
            endpoint=zooniverse.url, client_id=zooniverse.client_id, client_secret=zooniverse.client_secret
        )
        publisher = SubjectSetPublisher(service, credentials, poll_interval=0.01)
        summary = publisher.sync("galaxies", subject_set_name="flipbook", method="subjects")
        subjects = {
            s["metadata"]["#external_id"]: s["locations"]
            for s in zooniverse.set_subjects(summary.subject_set_id)
        }
    by_object = {i["object_id"]: i for i in service.published_images("galaxies")}
    for object_id in ("obj1", "obj2"):
        image = by_object[object_id]
        expected = [{"image/png": url} for url in [image["url"], *image["frames"]]]
        assert subjects[f"galaxies:{object_id}"] == expected
    assert subjects["galaxies:obj5"] == [{"image/png": by_object["obj5"]["url"]}]
    # Manifests: one frame count per part.
    paths = service.write_manifests("galaxies", str(tmp_path / "manifests"))
    counts = sorted(sum(c.startswith("location:") for c in open(p).readline().split(",")) for p in paths)
    assert counts == [1, 4]


@pytest.mark.parametrize(
    "frames_text, message",
    [
        ({"obj1": "g=obj1+g.png r=obj1+r.png i"}, "not <band>=<entry>"),
        ({"obj1": "g=obj1+g.png g=obj1+r.png i=obj1+i.png"}, "names band 'g' twice"),
        ({"obj1": "g=obj1+g.png r=obj1+r.png i=missing.png"}, "not a PNG entry"),
        ({"obj1": "g=obj2.png r=obj1+r.png i=obj1+i.png"}, "is a picture"),
        ({"obj2": "g=obj1+g.png r=obj2+r.png i=obj2+i.png"}, "already a frame of"),
    ],
)
def test_bad_frames_columns_reject_the_batch(tmp_path, service, frames_text, message):
    repo = ExportRepo(str(tmp_path / "repo"))
    path = frames_zip(tmp_path / "a.zip", ["obj1", "obj2"], frames_text=frames_text)
    repo.ingest_raw_rgb("u/alice/zoo/run1", path, patch=1)
    files = run(service, repo)
    (row,) = [r for r in service.report("galaxies") if r["entry"] == ""] or service.report("galaxies")[:1]
    assert row["state"] == "rejected" and "index.frames" in row["reason"] and message in row["reason"]
    assert files == {}


def test_a_frame_of_another_size_refuses_the_picture(tmp_path, service):
    repo = ExportRepo(str(tmp_path / "repo"))
    odd = {"obj1+i.png": png(np.zeros((8, 8), dtype=np.uint8))}
    repo.ingest_raw_rgb(
        "u/alice/zoo/run1", frames_zip(tmp_path / "a.zip", ["obj1", "obj2"], extra=odd), patch=1
    )
    files = run(service, repo)
    rows = {r["object_id"]: r for r in service.report("galaxies")}
    assert rows["obj1"]["state"] == "rejected" and "frame.dimensions" in rows["obj1"]["reason"]
    assert rows["obj2"]["state"] == "published" and len(files) == 4


@pytest.mark.parametrize("metadata_policy", ["full", "anonymised"])
def test_frames_written_by_the_pipeline_formatter(tmp_path, service, metadata_policy):
    # The package's own writer (composeRgb's output through the Butler):
    # EPO accepts its frames as they are and publishes them in band order.
    from lsst.daf.butler import CollectionType
    from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection

    rng = np.random.default_rng(7)
    pictures = [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(3)]
    frames = [{b: rng.integers(0, 256, (20, 20), dtype=np.uint8) for b in BANDS} for _ in range(3)]
    index = {
        "object_id": ["a", "b", "a+g"],  # "a+g" collides with a's g frame name
        "ra": [10.0, 10.1, 10.2],
        "dec": [-5.0, -5.0, -5.0],
        "bands": ["g,r,i"] * 3,
        "coverage": [1.0] * 3,
        "stretch": ["lupton(Q=8)"] * 3,
    }
    repo = ExportRepo(str(tmp_path / "repo"))
    repo.butler.registry.registerCollection("u/alice/zoo/run1", CollectionType.RUN)
    collection = RgbCollection(pictures, index, frames=frames)
    repo.butler.put(
        collection, "zooniverse_rgb", skymap=repo.skymap, tract=0, patch=1, run="u/alice/zoo/run1"
    )
    files = run(service, repo, metadata_policy)
    images = {i["object_id"]: i for i in service.published_images("galaxies")}
    assert sorted(images) == ["a", "a+g", "b"] and len(files) == 12
    for k, object_id in enumerate(index["object_id"]):
        urls = images[object_id]["frames"]
        assert [u.rsplit("+", 1)[1].split("~")[0].removesuffix(".png") for u in urls] == list(BANDS)
        for band, url in zip(BANDS, urls):
            key = url.removeprefix(service.public.url_prefix)
            with Image.open(os.path.join(service.public.root.ospath, key)) as frame:
                assert np.array_equal(np.asarray(frame), frames[k][band])
    (manifest,) = service.write_manifests("galaxies", str(tmp_path / "manifests"))
    assert validate_manifest(manifest, metadata_policy=metadata_policy) == []
