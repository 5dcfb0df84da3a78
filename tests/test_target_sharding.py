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


"""Tests of the target-catalog sharding library and its butler subcommand,
against real Butler repositories.
"""

import csv

import astropy.units as u
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Column, Table
from click.testing import CliRunner
from zooniverse_test_utils import make_test_butler

from lsst.daf.butler import Butler, MissingCollectionError
from lsst.daf.butler.cli.butler import cli as butler_cli
from lsst.daf.butler.formatters.parquet import astropy_to_arrow
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.sharding import (
    CatalogError,
    htm_indices,
    row_validation,
    shard_target_catalog,
)
from lsst.sphgeom import HtmPixelization, LonLat, UnitVector3d

HTM7 = HtmPixelization(7)


def htm7(ra, dec):
    return HTM7.index(UnitVector3d(LonLat.fromDegrees(ra, dec)))


def read_shards(butler, run):
    """Return {htm7: Table} of every zooniverse_targets dataset in run."""
    refs = butler.query_datasets("zooniverse_targets", collections=run, explain=False, limit=None)
    return {ref.dataId["htm7"]: butler.get(ref) for ref in refs}


def read_rejected(butler, run):
    return butler.get("zooniverse_targets_rejected", collections=run)


def assert_nothing_written(butler, run):
    try:
        butler.collections.get_info(run)
    except MissingCollectionError:
        pass
    else:
        raise AssertionError(f"run {run} was created")
    for name in ("zooniverse_targets", "zooniverse_targets_rejected"):
        try:
            refs = butler.query_datasets(name, collections=run, explain=False)
        except (MissingCollectionError, Exception):
            refs = []
        assert not refs


def assert_accounting(shards, rejected, n_rows):
    """Every row is in exactly one shard or in the rejection table."""
    seen = []
    for table in shards.values():
        rows = list(table["row_index"])
        assert rows == sorted(rows)
        seen.extend(rows)
    seen.extend(rejected["row_index"])
    assert sorted(seen) == list(range(n_rows))


# ---------------------------------------------------------------------------
# The demo repository's sample catalog, end to end (library and CLI).


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_repo(tmp_path_factory.mktemp("demo") / "repo")


def test_demo_sample_catalog(demo):
    butler = Butler.from_config(demo.root, writeable=True)
    summary = shard_target_catalog(butler, demo.sample_catalog, run="u/pi/sample", extra_columns=["note"])
    rows = list(csv.DictReader(open(demo.sample_catalog)))
    assert summary.n_rows == len(rows)
    shards = read_shards(butler, "u/pi/sample")
    rejected = read_rejected(butler, "u/pi/sample")
    assert summary.n_shards == len(shards) > 1
    assert summary.n_accepted == sum(len(t) for t in shards.values())
    assert summary.n_rejected == len(rejected)
    assert_accounting(shards, rejected, len(rows))

    reasons = {int(r["row_index"]): str(r["reason"]) for r in rejected}
    details = {int(r["row_index"]): str(r["detail"]) for r in rejected}
    by_note = {}
    for k, row in enumerate(rows):
        by_note.setdefault(row["note"], []).append(k)
    assert [reasons[k] for k in by_note["nan"]] == ["nan_coordinates"] * 2
    assert [reasons[k] for k in by_note["bad_dec"]] == ["dec_out_of_range"]
    assert [reasons[k] for k in by_note["empty_id"]] == ["missing_id"]
    # Both rows of each duplicated id are refused, naming the other row.
    for k in by_note["duplicate"]:
        original = next(j for j in range(k) if rows[j]["object_id"] == rows[k]["object_id"])
        assert reasons[k] == reasons[original] == "duplicate_id"
        assert str(original) in details[k] and str(k) in details[original]
    assert summary.rejected_by_reason == {
        "missing_id": 1,
        "duplicate_id": 4,
        "nan_coordinates": 2,
        "dec_out_of_range": 1,
    }
    # The Butler strips table metadata on read unless asked not to.
    meta = butler.get(
        "zooniverse_targets_rejected",
        collections="u/pi/sample",
        parameters={"strip_astropy_meta_yaml": False},
    ).meta
    assert meta["n_rows"] == len(rows) and meta["n_rejected"] == len(rejected)
    assert meta["n_accepted"] == summary.n_accepted and meta["catalog"] == "sample_catalog.csv"
    assert meta["n_ra_normalised"] == summary.n_ra_normalised == 2

    # Every accepted row round-trips through row_index, in the right shard.
    located = {}
    for shard, table in shards.items():
        assert table.colnames == ["object_id", "ra", "dec", "row_index", "note"]
        for row in table:
            k = int(row["row_index"])
            located[k] = (shard, row)
            assert row["object_id"] == rows[k]["object_id"]
            assert row["note"] == rows[k]["note"]
            assert 0.0 <= row["ra"] < 360.0
            assert shard == htm7(float(row["ra"]), float(row["dec"]))
            if rows[k]["note"] not in ("ra_negative", "ra_over_360"):
                assert row["ra"] == float(rows[k]["ra"]) and row["dec"] == float(rows[k]["dec"])
    (negative,) = by_note["ra_negative"]
    shard, row = located[negative]
    assert row["ra"] == pytest.approx(359.996, abs=1e-9) and shard == htm7(359.996, 0.001)
    (over,) = by_note["ra_over_360"]
    shard, row = located[over]
    assert row["ra"] == pytest.approx(0.002, abs=1e-9) and shard == htm7(0.002, -0.001)
    # Both are named, with the RA as read and as published.
    normalised = butler.get("zooniverse_targets_normalised", collections="u/pi/sample")
    assert list(normalised["row_index"]) == sorted([negative, over])
    by_row = {int(r["row_index"]): r for r in normalised}
    assert by_row[negative]["ra"] == -0.004 and by_row[negative]["reason"] == "ra_negative"
    assert by_row[over]["ra"] == 360.002 and by_row[over]["reason"] == "ra_360_or_more"
    assert by_row[over]["object_id"] == rows[over]["object_id"]
    assert by_row[over]["ra_normalised"] == pytest.approx(0.002, abs=1e-9)
    # Shard metadata.
    some = next(iter(shards))
    full = butler.get(
        "zooniverse_targets",
        htm7=some,
        collections="u/pi/sample",
        parameters={"strip_astropy_meta_yaml": False},
    )
    assert full.meta == {"catalog": "sample_catalog.csv", "frame": "icrs", "id_column": "object_id"}


