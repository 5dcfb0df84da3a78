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

"""Tests for lsst.epo.zooniverse.export.manifest (Zooniverse import
manifests: writing, splitting, data rights and offline validation).
"""

import csv
import hashlib
import io
import os

import pytest

from lsst.epo.zooniverse.export.csv_cells import escape_csv_cell, escape_csv_row
from lsst.epo.zooniverse.export.manifest import (
    MANIFEST_ROW_LIMIT,
    RULES,
    ManifestError,
    ManifestFinding,
    SubjectRow,
    main,
    subject_row,
    validate_manifest,
    write_manifests,
)

PREFIX = "https://epo.example.org/zooniverse/"


def index_row(object_id, ra="150.123456", dec="-2.345678", **extra):
    row = {
        "file": f"{object_id}.png",
        "object_id": object_id,
        "ra": ra,
        "dec": dec,
        "skymap": "lsst_cells_v1",
        "tract": "9813",
        "patch": "42",
        "bands": "i,r,g",
        "coverage": "0.98",
        "stretch": "asinh(Q=8)",
    }
    row.update(extra)
    row["wcs"] = "SIMPLE  =                    T / FITS WCS"
    return row


def make_row(n, frames=1, **metadata):
    urls = tuple(f"{PREFIX}proj/b1/s{n:06d}_{k}.png" for k in range(frames))
    return SubjectRow(external_id=f"proj:{n}", locations=urls, metadata={"bands": "gri", **metadata})


# --- a minimal model of Panoptes SubjectSetImport::CsvImport -------------

_RUBY_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif"}


def ruby_extname(path):
    """Ruby's File.extname: from the last dot of the last path component
    (not a leading dot), to the end of the string.
    """
    base = path.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:] if dot > 0 and dot < len(base) - 1 else ""


def ruby_import(text):
    """What the import makes of a manifest: (external_id, locations,
    metadata) per row, with ``header.split(':')`` (trailing empty parts
    dropped) and only the first two parts used; other columns ignored.
    """
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    subjects = []
    for row in body:
        external_id = row[header.index("external_id")] if "external_id" in header else None
        locations, metadata = [], {}
        for name, value in zip(header, row):
            parts = name.split(":")
            while parts and parts[-1] == "":
                parts.pop()
            kind = parts[0] if parts else None
            key = parts[1] if len(parts) > 1 else None
            if kind == "location":
                mime = _RUBY_MIME.get(ruby_extname(value).lstrip("."), "")
                locations.append({mime: value})
            elif kind == "metadata":
                metadata[key] = value if value != "" else None
        subjects.append((external_id, locations, metadata))
    return subjects


def read_text(path):
    with open(path, "rb") as stream:
        data = stream.read()
    return data.decode("utf-8")


# --- subject_row ----------------------------------------------------------


def test_subject_row_full():
    row = subject_row(
        project="galaxies",
        batch="b1",
        entry="1234.png",
        object_id="1234",
        url=f"{PREFIX}galaxies/b1/1234.png",
        index_row=index_row("1234", pi_class="spiral"),
        metadata_policy="full",
    )
    assert row.external_id == "galaxies:1234"
    assert row.locations == (f"{PREFIX}galaxies/b1/1234.png",)
    assert list(row.metadata) == [
        "#object_id",
        "#ra",
        "#dec",
        "#skymap",
        "#tract",
        "#patch",
        "bands",
        "!coverage",
        "!stretch",
        "#pi_class",
    ]
    assert row.metadata["#ra"] == "150.123456"
    assert row.metadata["!stretch"] == "asinh(Q=8)"
    assert row.metadata["#pi_class"] == "spiral"
    with pytest.raises(TypeError):
        row.metadata["bands"] = "x"


def test_subject_row_anonymised():
    kwargs = {
        "batch": "b1",
        "entry": "img-0001.png",
        "object_id": "1234",
        "url": f"{PREFIX}galaxies/b1/img-0001.png",
        "index_row": index_row("1234", pi_class="spiral"),
        "metadata_policy": "anonymised",
        "extra_frames": (f"{PREFIX}galaxies/b1/img-0001-r.png",),
    }
    row = subject_row(project="galaxies", **kwargs)
    expected = "s-" + hashlib.sha256(b"galaxies\x001234").hexdigest()[:24]
    assert row.external_id == expected
    assert row == subject_row(project="galaxies", **kwargs)  # stable
    assert subject_row(project="other", **kwargs).external_id != expected
    assert dict(row.metadata) == {"bands": "i,r,g", "!stretch": "asinh(Q=8)"}
    assert len(row.locations) == 2
    # The American spelling is accepted.
    assert subject_row(project="galaxies", **{**kwargs, "metadata_policy": "anonymized"}) == row


