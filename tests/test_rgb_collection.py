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

"""Tests of RGB collections (`zooniverse_rgb`): deterministic ZIP layout,
round trips with awkward object ids and extra columns, index-only and
subset reads that decode nothing more than needed, ZIP64, WCS/AVM
orientation in the PNGs, metadata policies, hostile archives and the
Butler formatter (read back in a fresh process).
"""

import hashlib
import io
import json
import os
import stat
import struct
import warnings
import zipfile
import zlib

import astropy.io.fits as fits
import astropy.wcs as astropy_wcs
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from PIL import Image
from zooniverse_test_utils import (
    check_png_bytes,
    galactic_sin_wcs,
    png_chunks,
    repository_files,
    run_in_fresh_process,
    tan_sip_wcs,
)

import lsst.epo.zooniverse.formats.rgb_collection as rgb_module
import lsst.epo.zooniverse.formats.rgb_zip as rgb_zip
from lsst.epo.zooniverse import __version__
from lsst.epo.zooniverse.formats.png import (
    DEFAULT_COMPRESS_LEVEL,
    PNG_SIGNATURE,
    XMP_KEYWORD,
    encode_png,
    read_png_text,
)
from lsst.epo.zooniverse.formats.rgb_collection import (
    INDEX_NAME,
    STANDARD_COLUMNS,
    RgbCollection,
    RgbCollectionError,
    read_rgb_collection,
    read_rgb_index,
    sanitize_entry_names,
    write_rgb_collection,
)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

ODD_IDS = [
    "b/2",
    "a/b",
    "../x",
    "É",
    "dup",
    "dup",
    "A",
    "a",
    "",
    "object",
    ".hidden",
    "z" * 150,
    "index.csv",
    "m31 core",
]
"""Object ids that are unsafe, non-ASCII, duplicated or collide by case."""

ODD_NAMES = [
    "b_2.png",
    "a_b.png",
    "_x.png",
    "_.png",
    "dup.png",
    "dup~2.png",
    "A.png",
    "a~2.png",
    "object.png",
    "object~2.png",
    "hidden.png",
    "z" * 100 + ".png",
    "index.csv.png",
    "m31_core.png",
]
"""The entry names `sanitize_entry_names` must give `ODD_IDS`."""


def make_wcs(ra=150.0, dec=2.2, crpix=(32.5, 24.5), scale_arcsec=0.2):
    """A TAN WCS, north up and east left (CD1_1 < 0), FITS pixel (1, 1) at
    the bottom left of the picture.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = list(crpix)
    scale = scale_arcsec / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def make_odd_collection(metadata_policy="full"):
    """Build, from scratch and deterministically, a collection with awkward
    ids, images of different sizes, NaNs, extra columns and mixed WCS.
    """
    rng = np.random.default_rng(1234)
    n = len(ODD_IDS)
    images = [rng.integers(0, 256, size=(3 + k % 4, 2 + k % 5, 3), dtype=np.uint8) for k in range(n)]
    index = {
        "object_id": ODD_IDS,
        "ra": [np.nan if k == 2 else 150.0 + k / 7 for k in range(n)],
        "dec": [np.nan if k == 2 else -30.0 + k / 11 for k in range(n)],
        "skymap": ["hsc_rings_v1"] * n,
        "tract": [9813 + k for k in range(n)],
        "patch": [k % 81 for k in range(n)],
        "bands": ["g,r,i"] * n,
        "coverage": [1.0 if k % 3 else 0.25 for k in range(n)],
        "stretch": ['asinh(Q=8, "min"=0)'] * n,
        "n_visits": np.arange(n, dtype=np.int64) * 3 - 5,
        "mag": [np.nan if k % 4 == 0 else 20.0 + k / 3 for k in range(n)],
        "note": [f'row {k}, "quoted"\nline 2 Ω' if k % 2 else "" for k in range(n)],
    }
    wcs = [make_wcs(ra=150.0 + k / 7, dec=-30.0 + k / 11) if k % 3 != 1 else None for k in range(n)]
    return RgbCollection(images, index, wcs=wcs, metadata_policy=metadata_policy)


def with_pixel_flipped(collection, k):
    """A copy of a collection with one bit of image ``k`` changed (the
    images of a collection are read-only).
    """
    images = [image.copy() for image in collection.images]
    images[k][0, 0, 0] ^= 1
    index = collection.index.copy()
    index.remove_column("file")
    return RgbCollection(images, index, wcs=list(collection.wcs), metadata_policy=collection.metadata_policy)


def to_bytes(collection, **kwargs):
    buffer = io.BytesIO()
    write_rgb_collection(collection, buffer, **kwargs)
    return buffer.getvalue()


def write_file(tmp_path, data, name="collection.zip"):
    path = str(tmp_path / name)
    with open(path, "wb") as stream:
        stream.write(data)
    return path


def zip_entries(data):
    """``{name: bytes}`` of every entry of a ZIP, in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def column_reprs(table):
    """Columns as lists of reprs (NaN-safe, JSON-safe comparison)."""
    return {name: [repr(v) for v in np.asarray(table[name]).tolist()] for name in table.colnames}


def pixel_digests(collection):
    return [
        hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()
        for image in collection.images
    ]


def wcs_texts(collection):
    return [None if w is None else rgb_module.wcs_to_header_string(w) for w in collection.wcs]


# ---------------------------------------------------------------------------
# 1. Determinism and ZIP layout


def test_write_is_deterministic_and_layout_is_fixed(tmp_path):
    first = to_bytes(make_odd_collection())
    second = to_bytes(make_odd_collection())
    assert first == second
    # Same bytes through a file path as through a file object.
    path = str(tmp_path / "c.zip")
    write_rgb_collection(make_odd_collection(), path)
    with open(path, "rb") as stream:
        assert stream.read() == first

    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        infos = archive.infolist()
        assert archive.testzip() is None
    names = [info.filename for info in infos]
    assert names[0] == INDEX_NAME
    assert names[1:] == sorted(ODD_NAMES)
    for info in infos:
        assert info.compress_type == zipfile.ZIP_STORED, info.filename
        assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
        assert info.external_attr == 0o100644 << 16, info.filename
        assert info.create_system == 3, info.filename
        assert info.file_size == info.compress_size, info.filename
    # The archive comment describes the format.
    comment = json.loads(first[first.rindex(b"PK\x05\x06") + 22 :].decode())
    assert comment["format"] == "lsst.epo.zooniverse.rgb" and comment["metadata_policy"] == "full"
    assert comment["columns"]["n_visits"] == "int" and comment["columns"]["note"] == "str"

    # Not vacuous: one changed pixel or value changes the bytes.
    assert to_bytes(with_pixel_flipped(make_odd_collection(), 3)) != first
    changed = make_odd_collection()
    changed.index["mag"][1] += 1
    assert to_bytes(changed) != first


# ---------------------------------------------------------------------------
# 2. Round trip


