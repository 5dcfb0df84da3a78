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

"""Tests of the export data-rights policy and of artifact validation.

Every hostile input is generated here, in the test's temporary directory:
ZIPs made by the real writer and then altered, ZIPs assembled byte by byte
(to say anything in names, flags, attributes and declared sizes), and
crafted PNGs.  Each case checks the rule, the entry it names, whether the
whole artifact or only one image is rejected, and that nothing was written
outside the output directory.
"""

import csv
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import zipfile
import zlib

import numpy as np
import pytest
import yaml
from astropy.wcs import WCS
from PIL import Image
from zooniverse_test_utils import png_chunks

from lsst.epo.zooniverse.export.policy import (
    METADATA_POLICIES,
    DataRightsPolicy,
    PolicyError,
)
from lsst.epo.zooniverse.export.validation import (
    RULES,
    AcceptedImage,
    Finding,
    ValidationResult,
    validate_png_file,
    validate_rgb_zip,
)
from lsst.epo.zooniverse.formats.png import (
    PNG_SIGNATURE,
    PngError,
    decode_png,
    encode_png,
    read_png_text,
    strip_png_text_chunks,
)
from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection, write_rgb_collection

POLICY = DataRightsPolicy()
RA = [150.123456 + k / 1000 for k in range(4)]
DEC = [2.654321 - k / 1000 for k in range(4)]
IDS = ["4711000000000001", "4711000000000002", "4711000000000003", "4711000000000004"]


# ---------------------------------------------------------------------------
# Builders


def make_wcs(ra, dec):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [12.5, 12.5]
    wcs.wcs.cd = [[-0.2 / 3600, 0.0], [0.0, 0.2 / 3600]]
    wcs.wcs.set()
    return wcs


def make_collection(n=4, size=24, seed=7):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(size, size + k, 3), dtype=np.uint8) for k in range(n)]
    index = {
        "object_id": IDS[:n],
        "ra": RA[:n],
        "dec": DEC[:n],
        "bands": ["g,r,i"] * n,
        "stretch": ["lupton(Q=8)"] * n,
    }
    return RgbCollection(images, index, wcs=[make_wcs(RA[k], DEC[k]) for k in range(n)])


def good_zip(tmp_path, name="good.zip", **kwargs):
    """A ZIP written by the real writer (4 images with WCS)."""
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    write_rgb_collection(make_collection(**kwargs), str(path))
    return path


def zip_entries(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def with_entries(tmp_path, replace, name="altered.zip", drop=()):
    """Copy the good ZIP replacing (or adding) entries; the index is kept."""
    entries = zip_entries(good_zip(tmp_path))
    entries.update(replace)
    path = tmp_path / "in" / name
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries.items():
            if entry not in drop:
                archive.writestr(entry, data)
    return path


def small_png(seed=1, size=16, text=None):
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), text=text)


def index_csv(rows, header=("file", "object_id", "ra", "dec", "wcs")):
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def deflate_raw(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def raw_zip(path, entries):
    """Assemble a ZIP byte by byte.

    Each entry is a dict: ``name`` (`str`, or `bytes` written as is),
    ``data``; optional ``method`` (0 stored, 8 deflate), ``file_size`` and
    ``compress_size`` (declared, default true), ``crc``, ``flags``,
    ``external_attr``, ``comment`` (in the central directory).
    """
    out, central = bytearray(), bytearray()
    for entry in entries:
        name = entry["name"]
        raw_name = name if isinstance(name, bytes) else name.encode("utf-8")
        flags = entry.get("flags", 0) | (0 if raw_name.isascii() else 0x800)
        method = entry.get("method", 0)
        data = entry["data"]
        payload = deflate_raw(data) if method == 8 else data
        crc = entry.get("crc", zlib.crc32(data))
        compress_size = entry.get("compress_size", len(payload))
        file_size = entry.get("file_size", len(data))
        attr = entry.get("external_attr", (stat.S_IFREG | 0o644) << 16)
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc, compress_size, file_size,
            len(raw_name), 0,
        )  # fmt: skip
        out += raw_name + payload
        comment = entry.get("comment", b"")
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 20, 20, flags, method, 0, 0x21, crc,
            compress_size, file_size, len(raw_name), 0, len(comment), 0, 0, attr, offset,
        )  # fmt: skip
        central += raw_name + comment
    start = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def raw_collection(tmp_path, extra=(), *, names=("a.png", "b.png"), name="raw.zip", index=True):
    """A byte-built ZIP with an index, good PNGs under ``names`` and the
    ``extra`` entries (not listed in the index).
    """
    entries = []
    if index:
        rows = [(entry, f"id{k}", RA[k], DEC[k], "") for k, entry in enumerate(names)]
        entries.append({"name": "index.csv", "data": index_csv(rows)})
    entries += [{"name": entry, "data": small_png(seed=k)} for k, entry in enumerate(names)]
    entries += list(extra)
    return raw_zip(tmp_path / "in" / name, entries)


def chunk(chunk_type, payload):
    return (
        struct.pack(">I", len(payload))
        + chunk_type
        + payload
        + struct.pack(">I", zlib.crc32(chunk_type + payload))
    )


def assemble_png(chunks):
    return PNG_SIGNATURE + b"".join(chunk(t, p) for t, p in chunks)


def with_dimensions(data, width, height):
    """A PNG whose IHDR declares another size (valid CRC, same pixels)."""
    chunks = png_chunks(data)
    ihdr = chunks[0][1]
    chunks[0] = (b"IHDR", struct.pack(">II", width, height) + ihdr[8:])
    return assemble_png(chunks)