def test_cli(demo):
    runner = CliRunner()
    args = ["shard-zooniverse-catalog", demo.root, demo.sample_catalog, "--output-run", "u/pi/cli"]
    result = runner.invoke(butler_cli, [*args, "--extra-columns", "note", "--chunk-rows", "50"])
    assert result.exit_code == 0, result.output
    assert "rows read:      153" in result.output
    assert "duplicate_id:" in result.output and "zooniverse_targets_rejected" in result.output
    assert "run:            u/pi/cli" in result.output
    assert "object ids:     column object_id" in result.output
    assert "RA normalised:  2 " in result.output and "ra -0.004 deg -> 359.996 deg" in result.output
    assert "... and" not in result.output
    again = runner.invoke(butler_cli, args)
    assert again.exit_code == 1
    assert "already holds" in again.output and "Traceback" not in again.output
    missing = runner.invoke(butler_cli, [*args[:-1], "u/pi/cli2", "--id-column", "objid"])
    assert missing.exit_code == 1
    assert "objid" in missing.output and "object_id, ra, dec, note" in missing.output
    assert_nothing_written(Butler.from_config(demo.root), "u/pi/cli2")


# ---------------------------------------------------------------------------
# A small catalog written in every format.


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_test_butler(str(tmp_path_factory.mktemp("sharding") / "repo"))


def small_catalog(n=120, seed=5):
    rng = np.random.default_rng(seed)
    table = Table()
    ids = [f"T{k:04d}" for k in range(n)]
    ra = rng.uniform(10.0, 12.0, n)
    dec = rng.uniform(-5.0, -3.0, n)
    ids[5] = ""
    ra[7] = np.nan
    dec[9] = 95.0
    ids[12] = ids[11]
    ra[13] += 360.0
    ra[14] -= 360.0
    ids[20] = ids[40] = ids[60] = "T9999"
    table["object_id"] = ids
    table["ra"] = ra
    table["dec"] = dec
    table["mag"] = rng.uniform(18.0, 22.0, n)
    table["flag"] = np.arange(n, dtype=np.int64) % 3
    table["kind"] = ["star" if k % 2 else "galaxy" for k in range(n)]
    return table