def test_sanitize_entry_names():
    names = sanitize_entry_names(ODD_IDS)
    assert names == ODD_NAMES
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert not name.startswith(".") and "/" not in name and "\\" not in name
        assert name.lower() != INDEX_NAME
    # '~' never survives sanitising, so ids cannot collide with suffixes.
    assert sanitize_entry_names(["x", "x~2", "x", "X"]) == ["x.png", "x_2.png", "x~2.png", "X~3.png"]
    assert sanitize_entry_names(["index", "INDEX.CSV"]) == ["index.png", "INDEX.CSV.png"]


def test_round_trip_odd_ids_extra_columns_nan_and_wcs(tmp_path):
    original = make_odd_collection()
    data = to_bytes(original)
    path = write_file(tmp_path, data)
    read = read_rgb_collection(path)

    assert read.equals(original) and original.equals(read)
    assert read.metadata_policy == "full"
    # Check the parts separately too, so that a lenient equals() cannot hide
    # a loss.
    assert read.index.colnames == ["file", *STANDARD_COLUMNS, "n_visits", "mag", "note"]
    assert list(read.index["file"]) == ODD_NAMES
    assert list(read.index["object_id"]) == ODD_IDS
    assert read.index["n_visits"].dtype.kind == "i"
    assert read.index["tract"].dtype.kind == "i"
    assert read.index["mag"].dtype.kind == "f"
    assert read.index["note"].dtype.kind == "U"
    assert column_reprs(read.index) == column_reprs(original.index)
    assert np.isnan(read.index["ra"][2]) and np.isnan(read.index["mag"][0])
    assert list(read.index["note"]) == list(original.index["note"])
    assert [w is None for w in read.wcs] == [k % 3 == 1 for k in range(len(ODD_IDS))]
    assert wcs_texts(read) == wcs_texts(original)
    for got, expected in zip(read.wcs, original.wcs):
        if expected is not None:  # Bit-exact, not just to 14 digits.
            assert list(got.wcs.crval) == list(expected.wcs.crval)
            assert got.pixel_scale_matrix.tolist() == expected.pixel_scale_matrix.tolist()
            assert list(got.wcs.crpix) == list(expected.wcs.crpix)
    for got, expected in zip(read.images, original.images):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)

    # A file object reads the same.
    assert read_rgb_collection(io.BytesIO(data)).equals(original)

    # Every PNG is valid for pngcheck, and the pixels of each entry are
    # those of the image of the same object.
    entries = zip_entries(data)
    for k, name in enumerate(ODD_NAMES):
        check_png_bytes(entries[name], tmp_path, name=f"check{k}.png")
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(entries[name]))), original.images[k])

    # A second round trip is byte-identical.
    assert to_bytes(read) == data


def test_equals_detects_differences():
    base = make_odd_collection()
    assert base.equals(make_odd_collection())
    assert not base.equals(with_pixel_flipped(make_odd_collection(), 0))
    other = make_odd_collection()
    other.index["mag"][0] = 1.0  # NaN -> number
    assert not base.equals(other)
    other = make_odd_collection()
    other.index["note"][1] = "changed"
    assert not base.equals(other)
    other = make_odd_collection()
    other.wcs[0] = make_wcs(ra=10.0)
    assert not base.equals(other)
    other = make_odd_collection()
    other.wcs[0] = None
    assert not base.equals(other)
    # WCS differing by 1e-12 degree (below 14 significant digits).
    assert not RgbCollection([base.images[0]], {"object_id": ["x"]}, wcs=[make_wcs(ra=150.0)]).equals(
        RgbCollection([base.images[0]], {"object_id": ["x"]}, wcs=[make_wcs(ra=150.0 + 1e-12)])
    )


def test_empty_collection_and_pil_images_and_bytes_ids(tmp_path):
    empty = RgbCollection([], {"object_id": []})
    read = read_rgb_collection(io.BytesIO(to_bytes(empty)))
    assert len(read) == 0 and read.equals(empty)

    # PIL images and bytes ids (string columns of FITS tables are bytes).
    pil = Image.fromarray(np.arange(24, dtype=np.uint8).reshape(2, 4, 3))
    table = Table({"object_id": np.array([b"ab", b"c/d"]), "tag": np.array([b"x", b"y"])})
    collection = RgbCollection([pil, np.zeros((1, 1, 3), np.uint8)], table)
    assert list(collection.index["object_id"]) == ["ab", "c/d"]
    assert list(collection.index["file"]) == ["ab.png", "c_d.png"]
    read = read_rgb_collection(io.BytesIO(to_bytes(collection)))
    assert read.equals(collection)
    assert list(read.index["tag"]) == ["x", "y"]
    np.testing.assert_array_equal(read.images[0], np.asarray(pil))


# ---------------------------------------------------------------------------
# 3. Index-only and subset reads


def _forbid_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a PNG was decoded")

    monkeypatch.setattr(rgb_zip, "decode_png", refuse)
    monkeypatch.setattr(Image, "open", refuse)


def _count_decoding(monkeypatch):
    calls = []
    original = rgb_zip.decode_png

    def counting(data, *, name="PNG", **kwargs):
        calls.append(name.rsplit(":", 1)[-1])
        return original(data, name=name, **kwargs)

    monkeypatch.setattr(rgb_zip, "decode_png", counting)
    return calls


def test_index_only_read_decodes_no_png(tmp_path, monkeypatch, test_butler):
    original = make_odd_collection()
    path = write_file(tmp_path, to_bytes(original))
    test_butler.put(original, "test_rgb")

    _forbid_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded"):
        read_rgb_collection(path)  # The patch is effective.

    for index in (read_rgb_index(path), test_butler.get("test_rgb.index")):
        assert isinstance(index, Table)
        assert index.colnames == list(original.index.colnames) + ["wcs"]
        assert list(index["file"]) == ODD_NAMES
        assert list(index["object_id"]) == ODD_IDS
        expected = column_reprs(original.index)
        got = column_reprs(index)
        assert {k: got[k] for k in expected} == expected
        assert list(index["wcs"]) == [t or "" for t in wcs_texts(original)]
        assert WCS(fits.Header.fromstring(index["wcs"][0])).wcs.ctype[0] == "RA---TAN"
        assert index.meta["metadata_policy"] == "full"