@pytest.mark.parametrize(
    "url",
    [f"{PREFIX}galaxies/b1/1234.png", f"{PREFIX}galaxies/b1/at-150.123456.png", f"{PREFIX}g/b/x_1.2345.png"],
)
def test_subject_row_anonymised_refuses_identifying_url(url):
    with pytest.raises(ManifestError, match="object id or a coordinate"):
        subject_row(
            project="galaxies",
            batch="b1",
            entry="1234.png",
            object_id="1234",
            url=url,
            index_row=index_row("1234"),
            metadata_policy="anonymised",
        )


@pytest.mark.parametrize(
    "column, value",
    [
        ("bands", "i,r,g 1234"),
        ("stretch", "asinh(Q=8) for object 1234"),
        ("stretch", "centred on 150.1235"),
        ("bands", "dec=-2.345678"),
    ],
)
def test_subject_row_anonymised_refuses_identifying_metadata(column, value):
    kwargs = {
        "project": "galaxies",
        "batch": "b1",
        "entry": "img-0001.png",
        "object_id": "1234",
        "url": f"{PREFIX}galaxies/b1/img-0001.png",
        "index_row": index_row("1234", **{column: value}),
    }
    with pytest.raises(ManifestError, match=f"'{column}'"):
        subject_row(metadata_policy="anonymised", **kwargs)
    full = subject_row(metadata_policy="full", **kwargs)
    assert value in full.metadata.values()


@pytest.mark.parametrize(
    "value",
    ["150.123456", "asinh near -2.3457", "object 4711000000000001", "id=1234567890"],
)
def test_validate_manifest_anonymised_flags_identifying_values(tmp_path, value):
    path = tmp_path / "m.csv"
    path.write_bytes(manifest(rows=[GOOD_ROWS[0], f"s-2,{PREFIX}p/b/2.png,{value},asinh"]))
    findings = validate_manifest(str(path), metadata_policy="anonymised")
    assert [(f.rule, f.line, f.column) for f in findings] == [
        ("manifest.identifying_metadata_value", 3, "metadata:bands")
    ]
    assert validate_manifest(str(path)) == []


@pytest.mark.parametrize(
    "change, error",
    [
        ({"object_id": ""}, ManifestError),
        ({"project": ""}, ManifestError),
        ({"index_row": index_row("999")}, ManifestError),
        ({"index_row": index_row("1", **{"a:b": "x"})}, ManifestError),
        ({"url": f"{PREFIX}p/b/1.png?sig=abc"}, ManifestError),
        ({"url": f"{PREFIX}p/b/1.PNG"}, ManifestError),
        ({"url": "ftp://host/p/b/1.png"}, ManifestError),
        ({"extra_frames": ("",)}, ManifestError),
        ({"metadata_policy": "public"}, ValueError),
    ],
)
def test_subject_row_errors(change, error):
    kwargs = {
        "project": "p",
        "batch": "b",
        "entry": "1.png",
        "object_id": "1",
        "url": f"{PREFIX}p/b/1.png",
        "index_row": index_row("1"),
        "metadata_policy": "full",
    }
    kwargs.update(change)
    with pytest.raises(error):
        subject_row(**kwargs)


def test_subject_row_rejects_bad_values():
    with pytest.raises(ManifestError):
        SubjectRow(external_id="", locations=(f"{PREFIX}a.png",), metadata={})
    with pytest.raises(ManifestError):
        SubjectRow(external_id="x", locations=(), metadata={})
    with pytest.raises(ManifestError):
        SubjectRow(external_id="x", locations=f"{PREFIX}a.png", metadata={})
    with pytest.raises(ManifestError):
        SubjectRow(external_id="x", locations=(f"{PREFIX}a.png",), metadata={"a:b": "1"})
    with pytest.raises(ManifestError):
        SubjectRow(external_id="x", locations=(f"{PREFIX}a.png",), metadata={"n": 1})