def write_catalog(table, path, fmt):
    if fmt == "csv":
        table.write(path, format="ascii.csv", overwrite=True)
    elif fmt == "parquet":
        table.write(path, format="parquet", overwrite=True)
    elif fmt == "fits":
        table.write(path, format="fits", overwrite=True)
    else:
        table.write(path, format="votable", overwrite=True)
    return str(path)


EXTENSIONS = {"csv": "csv", "parquet": "parquet", "fits": "fits", "votable": "vot"}


def test_formats_give_identical_shards(repo, tmp_path):
    table = small_catalog()
    results = {}
    for fmt, extension in EXTENSIONS.items():
        path = write_catalog(table, tmp_path / f"cat.{extension}", fmt)
        run = f"formats/{fmt}"
        summary = shard_target_catalog(repo, path, run=run, extra_columns="mag,flag,kind")
        results[fmt] = (summary, read_shards(repo, run), read_rejected(repo, run))
    summary, shards, rejected = results["csv"]
    assert summary.n_rows == 120 and summary.n_ra_normalised == 2
    assert summary.rejected_by_reason == {
        "missing_id": 1,
        "duplicate_id": 5,
        "nan_coordinates": 1,
        "dec_out_of_range": 1,
    }
    assert_accounting(shards, rejected, 120)
    for fmt, (other_summary, other_shards, other_rejected) in results.items():
        assert other_summary.n_accepted == summary.n_accepted, fmt
        assert sorted(other_shards) == sorted(shards), fmt
        for key, expected in shards.items():
            got = other_shards[key]
            assert got.colnames == ["object_id", "ra", "dec", "row_index", "mag", "flag", "kind"]
            for name in ("object_id", "row_index", "flag", "kind"):
                assert list(got[name]) == list(expected[name]), (fmt, name)
            for name in ("ra", "dec", "mag"):
                np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-12)
        assert list(other_rejected["row_index"]) == list(rejected["row_index"]), fmt
        assert list(other_rejected["reason"]) == list(rejected["reason"]), fmt
    # The duplicate id on three rows names the two others.
    detail = {int(r["row_index"]): str(r["detail"]) for r in rejected}
    assert "40, 60" in detail[20] and "20, 40" in detail[60]


def test_chunked_read_equals_unchunked(repo, tmp_path):
    path = write_catalog(small_catalog(n=100, seed=8), tmp_path / "cat.csv", "csv")
    shard_target_catalog(repo, path, run="chunks/7", chunk_rows=7, extra_columns=["kind", "flag"])
    shard_target_catalog(repo, path, run="chunks/all", extra_columns=["kind", "flag"])
    chunked, whole = read_shards(repo, "chunks/7"), read_shards(repo, "chunks/all")
    assert sorted(chunked) == sorted(whole)
    for key in whole:
        assert chunked[key].pformat(max_lines=-1, max_width=-1) == whole[key].pformat(
            max_lines=-1, max_width=-1
        )
    assert read_rejected(repo, "chunks/7").pformat(max_lines=-1, max_width=-1) == read_rejected(
        repo, "chunks/all"
    ).pformat(max_lines=-1, max_width=-1)


def test_shard_files_have_the_formatter_layout(repo, tmp_path):
    path = write_catalog(small_catalog(n=70, seed=3), tmp_path / "cat.parquet", "parquet")
    shard_target_catalog(repo, path, run="layout", extra_columns=["kind"])
    for ref in repo.query_datasets("zooniverse_targets", collections="layout", explain=False)[:5]:
        written = pq.read_schema(repo.getURI(ref).ospath)
        table = repo.get(ref, parameters={"strip_astropy_meta_yaml": False})
        expected = astropy_to_arrow(table).schema
        assert written.equals(expected, check_metadata=True), (written, expected)


# ---------------------------------------------------------------------------
# Coordinates, units and sizes.


def test_galactic_frame(repo, tmp_path):
    path = tmp_path / "galactic.csv"
    path.write_text("object_id,l,b\ngc,0.0,0.0\nnp,123.0,27.4\n")
    summary = shard_target_catalog(repo, str(path), run="frames/galactic", frame="galactic")
    assert summary.n_accepted == 2
    rows = {str(r["object_id"]): r for t in read_shards(repo, "frames/galactic").values() for r in t}
    expected = SkyCoord(0.0 * u.deg, 0.0 * u.deg, frame="galactic").icrs
    assert rows["gc"]["ra"] == pytest.approx(expected.ra.deg, abs=1e-6)
    assert rows["gc"]["dec"] == pytest.approx(expected.dec.deg, abs=1e-6)
    assert rows["gc"]["ra"] == pytest.approx(266.405, abs=1e-3)
    assert rows["gc"]["dec"] == pytest.approx(-28.936, abs=1e-3)
    # Near the north celestial pole.
    assert rows["np"]["dec"] > 89.0