def test_subset_read_decodes_only_requested(tmp_path, monkeypatch, test_butler):
    original = make_odd_collection()
    path = write_file(tmp_path, to_bytes(original))
    ref = test_butler.put(original, "test_rgb")
    calls = _count_decoding(monkeypatch)

    # 'a' shares its sanitised name with 'A' (first) and is stored as
    # a~2.png; 'dup' selects the first of the two.
    wanted = ["m31 core", "a", "É", "dup"]
    positions = [13, 7, 3, 4]
    for reader in (
        lambda: read_rgb_collection(path, object_ids=wanted),
        lambda: test_butler.get(ref, parameters={"object_ids": wanted}),
    ):
        calls.clear()
        subset = reader()
        assert calls == [ODD_NAMES[k] for k in positions]
        assert isinstance(subset, RgbCollection)
        assert list(subset.index["object_id"]) == wanted
        # The file column keeps the entry names of the ZIP.
        assert list(subset.index["file"]) == [ODD_NAMES[k] for k in positions]
        for got, k in zip(subset.images, positions):
            np.testing.assert_array_equal(got, original.images[k])
        assert wcs_texts(subset) == [wcs_texts(original)[k] for k in positions]
        expected_mag = column_reprs(original.index)["mag"]
        assert column_reprs(subset.index)["mag"] == [expected_mag[k] for k in positions]

    # A single id given as a string.
    calls.clear()
    single = read_rgb_collection(path, object_ids="a/b")
    assert calls == ["a_b.png"] and list(single.index["object_id"]) == ["a/b"]

    # A subset can be written and read back; it keeps its names.
    subset = read_rgb_collection(path, object_ids=wanted)
    again = read_rgb_collection(io.BytesIO(to_bytes(subset)))
    assert list(again.index["file"]) == list(subset.index["file"])
    assert again.equals(subset)

    with pytest.raises(RgbCollectionError, match="no images for object ids.*'nope'"):
        read_rgb_collection(path, object_ids=["a", "nope"])
    with pytest.raises(RgbCollectionError, match="'a'.*more than once"):
        read_rgb_collection(path, object_ids=["a", "A", "a"])


# ---------------------------------------------------------------------------
# 4. ZIP64


def test_zip64_more_than_65535_images(monkeypatch):
    n = 65536
    # PIL images (the other accepted input) are quicker to take in than
    # arrays; one shared black picture and three distinct ones.
    black = Image.new("RGB", (1, 1))
    special = {0: (1, 2, 3), 40000: (4, 5, 6), n - 1: (7, 8, 9)}
    images = [Image.new("RGB", (1, 1), special[k]) if k in special else black for k in range(n)]
    ids = [f"obj{k:05d}" for k in range(n)]
    # Anonymised PNGs of equal pixels are identical: encode each distinct
    # one once (the real encoder), so the test stays fast while every image
    # still goes through write_rgb_collection.
    encoder = rgb_module.encode_png_array
    cache, calls = {}, []

    def memo_encode_png_array(image, chunks, compress_level):
        calls.append(1)
        key = (image.tobytes(), image.shape, tuple(chunks), compress_level)
        if key not in cache:
            cache[key] = encoder(image, chunks, compress_level)
        return cache[key]

    monkeypatch.setattr(rgb_module, "encode_png_array", memo_encode_png_array)
    collection = RgbCollection(images, {"object_id": ids}, metadata_policy="anonymised")
    data = to_bytes(collection)
    assert len(calls) == n and len(cache) == 4

    # ZIP64 end of central directory record and locator; the classic end
    # record says "see ZIP64" (0xFFFF entries).
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    end = data.rindex(b"PK\x05\x06")
    disk_entries, total_entries = struct.unpack("<HH", data[end + 8 : end + 12])
    assert disk_entries == total_entries == 0xFFFF
    zip64_end = data.rindex(b"PK\x06\x06")
    (zip64_total,) = struct.unpack("<Q", data[zip64_end + 32 : zip64_end + 40])
    assert zip64_total == n + 1

    index = read_rgb_index(io.BytesIO(data), name="big.zip")
    assert len(index) == n
    assert list(index["object_id"][:3]) == ids[:3] and index["object_id"][-1] == ids[-1]
    assert list(index["file"]) == [f"{i}.png" for i in ids]

    wanted = ["obj65535", "obj00000", "obj40000", "obj12345"]
    subset = read_rgb_collection(io.BytesIO(data), object_ids=wanted, name="big.zip")
    assert list(subset.index["object_id"]) == wanted
    expected = [special[n - 1], special[0], special[40000], (0, 0, 0)]
    for got, rgb in zip(subset.images, expected):
        assert got.shape == (1, 1, 3)
        assert tuple(got[0, 0]) == rgb
    assert subset.metadata_policy == "anonymised"


# ---------------------------------------------------------------------------
# 5. WCS fidelity


def test_wcs_orientation_through_avm_and_text(tmp_path):
    from pyavm import AVM  # A dependency: fail, not skip, without it.

    height, width = 48, 64
    column, row = 20, 10  # Object's picture pixel (row 0 at the top).
    wcs = make_wcs(ra=150.0, dec=2.2, crpix=(30.0, 21.0), scale_arcsec=0.2)
    sky = wcs.pixel_to_world(column, height - 1 - row)
    ra, dec = sky.ra.deg, sky.dec.deg
    image = np.zeros((height, width, 3), np.uint8)
    image[row, column] = (255, 200, 100)
    collection = RgbCollection([image], {"object_id": ["target"], "ra": [ra], "dec": [dec]}, wcs=[wcs])
    data = to_bytes(collection, metadata_policy="full")
    png = zip_entries(data)["target.png"]
    path = write_file(tmp_path, png, "target.png")
    check_png_bytes(png, tmp_path, "target_check.png")

    # The picture itself: row 0 at the top.
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (height, width, 3)
    assert np.unravel_index(np.argmax(pixels[:, :, 0]), pixels.shape[:2]) == (row, column)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        avm = AVM.from_image(path)
        avm_wcs = avm.to_wcs()
    assert list(avm.Spatial.ReferenceDimension) == [width, height]
    text_wcs = WCS(fits.Header.fromstring(read_png_text(png)["WCS"]))

    def picture(w, ra, dec):
        x, y = w.world_to_pixel_values(ra, dec)
        return float(x), float(height - 1 - y)

    step = 2.0 / 3600.0  # 10 pixels
    for name, w in (("AVM", avm_wcs), ("WCS text", text_wcs)):
        got_column, got_row = picture(w, ra, dec)
        assert abs(got_column - column) < 0.5 and abs(got_row - row) < 0.5, (name, got_column, got_row)
        # North up: increasing Dec moves up the picture (smaller row).
        north_column, north_row = picture(w, ra, dec + step)
        assert north_row < got_row - 5 and abs(north_column - got_column) < 0.5, name
        # East left: increasing RA moves left (smaller column).
        east_column, east_row = picture(w, ra + step / np.cos(np.radians(dec)), dec)
        assert east_column < got_column - 5 and abs(east_row - got_row) < 0.5, name

    # The index keeps the same WCS, and reading gives it back.
    read = read_rgb_collection(io.BytesIO(data))
    assert picture(read.wcs[0], ra, dec) == pytest.approx((column, row), abs=1e-6)


# ---------------------------------------------------------------------------
# 6. Metadata policies

SECRET_ID = "zq9-Secret-Object"
SECRET_RA = 150.123456789
SECRET_DEC = -2.987654321
SECRET_SKYMAP = "secret_skymap_name"