# --- write_manifests -------------------------------------------------------


def test_round_trip_python_csv_and_import_semantics(tmp_path):
    rows = [
        subject_row(
            project="galaxies",
            batch="b1",
            entry=f"{n}.png",
            object_id=str(n),
            url=f"{PREFIX}galaxies/b1/{n}_g.png",
            extra_frames=(f"{PREFIX}galaxies/b1/{n}_r.png", f"{PREFIX}galaxies/b1/{n}_i.png"),
            index_row=index_row(str(n), **({"pi_note": "odd"} if n % 2 else {})),
            metadata_policy="full",
        )
        for n in range(1, 5)
    ]
    paths = write_manifests(rows, str(tmp_path / "out"), basename="flip")
    assert paths == [str(tmp_path / "out" / "flip_part001.csv")]
    data = open(paths[0], "rb").read()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == 5 and b"\n" not in data.replace(b"\r\n", b"")
    text = data.decode("utf-8")
    with open(paths[0], newline="", encoding="utf-8") as stream:
        records = list(csv.reader(stream))
    assert records[0] == [
        "external_id",
        "location:1",
        "location:2",
        "location:3",
        "metadata:#object_id",
        "metadata:#ra",
        "metadata:#dec",
        "metadata:#skymap",
        "metadata:#tract",
        "metadata:#patch",
        "metadata:bands",
        "metadata:!coverage",
        "metadata:!stretch",
        "metadata:#pi_note",
    ]
    # Python's csv reads back every value exactly.
    for record, row in zip(records[1:], rows):
        header = records[0]
        assert record[0] == row.external_id
        assert tuple(record[1:4]) == row.locations
        for key, value in row.metadata.items():
            assert record[header.index(f"metadata:{key}")] == value
    # The import sees the intended subjects (frame order kept, image MIME
    # types, metadata keys with their prefixes; an absent key is null).
    imported = ruby_import(text)
    assert len(imported) == len(rows)
    for (external_id, locations, metadata), row in zip(imported, rows):
        assert external_id == row.external_id
        assert locations == [{"image/png": url} for url in row.locations]
        present = {key: value for key, value in metadata.items() if value is not None}
        assert present == dict(row.metadata)
    assert imported[1][2]["#pi_note"] is None
    assert validate_manifest(paths[0], url_prefix=PREFIX) == []
    assert validate_manifest(paths[0], url_prefix=PREFIX, metadata_policy="full") == []


def test_quoting_and_non_ascii(tmp_path):
    tricky = {
        "comma": "a, b, c",
        "quote": 'say "hi"',
        "newline": "line 1\nline 2",
        "crlf": "x\r\ny",
        "unicode": "Åström – 星系 🌌",
        "space": "  padded  ",
    }
    rows = [make_row(1, **tricky), make_row(2, plain="ok")]
    (path,) = write_manifests(rows, str(tmp_path))
    text = read_text(path)
    assert '"a, b, c"' in text
    assert '"say ""hi"""' in text
    assert '"line 1\nline 2"' in text
    assert "Åström – 星系 🌌" in text
    with open(path, newline="", encoding="utf-8") as stream:
        records = list(csv.reader(stream))
    header = records[0]
    for key, value in tricky.items():
        assert records[1][header.index(f"metadata:{key}")] == value
    assert ruby_import(text)[0][2] == {"bands": "gri", "plain": None, **tricky}
    assert validate_manifest(path) == []
    # Line numbers are physical lines: record 2 starts on line 5.
    bad = text.replace(f"{PREFIX}proj/b1/s000002_0.png", "nowhere")
    (tmp_path / "bad.csv").write_bytes(bad.encode("utf-8"))
    findings = validate_manifest(str(tmp_path / "bad.csv"))
    assert [(f.line, f.column, f.rule) for f in findings] == [(5, "location:1", "manifest.location_not_url")]


FORMULA_CELLS = {
    "equals": ('=HYPERLINK("http://evil/","x")', '\'=HYPERLINK("http://evil/","x")'),
    "plus": ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    "minus": ("-2+3", "'-2+3"),
    "at": ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    "tab": ("\t=1", "'\t=1"),
    "cr": ("\r=1", "'\r=1"),
    "negative": ("-5.3", "-5.3"),
    "exponent": ("-1.5e-3", "-1.5e-3"),
    "positive": ("+12", "+12"),
    "inner": ("a=1", "a=1"),
    "url": (f"{PREFIX}x.png", f"{PREFIX}x.png"),
}


