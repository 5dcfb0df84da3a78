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


"""The cutout pipeline run for real with ``pipetask run`` on the demo
repository: accounting of every sample-catalog row, the 2MASS stars at the
centre of their pictures, WCS centring through the PNG's embedded WCS,
byte-identical reruns, config overrides and validation.
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from PIL import Image
from pipeline_test_utils import pipetask, run_pipeline_file

from lsst.epo.zooniverse.butler.config import get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.accounting import account_targets
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "pipelines" / "ZooniverseCutouts.yaml"
DEMO_CONFIG = ROOT / "config" / "composeRgb_demo.py"
TARGETS_RUN = "targets/sample"


def run_pipeline(
    repo: str, inputs: str, output: str, *extra: str, subset: str = "", query: str = "", jobs: int = 1
) -> None:
    uri = f"{PIPELINE}#{subset}" if subset else str(PIPELINE)
    where = "skymap='zooniverse_demo'" + (f" AND {query}" if query else "")
    run_pipeline_file(repo, inputs, output, uri, where, *extra, constrain=subset != "composeRgb", jobs=jobs)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Demo repository, sample catalog sharded, whole pipeline run once."""
    root = tmp_path_factory.mktemp("pipeline")
    demo = make_demo_repo(root / "repo")
    butler = get_butler(demo.root, writeable=True)
    summary = shard_target_catalog(butler, demo.sample_catalog, run=TARGETS_RUN, extra_columns=["note"])
    output = "u/demo_pi/run1"  # a PI's namespace: the EPO test below polls it
    run_pipeline(demo.root, f"{demo.collection},{TARGETS_RUN}", output, "-C", f"composeRgb:{DEMO_CONFIG}")
    return {"demo": demo, "summary": summary, "output": output, "root": root}


def _sample(demo) -> Table:
    """The sample catalog as text columns (empty ids stay empty strings)."""
    with open(demo.sample_catalog, newline="") as stream:
        rows = list(csv.DictReader(stream))
    table = Table({name: [row[name] for row in rows] for name in rows[0]})
    for name in ("ra", "dec"):
        table[name] = [float(value) if value.strip() else np.nan for value in table[name]]
    return table


def _avm_wcs(png: bytes, tmp_path: Path):
    """The WCS pyavm reads from a PNG file's XMP packet."""
    from pyavm import AVM

    path = tmp_path / "picture.png"
    path.write_bytes(png)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AVM.from_image(str(path)).to_wcs()


def _png(butler, collection, tract, patch, object_id) -> bytes:
    uri = butler.getURI(
        "zooniverse_rgb", skymap="zooniverse_demo", tract=tract, patch=patch, collections=collection
    )
    with zipfile.ZipFile(io.BytesIO(uri.read())) as archive:
        index = list(csv.DictReader(io.StringIO(archive.read("index.csv").decode())))
        name = next(row["file"] for row in index if row["object_id"] == str(object_id))
        return archive.read(name)


def test_pipeline_file_builds_graph():
    from lsst.pipe.base import Pipeline

    graph = Pipeline.from_uri(str(PIPELINE)).to_graph()
    assert set(graph.tasks.keys()) == {"shardCatalog", "extractStamps", "composeRgb"}