def test_units_from_the_file(repo, tmp_path):
    table = Table()
    table["object_id"] = ["a", "b"]
    table["ra"] = Column(np.radians([10.5, 200.25]), unit="rad")
    table["dec"] = Column(np.radians([-4.0, 33.0]), unit="rad")
    for fmt in ("fits", "parquet"):
        path = write_catalog(table, tmp_path / f"rad.{fmt}", fmt)
        # The file's unit wins over coordinate_unit.
        shard_target_catalog(repo, path, run=f"units/{fmt}", coordinate_unit="arcsec")
        rows = {str(r["object_id"]): r for t in read_shards(repo, f"units/{fmt}").values() for r in t}
        assert rows["a"]["ra"] == pytest.approx(10.5, abs=1e-10)
        assert rows["b"]["dec"] == pytest.approx(33.0, abs=1e-10)
    # Without a unit in the file, coordinate_unit applies.
    csv_path = tmp_path / "arcmin.csv"
    csv_path.write_text("object_id,ra,dec\na,600.0,-60.0\n")
    shard_target_catalog(repo, str(csv_path), run="units/csv", coordinate_unit="arcmin")
    (shard,) = read_shards(repo, "units/csv").values()
    assert shard["ra"][0] == pytest.approx(10.0) and shard["dec"][0] == pytest.approx(-1.0)
    # A unit that is not an angle is a structural error.
    table["dec"].unit = "m"
    path = write_catalog(table, tmp_path / "metres.fits", "fits")
    with pytest.raises(CatalogError, match="not an angle"):
        shard_target_catalog(repo, path, run="units/metres")
    assert_nothing_written(repo, "units/metres")


@pytest.mark.parametrize("size_unit", ["pixel", "arcsec"])
def test_size_column(repo, tmp_path, size_unit):
    path = tmp_path / "sizes.csv"
    path.write_text(
        "object_id,ra,dec,size\na,10,1,64\nb,10,1,-3\nc,10,1,0\nd,10,1,nan\ne,10,1,\nf,10,1,12.5\n"
    )
    run = f"sizes/{size_unit}"
    summary = shard_target_catalog(repo, str(path), run=run, size_column="size", size_unit=size_unit)
    assert summary.rejected_by_reason == {"bad_size": 4}
    (shard,) = read_shards(repo, run).values()
    column = "cutout_size_pixels" if size_unit == "pixel" else "cutout_size_arcsec"
    assert shard.colnames == ["object_id", "ra", "dec", "row_index", column]
    assert list(shard["object_id"]) == ["a", "f"] and list(shard[column]) == [64.0, 12.5]
    rejected = read_rejected(repo, run)
    assert list(rejected["object_id"]) == ["b", "c", "d", "e"]
    assert set(rejected["reason"]) == {"bad_size"}


def test_htm_indices_match_sphgeom():
    rng = np.random.default_rng(11)
    ra = rng.uniform(0.0, 360.0, 5000)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, 5000)))
    # Trixel vertices and edge midpoints, where float tests are ambiguous.
    for index in rng.integers(8 * 4**7, 16 * 4**7, 200):
        vertices = HTM7.triangle(int(index)).getVertices()
        for v in [*vertices, UnitVector3d(vertices[0] + vertices[1])]:
            lonlat = LonLat(v)
            ra = np.append(ra, lonlat.getLon().asDegrees())
            dec = np.append(dec, lonlat.getLat().asDegrees())
    ra = np.append(ra, [0.0, 90.0, 180.0, 270.0, 0.0, 0.0, 45.0])
    dec = np.append(dec, [0.0, 0.0, 0.0, 0.0, 90.0, -90.0, 0.0])
    expected = [htm7(r, d) for r, d in zip(ra.tolist(), dec.tolist())]
    assert htm_indices(ra, dec).tolist() == expected