def test_formula_cells_are_escaped(tmp_path):
    for value, escaped in FORMULA_CELLS.values():
        assert escape_csv_cell(value) == escaped, value
    assert [escape_csv_cell(v) for v in (-5.3, 7, None, b"=x")] == [-5.3, 7, None, b"=x"]
    assert escape_csv_row({"a": "=1", "b": -1}) == {"a": "'=1", "b": -1}
    rows = [
        SubjectRow("=1+1", (f"{PREFIX}proj/b1/a.png",), {k: v for k, (v, _) in FORMULA_CELLS.items()}),
        SubjectRow("-5", (f"{PREFIX}proj/b1/b.png",), {"minus": "-0.25"}),
    ]
    (path,) = write_manifests(rows, str(tmp_path))
    with open(path, newline="", encoding="utf-8") as stream:
        header, first, second = csv.reader(stream)
    assert first[:2] == ["'=1+1", f"{PREFIX}proj/b1/a.png"]
    assert {key: first[header.index(f"metadata:{key}")] for key in FORMULA_CELLS} == {
        k: e for k, (_, e) in FORMULA_CELLS.items()
    }
    assert (
        second[:2] == ["-5", f"{PREFIX}proj/b1/b.png"] and second[header.index("metadata:minus")] == "-0.25"
    )
    assert validate_manifest(path, url_prefix=PREFIX) == []
    assert validate_manifest(path, url_prefix=PREFIX, metadata_policy="full") == []


def test_parts_sent_to_zooniverse_keep_exact_values(tmp_path):
    # Zooniverse stores manifest cells as they are: the parts the
    # subject-set sync uploads are not spreadsheet-escaped, so their
    # metadata is the same as POST /subjects sends.
    from lsst.epo.zooniverse.zooniverse.manifest_parts import write_manifest_parts

    metadata = {"dec": "-05:15:00", "note": "-bad", "formula": "=1+1"}
    rows = [SubjectRow("proj:-bad", (f"{PREFIX}proj/b1/a.png",), metadata)]
    (path,) = write_manifests(rows, str(tmp_path / "plain"), escape_formulas=False)
    with open(path, newline="", encoding="utf-8") as stream:
        header, first = csv.reader(stream)
    assert {key: first[header.index(f"metadata:{key}")] for key in metadata} == metadata
    (path,) = write_manifest_parts(
        rows, str(tmp_path / "sync"), part_rows=10, url_prefix=PREFIX, metadata_policy="full"
    )
    with open(path, newline="", encoding="utf-8") as stream:
        header, first = csv.reader(stream)
    assert {key: first[header.index(f"metadata:{key}")] for key in metadata} == metadata


def test_split_into_parts_lazily(tmp_path):
    out = tmp_path / "parts"
    flushed_before_next_part = []

    def rows():
        for n in range(25_001):
            if n == 10_000:
                flushed_before_next_part.append(any(name.endswith(".tmp") for name in os.listdir(out)))
            yield SubjectRow(f"proj:{n}", (f"{PREFIX}proj/b/{n}.png",), {"k": str(n % 7)})

    paths = write_manifests(rows(), str(out), limit=MANIFEST_ROW_LIMIT)
    assert [os.path.basename(p) for p in paths] == [
        "manifest_part001.csv",
        "manifest_part002.csv",
        "manifest_part003.csv",
    ]
    assert flushed_before_next_part == [True]
    counts = [read_text(p).count("\r\n") - 1 for p in paths]
    assert counts == [10_000, 10_000, 5_001]
    assert sorted(os.listdir(out)) == [os.path.basename(p) for p in paths]
    assert validate_manifest(paths[0]) == []
    assert read_text(paths[2]).split("\r\n")[1].startswith("proj:20000,")
    # A later, shorter run leaves exactly its own parts.
    paths = write_manifests([make_row(1)], str(out))
    assert sorted(os.listdir(out)) == ["manifest_part001.csv"]
    assert len(read_text(paths[0]).split("\r\n")) == 3