def metadata_rich_png(seed=3):
    """A PNG with every kind of chunk strip_png_text_chunks sorts."""
    base = png_chunks(small_png(seed=seed))
    ihdr, idats, iend = base[0], [c for c in base if c[0] == b"IDAT"], base[-1]
    ztxt = b"comment\0\0" + zlib.compress(b"object 4711000000000001 at 150.123456")
    itxt = b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta>ra=150.123456</x:xmpmeta>"
    return assemble_png(
        [
            ihdr,
            (b"gAMA", struct.pack(">I", 45455)),
            (b"sRGB", b"\0"),
            (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
            (b"tEXt", b"Software\0lsst.epo.zooniverse test"),
            (b"tEXt", b"object_id\x004711000000000001"),
            (b"tEXt", b"bands\0g,r,i"),
            (b"zTXt", ztxt),
            (b"iTXt", itxt),
            (b"eXIf", b"MM\0*\0\0\0\x08\0\0"),
            (b"tIME", struct.pack(">HBBBBB", 2026, 1, 2, 3, 4, 5)),
            (b"prVt", b"private data"),
            *idats,
            (b"tEXt", b"stretch\0asinh"),
            iend,
        ]
    )


def jpeg_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def zip_bytes(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return buffer.getvalue()


def tree(root):
    return {p for p in root.rglob("*") if not p.is_dir()}


def pngcheck(path):
    tool = shutil.which("pngcheck")
    if tool is None:
        return
    result = subprocess.run([tool, "-q", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"pngcheck failed on {path}: {result.stdout}{result.stderr}"


def check_outcome(tmp_path, result, out):
    """What must hold after every validation: only the output directory
    changed, it holds exactly the accepted images (none if the artifact is
    rejected), every rule is known and used at its scope.
    """
    assert isinstance(result, ValidationResult)
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if not result.ok:
        assert result.accepted == ()
        assert written == []
    assert written == sorted(a.entry for a in result.accepted)
    for accepted in result.accepted:
        assert os.path.dirname(accepted.path) == str(out)
        data = open(accepted.path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == accepted.sha256
        assert len(data) == accepted.size
    for finding in result.artifact_findings:
        assert RULES[finding.rule][0] == "artifact", finding
    for rejected in result.rejected:
        assert RULES[rejected.finding.rule][0] == "image", rejected
        assert rejected.finding.entry == rejected.entry


def run_zip(tmp_path, path, policy=POLICY, metadata_policy="full"):
    out = tmp_path / "work" / "deep" / "out"
    before = tree(tmp_path)
    result = validate_rgb_zip(str(path), policy, metadata_policy=metadata_policy, output_dir=str(out))
    created = tree(tmp_path) - before
    assert all(out in p.parents for p in created), created
    check_outcome(tmp_path, result, out)
    return result


def run_png(tmp_path, path, entry="cutout.png", object_id="4711000000000001", **kwargs):
    out = tmp_path / "work" / "deep" / "out"
    before = tree(tmp_path)
    result = validate_png_file(
        str(path),
        kwargs.pop("policy", POLICY),
        metadata_policy=kwargs.pop("metadata_policy", "full"),
        output_dir=str(out),
        entry=entry,
        object_id=object_id,
    )
    created = tree(tmp_path) - before
    assert all(out in p.parents for p in created), created
    check_outcome(tmp_path, result, out)
    return result


def rules(result):
    return {(f.rule, f.entry) for f in result.artifact_findings}


def rejected_rules(result):
    return {(r.finding.rule, r.entry) for r in result.rejected}


# ---------------------------------------------------------------------------
# Good artifacts


@pytest.mark.parametrize("metadata_policy", ["full", "anonymised", "anonymized"])
def test_good_zip_is_accepted(tmp_path, metadata_policy):
    path = good_zip(tmp_path)
    result = run_zip(tmp_path, path, metadata_policy=metadata_policy)
    assert result.ok and result.rejected == ()
    assert [a.entry for a in result.accepted] == [f"{oid}.png" for oid in IDS]
    originals = zip_entries(path)
    for k, accepted in enumerate(result.accepted):
        assert isinstance(accepted, AcceptedImage)
        assert accepted.object_id == IDS[k]
        assert (accepted.width, accepted.height) == (24 + k, 24)
        assert accepted.index_row["object_id"] == IDS[k]
        assert accepted.index_row["file"] == accepted.entry
        assert float(accepted.index_row["ra"]) == RA[k]
        assert set(accepted.index_row) >= {"file", "object_id", "ra", "dec", "bands", "wcs"}
        data = open(accepted.path, "rb").read()
        if metadata_policy == "full":
            assert data == originals[accepted.entry]
            assert accepted.stripped == ()
        pngcheck(accepted.path)


def test_anonymised_stripping(tmp_path):
    path = good_zip(tmp_path)
    result = run_zip(tmp_path, path, metadata_policy="anonymised")
    originals = zip_entries(path)
    index_text = originals["index.csv"].decode()
    for k, accepted in enumerate(result.accepted):
        original = originals[accepted.entry]
        stripped = open(accepted.path, "rb").read()
        # Pixels identical, IDAT bytes untouched.
        assert np.array_equal(np.asarray(decode_png(stripped)), np.asarray(decode_png(original)))
        idat = [p for t, p in png_chunks(original) if t == b"IDAT"]
        assert [p for t, p in png_chunks(stripped) if t == b"IDAT"] == idat
        # Identifiers and coordinates gone; the allowed keys kept.
        text = read_png_text(stripped)
        assert set(text) == {"Software", "bands", "stretch"}
        assert IDS[k].encode() not in stripped
        assert str(RA[k]).encode() not in stripped and str(DEC[k]).encode() not in stripped
        assert repr(RA[k]) in index_text  # ... although the index has them.
        assert set(accepted.stripped) >= {"tEXt:object_id", "tEXt:ra", "tEXt:dec", "iTXt:XML:com.adobe.xmp"}
        assert all(chunk_type != b"iTXt" for chunk_type, _ in png_chunks(stripped))
        pngcheck(accepted.path)


def test_real_writer_names_are_accepted(tmp_path):
    """Names sanitize_entry_names makes from awkward ids (leading '_',
    '~2' suffixes for case collisions, 'index.csv.png') are accepted.
    """
    ids = ["b/2", "../x", "É", "A", "a", "object", ".hidden", "z" * 150, "index.csv", "m31 core"]
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8) for _ in ids]
    path = tmp_path / "in" / "odd.zip"
    path.parent.mkdir()
    write_rgb_collection(RgbCollection(images, {"object_id": ids}), str(path))
    result = run_zip(tmp_path, path)
    assert result.ok, result.artifact_findings
    assert len(result.accepted) == len(ids)
    assert {"_x.png", "a~2.png", "index.csv.png", "z" * 100 + ".png"} <= {a.entry for a in result.accepted}


def test_good_cutout(tmp_path):
    png = small_png(text={"object_id": "4711000000000001", "ra": "150.123456", "bands": "g,r,i"})
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(png)
    result = run_png(tmp_path, path, entry="4711000000000001.png")
    assert result.ok and len(result.accepted) == 1 and result.rejected == ()
    accepted = result.accepted[0]
    assert (accepted.entry, accepted.object_id, accepted.index_row) == ("4711000000000001.png", IDS[0], {})
    assert open(accepted.path, "rb").read() == png and accepted.stripped == ()

    result = run_png(tmp_path, path, entry="4711000000000001.png", metadata_policy="anonymised")
    stripped = open(result.accepted[0].path, "rb").read()
    assert read_png_text(stripped) == {"bands": "g,r,i"}
    assert result.accepted[0].stripped == ("tEXt:object_id", "tEXt:ra")
    pngcheck(result.accepted[0].path)


def test_result_types():
    finding = Finding("zip.entry_name", "e\u202egnp.png", "entry is bad.")
    assert str(finding) == "zip.entry_name [e\\u202egnp.png]: entry is bad."
    assert str(Finding("index.missing", None, "no index.")) == "index.missing: no index."
    assert ValidationResult((), (), ()).ok
    assert not ValidationResult((finding,), (), ()).ok
    assert set(RULES) >= {
        "zip.not_zip",
        "zip.entry_name",
        "zip.symlink",
        "zip.duplicate_name",
        "zip.encrypted",
        "zip.nested_archive",
        "zip.too_many_entries",
        "zip.entry_too_large",
        "zip.total_too_large",
        "zip.compression_ratio",
        "index.missing",
        "index.malformed",
        "index.mismatch",
        "png.signature",
        "png.corrupt",
        "png.dimensions",
        "png.file_size",
        "png.decode",
        "metadata.identifying",
    }


def test_rules_are_documented():
    doc = os.path.join(os.path.dirname(__file__), os.pardir, "doc", "export_policy.md")
    text = open(doc, encoding="utf-8").read()
    for rule, (scope, _) in RULES.items():
        assert f"`{rule}`" in text, rule
    for key in DataRightsPolicy().to_mapping():
        assert f"`{key}`" in text, key
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = DataRightsPolicy.from_mapping(yaml.safe_load(example), source="doc example")
    assert policy.max_entries == 10000 and "epo/{owner}/export-*" in policy.collection_patterns


# ---------------------------------------------------------------------------
# Hostile ZIP structure: the whole artifact is rejected


def _unix(mode):
    return mode << 16


STRUCTURE_CASES = {
    "zip-slip parent": (
        [{"name": "../evil.png", "data": small_png()}],
        "zip.entry_name",
        "../evil.png",
        "'..'",
    ),
    "zip-slip nested": (
        [{"name": "a/../../b.png", "data": small_png()}],
        "zip.entry_name",
        "a/../../b.png",
        "'..'",
    ),
    "absolute": ([{"name": "/etc/x.png", "data": small_png()}], "zip.entry_name", "/etc/x.png", "absolute"),
    "drive backslash": ([{"name": "C:\\x.png", "data": small_png()}], "zip.entry_name", "C:\\x.png", "drive"),
    "drive slash": ([{"name": "C:/x.png", "data": small_png()}], "zip.entry_name", "C:/x.png", "drive"),
    "backslash": ([{"name": "a\\b.png", "data": small_png()}], "zip.entry_name", "a\\b.png", "backslash"),
    "directory entry": ([{"name": "dir/", "data": b""}], "zip.entry_name", "dir/", "directory"),
    "file in directory": (
        [{"name": "dir/x.png", "data": small_png()}],
        "zip.entry_name",
        "dir/x.png",
        "directory",
    ),
    "directory attribute": (
        [{"name": "d.png", "data": b"", "external_attr": _unix(stat.S_IFDIR | 0o755) | 0x10}],
        "zip.entry_name",
        "d.png",
        "directory",
    ),
    "rtl override": (
        [{"name": "evil\u202egnp.png", "data": small_png()}],
        "zip.entry_name",
        "evil\u202egnp.png",
        "U+202E (RIGHT-TO-LEFT OVERRIDE)",
    ),
    "fullwidth dot": (
        [{"name": "x\uff0epng", "data": small_png()}],
        "zip.entry_name",
        "x\uff0epng",
        "U+FF0E",
    ),
    "nul": ([{"name": b"nul\x00.png", "data": small_png()}], "zip.entry_name", "nul\x00.png", "U+0000"),
    "escape": ([{"name": "e\x1b[31m.png", "data": small_png()}], "zip.entry_name", "e\x1b[31m.png", "U+001B"),
    "not png": ([{"name": "notes.txt", "data": b"hello"}], "zip.entry_name", "notes.txt", "neither"),
    "upper-case extension": (
        [{"name": "x.PNG", "data": small_png()}],
        "zip.entry_name",
        "x.PNG",
        "upper-case",
    ),
    "hidden": ([{"name": ".x.png", "data": small_png()}], "zip.entry_name", ".x.png", "start"),
    "leading dash": ([{"name": "-rf.png", "data": small_png()}], "zip.entry_name", "-rf.png", "start"),
    "space": ([{"name": "a b.png", "data": small_png()}], "zip.entry_name", "a b.png", "outside"),
    "too long": (
        [{"name": "x" * 130 + ".png", "data": small_png()}],
        "zip.entry_name",
        "x" * 130 + ".png",
        "long",
    ),
    "symlink": (
        [{"name": "link.png", "data": b"/etc/passwd", "external_attr": _unix(stat.S_IFLNK | 0o777)}],
        "zip.symlink",
        "link.png",
        "symbolic link",
    ),
    "fifo": (
        [{"name": "fifo.png", "data": b"", "external_attr": _unix(stat.S_IFIFO | 0o644)}],
        "zip.special_file",
        "fifo.png",
        "not a regular file",
    ),
    "duplicate": ([{"name": "a.png", "data": small_png()}], "zip.duplicate_name", "a.png", "more than once"),
    "duplicate case": ([{"name": "A.png", "data": small_png()}], "zip.duplicate_name", "A.png", "by case"),
    "encrypted": (
        [{"name": "enc.png", "data": small_png(), "flags": 1}],
        "zip.encrypted",
        "enc.png",
        "encrypted",
    ),
    "bzip2": (
        [{"name": "bz.png", "data": small_png(), "method": 12}],
        "zip.compression_method",
        "bz.png",
        "method 12",
    ),
    "nested zip by name": (
        [{"name": "inner.zip", "data": zip_bytes({"x.png": small_png()})}],
        "zip.nested_archive",
        "inner.zip",
        "archive",
    ),
    "nested tar.gz by name": (
        [{"name": "inner.tar.gz", "data": b"\x1f\x8b\x08\0"}],
        "zip.nested_archive",
        "inner.tar.gz",
        "archive",
    ),
    "highly compressible": (
        [{"name": "bomb.png", "data": b"\0" * 900_000, "method": 8}],
        "zip.compression_ratio",
        "bomb.png",
        "ratio",
    ),
    "declared too large": (
        [{"name": "big.png", "data": b"\0" * 9_000_000, "method": 8}],
        "zip.entry_too_large",
        "big.png",
        "declares 9000000 bytes",
    ),
    "compressed size zero": (
        [{"name": "zero.png", "data": b"", "file_size": 5000, "compress_size": 0}],
        "zip.compression_ratio",
        "zero.png",
        "ratio inf",
    ),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE_CASES))
def test_hostile_structure(tmp_path, case):
    extra, rule, entry, words = STRUCTURE_CASES[case]
    path = raw_collection(tmp_path, extra)
    result = run_zip(tmp_path, path)
    assert not result.ok
    assert (rule, entry) in rules(result), result.artifact_findings
    finding = next(f for f in result.artifact_findings if (f.rule, f.entry) == (rule, entry))
    assert words in finding.message, finding
    # Messages and str() are printable (no control characters reach logs).
    assert str(finding).isprintable() and str(finding).isascii()
    # No image at all is accepted, nothing written, nothing outside.
    assert not (tmp_path / "work" / "deep" / "evil.png").exists()
    assert not (tmp_path / "work" / "b.png").exists()


def test_zip_slip_writes_nothing_anywhere(tmp_path):
    """A zip-slip ZIP whose other content is valid: not even the good
    images are written.
    """
    names = ("a.png", "../evil.png", "a/../../b.png")
    path = raw_collection(tmp_path, names=names)
    before = tree(tmp_path)
    result = run_zip(tmp_path, path)
    assert {f.entry for f in result.artifact_findings} == {"../evil.png", "a/../../b.png"}
    assert tree(tmp_path) == before


def test_not_a_zip(tmp_path):
    path = tmp_path / "in" / "random.zip"
    path.parent.mkdir()
    path.write_bytes(os.urandom(5000))
    assert rules(run_zip(tmp_path, path)) == {("zip.not_zip", None)}
    truncated = good_zip(tmp_path).read_bytes()
    path.write_bytes(truncated[: len(truncated) // 2])
    assert rules(run_zip(tmp_path, path)) == {("zip.not_zip", None)}
    path.write_bytes(small_png())
    assert rules(run_zip(tmp_path, path)) == {("zip.not_zip", None)}


def test_lying_declared_size_is_caught_while_reading(tmp_path):
    """An entry declaring 1000 bytes that inflates to 9 MB: the read stops
    at the limit.
    """
    bomb = {"name": "liar.png", "data": b"\0" * 9_000_000, "method": 8, "file_size": 1000}
    index = {"name": "index.csv", "data": index_csv([("liar.png", "x", "", "", "")])}
    result = run_zip(tmp_path, raw_zip(tmp_path / "in" / "liar.zip", [index, bomb]))
    assert rules(result) == {("zip.entry_too_large", "liar.png")}
    assert "inflates to more than" in result.artifact_findings[0].message


def test_lying_small_size_is_corrupt(tmp_path):
    png = small_png()
    path = raw_zip(
        tmp_path / "in" / "liar.zip",
        [
            {"name": "index.csv", "data": index_csv([("a.png", "x", "", "", "")])},
            {"name": "a.png", "data": png, "file_size": 100},
        ],
    )
    assert rules(run_zip(tmp_path, path)) == {("zip.corrupt", "a.png")}


def test_bad_crc_is_corrupt(tmp_path):
    path = raw_zip(
        tmp_path / "in" / "crc.zip",
        [
            {"name": "index.csv", "data": index_csv([("a.png", "x", "", "", "")])},
            {"name": "a.png", "data": small_png(), "crc": 1234},
        ],
    )
    result = run_zip(tmp_path, path)
    assert rules(result) == {("zip.corrupt", "a.png")}
    assert "CRC" in result.artifact_findings[0].message


def test_overlapping_entries(tmp_path):
    """Two central-directory records pointing at the same data (the
    overlap trick of non-recursive zip bombs).
    """
    good = raw_collection(tmp_path, names=("a.png",)).read_bytes()
    start = good.index(b"PK\x01\x02")
    end_record = good.index(b"PK\x05\x06")
    central = good[start:end_record]
    second = central.index(b"PK\x01\x02", 4)
    record = bytearray(central[second:])
    record[46:51] = b"b.png"[:5]
    new_central = central + bytes(record)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 3, 3, len(new_central), start, 0)
    path = tmp_path / "in" / "overlap.zip"
    path.write_bytes(good[:start] + new_central + eocd)
    result = run_zip(tmp_path, path)
    assert ("zip.overlap", "a.png") in rules(result) or ("zip.overlap", "b.png") in rules(result)


def test_oversized_central_directory(tmp_path):
    extra = [{"name": f"c{k}.png", "data": small_png(), "comment": b"x" * 65535} for k in range(2)]
    result = run_zip(tmp_path, raw_collection(tmp_path, extra))
    assert rules(result) == {("zip.not_zip", None)}
    assert "central directory" in result.artifact_findings[0].message


def test_findings_are_capped(tmp_path):
    extra = [{"name": f"bad {k}.png", "data": b""} for k in range(150)]
    result = run_zip(tmp_path, raw_collection(tmp_path, extra))
    assert len(result.artifact_findings) == 101
    assert result.artifact_findings[-1].entry is None
    assert "50 more problems" in result.artifact_findings[-1].message


def test_too_many_entries(tmp_path):
    path = good_zip(tmp_path)
    result = run_zip(tmp_path, path, policy=DataRightsPolicy(max_entries=3))
    assert rules(result) == {("zip.too_many_entries", None)}
    assert "declares 5 entries" in result.artifact_findings[0].message
    assert run_zip(tmp_path, path, policy=DataRightsPolicy(max_entries=5)).ok


def test_total_too_large(tmp_path):
    path = good_zip(tmp_path)
    total = sum(len(data) for data in zip_entries(path).values())
    result = run_zip(tmp_path, path, policy=DataRightsPolicy(max_total_uncompressed_bytes=total - 1))
    assert rules(result) == {("zip.total_too_large", None)}
    assert run_zip(tmp_path, path, policy=DataRightsPolicy(max_total_uncompressed_bytes=total)).ok


def test_oversize_png_entry(tmp_path):
    """A PNG over the limits: with the default policy (entry limit 8 MiB,
    PNG limit 1000 KB) only that image is refused; with the entry limit at
    the PNG limit, the whole ZIP.
    """
    rng = np.random.default_rng(0)
    big = encode_png(rng.integers(0, 256, size=(600, 600, 3), dtype=np.uint8))
    assert len(big) > 1_000 * 1024
    path = with_entries(tmp_path, {f"{IDS[1]}.png": big})
    strict = DataRightsPolicy(max_entry_uncompressed_bytes=1000 * 1024)
    assert rules(run_zip(tmp_path, path, policy=strict)) == {("zip.entry_too_large", f"{IDS[1]}.png")}
    result = run_zip(tmp_path, path)
    assert result.ok
    assert rejected_rules(result) == {("png.file_size", f"{IDS[1]}.png")}
    assert result.rejected[0].object_id == IDS[1]
    assert f"{len(big)} bytes" in result.rejected[0].finding.message
    assert [a.entry for a in result.accepted] == [f"{IDS[k]}.png" for k in (0, 2, 3)]


@pytest.mark.parametrize("disguise", ["zip", "gzip", "xz"])
def test_nested_archive_disguised_as_png(tmp_path, disguise):
    content = {
        "zip": zip_bytes({"x.png": small_png()}),
        "gzip": b"\x1f\x8b\x08\x00" + os.urandom(100),
        "xz": b"\xfd7zXZ\x00" + os.urandom(100),
    }[disguise]
    entry = f"{IDS[2]}.png"
    result = run_zip(tmp_path, with_entries(tmp_path, {entry: content}))
    assert rules(result) == {("zip.nested_archive", entry)}
    assert "disguised" in result.artifact_findings[0].message


def test_late_artifact_problem_removes_written_files(tmp_path):
    """Images accepted before a late artifact problem are removed: the
    last entry (by offset) of a real writer's ZIP lies about its size.
    """
    entries = zip_entries(good_zip(tmp_path))
    raw = [{"name": n, "data": d} for n, d in entries.items()]
    raw[-1]["file_size"] = 10
    last = raw[-1]["name"]
    assert last == f"{IDS[-1]}.png"
    result = run_zip(tmp_path, raw_zip(tmp_path / "in" / "late.zip", raw))
    assert rules(result) == {("zip.corrupt", last)}
    out = tmp_path / "work" / "deep" / "out"
    assert out.is_dir() and not any(out.iterdir())
    # A disguised archive found late does the same.
    path = with_entries(tmp_path, {last: zip_bytes({"x.png": small_png()})})
    assert rules(run_zip(tmp_path, path)) == {("zip.nested_archive", last)}
    assert not any(out.iterdir())


# ---------------------------------------------------------------------------
# Index problems: the whole artifact is rejected


def test_index_missing(tmp_path):
    path = raw_collection(tmp_path, index=False)
    assert rules(run_zip(tmp_path, path)) == {("index.missing", None)}


@pytest.mark.parametrize(
    "content, words",
    [
        (b"\xff\xfe not utf-8", "UTF-8"),
        (b"", "empty"),
        (b"file,ra\r\na.png,1\r\nb.png,2\r\n", "'object_id'"),
        (b"object_id,ra\r\nid0,1\r\nid1,2\r\n", "'file'"),
        (b"file,object_id,file\r\na.png,id0,x\r\n", "repeats"),
        (b"file,object_id\r\na.png,id0,extra\r\nb.png,id1\r\n", "line 2 has 3 fields"),
        (b"file,object_id\r\na.png,\r\nb.png,id1\r\n", "line 2 has no object_id"),
        (b"file,object_id\r\na.png,same\r\nb.png,same\r\n", "the same object_id 'same'"),
    ],
)
def test_index_malformed(tmp_path, content, words):
    entries = [{"name": "index.csv", "data": content}]
    entries += [{"name": n, "data": small_png(seed=k)} for k, n in enumerate(["a.png", "b.png"])]
    result = run_zip(tmp_path, raw_zip(tmp_path / "in" / "index.zip", entries))
    assert rules(result) == {("index.malformed", "index.csv")}
    assert words in result.artifact_findings[0].message


def test_index_mismatch(tmp_path):
    entries = [
        {
            "name": "index.csv",
            "data": index_csv([("a.png", "id0", "", "", ""), ("gone.png", "id1", "", "", "")]),
        },
        {"name": "a.png", "data": small_png()},
        {"name": "extra.png", "data": small_png(seed=2)},
    ]
    result = run_zip(tmp_path, raw_zip(tmp_path / "in" / "mismatch.zip", entries))
    assert rules(result) == {("index.mismatch", "gone.png"), ("index.mismatch", "extra.png")}
    twice = [
        {
            "name": "index.csv",
            "data": index_csv([("a.png", "id0", "", "", ""), ("a.png", "id1", "", "", "")]),
        },
        {"name": "a.png", "data": small_png()},
    ]
    result = run_zip(tmp_path, raw_zip(tmp_path / "in" / "twice.zip", twice))
    assert rules(result) == {("index.mismatch", "a.png")}


def test_index_as_archive(tmp_path):
    path = with_entries(tmp_path, {"index.csv": zip_bytes({"x": b"y"})})
    assert rules(run_zip(tmp_path, path)) == {("zip.nested_archive", "index.csv")}


def test_duplicate_object_ids_from_writer(tmp_path):
    """The writer accepts repeated object ids; the export does not."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8) for _ in range(2)]
    path = tmp_path / "in" / "dup.zip"
    path.parent.mkdir()
    write_rgb_collection(RgbCollection(images, {"object_id": ["dup", "dup"]}), str(path))
    result = run_zip(tmp_path, path)
    assert rules(result) == {("index.malformed", "index.csv")}


# ---------------------------------------------------------------------------
# Per-image problems: only that image is rejected


def huge_png():
    return with_dimensions(small_png(), 100_000, 100_000)


def apng_with_broken_second_frame():
    """An APNG whose first frame (the IDAT still image) is sound and whose
    second frame (fdAT) is garbage: decoding frame 0 alone passes.
    """
    chunks = png_chunks(small_png())
    ihdr, idats, iend = chunks[0], [c for c in chunks if c[0] == b"IDAT"], chunks[-1]
    width, height = struct.unpack(">II", ihdr[1][:8])

    def fctl(sequence):
        return (b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0))

    return assemble_png(
        [
            ihdr,
            (b"acTL", struct.pack(">II", 2, 0)),
            fctl(0),
            *idats,
            fctl(1),
            (b"fdAT", struct.pack(">I", 2) + b"\x00 definitely not deflate data \xff" * 4),
            iend,
        ]
    )


IMAGE_CASES = {
    "jpeg": (jpeg_bytes, "png.signature", "JPEG"),
    "text": (lambda: b"just some text\n", "png.signature", "text"),
    "empty": (lambda: b"", "png.signature", "empty"),
    "damaged signature": (lambda: b"\x89PNG\n\n" + small_png()[8:], "png.signature", "damaged"),
    "truncated": (lambda: small_png()[:-40], "png.corrupt", "truncated"),
    "crc": (
        lambda: small_png()[:-20] + bytes([small_png()[-20] ^ 1]) + small_png()[-19:],
        "png.corrupt",
        "CRC",
    ),
    "trailing data": (lambda: small_png() + b"PK\x03\x04hidden", "png.corrupt", "follow the IEND"),
    "no ihdr": (lambda: PNG_SIGNATURE + chunk(b"tEXt", b"a\0b") + chunk(b"IEND", b""), "png.corrupt", "IHDR"),
    "huge dimensions": (huge_png, "png.dimensions", "100000x100000"),
    "too wide": (lambda: with_dimensions(small_png(), 5000, 10), "png.dimensions", "width"),
    "too many pixels": (
        lambda: with_dimensions(small_png(), 4096, 4000),
        "png.dimensions",
        "16384000 pixels",
    ),
    "empty dimensions": (lambda: with_dimensions(small_png(), 0, 16), "png.dimensions", "empty"),
    "bad pixel data": (lambda: with_dimensions(small_png(), 17, 16), "png.decode", "cannot be decoded"),
    "apng": (apng_with_broken_second_frame, "png.animated", "animated PNG (APNG: acTL, fcTL, fdAT chunks)"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_image_in_zip(tmp_path, case):
    make, rule, words = IMAGE_CASES[case]
    entry = f"{IDS[1]}.png"
    result = run_zip(tmp_path, with_entries(tmp_path, {entry: make()}))
    assert result.ok, result.artifact_findings
    assert rejected_rules(result) == {(rule, entry)}
    assert result.rejected[0].object_id == IDS[1]
    assert words in result.rejected[0].finding.message
    # The good images of the ZIP are still accepted.
    assert [a.entry for a in result.accepted] == [f"{IDS[k]}.png" for k in (0, 2, 3)]


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_cutout(tmp_path, case):
    make, rule, words = IMAGE_CASES[case]
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(make())
    result = run_png(tmp_path, path)
    assert result.ok and result.accepted == ()
    assert rejected_rules(result) == {(rule, "cutout.png")}
    assert words in result.rejected[0].finding.message


def test_cutout_not_a_png(tmp_path):
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(zip_bytes({"x.png": small_png()}))
    result = run_png(tmp_path, path)
    assert rejected_rules(result) == {("png.signature", "cutout.png")}
    assert "ZIP archive" in result.rejected[0].finding.message


def test_cutout_file_size(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in" / "big.png"
    path.parent.mkdir()
    big = encode_png(rng.integers(0, 256, size=(600, 600, 3), dtype=np.uint8))
    path.write_bytes(big)
    result = run_png(tmp_path, path)
    assert rejected_rules(result) == {("png.file_size", "cutout.png")}
    assert f"{len(big)} bytes" in result.rejected[0].finding.message
    assert "1024000" in result.rejected[0].finding.message


@pytest.mark.parametrize(
    "entry", ["../x.png", "/abs.png", "a/b.png", "x.jpg", "index.csv", "e\u202egnp.png", ""]
)
def test_cutout_bad_entry_name(tmp_path, entry):
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(small_png())
    result = run_png(tmp_path, path, entry=entry)
    assert rules(result) == {("file.entry_name", entry)}
    assert not (tmp_path / "work" / "deep" / "x.png").exists()


def test_cutout_not_regular(tmp_path):
    result = run_png(tmp_path, tmp_path)
    assert rules(result) == {("file.not_regular", "cutout.png")}


def test_unknown_metadata_policy(tmp_path):
    with pytest.raises(ValueError, match="metadata policy"):
        validate_rgb_zip(str(good_zip(tmp_path)), POLICY, metadata_policy="secret", output_dir=str(tmp_path))


def test_missing_artifact_raises(tmp_path):
    with pytest.raises(OSError):
        validate_rgb_zip(str(tmp_path / "nope.zip"), POLICY, metadata_policy="full", output_dir=str(tmp_path))


# ---------------------------------------------------------------------------
# Metadata policy: identifying values left in allowed text chunks


@pytest.mark.parametrize(
    "stretch, identifying",
    [
        ("asinh for 4711000000000002", True),
        ("centred on 150.124456 deg", True),
        ("centred on 150.1245 deg", True),
        ("dec 2.653", True),
        ("truncated 150.1244", True),
        ("negated -150.12446", True),
        ("with units 150.1245deg", True),
        ("coarse 150.12", False),
        ("nearby 150.1275", False),
        ("lupton(Q=8, 47110000000000020)", False),
        ("asinh(Q=10.0)", False),
    ],
)
def test_identifying_text_is_rejected(tmp_path, stretch, identifying):
    collection = make_collection()
    images = collection.images
    index = collection.index.copy()
    index.remove_column("file")
    index["stretch"] = [stretch] * len(index)
    path = tmp_path / "in" / "leaky.zip"
    path.parent.mkdir()
    write_rgb_collection(RgbCollection(images, index), str(path))
    result = run_zip(tmp_path, path, metadata_policy="anonymised")
    assert result.ok
    entry = f"{IDS[1]}.png"
    if identifying:
        assert ("metadata.identifying", entry) in rejected_rules(result)
        finding = next(r.finding for r in result.rejected if r.entry == entry)
        assert "'stretch'" in finding.message
    else:
        assert result.rejected == ()
    assert run_zip(tmp_path, path, metadata_policy="full").rejected == ()


def test_identifying_cutout_uses_its_own_text(tmp_path):
    """A cutout's own ra/dec text chunks count as identifying values."""
    png = small_png(text={"ra": "210.987654", "stretch": "near 210.98765"})
    path = tmp_path / "in" / "c.png"
    path.parent.mkdir()
    path.write_bytes(png)
    result = run_png(tmp_path, path, metadata_policy="anonymised")
    assert rejected_rules(result) == {("metadata.identifying", "cutout.png")}


# ---------------------------------------------------------------------------
# strip_png_text_chunks and read_png_text


def test_strip_png_text_chunks():
    data = metadata_rich_png()
    stripped, dropped = strip_png_text_chunks(data, keep_keys=("Software", "bands", "stretch"))
    assert dropped == [
        "tEXt:object_id",
        "zTXt:comment",
        "iTXt:XML:com.adobe.xmp",
        "eXIf",
        "tIME",
        "prVt",
    ]
    types = [t for t, _ in png_chunks(stripped)]
    assert types == [b"IHDR", b"gAMA", b"sRGB", b"pHYs", b"tEXt", b"tEXt", b"IDAT", b"tEXt", b"IEND"]
    assert read_png_text(stripped) == {
        "Software": "lsst.epo.zooniverse test",
        "bands": "g,r,i",
        "stretch": "asinh",
    }
    assert [p for t, p in png_chunks(stripped) if t == b"IDAT"] == [
        p for t, p in png_chunks(data) if t == b"IDAT"
    ]
    assert np.array_equal(np.asarray(decode_png(stripped)), np.asarray(decode_png(data)))
    assert b"4711000000000001" not in stripped and b"150.123456" not in stripped
    everything, dropped = strip_png_text_chunks(data)
    assert [t for t, _ in png_chunks(everything) if t in (b"tEXt", b"zTXt", b"iTXt")] == []
    assert "tEXt:Software" in dropped and "tEXt:stretch" in dropped


def test_strip_png_text_chunks_pngcheck(tmp_path):
    stripped, _ = strip_png_text_chunks(metadata_rich_png(), keep_keys=("bands",))
    path = tmp_path / "stripped.png"
    path.write_bytes(stripped)
    pngcheck(path)


def test_strip_png_text_chunks_unchanged_and_errors():
    plain = small_png()
    stripped, dropped = strip_png_text_chunks(plain)
    assert stripped is plain and dropped == []
    stripped, dropped = strip_png_text_chunks(plain + b"junk")
    assert stripped == plain and dropped == ["trailing-data"]
    weird = assemble_png([png_chunks(plain)[0], (b"t\x01XT", b""), *png_chunks(plain)[1:]])
    assert strip_png_text_chunks(weird)[1] == ["t\\x01XT"]
    with pytest.raises(PngError, match="cutout.png: not a PNG"):
        strip_png_text_chunks(jpeg_bytes(), name="cutout.png")
    with pytest.raises(PngError, match="CRC"):
        strip_png_text_chunks(plain[:-20] + bytes([plain[-20] ^ 1]) + plain[-19:])
    with pytest.raises(PngError, match="truncated"):
        strip_png_text_chunks(plain[:-5])
    with pytest.raises(PngError, match="not IHDR"):
        strip_png_text_chunks(PNG_SIGNATURE + chunk(b"tEXt", b"a\0b") + chunk(b"IEND", b""))


def test_read_png_text_bounds_compressed_text():
    bomb = zlib.compress(b"x" * 10_000_000, 9)
    base = png_chunks(small_png())
    data = assemble_png([base[0], (b"zTXt", b"bands\0\0" + bomb), *base[1:]])
    with pytest.raises(PngError, match="inflates to more than"):
        read_png_text(data, max_text_bytes=1 << 20)
    assert len(read_png_text(data)["bands"]) == 10_000_000
    itxt = assemble_png([base[0], (b"iTXt", b"k\0\x01\0\0\0" + bomb), *base[1:]])
    with pytest.raises(PngError, match="inflates"):
        read_png_text(itxt, max_text_bytes=1000)


def test_text_bomb_in_anonymised_image(tmp_path):
    bomb = zlib.compress(b"x" * 5_000_000, 9)
    base = png_chunks(small_png())
    entry = f"{IDS[0]}.png"
    data = assemble_png([base[0], (b"zTXt", b"bands\0\0" + bomb), *base[1:]])
    result = run_zip(tmp_path, with_entries(tmp_path, {entry: data}), metadata_policy="anonymised")
    assert rejected_rules(result) == {("png.corrupt", entry)}


# ---------------------------------------------------------------------------
# Policy


def test_policy_defaults():
    policy = DataRightsPolicy()
    assert policy.max_png_bytes == 1000 * 1024  # doc/zooniverse_facts.md §3, PFE MAX_FILE_SIZE.
    assert policy.max_entry_uncompressed_bytes == 8 * 1024**2
    assert policy.dataset_types == ("zooniverse_rgb", "zooniverse_cutout")
    assert policy.collection_patterns == ("u/{owner}/*",)
    assert policy.anonymised_text_keys == ("Software", "bands", "band", "stretch")
    assert METADATA_POLICIES == ("full", "anonymised")
    assert DataRightsPolicy.from_mapping({}) == policy
    assert policy.allows_dataset_type("zooniverse_rgb")
    assert not policy.allows_dataset_type("deep_coadd")
    assert not policy.allows_dataset_type("zooniverse_rgb ")


def test_policy_yaml_round_trip(tmp_path):
    policy = DataRightsPolicy(
        dataset_types=("zooniverse_rgb",),
        collection_patterns=("u/{owner}/*", "epo/{owner}/export-*"),
        max_entries=100,
        max_compression_ratio=20,
        max_png_bytes=600 * 1024,
        anonymised_text_keys=("bands",),
    )
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy.to_mapping()))
    again = DataRightsPolicy.from_yaml(path)
    assert again == policy
    assert again.max_compression_ratio == 20.0
    assert DataRightsPolicy.from_mapping(DataRightsPolicy().to_mapping()) == DataRightsPolicy()
    path.write_text("max_entries: 10\nmax_png_width: 424\n")
    partial = DataRightsPolicy.from_yaml(str(path))
    assert (partial.max_entries, partial.max_png_width, partial.max_png_height) == (10, 424, 4096)


def test_png_limit_follows_entry_limit():
    policy = DataRightsPolicy.from_mapping({"max_entry_uncompressed_bytes": 500_000})
    assert policy.max_png_bytes == 500_000
    policy = DataRightsPolicy.from_mapping({"max_entry_uncompressed_bytes": 5_000_000, "max_png_bytes": 900})
    assert policy.max_png_bytes == 900


@pytest.mark.parametrize(
    "mapping, key",
    [
        ({"max_entrys": 5}, "max_entrys"),
        ({"max_entries": "5"}, "max_entries"),
        ({"max_entries": 5.0}, "max_entries"),
        ({"max_entries": True}, "max_entries"),
        ({"max_entries": 0}, "max_entries"),
        ({"max_total_uncompressed_bytes": -1}, "max_total_uncompressed_bytes"),
        ({"max_entry_uncompressed_bytes": None}, "max_entry_uncompressed_bytes"),
        ({"max_index_bytes": 0}, "max_index_bytes"),
        ({"max_png_bytes": 0}, "max_png_bytes"),
        ({"max_png_width": -4096}, "max_png_width"),
        ({"max_png_height": [1]}, "max_png_height"),
        ({"max_png_pixels": 0}, "max_png_pixels"),
        ({"max_compression_ratio": 0}, "max_compression_ratio"),
        ({"max_compression_ratio": 0.5}, "max_compression_ratio"),
        ({"max_compression_ratio": float("inf")}, "max_compression_ratio"),
        ({"max_compression_ratio": "50"}, "max_compression_ratio"),
        ({"dataset_types": "zooniverse_rgb"}, "dataset_types"),
        ({"dataset_types": [1]}, "dataset_types"),
        ({"dataset_types": ["a", "a"]}, "dataset_types"),
        ({"collection_patterns": ["u/{user}/*"]}, "collection_patterns"),
        ({"collection_patterns": ["u/../*"]}, "collection_patterns"),
        ({"collection_patterns": ["u/{owner} /*"]}, "collection_patterns"),
        ({"collection_patterns": [""]}, "collection_patterns"),
        ({"anonymised_text_keys": ["x" * 80]}, "anonymised_text_keys"),
        ({"anonymised_text_keys": [" bands"]}, "anonymised_text_keys"),
        ({"anonymised_text_keys": ["bänds\u0100"]}, "anonymised_text_keys"),
        ({"anonymised_text_keys": {"bands": 1}}, "anonymised_text_keys"),
    ],
)
def test_policy_bad_values(mapping, key):
    with pytest.raises(PolicyError) as info:
        DataRightsPolicy.from_mapping(mapping, source="site.yaml")
    assert key in str(info.value) and "site.yaml" in str(info.value)


def test_policy_constructor_checks():
    with pytest.raises(PolicyError, match="max_entries"):
        DataRightsPolicy(max_entries=0)
    assert DataRightsPolicy(dataset_types=["zooniverse_rgb"]).dataset_types == ("zooniverse_rgb",)


@pytest.mark.parametrize(
    "content, words",
    [
        ("max_entries: [1, 2\n", "not valid YAML"),
        ("", "empty"),
        ("- max_entries\n", "list"),
        ("42\n", "int"),
        ("max_entries: 0\n", "max_entries"),
        ("unknown: 1\n", "unknown"),
    ],
)
def test_policy_bad_files(tmp_path, content, words):
    path = tmp_path / "bad_policy.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError) as info:
        DataRightsPolicy.from_yaml(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_policy_unreadable_files(tmp_path):
    with pytest.raises(PolicyError, match="missing.yaml"):
        DataRightsPolicy.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PolicyError, match="binary.yaml"):
        DataRightsPolicy.from_yaml(tmp_path / "binary.yaml")
    with pytest.raises(PolicyError, match="not a list"):
        DataRightsPolicy.from_mapping(["not a list"], source="x")


@pytest.mark.parametrize(
    "collection, owner, allowed",
    [
        ("u/alice/run1", "alice", True),
        ("u/alice/export/2026-01-02", "alice", True),
        ("u/alice.smith/run1", "alice.smith", True),
        ("u/bob/run1", "alice", False),
        ("u/alice", "alice", False),
        ("u/alice/", "alice", False),
        ("u/alicex/run1", "alice", False),
        ("U/alice/run1", "alice", False),
        ("u/alice/../bob/x", "alice", False),
        ("u/alice/./x", "alice", False),
        ("u/alice//x", "alice", False),
        ("u/alice/*", "alice", False),
        ("u/alice/run?", "alice", False),
        ("u/alice/[ab]", "alice", False),
        ("u/alice/run 1", "alice", False),
        ("u/alice/run\t1", "alice", False),
        ("u/alice/run\n1", "alice", False),
        ("u/alice/run\x001", "alice", False),
        ("/u/alice/run1", "alice", False),
        ("", "alice", False),
        ("u/*/run1", "*", False),
        ("u/../x", "..", False),
        ("u/a/x", "a/b", False),
        ("u/ali ce/x", "ali ce", False),
        ("u/alice/run1", "", False),
        ("refcats", "alice", False),
    ],
)
def test_allows_collection(collection, owner, allowed):
    assert DataRightsPolicy().allows_collection(collection, owner) is allowed


def test_allows_collection_patterns():
    policy = DataRightsPolicy(collection_patterns=("u/{owner}/*", "epo/shared/{owner}-*"))
    assert policy.allows_collection("epo/shared/alice-2026", "alice")
    assert not policy.allows_collection("epo/shared/bob-2026", "alice")
    assert not DataRightsPolicy(collection_patterns=()).allows_collection("u/alice/x", "alice")


# ---------------------------------------------------------------------------
# Metadata policy: every chunk that can carry text (issue 15 §6)


def png_with(extra, before_idat=True):
    """A small PNG with the chunks ``extra`` added before (or after) its
    pixel data.
    """
    base = png_chunks(small_png(seed=11))
    ihdr, idats, iend = base[0], [c for c in base if c[0] == b"IDAT"], base[-1]
    if before_idat:
        return assemble_png([ihdr, *extra, *idats, iend])
    return assemble_png([ihdr, *idats, *extra, iend])


ICC_PROFILE = b"\0\0\x02\x0cacspdesc" + "obj 4711000000000001".encode("utf-16-be") + b"\0" * 32
LEAKY_CHUNKS = {
    "iccp name": (b"iCCP", b"4711000000000001 at 150.123456\0\0" + zlib.compress(b"\0" * 64)),
    "iccp name coordinate": (b"iCCP", b"sky 150.1235\0\0" + zlib.compress(b"\0" * 64)),
    "iccp profile utf-16": (b"iCCP", b"sRGB\0\0" + zlib.compress(ICC_PROFILE)),
    "ztxt kept key": (b"zTXt", b"stretch\0\0" + zlib.compress(b"asinh for 4711000000000001")),
    "itxt translated keyword": (b"iTXt", b"bands\0\0\0en\0object 4711000000000001\0g,r,i"),
    "itxt compressed": (b"iTXt", b"bands\0\x01\0\0\0" + zlib.compress(b"g,r,i ra=150.123456")),
}


@pytest.mark.parametrize("case", sorted(LEAKY_CHUNKS))
def test_anonymised_checks_every_text_bearing_chunk(tmp_path, case):
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    # The cutout's own ra text chunk (stripped) gives its coordinate.
    path.write_bytes(png_with([(b"tEXt", b"ra\x00150.123456"), LEAKY_CHUNKS[case]]))
    result = run_png(tmp_path, path, metadata_policy="anonymised")
    assert rejected_rules(result) == {("metadata.identifying", "cutout.png")}, result.rejected
    assert result.accepted == ()
    assert run_png(tmp_path, path, metadata_policy="full").rejected == ()


def test_anonymised_checks_every_copy_of_a_kept_key(tmp_path):
    """Two tEXt chunks with the same kept keyword: the first one counts too."""
    leaky = (b"tEXt", b"bands\0g,r,i 4711000000000001")
    clean = (b"tEXt", b"bands\0g,r,i")
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(png_with([leaky, clean]))
    result = run_png(tmp_path, path, metadata_policy="anonymised")
    assert rejected_rules(result) == {("metadata.identifying", "cutout.png")}


def test_anonymised_keeps_a_clean_iccp_and_drops_exif(tmp_path):
    iccp = (b"iCCP", b"sRGB IEC61966-2.1\0\0" + zlib.compress(b"\0\0\x02\x0cacsp" + b"\0" * 64))
    exif = (b"eXIf", b"MM\0*\0\0\0\x08 4711000000000001 150.123456")
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(png_with([iccp, exif]))
    result = run_png(tmp_path, path, metadata_policy="anonymised")
    assert result.rejected == () and len(result.accepted) == 1
    published = open(result.accepted[0].path, "rb").read()
    assert [t for t, _ in png_chunks(published)].count(b"iCCP") == 1
    assert b"4711000000000001" not in published and result.accepted[0].stripped == ("eXIf",)


def test_anonymised_iccp_bomb_is_refused(tmp_path):
    bomb = (b"iCCP", b"sRGB\0\0" + zlib.compress(b"\0" * (3 << 20), 9))
    path = tmp_path / "in" / "cutout.png"
    path.parent.mkdir()
    path.write_bytes(png_with([bomb]))
    result = run_png(tmp_path, path, metadata_policy="anonymised")
    assert rejected_rules(result) == {("png.corrupt", "cutout.png")}
    assert "inflates to more than" in result.rejected[0].finding.message


@pytest.mark.parametrize("column", ["bands", "stretch"])
def test_anonymised_index_values_are_checked(tmp_path, column):
    """index.csv values that reach the manifest are checked even when the
    PNG's own text is clean.
    """
    entries = zip_entries(good_zip(tmp_path))
    rows = list(csv.DictReader(io.StringIO(entries["index.csv"].decode("utf-8"))))
    leaks = {1: f"near {rows[1]['ra'][:9]}", 2: f"{rows[2]['object_id']} field"}
    for k, text in leaks.items():
        rows[k][column] = text
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path = with_entries(tmp_path, {"index.csv": out.getvalue().encode("utf-8")}, name="leaky.zip")
    result = run_zip(tmp_path, path, metadata_policy="anonymised")
    assert result.ok, result.artifact_findings
    assert rejected_rules(result) == {("metadata.identifying", f"{IDS[k]}.png") for k in leaks}
    assert all(f"'{column}'" in r.finding.message for r in result.rejected)
    assert [a.entry for a in result.accepted] == [f"{IDS[k]}.png" for k in (0, 3)]
    assert run_zip(tmp_path, path, metadata_policy="full").rejected == ()