def _secret_collection(metadata_policy="full"):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    index = {
        "object_id": [SECRET_ID],
        "ra": [SECRET_RA],
        "dec": [SECRET_DEC],
        "skymap": [SECRET_SKYMAP],
        "tract": [9813],
        "patch": [42],
        "bands": ["gri"],
        "coverage": [0.75],
        "stretch": ["lupton(Q=8)"],
    }
    wcs = make_wcs(ra=SECRET_RA, dec=SECRET_DEC, crpix=(16.5, 12.5))
    return RgbCollection([image], index, wcs=[wcs], metadata_policy=metadata_policy)


def test_full_policy_png_metadata():
    data = to_bytes(_secret_collection())
    png = zip_entries(data)[f"{SECRET_ID}.png"]
    text = read_png_text(png)
    assert set(text) == {
        "object_id",
        "ra",
        "dec",
        "skymap",
        "tract",
        "patch",
        "bands",
        "coverage",
        "stretch",
        "Software",
        "WCS",
        XMP_KEYWORD,
    }
    assert text["object_id"] == SECRET_ID
    assert float(text["ra"]) == SECRET_RA and float(text["dec"]) == SECRET_DEC
    assert text["bands"] == "gri" and text["stretch"] == "lupton(Q=8)"
    assert text["tract"] == "9813" and text["patch"] == "42" and text["skymap"] == SECRET_SKYMAP
    assert __version__ in text["Software"] and "lsst.epo.zooniverse" in text["Software"]
    header_wcs = WCS(fits.Header.fromstring(text["WCS"]))
    np.testing.assert_allclose(header_wcs.wcs.crval, [SECRET_RA, SECRET_DEC])
    # The XMP packet is an iTXt chunk, with AVM spatial tags.
    chunks = png_chunks(png)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    prefix = XMP_KEYWORD.encode() + b"\0"
    xmp = [payload for kind, payload in chunks if kind == b"iTXt" and payload.startswith(prefix)]
    assert len(xmp) == 1
    assert b"Spatial.ReferenceValue" in xmp[0] and b"avm:" in xmp[0]


def _assert_anonymised(data):
    entries = zip_entries(data)
    png = entries[f"{SECRET_ID}.png"]
    text = read_png_text(png)
    assert set(text) == {"bands", "stretch", "Software"}
    assert text["bands"] == "gri" and __version__ in text["Software"]
    assert not any(kind == b"iTXt" for kind, _ in png_chunks(png))
    for secret in (
        SECRET_ID,
        repr(SECRET_RA),
        repr(SECRET_DEC),
        f"{SECRET_RA:.4f}",
        f"{SECRET_DEC:.4f}",
        SECRET_SKYMAP,
        "9813",
        "XML:com.adobe.xmp",
        "RA---TAN",
        "CRVAL",
    ):
        assert secret.encode() not in png, secret
    assert b"tEXtWCS\0" not in png and b"tEXtobject_id" not in png
    # The index keeps everything (the ZIP is never published).
    index = read_rgb_index(io.BytesIO(data))
    assert list(index["object_id"]) == [SECRET_ID]
    assert index["ra"][0] == SECRET_RA and index["dec"][0] == SECRET_DEC
    assert index["skymap"][0] == SECRET_SKYMAP and index["tract"][0] == 9813
    assert "RA---TAN" in index["wcs"][0]
    assert index.meta["metadata_policy"] == "anonymised"
    read = read_rgb_collection(io.BytesIO(data))
    assert read.metadata_policy == "anonymised"
    assert read.equals(_secret_collection())  # WCS comes back from the index.
    return png


def test_anonymised_policy():
    # As a write option.
    by_write = to_bytes(_secret_collection(), metadata_policy="anonymised")
    png = _assert_anonymised(by_write)
    # As the collection's own policy; asking for 'full' cannot undo it.
    own = _secret_collection(metadata_policy="anonymised")
    for policy in (None, "full", "anonymised", "ANONYMIZED"):
        data = to_bytes(own, metadata_policy=policy)
        assert _assert_anonymised(data) == png
        assert data == by_write
    assert own.png_text(0, metadata_policy="full") == read_png_text(png)
    # And the policy survives a read and a re-write.
    assert to_bytes(read_rgb_collection(io.BytesIO(by_write)), metadata_policy="full") == by_write

    with pytest.raises(ValueError, match="Unknown metadata policy"):
        to_bytes(_secret_collection(), metadata_policy="public")


# ---------------------------------------------------------------------------
# 7. Hostile archives


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _declared_size_png(width, height):
    """A structurally valid PNG (correct CRCs) that declares a size its
    data does not hold.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _valid_entries():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8) for _ in range(2)]
    return zip_entries(to_bytes(RgbCollection(images, {"object_id": ["a", "b"]})))


def _build_zip(entries, comment=None):
    """A ZIP of ``[(name or ZipInfo, bytes)]`` (duplicates allowed)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Duplicate names.
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in entries:
                archive.writestr(name, data)
            if comment is not None:
                archive.comment = comment
    return buffer.getvalue()