def test_parts_have_their_own_header(tmp_path):
    rows = [make_row(1, a="1"), make_row(2, b="2"), make_row(3, frames=2, c="3")]
    paths = write_manifests(rows, str(tmp_path), limit=2)
    headers = [read_text(p).split("\r\n")[0] for p in paths]
    assert headers == [
        "external_id,location:1,metadata:bands,metadata:a,metadata:b",
        "external_id,location:1,location:2,metadata:bands,metadata:c",
    ]


def test_duplicates_refused(tmp_path):
    rows = [make_row(1), make_row(2), make_row(1), make_row(3), make_row(2), make_row(1)]
    with pytest.raises(ManifestError, match=r"'proj:1' \(3x\), 'proj:2' \(2x\)"):
        write_manifests(rows, str(tmp_path), limit=2)
    assert os.listdir(tmp_path) == []


def test_mixed_frame_counts_start_new_parts(tmp_path):
    # A part never mixes frame counts: an empty location cell would import
    # as a broken medium.
    paths = write_manifests([make_row(1), make_row(2, frames=3), make_row(3)], str(tmp_path))
    headers = [read_text(p).split("\r\n")[0].split(",") for p in paths]
    assert [sum(h.startswith("location:") for h in header) for header in headers] == [1, 3, 1]
    for path in paths:
        assert validate_manifest(path) == []
    assert [len(read_text(p).strip().split("\r\n")) for p in paths] == [2, 2, 2]