def test_every_row_accounted_for(demo_run):
    demo = demo_run["demo"]
    butler = get_butler(demo.root)
    table = account_targets(butler, demo_run["output"])
    sample = _sample(demo)
    assert len(table) == len(sample) == table.meta["n_rows"] == demo_run["summary"].n_rows
    assert list(table["row_index"]) == list(range(len(sample)))
    status = dict(zip(table["row_index"], table["status"]))
    reason = dict(zip(table["row_index"], table["reason"]))
    npatches = dict(zip(table["row_index"], [len(p.split(",")) for p in table["patches"]]))
    duplicated = {i for i in sample["object_id"] if list(sample["object_id"]).count(i) > 1}
    for k, (object_id, note) in enumerate(zip(sample["object_id"], sample["note"])):
        where = f"row {k} ({object_id}, {note}): {status[k]} {reason[k]}"
        if object_id in duplicated:
            assert status[k] == "rejected" and reason[k] == "duplicate_id", where
        elif note in ("nan",):
            assert status[k] == "rejected" and reason[k] == "nan_coordinates", where
        elif note == "bad_dec":
            assert status[k] == "rejected" and reason[k] == "dec_out_of_range", where
        elif note == "empty_id":
            assert status[k] == "rejected" and reason[k] == "missing_id", where
        elif note in ("outside", "outside_pole"):
            assert status[k] == "outside_coadds", where
        elif note in ("inside", "pole", "2mass_star", "ra_negative", "ra_over_360"):
            assert status[k] == "pictured", where
        elif note == "overlap":
            assert status[k] == "pictured" and npatches[k] >= 2, where
        elif note == "missing_band":
            assert status[k] == "no_picture" and reason[k] == "missing_band", where
        elif note == "no_data":
            assert status[k] == "no_picture" and set(reason[k].split(",")) <= {"no_data", "low_coverage"}, (
                where
            )
        elif note == "edge":
            # Partial stamps: pictured, too little coverage, or in the
            # patch that lacks g.
            patches = dict(zip(table["row_index"], table["patches"]))[k]
            assert (
                status[k] == "pictured"
                or reason[k] == "low_coverage"
                or (reason[k] == "missing_band" and patches == "0:5")
            ), where
        else:
            raise AssertionError(f"unexpected note {note!r}")
    # Every pictured row names a PNG that exists in its patch's ZIP.
    pictured = table[table["status"] == "pictured"]
    assert len(pictured) > 100
    for row in pictured[:: max(1, len(pictured) // 10)]:
        assert (
            _png(butler, demo_run["output"], row["tract"], row["patch"], row["object_id"])[:8]
            == b"\x89PNG\r\n\x1a\n"
        )


def test_2mass_stars_centred(demo_run, tmp_path):
    """The real 2MASS stars: each is the bright spot at its picture's
    centre, and the PNG's own WCS puts it within 0.5 px of the centre.
    """
    demo = demo_run["demo"]
    butler = get_butler(demo.root)
    sample = _sample(demo)
    stars = sample[sample["note"] == "2mass_star"]
    assert len(stars) >= 5
    for star in stars:
        png = _png(butler, demo_run["output"], 1, 0, star["object_id"])
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
        height, width = image.shape[:2]
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        # The Galactic Centre is crowded (5" pixels, brighter stars of other
        # colours in most pictures): the star is the peak within 3 px of the
        # centre and among the brightest 2 % of the picture's pixels.
        brightness = image.sum(axis=2)
        cx, cy, half = int(centre_x), int(centre_y), 3
        box = brightness[cy - half : cy + half + 1, cx - half : cx + half + 1]
        y, x = np.unravel_index(np.argmax(box), box.shape)
        assert abs(x - half) <= 1 and abs(y - half) <= 1, (star["object_id"], x - half, y - half)
        assert (brightness < box[y, x]).mean() >= 0.98, star["object_id"]
        wcs = _avm_wcs(png, tmp_path)
        px, py = wcs.world_to_pixel_values(star["ra"], star["dec"])
        # FITS pixel (1, 1) is the bottom-left: picture row = height - 1 - py.
        assert abs(float(px) - centre_x) <= 0.5 and abs((height - 1 - float(py)) - centre_y) <= 0.5
        # North up and east left.
        _, py_north = wcs.world_to_pixel_values(star["ra"], star["dec"] + 1e-3)
        px_east, _ = wcs.world_to_pixel_values(star["ra"] + 1e-3, star["dec"])
        assert py_north > py and px_east < px


def test_synthetic_objects_centred_through_png_wcs(demo_run, tmp_path):
    demo = demo_run["demo"]
    butler = get_butler(demo.root)
    table = account_targets(butler, demo_run["output"])
    pictured = table[(table["status"] == "pictured") & (table["tract"] == 0)]
    sample = _sample(demo)
    for row in pictured[:: max(1, len(pictured) // 12)]:
        png = _png(butler, demo_run["output"], row["tract"], row["patch"], row["object_id"])
        wcs = _avm_wcs(png, tmp_path)
        width, height = Image.open(io.BytesIO(png)).size
        ra, dec = sample["ra"][row["row_index"]] % 360.0, sample["dec"][row["row_index"]]
        px, py = wcs.world_to_pixel_values(ra, dec)
        assert abs(float(px) - (width - 1) / 2) <= 0.5 and abs(float(py) - (height - 1) / 2) <= 0.5


def test_rerun_is_byte_identical_and_overrides_change_output(demo_run):
    demo = demo_run["demo"]
    inputs = demo_run["output"]
    run_pipeline(
        demo.root,
        inputs,
        "out/rerun",
        "-C",
        f"composeRgb:{DEMO_CONFIG}",
        subset="composeRgb",
        query="tract=0 AND patch IN (0, 1, 4)",
        # The first run's quanta ran in the pipetask process; these run
        # each in a spawned process, and must make the same bytes.
        jobs=2,
    )
    run_pipeline(
        demo.root,
        inputs,
        "out/q2",
        "-C",
        f"composeRgb:{DEMO_CONFIG}",
        "-c",
        "composeRgb:stretch.Q=2",
        subset="composeRgb",
        query="tract=0 AND patch IN (0, 1, 4)",
    )
    run_pipeline(
        demo.root,
        inputs,
        "out/stars",
        "-C",
        f"composeRgb:{DEMO_CONFIG}",
        "-C",
        f"composeRgb:{ROOT / 'config' / 'composeRgb_star_fields.py'}",
        subset="composeRgb",
        query="tract=0 AND patch IN (0, 1, 4)",
    )
    butler = get_butler(demo.root)
    for patch in (0, 1, 4):
        data_id = {"skymap": "zooniverse_demo", "tract": 0, "patch": patch}
        first = butler.getURI("zooniverse_rgb", data_id, collections=inputs).read()
        again = butler.getURI("zooniverse_rgb", data_id, collections="out/rerun").read()
        assert first == again, f"patch {patch}: rerun differs"
        q2 = butler.get("zooniverse_rgb", data_id, collections="out/q2")
        stars = butler.get("zooniverse_rgb", data_id, collections="out/stars")
        original = butler.get("zooniverse_rgb", data_id, collections=inputs)
        assert "Q=2" in q2.index["stretch"][0] and "Q=8" in original.index["stretch"][0]
        assert "stretch=3000" in stars.index["stretch"][0]
        # A lower Q brightens faint light; a wider linear range darkens it.
        mean = np.mean([img.mean() for img in original.images])
        assert np.mean([img.mean() for img in q2.images]) > mean
        assert np.mean([img.mean() for img in stars.images]) < mean


@pytest.mark.parametrize(
    "override, message",
    [
        ("composeRgb:min_coverage=2", "min_coverage"),
        ("composeRgb:stretch.Q=0", "Q"),
        ("extractStamps:stamp_size=0", "stamp_size"),
        ("composeRgb:output_size=3", "output_size"),
    ],
)
def test_bad_config_rejected(demo_run, override, message):
    demo = demo_run["demo"]
    result = pipetask(
        "qgraph",
        "-b",
        demo.root,
        "-i",
        demo_run["output"],
        "-p",
        str(PIPELINE),
        "-c",
        override,
        "-d",
        "skymap='zooniverse_demo'",
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_epo_report_has_a_line_per_catalog_row(demo_run, tmp_path):
    """From the PI's catalog to public URLs: every row has its URL or the
    reason it has none, and the lines add up to the catalog."""
    from lsst.epo.zooniverse.export.service import ExportService
    from lsst.epo.zooniverse.export.service_config import ServiceConfig

    demo = demo_run["demo"]
    config = ServiceConfig.load(
        None,
        database=f"sqlite:///{tmp_path}/state.sqlite3",
        staging=str(tmp_path / "staging"),
        public_root=str(tmp_path / "public"),
        public_url="http://127.0.0.1:8080/",
    )
    with ExportService(config) as service:
        service.register_project(
            "demo", zooniverse_project_id=1, owner="demo_pi", repo=demo.root, collections="u/demo_pi/run1/*"
        )
        service.poll()
        batches = sorted(b["batch"] for b in service.review())
        service.reject(batches[0], operator="eve", reason="test rejection")
        for batch in batches[1:-1]:
            service.approve(batch, operator="eve")
        service.publish()  # the last batch stays in quarantine
        rows = service.catalog_report("demo", demo_run["output"])
        published = {r["object_id"]: r["url"] for r in service.published_images("demo")}
    sample = _sample(demo)
    assert len(rows) == len(sample) and [r["row_index"] for r in rows] == list(range(len(sample)))
    outcomes = {(r["outcome"], r["stage"]) for r in rows}
    assert ("published", "epo") in outcomes and ("not_published", "sharding") in outcomes
    assert ("not_published", "pipeline") in outcomes
    reasons = " ".join(r["reason"] for r in rows)
    assert "test rejection" in reasons and "waiting for EPO's approval" in reasons
    for row in rows:
        if row["outcome"] == "published":
            assert row["url"] == published[row["object_id"]]
        else:
            assert row["url"] == "" and row["reason"]