def _symlink(name):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _hostile(case):
    """Return ``(zip bytes, read kwargs, regex, fails at index read)``."""
    base = _valid_entries()
    good = list(base.items())
    a_png = base["a.png"]
    replaced = {
        "not_png": b"GIF89a this is no PNG at all",
        "truncated": a_png[: len(a_png) // 2],
        "huge": _declared_size_png(2000, 2000),
        "bomb": _declared_size_png(100_000, 100_000),
        "grey": encode_png(np.zeros((4, 5), np.uint8)),
    }
    if case in replaced:
        entries = [(n, replaced[case] if n == "a.png" else d) for n, d in good]
        kwargs = {"max_pixels": 1_000_000} if case == "huge" else {}
        regex = {
            "not_png": r"a\.png.*not a PNG",
            "truncated": r"a\.png.*truncated",
            "huge": r"a\.png.*2000x2000.*decompression bomb",
            "bomb": r"a\.png.*100000x100000.*decompression bomb",
            "grey": r"a\.png.*mode 'L'",
        }[case]
        return _build_zip(entries), kwargs, regex, False
    if case == "zip_crc":
        data = bytearray(_build_zip(good))
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            info = archive.getinfo("a.png")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        data[start + 20] ^= 0xFF  # Inside IHDR: the ZIP CRC no longer matches.
        return bytes(data), {}, r"a\.png.*(CRC|cannot read)", False
    extra = {
        "dotdot": ("../evil.png", r"unsafe entry name '\.\./evil\.png'"),
        "absolute": ("/abs.png", r"unsafe entry name '/abs\.png'"),
        "drive": ("C:x.png", r"unsafe entry name 'C:x\.png'"),
        "backslash": ("..\\evil.png", r"unsafe entry name '\.\.\\\\evil\.png'"),
        "directory": ("sub/", r"directory entry 'sub/'"),
        "nested": ("sub/c.png", r"directory entry 'sub/c\.png'"),
        "symlink": (_symlink("link.png"), r"'link\.png' is a symbolic link"),
        "duplicate": ("a.png", r"duplicate entry name 'a\.png'"),
        "case_duplicate": ("A.png", r"duplicate entry name 'A\.png'"),
        "other_file": ("notes.txt", r"'notes\.txt' is neither index\.csv nor a \.png"),
        "unlisted": ("c.png", r"unlisted: \['c\.png'\]"),
    }
    if case in extra:
        name, regex = extra[case]
        return _build_zip([*good, (name, a_png)]), {}, regex, True
    if case == "no_index":
        return _build_zip([(n, d) for n, d in good if n != INDEX_NAME]), {}, r"no index\.csv", True
    if case == "missing_file":
        return _build_zip([(n, d) for n, d in good if n != "b.png"]), {}, r"missing: \['b\.png'\]", True
    if case == "bad_index_header":
        entries = [(n, b"name,id\r\na.png,a\r\n" if n == INDEX_NAME else d) for n, d in good]
        return _build_zip(entries), {}, r"index\.csv does not start with the expected header", True
    if case == "bad_index_value":
        text = base[INDEX_NAME].decode().replace(",-1,", ",minus one,", 1).encode()
        entries = [(n, text if n == INDEX_NAME else d) for n, d in good]
        return _build_zip(entries), {}, r"column 'tract' is not int", True
    if case == "bad_comment":
        comment = json.dumps({"columns": {"x": "pickle"}}).encode()
        return _build_zip(good, comment=comment), {}, r"invalid column types", True
    if case == "bad_policy":
        comment = json.dumps({"metadata_policy": "public"}).encode()
        return _build_zip(good, comment=comment), {}, r"Unknown metadata policy 'public'", True
    if case == "not_zip":
        return b"this is not a zip file, just text" * 10, {}, r"not a ZIP file", True
    if case == "empty_file":
        return b"", {}, r"not a ZIP file", True
    raise AssertionError(case)


HOSTILE_CASES = [
    "dotdot",
    "absolute",
    "drive",
    "backslash",
    "directory",
    "nested",
    "symlink",
    "duplicate",
    "case_duplicate",
    "other_file",
    "unlisted",
    "no_index",
    "missing_file",
    "bad_index_header",
    "bad_index_value",
    "bad_comment",
    "bad_policy",
    "not_zip",
    "empty_file",
    "not_png",
    "truncated",
    "huge",
    "bomb",
    "grey",
    "zip_crc",
]


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_hostile_archive(case, tmp_path):
    data, kwargs, regex, index_fails = _hostile(case)
    path = write_file(tmp_path, data, "hostile.zip")
    with pytest.raises(RgbCollectionError, match=regex) as info:
        read_rgb_collection(path, **kwargs)
    assert "hostile.zip" in str(info.value)
    if index_fails:
        with pytest.raises(RgbCollectionError, match=regex):
            read_rgb_index(path)
    else:
        # Index-only reads do not look inside the PNGs.
        assert list(read_rgb_index(path)["file"]) == ["a.png", "b.png"]
        # The other image is still readable on its own.
        assert len(read_rgb_collection(path, object_ids=["b"])) == 1


def test_bomb_is_refused_without_explicit_limit(tmp_path):
    # 8000 x 8000 is within Pillow's own limit but above the default one.
    bomb = _declared_size_png(8000, 8000)
    entries = [(n, bomb if n == "a.png" else d) for n, d in _valid_entries().items()]
    path = write_file(tmp_path, _build_zip(entries), "bomb.zip")
    with pytest.raises(RgbCollectionError, match=r"bomb\.zip:a\.png.*8000x8000.*decompression bomb"):
        read_rgb_collection(path)


# ---------------------------------------------------------------------------
# 8. Butler and constructor checks


def test_butler_round_trip_in_fresh_process(tmp_path, test_butler):
    original = make_odd_collection()
    ref = test_butler.put(original, "test_rgb")
    uri = test_butler.getURI(ref)
    assert uri.getExtension() == ".zip"
    assert uri.read() == to_bytes(make_odd_collection())
    root = str(tmp_path / "repo")

    code = f"""
        import hashlib, json, sys
        import numpy as np
        sys.path.insert(0, {TESTS_DIR!r})
        from lsst.daf.butler import Butler
        from test_rgb_collection import (
            column_reprs, make_odd_collection, pixel_digests, to_bytes, wcs_texts,
        )

        butler = Butler.from_config({root!r}, collections="test_run")
        full = butler.get("test_rgb")
        index = butler.get("test_rgb.index")
        subset = butler.get("test_rgb", parameters={{"object_ids": ["a", "b/2"]}})
        print(json.dumps({{
            "type": type(full).__name__,
            "policy": full.metadata_policy,
            "pixels": pixel_digests(full),
            "index": column_reprs(full.index),
            "wcs": wcs_texts(full),
            "index_component": column_reprs(index),
            "subset_ids": [str(i) for i in subset.index["object_id"]],
            "subset_files": [str(f) for f in subset.index["file"]],
            "subset_pixels": pixel_digests(subset),
            "equals_rebuilt": full.equals(make_odd_collection()),
            "zip_sha256": hashlib.sha256(to_bytes(make_odd_collection())).hexdigest(),
        }}))
    """
    result = json.loads(run_in_fresh_process(code).strip().splitlines()[-1])
    assert result["type"] == "RgbCollection"
    assert result["policy"] == "full"
    assert result["pixels"] == pixel_digests(original)
    assert result["index"] == column_reprs(original.index)
    assert result["wcs"] == wcs_texts(original)
    expected_index = column_reprs(original.index)
    expected_index["wcs"] = [repr(t or "") for t in wcs_texts(original)]
    assert result["index_component"] == expected_index
    assert result["subset_ids"] == ["a", "b/2"]
    assert result["subset_files"] == ["a~2.png", "b_2.png"]
    assert result["subset_pixels"] == [pixel_digests(original)[7], pixel_digests(original)[0]]
    assert result["equals_rebuilt"]
    # Deterministic across processes too.
    assert result["zip_sha256"] == hashlib.sha256(to_bytes(original)).hexdigest()


def test_bad_put_leaves_nothing(tmp_path, test_butler):
    root = str(tmp_path / "repo")
    before = repository_files(root)
    image = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(TypeError):
        test_butler.put([image], "test_rgb")
    with pytest.raises(TypeError):
        test_butler.put({"object_id": ["x"]}, "test_rgb")
    # Invalid collections fail before any put.
    with pytest.raises(TypeError, match="uint8"):
        RgbCollection([image.astype(np.float32)], {"object_id": ["x"]})
    with pytest.raises(TypeError, match="astropy.wcs.WCS"):
        RgbCollection([image], {"object_id": ["x"]}, wcs=["not a wcs"])
    assert test_butler.query_datasets("test_rgb", collections="test_run", explain=False) == []
    assert repository_files(root) == before
    # The repository is still usable.
    ref = test_butler.put(RgbCollection([image], {"object_id": ["x"]}), "test_rgb")
    assert test_butler.get(ref).equals(RgbCollection([image], {"object_id": ["x"]}))


@pytest.mark.parametrize(
    "kwargs, error, regex",
    [
        ({"index": {"id": ["x"]}}, ValueError, "needs an 'object_id' column"),
        ({"index": {"object_id": ["x", "y"]}}, ValueError, "2 rows for 1 images"),
        ({"images": [np.zeros((2, 3), np.uint8)]}, ValueError, "3 channels"),
        ({"images": [np.zeros((2, 3, 4), np.uint8)]}, ValueError, "3 channels"),
        ({"images": [np.zeros((2, 3, 3), np.float64)]}, TypeError, "dtype uint8"),
        ({"images": [np.zeros((2, 3, 3), np.uint16)]}, TypeError, "dtype uint8"),
        ({"images": [np.zeros((0, 3, 3), np.uint8)]}, ValueError, "empty"),
        ({"images": [Image.new("CMYK", (2, 2))]}, ValueError, "mode 'CMYK'"),
        ({"images": [[[1, 2, 3]]]}, TypeError, "numpy array or a PIL image"),
        ({"metadata_policy": "public"}, ValueError, "Unknown metadata policy"),
        ({"wcs": [None, None]}, ValueError, "2 WCS for 1 images"),
        ({"wcs": [WCS(naxis=2)]}, ValueError, "2-axis celestial"),
        ({"wcs": [WCS(naxis=3)]}, ValueError, "2-axis celestial"),
        ({"index": {"object_id": ["x"], "tract": ["nine"]}}, TypeError, "'tract'"),
        ({"index": {"object_id": ["x"], "extra": np.array([1j])}}, TypeError, "'extra'"),
    ],
)
def test_constructor_errors(kwargs, error, regex):
    arguments = {"images": [np.zeros((2, 3, 3), np.uint8)], "index": {"object_id": ["x"]}}
    arguments.update(kwargs)
    images = arguments.pop("images")
    index = arguments.pop("index")
    with pytest.raises(error, match=regex):
        RgbCollection(images, index, **arguments)


# ---------------------------------------------------------------------------
# 9. WCS metadata made from per-family templates


def _family_wcs():
    """WCS families of different kinds: the composeRgb kind (CD, ICRS),
    PC + CDELT with a date and FK5, galactic SIN with CROTA, and SIP (not
    templated: astropy every time).
    """
    tan = make_wcs(ra=150.0, dec=2.2, crpix=(1.0, 1.0), scale_arcsec=0.2)
    pc = WCS(naxis=2)
    pc.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    pc.wcs.crval = [359.9, -89.0]
    pc.wcs.pc = [[0.7, 0.2], [-0.1, 0.9]]
    pc.wcs.cdelt = [-2e-4, 3e-4]
    pc.wcs.dateobs = "2024-01-01T00:00:00"
    pc.wcs.radesys = "FK5"
    pc.wcs.equinox = 2000.0
    gal = galactic_sin_wcs()
    sip = tan_sip_wcs()
    return {"tan": tan, "pc": pc, "gal": gal, "sip": sip}


def test_wcs_metadata_templates_match_astropy_and_the_reference():
    from lsst.epo.zooniverse.formats import wcs_metadata

    rng = np.random.default_rng(9)
    crpix_values = [0.5, 1.0, -3.0, 1e-7, 12345.678901234567, -9.87654321e8, 1e15, 2.0 / 3.0]
    for name, base in _family_wcs().items():
        for k in range(40):
            wcs = base.deepcopy()
            crpix = [crpix_values[k % len(crpix_values)], float(rng.normal() * 10.0 ** rng.integers(-3, 9))]
            wcs.wcs.crpix = crpix
            if wcs.sip is not None:
                wcs.sip = astropy_wcs.Sip(base.sip.a, base.sip.b, None, None, crpix)
            shape = (256, 256) if k % 2 else (int(rng.integers(1, 500)), int(rng.integers(1, 500)))
            text = wcs_metadata.wcs_to_header_string(wcs)
            assert text == wcs_metadata._wcs_to_header_string_astropy(wcs), (name, k)
            xmp = wcs_metadata.wcs_to_xmp(wcs, shape)
            assert xmp == wcs_metadata._wcs_to_xmp_reference(wcs, shape), (name, k)
            back = wcs_metadata.wcs_from_header_string(text)
            assert list(back.wcs.crpix) == crpix
    # The template path was taken: one text family per kind but SIP.
    families = wcs_metadata._TEXT_TEMPLATES._families
    assert sum(family is not None for family in families.values()) >= 3


def test_templated_xmp_reads_back_with_pyavm(tmp_path):
    from pyavm import AVM

    base = make_wcs(ra=150.0, dec=2.2, crpix=(1.0, 1.0), scale_arcsec=0.2)
    images, wcs_list = [], []
    for k in range(3):
        wcs = base.deepcopy()
        wcs.wcs.crpix = [10.0 + 7.25 * k, 20.0 - 3.5 * k]
        wcs_list.append(wcs)
        images.append(np.full((48, 64, 3), 40 * k, np.uint8))
    collection = RgbCollection(images, {"object_id": ["p", "q", "r"]}, wcs=wcs_list)
    entries = zip_entries(to_bytes(collection))
    for name, wcs in zip(("p.png", "q.png", "r.png"), wcs_list):
        path = write_file(tmp_path, entries[name], name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            avm_wcs = AVM.from_image(path).to_wcs()
        np.testing.assert_allclose(avm_wcs.wcs.crpix, wcs.wcs.crpix)
        np.testing.assert_allclose(avm_wcs.wcs.crval, wcs.wcs.crval)
        np.testing.assert_allclose(avm_wcs.pixel_scale_matrix, wcs.pixel_scale_matrix, rtol=1e-12)
        text_wcs = WCS(fits.Header.fromstring(read_png_text(entries[name])["WCS"]))
        assert list(text_wcs.wcs.crpix) == list(wcs.wcs.crpix)


# ---------------------------------------------------------------------------
# 10. Band frames (multi-frame subjects)

FRAME_IDS = ["obj1", "obj1+g", "OBJ1+R", "plain", "z" * 150]
"""Ids whose entry names collide with the natural frame names of obj1."""

FRAME_NAMES = [
    {"g": "obj1+g~2.png", "r": "obj1+r~2.png", "i": "obj1+i.png"},
    None,
    None,
    {"J": "plain+J.png"},
    {"g": "z" * 98 + "+g.png", "i": "z" * 98 + "+i.png"},
]
"""The frame entry names of `make_frames_collection`: ``obj1+g`` is a
picture, ``obj1+r`` collides with ``OBJ1+R.png`` ignoring case, the long
stem is shortened to keep within 100 characters.
"""


def make_frames_collection(metadata_policy="full"):
    """A collection where some pictures have band frames (one of them
    without WCS), deterministically.
    """
    rng = np.random.default_rng(99)
    shapes = [(6, 8), (3, 4), (5, 5), (4, 7), (2, 3)]
    images = [rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8) for shape in shapes]
    frames = []
    for shape, names in zip(shapes, FRAME_NAMES):
        if names is None:
            frames.append(None)
        else:
            frames.append({band: rng.integers(0, 256, size=shape, dtype=np.uint8) for band in names})
    n = len(FRAME_IDS)
    index = {
        "object_id": FRAME_IDS,
        "ra": [150.0 + k / 7 for k in range(n)],
        "dec": [-30.0 + k / 11 for k in range(n)],
        "bands": ["g,i,r"] * n,
        "stretch": ["lupton(Q=8)"] * n,
        "mag": [20.0 + k for k in range(n)],
    }
    wcs = [make_wcs(ra=150.0 + k / 7, dec=-30.0 + k / 11) if k != 3 else None for k in range(n)]
    return RgbCollection(images, index, wcs=wcs, metadata_policy=metadata_policy, frames=frames)


def _expected_frames_cells():
    return [" ".join(f"{b}={e}" for b, e in names.items()) if names else "" for names in FRAME_NAMES]


def test_frames_names_index_and_png_layout(tmp_path):
    from lsst.epo.zooniverse.export.validation import ENTRY_NAME_PATTERN

    collection = make_frames_collection()
    assert collection.frame_files == FRAME_NAMES
    assert list(collection.index["file"]) == [
        "obj1.png",
        "obj1+g.png",
        "OBJ1+R.png",
        "plain.png",
        "z" * 100 + ".png",
    ]
    assert "frames" not in collection.index.colnames
    data = to_bytes(collection)
    # Deterministic, and one changed frame pixel changes the bytes.
    assert data == to_bytes(make_frames_collection())
    frames = [None if f is None else {b: a.copy() for b, a in f.items()} for f in collection.frames]
    frames[0]["r"][0, 0] ^= 1
    index = collection.index.copy()
    index.remove_column("file")
    changed = RgbCollection(collection.images, index, wcs=collection.wcs, frames=frames)
    assert to_bytes(changed) != data and not changed.equals(collection)

    entries = zip_entries(data)
    frame_entries = [e for names in FRAME_NAMES if names for e in names.values()]
    names = list(entries)
    assert names[0] == INDEX_NAME
    assert names[1:] == sorted(list(collection.index["file"]) + frame_entries)
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert ENTRY_NAME_PATTERN.fullmatch(name), name
        assert len(name) - len(".png") <= 100 or name == INDEX_NAME
    # index.csv: the frames column just before wcs, exact text.
    rows = list(csv_rows(entries[INDEX_NAME]))
    assert rows[0][-2:] == ["frames", "wcs"]
    assert rows[0][:-2] == ["file", *STANDARD_COLUMNS, "mag"]
    assert [row[-2] for row in rows[1:]] == _expected_frames_cells()
    assert rows[1][-2] == "g=obj1+g~2.png r=obj1+r~2.png i=obj1+i.png"
    index = read_rgb_index(io.BytesIO(data))
    assert index.colnames[-2:] == ["frames", "wcs"]
    assert list(index["frames"]) == _expected_frames_cells()

    # Frame PNGs: 8-bit grey (colour type 0), pngcheck-clean, the picture's
    # size, text chunks of the picture plus 'band' after 'bands', same XMP.
    for k, picture_names in enumerate(FRAME_NAMES):
        if picture_names is None:
            continue
        picture_png = entries[str(collection.index["file"][k])]
        picture_text = read_png_text(picture_png)
        for band, entry in picture_names.items():
            png = entries[entry]
            check_png_bytes(png, tmp_path, name=f"frame{k}{band}.png")
            chunks = png_chunks(png)
            assert chunks[0][0] == b"IHDR"
            width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
            assert (height, width) == collection.images[k].shape[:2]
            assert (depth, colour_type) == (8, 0)
            decoded = np.asarray(Image.open(io.BytesIO(png)))
            np.testing.assert_array_equal(decoded, collection.frames[k][band])
            text = read_png_text(png)
            keys = list(picture_text)
            keys.insert(keys.index("bands") + 1, "band")
            assert list(text) == keys
            assert text["band"] == band
            assert {key: v for key, v in text.items() if key != "band"} == picture_text
            assert {key: v for key, v in text.items() if key != XMP_KEYWORD} == collection.png_text(
                k, band=band
            )
            assert collection.encode_frame(k, band, compress_level=DEFAULT_COMPRESS_LEVEL) == png
            assert ("WCS" in text) == (collection.wcs[k] is not None)
            itxt = [p for kind, p in chunks if kind == b"iTXt"]
            assert itxt == [p for kind, p in png_chunks(picture_png) if kind == b"iTXt"]
    with pytest.raises(KeyError, match="no 'q' frame"):
        collection.encode_frame(0, "q")
    with pytest.raises(KeyError):
        collection.png_text(1, band="g")


def csv_rows(data):
    import csv

    return csv.reader(io.StringIO(data.decode("utf-8"), newline=""))


def test_frames_round_trip_subset_and_policy(tmp_path, test_butler):
    original = make_frames_collection()
    data = to_bytes(original)
    read = read_rgb_collection(io.BytesIO(data))
    assert read.equals(original) and original.equals(read)
    assert read.frame_files == FRAME_NAMES
    assert [None if f is None else list(f) for f in read.frames] == [
        None if n is None else list(n) for n in FRAME_NAMES
    ]
    for got, expected in zip(read.frames, original.frames):
        if expected is not None:
            for band in expected:
                assert got[band].dtype == np.uint8
                np.testing.assert_array_equal(got[band], expected[band])
    assert to_bytes(read) == data
    # A subset keeps the entry names of the ZIP, also for frames.
    subset = read_rgb_collection(io.BytesIO(data), object_ids=["plain", "obj1"])
    assert subset.frame_files == [FRAME_NAMES[3], FRAME_NAMES[0]]
    np.testing.assert_array_equal(subset.frames[1]["r"], original.frames[0]["r"])
    again = read_rgb_collection(io.BytesIO(to_bytes(subset)))
    assert again.equals(subset) and again.frame_files == subset.frame_files
    # A subset without frames has none, and writes a ZIP without a frames
    # column.
    plain = read_rgb_collection(io.BytesIO(data), object_ids=["obj1+g"])
    assert plain.frames is None and plain.frame_files is None
    assert "frames" not in read_rgb_index(io.BytesIO(to_bytes(plain))).colnames

    # Anonymised: frames carry only what the policy allows, plus the band.
    anonymised = to_bytes(original, metadata_policy="anonymised")
    entries = zip_entries(anonymised)
    for entry in ("obj1+g~2.png", "plain+J.png"):
        png = entries[entry]
        assert list(read_png_text(png)) == ["bands", "band", "stretch", "Software"]
        assert not any(kind == b"iTXt" for kind, _ in png_chunks(png))
        assert b"obj1" not in png.replace(b"obj1+g~2", b"") and b"RA---TAN" not in png
    assert read_rgb_collection(io.BytesIO(anonymised)).metadata_policy == "anonymised"
    assert to_bytes(make_frames_collection("anonymised")) == anonymised

    # Through the Butler formatter, with and without parameters.
    ref = test_butler.put(original, "test_rgb")
    assert test_butler.getURI(ref).read() == data
    assert test_butler.get(ref).equals(original)
    index = test_butler.get(ref.makeComponentRef("index"))
    assert list(index["frames"]) == _expected_frames_cells()
    got = test_butler.get(ref, parameters={"object_ids": ["z" * 150]})
    assert got.frame_files == [FRAME_NAMES[4]]


def test_no_frames_keeps_todays_layout():
    base = to_bytes(make_odd_collection())
    n = len(ODD_IDS)
    collection = make_odd_collection()
    index = collection.index.copy()
    index.remove_column("file")
    for frames in (None, [None] * n, [{}] * n):
        other = RgbCollection(collection.images, index, wcs=collection.wcs, frames=frames)
        assert other.frames is None and other.frame_files is None
        assert to_bytes(other) == base
        assert other.equals(collection)
    entries = zip_entries(base)
    assert not any("+" in name for name in entries)
    assert next(csv_rows(entries[INDEX_NAME]))[-2:] == ["note", "wcs"]
    assert "frames" not in read_rgb_index(io.BytesIO(base)).colnames
    assert read_rgb_collection(io.BytesIO(base)).frames is None
    # A caller's 'frames' column is derived, like 'file' and 'wcs', never
    # taken.
    index["frames"] = ["x"] * n
    assert to_bytes(RgbCollection(collection.images, index, wcs=collection.wcs)) == base


def test_frame_entry_names_suffix_keeps_length():
    from lsst.epo.zooniverse.formats.rgb_collection import frame_entry_names

    stem = "y" * 100
    files = [f"{stem}.png", f"{stem[:83]}+abcdefghijklmnop.png"]
    names = frame_entry_names(files, [["abcdefghijklmnop", "G", "g"], None])
    assert names[1] is None
    assert names[0] == {
        "abcdefghijklmnop": f"{stem[:81]}+abcdefghijklmnop~2.png",
        "G": f"{stem[:98]}+G.png",
        "g": f"{stem[:96]}+g~2.png",
    }
    for name in names[0].values():
        assert len(name) - len(".png") <= 100


_GOOD_FRAME = {"g": np.zeros((2, 3), np.uint8)}


@pytest.mark.parametrize(
    "frames, error, regex",
    [
        ({"g": np.zeros((2, 3), np.uint8)}, TypeError, "frames must be None or a list"),
        ([_GOOD_FRAME, _GOOD_FRAME], ValueError, "2 frame entries for 1 images"),
        ([[np.zeros((2, 3), np.uint8)]], TypeError, r"frames\[0\] must be None or a dict"),
        (
            [{"g": np.zeros((3, 2), np.uint8)}],
            ValueError,
            r"frames\[0\]\['g'\] has shape \(3, 2\); expected \(2, 3\)",
        ),
        ([{"g": np.zeros((2, 3, 3), np.uint8)}], ValueError, r"has shape \(2, 3, 3\)"),
        ([{"g": np.zeros((2, 3), np.float32)}], TypeError, r"frames\[0\]\['g'\] must have dtype uint8"),
        ([{"g": np.zeros((2, 3), np.uint16)}], TypeError, "dtype uint8, not uint16"),
        ([{"g": [[0, 0, 0], [0, 0, 0]]}], TypeError, "must be a 2-D uint8 numpy array, not list"),
        ([{"g/r": np.zeros((2, 3), np.uint8)}], ValueError, r"band name 'g/r' is not 1-16 characters"),
        ([{"": np.zeros((2, 3), np.uint8)}], ValueError, "band name '' is not"),
        ([{"a" * 17: np.zeros((2, 3), np.uint8)}], ValueError, "is not 1-16 characters"),
        ([{"g.png": np.zeros((2, 3), np.uint8)}], ValueError, "band name 'g.png'"),
        ([{3: np.zeros((2, 3), np.uint8)}], ValueError, "band name 3 is not"),
    ],
)
def test_bad_frames_are_refused(frames, error, regex):
    with pytest.raises(error, match=regex):
        RgbCollection([np.zeros((2, 3, 3), np.uint8)], {"object_id": ["x"]}, frames=frames)


def _frames_zip(change):
    """The ZIP of a one-picture collection with a g frame, with its index
    or entries changed by ``change(index_text, entries) -> (index_text,
    entries)``.
    """
    image = np.zeros((4, 5, 3), np.uint8)
    collection = RgbCollection(
        [image, image], {"object_id": ["a", "b"]}, frames=[{"g": np.full((4, 5), 7, np.uint8)}, None]
    )
    entries = zip_entries(to_bytes(collection))
    text, entries = change(entries.pop(INDEX_NAME).decode(), entries)
    return _build_zip([(INDEX_NAME, text.encode()), *entries.items()])


def _replace_index(old, new):
    def change(text, entries):
        assert old in text
        return text.replace(old, new), entries

    return change


def _replace_entry(name, data):
    def change(text, entries):
        entries[name] = data
        return text, entries

    return change


@pytest.mark.parametrize(
    "change, regex",
    [
        (_replace_index("g=a+g.png", "g:a+g.png"), r"frames of 'a\.png' has 'g:a\+g\.png'"),
        (_replace_index("g=a+g.png", "g=a+g.png g=a+g.png"), r"names band 'g' twice"),
        (_replace_index("g=a+g.png", "g=a+g.png r=b.png"), r"names 'b\.png', which is a picture"),
        (_replace_index("g=a+g.png", "g=a+g.png r=c.png"), r"missing: \['c\.png'\]"),
        (_replace_index("g=a+g.png", "g/x=a+g.png"), r"has 'g/x=a\+g\.png'"),
        (_replace_index("g=a+g.png", ""), r"unlisted: \['a\+g\.png'\]"),
        (
            _replace_entry("a+g.png", encode_png(np.zeros((4, 5, 3), np.uint8))),
            r"a\+g\.png.*mode 'RGB', not L",
        ),
        (_replace_entry("a+g.png", encode_png(np.zeros((3, 5), np.uint8))), r"'g'.*shape \(3, 5\)"),
        (_replace_entry("a+g.png", b"not a png"), r"a\+g\.png.*not a PNG"),
    ],
)
def test_bad_frames_in_zip_are_refused(change, regex, tmp_path):
    path = write_file(tmp_path, _frames_zip(change), "frames.zip")
    with pytest.raises(RgbCollectionError, match=regex):
        read_rgb_collection(path)