def test_write_argument_errors(tmp_path):
    assert write_manifests([], str(tmp_path)) == []
    with pytest.raises(ValueError):
        write_manifests([make_row(1)], str(tmp_path), limit=0)
    with pytest.raises(ValueError):
        write_manifests([make_row(1)], str(tmp_path), basename="../x")
    with pytest.raises(ManifestError):
        write_manifests([{"external_id": "x"}], str(tmp_path))
    with pytest.raises(ManifestError):
        write_manifests([make_row(1, bad="\ud800")], str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_anonymised_manifest_has_no_ids_or_coordinates(tmp_path):
    objects = [(f"{4_000_000_000 + n}", f"{150 + n / 7:.6f}", f"{-2 - n / 9:.6f}") for n in range(20)]
    rows = [
        subject_row(
            project="galaxies",
            batch="b7",
            entry=f"img{n:04d}.png",
            object_id=object_id,
            url=f"{PREFIX}galaxies/b7/img{n:04d}.png",
            index_row=index_row(object_id, ra=ra, dec=dec, pi_secret="catalog-xyz"),
            metadata_policy="anonymised",
        )
        for n, (object_id, ra, dec) in enumerate(objects)
    ]
    (path,) = write_manifests(rows, str(tmp_path))
    text = read_text(path)
    for object_id, ra, dec in objects:
        assert object_id not in text
        assert ra not in text and dec not in text
        assert ra[:7] not in text and dec[:6] not in text
    for word in ("object_id", "9813", "lsst_cells", "tract", "patch", "skymap", "catalog-xyz", "SIMPLE"):
        assert word not in text
    assert text.split("\r\n")[0] == "external_id,location:1,metadata:bands,metadata:!stretch"
    assert validate_manifest(path, metadata_policy="anonymised", url_prefix=PREFIX) == []


def test_full_manifest_fails_anonymised_check(tmp_path):
    row = subject_row(
        project="p",
        batch="b",
        entry="7.png",
        object_id="7",
        url=f"{PREFIX}p/b/7.png",
        index_row=index_row("7"),
        metadata_policy="full",
    )
    (path,) = write_manifests([row], str(tmp_path))
    findings = validate_manifest(path, metadata_policy="anonymised")
    rules = {f.rule for f in findings}
    assert rules == {"manifest.identifying_metadata_key", "manifest.identifying_metadata_value"}
    keys = {f.column for f in findings if f.rule == "manifest.identifying_metadata_key"}
    assert keys == {f"metadata:#{k}" for k in ("object_id", "ra", "dec", "skymap", "tract", "patch")}
    values = {f.column for f in findings if f.rule == "manifest.identifying_metadata_value"}
    assert values == {"metadata:#ra", "metadata:#dec"}


# --- validate_manifest: one failing case per rule ---------------------------

GOOD_HEADER = "external_id,location:1,metadata:bands,metadata:!stretch"
GOOD_ROWS = [
    f"s-1,{PREFIX}p/b/1.png,gri,asinh",
    f"s-2,{PREFIX}p/b/2.png,gri,asinh",
]


def manifest(header=GOOD_HEADER, rows=GOOD_ROWS):
    return ("\r\n".join([header, *rows]) + "\r\n").encode("utf-8")


def with_location(url):
    return manifest(rows=[f"s-1,{url},gri,asinh"])


CASES = [
    ("manifest.unreadable", b"external_id,location:1\r\nx,\xff\xfe.png\r\n", {}, 2),
    ("manifest.unreadable", b'external_id,location:1\r\nx,"https://h/a.png\r\n', {}, 2),
    ("manifest.bom", b"\xef\xbb\xbf" + manifest(), {}, 1),
    ("manifest.empty", b"", {}, None),
    ("manifest.no_rows", manifest(rows=[]), {}, None),
    ("manifest.empty_header", manifest(GOOD_HEADER + ",", [r + "," for r in GOOD_ROWS]), {}, 1),
    (
        "manifest.duplicate_column",
        manifest("external_id,location:1,external_id", [f"a,{PREFIX}a.png,b"]),
        {},
        1,
    ),
    ("manifest.missing_external_id", manifest("id,location:1", [f"a,{PREFIX}a.png"]), {}, 1),
    ("manifest.empty_external_id", manifest(rows=[f",{PREFIX}p/b/1.png,gri,asinh"]), {}, 2),
    ("manifest.duplicate_external_id", manifest(rows=[GOOD_ROWS[0], GOOD_ROWS[0]]), {}, 3),
    ("manifest.no_location_column", manifest("external_id,metadata:a", ["x,1"]), {}, 1),
    (
        "manifest.duplicate_location_column",
        manifest("external_id,location:1,location:1", [f"x,{PREFIX}a.png,{PREFIX}b.png"]),
        {},
        1,
    ),
    ("manifest.empty_location", manifest(rows=["s-1,,gri,asinh"]), {}, 2),
    ("manifest.location_not_url", with_location("/srv/public/p/b/1.png"), {}, 2),
    ("manifest.location_not_url", with_location("https:///p/b/1.png"), {}, 2),
    ("manifest.location_not_https", with_location("http://epo.example.org/p/b/1.png"), {}, 2),
    ("manifest.location_query", with_location(f"{PREFIX}p/b/1.png?sig=1"), {}, 2),
    ("manifest.location_fragment", with_location(f"{PREFIX}p/b/1.png#frame"), {}, 2),
    ("manifest.location_extension", with_location(f"{PREFIX}p/b/1.PNG"), {}, 2),
    ("manifest.location_extension", with_location(f"{PREFIX}p/b/1.fits"), {}, 2),
    ("manifest.location_extension", with_location(f"{PREFIX}p/b/noext"), {}, 2),
    ("manifest.location_prefix", manifest(), {"url_prefix": "https://other.example.org/"}, 2),
    (
        "manifest.empty_metadata_key",
        manifest("external_id,location:1,metadata:", [f"x,{PREFIX}a.png,1"]),
        {},
        1,
    ),
    (
        "manifest.metadata_key_colon",
        manifest("external_id,location:1,metadata:a:b", [f"x,{PREFIX}a.png,1"]),
        {},
        1,
    ),
    (
        "manifest.duplicate_metadata_key",
        manifest("external_id,location:1,metadata:a,metadata:a:x", [f"x,{PREFIX}a.png,1,2"]),
        {},
        1,
    ),
    ("manifest.ignored_column", manifest("external_id,location:1,coord_ra", [f"x,{PREFIX}a.png,1"]), {}, 1),
    ("manifest.field_count", manifest(rows=[GOOD_ROWS[0], f"s-2,{PREFIX}p/b/2.png,gri"]), {}, 3),
    ("manifest.field_count", manifest(rows=[GOOD_ROWS[0], "", GOOD_ROWS[1]]), {}, 3),
    ("manifest.row_limit", manifest(), {"limit": 1}, None),
    (
        "manifest.identifying_metadata_key",
        manifest("external_id,location:1,metadata:#ObjectId", [f"x,{PREFIX}a.png,1"]),
        {"metadata_policy": "anonymised"},
        1,
    ),
    (
        "manifest.identifying_external_id",
        manifest(rows=[f"obj_150.1234_-2.5678,{PREFIX}p/b/1.png,gri,asinh"]),
        {"metadata_policy": "anonymised"},
        2,
    ),
    (
        "manifest.identifying_location",
        with_location(f"{PREFIX}p/b/150.12345.png"),
        {"metadata_policy": "anonymised"},
        2,
    ),
    (
        "manifest.identifying_metadata_value",
        manifest(rows=[GOOD_ROWS[0], f"s-2,{PREFIX}p/b/2.png,gri,asinh near 150.1234"]),
        {"metadata_policy": "anonymised"},
        3,
    ),
]


def test_good_manifest_has_no_findings(tmp_path):
    path = tmp_path / "good.csv"
    path.write_bytes(manifest())
    assert validate_manifest(str(path)) == []
    assert validate_manifest(str(path), url_prefix=PREFIX, metadata_policy="anonymised", limit=2) == []


@pytest.mark.parametrize("rule, data, kwargs, line", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fails(tmp_path, rule, data, kwargs, line):
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    findings = validate_manifest(str(path), **kwargs)
    matching = [f for f in findings if f.rule == rule]
    assert matching, findings
    assert matching[0].line == line
    assert all(isinstance(f, ManifestFinding) and f.rule in RULES for f in findings)


def test_every_rule_has_a_failing_case():
    assert {case[0] for case in CASES} == set(RULES)


def test_http_location_is_flagged_unless_loopback_or_allowed(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(with_location("http://epo.example.org/p/b/1.png"))
    (finding,) = validate_manifest(str(path))
    assert finding.rule == "manifest.location_not_https" and finding.column == "location:1"
    assert validate_manifest(str(path), allow_http=True) == []
    for url in (
        "http://127.0.0.1:8080/p/b/1.png",
        "http://localhost/p/b/1.png",
        "http://[::1]:8080/p/b/1.png",
    ):
        path.write_bytes(with_location(url))
        assert validate_manifest(str(path)) == [], url
    path.write_bytes(with_location(f"{PREFIX}p/b/1.png"))
    assert validate_manifest(str(path)) == []


def test_missing_file_and_bad_policy(tmp_path):
    (finding,) = validate_manifest(str(tmp_path / "absent.csv"))
    assert finding.rule == "manifest.unreadable" and finding.line is None
    with pytest.raises(ValueError):
        validate_manifest(str(tmp_path / "absent.csv"), metadata_policy="secret")


def test_main(tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_bytes(manifest())
    bad = tmp_path / "bad.csv"
    bad.write_bytes(with_location(f"{PREFIX}p/b/1.png?x=1"))
    assert main([str(good), "--url-prefix", PREFIX]) == 0
    assert capsys.readouterr().out == f"{good}: OK\n"
    assert main([str(good), str(bad), "--metadata-policy", "anonymised"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[
        1
    ] == f"{bad}:2: [location:1] manifest.location_query: '{PREFIX}p/b/1.png?x=1' has a query " + (
        "string (MIME type lost)"
    )


def test_validate_manifest_command(tmp_path):
    from click.testing import CliRunner

    from lsst.epo.zooniverse.cli.epo import main as cli_main

    good = tmp_path / "good.csv"
    good.write_text(
        "external_id,location:1,metadata:bands\r\ngal:1,https://epo.example.org/p/b/1.png,gri\r\n"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("external_id,location:1\r\ngal:1,https://epo.example.org/p/b/1.png?sig=2\r\n")
    runner = CliRunner()
    result = runner.invoke(cli_main, ["validate-manifest", str(good)])
    assert result.exit_code == 0 and "good.csv: OK" in result.output
    result = runner.invoke(cli_main, ["validate-manifest", str(good), str(bad)])
    assert result.exit_code == 1
    assert "manifest.location_query" in result.output and "1 findings" in result.output
    plain = tmp_path / "plain.csv"
    plain.write_text("external_id,location:1\r\ngal:1,http://epo.example.org/p/b/1.png\r\n")
    result = runner.invoke(cli_main, ["validate-manifest", str(plain)])
    assert result.exit_code == 1 and "manifest.location_not_https" in result.output
    result = runner.invoke(cli_main, ["validate-manifest", "--allow-http", str(plain)])
    assert result.exit_code == 0 and "plain.csv: OK" in result.output
    assert main([str(plain)]) == 1 and main(["--allow-http", str(plain)]) == 0