def test_duplicates_confirmed_on_the_real_ids(repo, tmp_path, monkeypatch):
    # Every id hashes alike: only ids that are really equal (after removing
    # surrounding whitespace) are duplicates.
    monkeypatch.setattr(row_validation, "hash_strings", lambda a: np.ones(len(a), dtype=np.uint64))
    path = tmp_path / "dups.csv"
    path.write_text("object_id,ra,dec\nx,10,1\ny,10,1\n x ,10,1\nz,10,1\n")
    summary = shard_target_catalog(repo, str(path), run="dups", chunk_rows=2)
    assert summary.rejected_by_reason == {"duplicate_id": 2}
    assert list(read_rejected(repo, "dups")["row_index"]) == [0, 2]


# ---------------------------------------------------------------------------
# Structural errors: nothing is written.


def big_csv(path, n, bad_line=None, bad_text=None):
    with open(path, "w") as stream:
        stream.write("object_id,ra,dec\n")
        for k in range(n):
            line = f"obj{k},{10 + k * 1e-4!r},{-4 + k * 1e-4!r}\n"
            if bad_line is not None and k + 2 == bad_line:
                line = bad_text
            stream.write(line)
    return str(path)


@pytest.mark.parametrize(
    "case",
    [
        "missing_column",
        "non_numeric_ra",
        "missing_file",
        "garbage_fits",
        "unknown_frame",
        "unknown_format",
        "bad_value_deep",
        "bad_row_deep",
        "extra_clash",
    ],
)
def test_structural_errors_write_nothing(repo, tmp_path, case):
    run = f"errors/{case}"
    kwargs = {}
    if case == "missing_column":
        path = big_csv(tmp_path / "c.csv", 5)
        kwargs["id_column"] = "objid"
        match = r"'objid'.*object_id, ra, dec"
    elif case == "non_numeric_ra":
        path = tmp_path / "c.csv"
        path.write_text("object_id,ra,dec\na,ten,1\nb,eleven,2\n")
        match = r"column 'ra' is not numeric.*'ten' at line 2"
    elif case == "missing_file":
        path = tmp_path / "absent.csv"
        match = "No such file"
    elif case == "garbage_fits":
        path = tmp_path / "c.fits"
        path.write_bytes(b"this is not a FITS file" * 100)
        match = "Cannot read catalog"
    elif case == "unknown_frame":
        path = big_csv(tmp_path / "c.csv", 5)
        kwargs["frame"] = "nosuchframe"
        match = "Unknown coordinate frame 'nosuchframe'"
    elif case == "unknown_format":
        path = big_csv(tmp_path / "c.txt", 5)
        match = "Cannot tell the format"
    elif case == "bad_value_deep":
        # Far beyond the first chunk and the first CSV block.
        path = big_csv(tmp_path / "c.csv", 4000, bad_line=3500, bad_text="objx,abc,1.0\n")
        kwargs["chunk_rows"] = 7
        match = r"column 'ra' is not numeric.*line 3500"
    elif case == "bad_row_deep":
        path = big_csv(tmp_path / "c.csv", 4000, bad_line=3600, bad_text="objx,1.0\n")
        kwargs["chunk_rows"] = 7
        match = r"line 3600.*expected 3 columns, got 2"
    else:
        path = big_csv(tmp_path / "c.csv", 5)
        kwargs["extra_columns"] = ["ra"]
        match = "clashes"
    with pytest.raises(CatalogError, match=match):
        shard_target_catalog(repo, str(path), run=run, **kwargs)
    assert_nothing_written(repo, run)


def test_rerun_is_refused(repo, tmp_path):
    path = big_csv(tmp_path / "c.csv", 30)
    summary = shard_target_catalog(repo, path, run="rerun")
    with pytest.raises(CatalogError, match=rf"already holds {summary.n_shards} target shards.*--output-run"):
        shard_target_catalog(repo, path, run="rerun")
    assert len(read_shards(repo, "rerun")) == summary.n_shards


def test_repository_path_is_accepted(tmp_path):
    root = str(tmp_path / "repo")
    make_test_butler(root)
    path = big_csv(tmp_path / "c.csv", 10)
    summary = shard_target_catalog(root, path, run="by_path", progress=lambda message: None)
    assert summary.n_accepted == 10
    assert len(read_shards(Butler.from_config(root), "by_path")) == summary.n_shards


def test_csv_extra_column_empty_in_the_first_block(repo, tmp_path):
    # pyarrow infers CSV types from the first block (64 KiB here); a column
    # empty there is read as text instead of failing later.
    path = tmp_path / "late.csv"
    with open(path, "w") as stream:
        stream.write("object_id,ra,dec,comment\n")
        for k in range(4000):
            stream.write(f"o{k},{10 + k * 1e-4},{-4 + k * 1e-4},{'late' if k >= 3900 else ''}\n")
    summary = shard_target_catalog(
        repo, str(path), run="late_text", extra_columns=["comment"], chunk_rows=100
    )
    assert summary.n_accepted == 4000
    comments = [str(c) for t in read_shards(repo, "late_text").values() for c in t["comment"] if str(c)]
    assert comments.count("late") == 100


def test_catalog_with_no_good_row(repo, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("object_id,ra,dec\n,1,1\na,nan,1\n")
    summary = shard_target_catalog(repo, str(path), run="all_bad")
    assert summary.n_shards == 0 and summary.n_accepted == 0 and summary.n_rejected == 2
    assert read_shards(repo, "all_bad") == {}
    assert list(read_rejected(repo, "all_bad")["reason"]) == ["missing_id", "nan_coordinates"]
    empty = tmp_path / "empty.csv"
    empty.write_text("object_id,ra,dec\n")
    summary = shard_target_catalog(repo, str(empty), run="empty")
    assert summary.n_rows == 0 and len(read_rejected(repo, "empty")) == 0


# ---------------------------------------------------------------------------
# Issue 14: catalogs without an id column, units in VOTable/FITS, RA rules.


def read_normalised(butler, run):
    return butler.get("zooniverse_targets_normalised", collections=run)


def test_row_number_ids(repo, tmp_path):
    path = tmp_path / "no_ids.csv"
    path.write_text("ra,dec,mag\n10,1,20\n10,1,21\nnan,1,22\n10.5,-2,23\n")
    with pytest.raises(CatalogError, match=r"'object_id'.*ra, dec, mag.*--row-number-ids.*id_column=None"):
        shard_target_catalog(repo, str(path), run="rownum/refused")
    assert_nothing_written(repo, "rownum/refused")
    summary = shard_target_catalog(repo, str(path), run="rownum", id_column=None, extra_columns=["mag"])
    # Same coordinates twice are not duplicates: the ids are the row numbers.
    assert summary.id_column is None and summary.n_accepted == 3
    assert summary.rejected_by_reason == {"nan_coordinates": 1}
    rows = [r for t in read_shards(repo, "rownum").values() for r in t]
    assert sorted((str(r["object_id"]), int(r["row_index"])) for r in rows) == [("0", 0), ("1", 1), ("3", 3)]
    rejected = read_rejected(repo, "rownum")
    assert list(rejected["object_id"]) == ["2"] and list(rejected["row_index"]) == [2]
    for name in ("zooniverse_targets_rejected", "zooniverse_targets_normalised"):
        meta = repo.get(name, collections="rownum", parameters={"strip_astropy_meta_yaml": False}).meta
        assert meta["object_ids"] == "row_number" and meta["id_column"] is None
    ref = repo.query_datasets("zooniverse_targets", collections="rownum", explain=False)[0]
    meta = repo.get(ref, parameters={"strip_astropy_meta_yaml": False}).meta
    assert meta["object_ids"] == "row_number" and meta["id_column"] is None


def test_cli_row_number_ids_and_normalised_rows(repo, tmp_path):
    path = tmp_path / "wrap.csv"
    lines = ["ra,dec"] + [f"{-1.0 - k},{k * 0.1}" for k in range(7)] + ["10,1"]
    path.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    args = ["shard-zooniverse-catalog", str(tmp_path / "clirepo"), str(path), "--output-run", "cli/rownum"]
    make_test_butler(str(tmp_path / "clirepo"))
    both = runner.invoke(butler_cli, [*args, "--row-number-ids", "--id-column", "name"])
    assert both.exit_code == 1 and "exclude each other" in both.output
    missing = runner.invoke(butler_cli, args)
    assert missing.exit_code == 1 and "--row-number-ids" in missing.output
    result = runner.invoke(butler_cli, [*args, "--row-number-ids"])
    assert result.exit_code == 0, result.output
    assert "object ids:     row numbers" in result.output
    assert "RA normalised:  7" in result.output
    assert "row_index 0 (object_id 0): ra -1.0 deg -> 359.0 deg" in result.output
    assert "row_index 4 (object_id 4): ra -5.0 deg -> 355.0 deg" in result.output
    assert "row_index 5" not in result.output and "... and 2 more" in result.output
    assert "zooniverse_targets_normalised" in result.output


def test_ra_rules(repo, tmp_path):
    ras = [10.0, -0.5, 359.999, 360.0, 719.5, 720.0, -360.0, -360.5, 1000.0, -1e6, 0.0]
    path = tmp_path / "ra.csv"
    path.write_text("object_id,ra,dec\n" + "".join(f"o{k},{ra!r},1.0\n" for k, ra in enumerate(ras)))
    summary = shard_target_catalog(repo, str(path), run="ra_rules")
    rejected = read_rejected(repo, "ra_rules")
    assert list(rejected["row_index"]) == [5, 7, 8, 9]
    assert set(rejected["reason"]) == {"ra_out_of_range"}
    assert "ra = 720.0 is outside [-360, 720) deg" in str(rejected["detail"][0])
    normalised = read_normalised(repo, "ra_rules")
    assert summary.n_ra_normalised == len(normalised) == 4
    assert list(normalised["row_index"]) == [1, 3, 4, 6]
    assert list(normalised["object_id"]) == ["o1", "o3", "o4", "o6"]
    assert list(normalised["ra"]) == [-0.5, 360.0, 719.5, -360.0]
    np.testing.assert_allclose(normalised["ra_normalised"], [359.5, 0.0, 359.5, 0.0])
    assert list(normalised["reason"]) == ["ra_negative", "ra_360_or_more", "ra_360_or_more", "ra_negative"]
    published = {
        int(r["row_index"]): float(r["ra"]) for t in read_shards(repo, "ra_rules").values() for r in t
    }
    assert published == {0: 10.0, 1: 359.5, 2: 359.999, 3: 0.0, 4: 359.5, 6: 0.0, 10: 0.0}
    assert summary.ra_normalised_first[0] == (1, "o1", -0.5, 359.5)
    meta = repo.get(
        "zooniverse_targets_rejected", collections="ra_rules", parameters={"strip_astropy_meta_yaml": False}
    ).meta
    assert meta["n_ra_normalised"] == 4


def test_normalised_row_of_a_duplicated_id_is_only_rejected(repo, tmp_path):
    path = tmp_path / "dup_wrap.csv"
    path.write_text("object_id,ra,dec\na,-1,1\na,10,1\nb,370,1\n")
    summary = shard_target_catalog(repo, str(path), run="dup_wrap")
    assert summary.rejected_by_reason == {"duplicate_id": 2}
    normalised = read_normalised(repo, "dup_wrap")
    assert list(normalised["row_index"]) == [2] and summary.n_ra_normalised == 1
    assert list(read_rejected(repo, "dup_wrap")["ra"]) == [-1.0, 10.0]


VOTABLE = """<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="object_id" datatype="char" arraysize="*"/>
<FIELD name="ra" datatype="double" unit="{ra}"/>
<FIELD name="dec" datatype="double" unit="{dec}"/>
<FIELD name="size" datatype="double" unit="{size}"/>
<DATA><TABLEDATA>
{rows}
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>
"""


def write_votable(path, ra_unit, dec_unit, size_unit, rows):
    text = "\n".join(
        f"<TR><TD>{i}</TD><TD>{r!r}</TD><TD>{d!r}</TD><TD>{s!r}</TD></TR>" for i, r, d, s in rows
    )
    path.write_text(VOTABLE.format(ra=ra_unit, dec=dec_unit, size=size_unit, rows=text))
    return str(path)


def shard_rows(butler, run):
    return {str(r["object_id"]): r for t in read_shards(butler, run).values() for r in t}


@pytest.mark.parametrize(
    "ra_unit, dec_unit, to_ra, to_dec",
    [
        ("rad", "rad", np.radians, np.radians),
        ("h", "deg", lambda x: x / 15.0, lambda x: x),  # VizieR's RA in hours.
        ("hourangle", "arcsec", lambda x: x / 15.0, lambda x: x * 3600.0),
        ("15deg", "arcmin", lambda x: x / 15.0, lambda x: x * 60.0),  # astropy writes hourangle so.
        ("degrees", "DEG", lambda x: x, lambda x: x),  # Spellings astropy does not know as given.
    ],
)
def test_votable_coordinate_units(repo, tmp_path, ra_unit, dec_unit, to_ra, to_dec):
    ra, dec = np.array([10.5, 200.25, -15.0]), np.array([-4.0, 33.0, 1.0])
    rows = [(f"v{k}", float(to_ra(r)), float(to_dec(d)), 30.0) for k, (r, d) in enumerate(zip(ra, dec))]
    path = write_votable(tmp_path / "units.vot", ra_unit, dec_unit, "arcsec", rows)
    run = f"votable_units/{ra_unit}/{dec_unit}"
    # The file's units win over coordinate_unit.
    summary = shard_target_catalog(repo, path, run=run, coordinate_unit="arcsec")
    got = shard_rows(repo, run)
    assert got["v0"]["ra"] == pytest.approx(10.5, abs=1e-9)
    assert got["v1"]["ra"] == pytest.approx(200.25, abs=1e-9)
    assert got["v1"]["dec"] == pytest.approx(33.0, abs=1e-9)
    # -15 deg (in the file's unit) is normalised to 345 deg and reported.
    assert got["v2"]["ra"] == pytest.approx(345.0, abs=1e-9)
    normalised = read_normalised(repo, run)
    assert list(normalised["object_id"]) == ["v2"] and summary.n_ra_normalised == 1
    assert normalised["ra"][0] == pytest.approx(to_ra(-15.0))
    assert normalised["ra_normalised"][0] == pytest.approx(345.0)


def test_votable_dec_in_hours_is_refused(repo, tmp_path):
    path = write_votable(tmp_path / "hours.vot", "deg", "h", "arcsec", [("a", 1.0, 1.0, 3.0)])
    with pytest.raises(CatalogError, match=r"'dec'.*unit 'h', which is not an angle"):
        shard_target_catalog(repo, path, run="votable_units/dec_hours")
    assert_nothing_written(repo, "votable_units/dec_hours")


@pytest.mark.parametrize(
    "file_unit, size_unit, factor",
    [("arcsec", "arcsec", 1.0), ("arcmin", "arcsec", 60.0), ("pix", "pixel", 1.0), ("deg", "arcsec", 3600.0)],
)
def test_votable_size_units(repo, tmp_path, file_unit, size_unit, factor):
    path = write_votable(tmp_path / "size.vot", "deg", "deg", file_unit, [("a", 10.0, 1.0, 0.5)])
    run = f"votable_size/{file_unit}"
    shard_target_catalog(repo, path, run=run, size_column="size", size_unit=size_unit)
    column = "cutout_size_arcsec" if size_unit == "arcsec" else "cutout_size_pixels"
    assert shard_rows(repo, run)["a"][column] == pytest.approx(0.5 * factor)


@pytest.mark.parametrize("file_unit, size_unit", [("arcsec", "pixel"), ("pix", "arcsec"), ("m", "arcsec")])
def test_size_unit_mismatch_is_refused(repo, tmp_path, file_unit, size_unit):
    path = write_votable(tmp_path / "size.vot", "deg", "deg", file_unit, [("a", 10.0, 1.0, 0.5)])
    run = f"size_mismatch/{file_unit}"
    with pytest.raises(CatalogError, match=rf"unit '{file_unit}', which does not match size_unit"):
        shard_target_catalog(repo, path, run=run, size_column="size", size_unit=size_unit)
    assert_nothing_written(repo, run)


def test_fits_tunit(repo, tmp_path):
    from astropy.io import fits

    columns = [
        fits.Column(name="object_id", format="8A", array=np.array(["f0", "f1"])),
        fits.Column(name="RA", format="D", unit="DEGREES", array=np.array([-2.0, 100.0])),
        fits.Column(name="DEC", format="D", unit="arcsec", array=np.array([3600.0, -7200.0])),
        fits.Column(name="SIZE", format="E", unit="arcmin", array=np.array([0.5, 1.0])),
    ]
    path = tmp_path / "tunit.fits"
    fits.BinTableHDU.from_columns(columns).writeto(path)
    assert fits.getheader(path, 1)["TUNIT2"] == "DEGREES"
    summary = shard_target_catalog(repo, str(path), run="fits_tunit", size_column="size", size_unit="arcsec")
    got = shard_rows(repo, "fits_tunit")
    assert got["f0"]["ra"] == pytest.approx(358.0) and got["f0"]["dec"] == pytest.approx(1.0)
    assert got["f1"]["dec"] == pytest.approx(-2.0)
    assert got["f1"]["cutout_size_arcsec"] == pytest.approx(60.0)
    assert summary.n_ra_normalised == 1 and list(read_normalised(repo, "fits_tunit")["ra"]) == [-2.0]
