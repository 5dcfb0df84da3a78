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

"""Tests that the RGB collection writer, which formats index values once
per column, makes PNG text chunks once per distinct value and writes the
ZIP records itself, gives the bytes of the straightforward writer: index
rows through `csv`, PNG text per picture through `encode_png`'s chunks,
filtered rows deflated in one piece, entries through `zipfile`.
"""

import csv
import io
import json
import random
import zipfile
import zlib

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS

import lsst.epo.zooniverse.formats.rgb_zip as rgb_zip
from lsst.epo.zooniverse.formats.png import XMP_KEYWORD, encode_png
from lsst.epo.zooniverse.formats.png_chunks import PNG_SIGNATURE, chunk, itxt_chunk, text_chunk
from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection, write_rgb_collection
from lsst.epo.zooniverse.formats.rgb_index import (
    FRAMES_COLUMN,
    INDEX_NAME,
    column_kind,
    csv_fields,
    format_column,
    format_value,
    stricter_policy,
)
from lsst.epo.zooniverse.formats.rgb_zip import write_stored_zip, zip_info
from lsst.epo.zooniverse.formats.wcs_metadata import wcs_to_header_string, wcs_to_xmp


def reference_png(pixels, text, xmp, level):
    """The PNG file, chunk by chunk: text, XMP, rows with filter byte 0
    deflated in one call (run-length matches at levels 1-3), one IDAT.
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour = {1: 0, 3: 2}[channels]
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour, 0, 0, 0])
    rows = np.hstack([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)]).tobytes()
    if 1 <= level <= 3:
        deflater = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
        data = deflater.compress(rows) + deflater.flush()
    else:
        data = zlib.compress(rows, level)
    parts = [PNG_SIGNATURE, chunk(b"IHDR", ihdr)]
    parts += [text_chunk(key, value) for key, value in text.items()]
    if xmp is not None:
        parts.append(itxt_chunk(XMP_KEYWORD.encode("latin-1"), xmp.decode("utf-8")))
    parts += [chunk(b"IDAT", data), chunk(b"IEND", b"")]
    return b"".join(parts)


def reference_write(collection, target, metadata_policy=None, compress_level=1):
    """Write a collection the straightforward way (row by row, `csv`,
    `zipfile`).
    """
    policy = stricter_policy(collection.metadata_policy, metadata_policy)
    table = collection.index
    description = {
        "format": "lsst.epo.zooniverse.rgb",
        "version": 1,
        "metadata_policy": policy,
        "columns": {name: column_kind(table[name]) for name in table.colnames},
    }
    wcs_texts = [None if wcs is None else wcs_to_header_string(wcs) for wcs in collection.wcs]
    frame_files = collection.frame_files
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.colnames + ([] if frame_files is None else [FRAMES_COLUMN]) + ["wcs"])
    for k, row in enumerate(table):
        cells = [format_value(row[name]) for name in table.colnames]
        if frame_files is not None:
            cells.append(" ".join(f"{band}={entry}" for band, entry in (frame_files[k] or {}).items()))
        writer.writerow(cells + [wcs_texts[k] or ""])
    jobs = [(str(name), k, None) for k, name in enumerate(table["file"])]
    for k, names in enumerate(frame_files or []):
        jobs += [(entry, k, band) for band, entry in (names or {}).items()]
    jobs.sort()
    frames = collection.frames
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.comment = json.dumps(description, sort_keys=True).encode()
        archive.writestr(zip_info(INDEX_NAME), buffer.getvalue().encode("utf-8"))
        for entry, k, band in jobs:
            xmp = None
            if policy == "full" and collection.wcs[k] is not None:
                xmp = wcs_to_xmp(collection.wcs[k], collection.images[k].shape[:2])
            text = collection.png_text(k, metadata_policy=policy, band=band)
            pixels = collection.images[k] if band is None else frames[k][band]
            archive.writestr(zip_info(entry), reference_png(pixels, text, xmp, compress_level))


def make_wcs(crpix, ra=150.0, dec=2.2):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    wcs.wcs.set()
    return wcs


def make_collection(policy="full", frames=False, with_wcs=True, seed=1):
    """Pictures of several sizes sharing a WCS family (one without WCS),
    awkward index values and extra columns of every kind.
    """
    rng = np.random.default_rng(seed)
    shapes = [(101, 101), (64, 80), (1, 1), (101, 101), (7, 300)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    images[3][:] = 0  # Flat padding: long runs.
    n = len(images)
    index = {
        "object_id": ["1001", "ça,va", 'say "hi"', "line\nbreak", "漢字"],
        "ra": [150.0, np.nan, 1e-300, -0.0, 359.99999999999994],
        "dec": [2.2, -90.0, 1.0 / 3.0, 0.1, 89.9],
        "skymap": ["bench_skymap"] * n,
        "tract": [0] * n,
        "patch": [3, 3, 3, 4, 4],
        "bands": ["g,i,r"] * n,
        "stretch": ['lupton(Q=8,stretch="0.5")'] * n,
        "flag": np.array([True, False, True, True, False]),
        "small": np.array([1.5, 2.25, np.inf, -np.inf, 0.1], dtype=np.float32),
        "count": np.array([0, -1, 2**40, 7, 9], dtype=np.int64),
        "unsigned": np.array([1, 2, 3, 4, 5], dtype=np.uint8),
        "note": np.array(["", ",", '"', "\r", "é"]),
    }
    wcs = [make_wcs((50.5 - 3 * k, 40.5 + k)) if with_wcs else None for k in range(n)]
    wcs[2] = None
    picture_frames = None
    if frames:
        picture_frames = [
            {band: rng.integers(0, 256, image.shape[:2], dtype=np.uint8) for band in ("g", "r", "i")}
            if k % 2 == 0
            else None
            for k, image in enumerate(images)
        ]
    return RgbCollection(images, index, wcs=wcs, metadata_policy=policy, frames=picture_frames)


def written(write, collection, **kwargs):
    buffer = io.BytesIO()
    write(collection, buffer, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("policy", ["full", "anonymised"])
@pytest.mark.parametrize("write_policy", [None, "anonymised"])
@pytest.mark.parametrize("frames", [False, True])
def test_same_bytes_as_straightforward_writer(policy, write_policy, frames):
    collection = make_collection(policy, frames=frames)
    new = written(write_rgb_collection, collection, metadata_policy=write_policy)
    assert new == written(reference_write, collection, metadata_policy=write_policy)
    # Twice in a process (the WCS and XMP templates are then warm).
    assert new == written(write_rgb_collection, collection, metadata_policy=write_policy)


@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_same_bytes_at_every_compress_level(level):
    collection = make_collection(frames=True, seed=level)
    new = written(write_rgb_collection, collection, compress_level=level)
    assert new == written(reference_write, collection, compress_level=level)


def test_same_bytes_without_wcs_and_empty():
    collection = make_collection(with_wcs=False)
    assert written(write_rgb_collection, collection) == written(reference_write, collection)
    empty = RgbCollection([], {"object_id": np.array([], dtype=str)})
    assert written(write_rgb_collection, empty) == written(reference_write, empty)


def test_same_bytes_to_path_offset_and_unseekable_targets(tmp_path):
    collection = make_collection(frames=True)
    expected = written(reference_write, collection)
    path = tmp_path / "pictures.zip"
    write_rgb_collection(collection, str(path))
    assert path.read_bytes() == expected
    write_rgb_collection(collection, path)  # os.PathLike
    assert path.read_bytes() == expected

    # Offsets in the archive count from the start of the file object.
    shifted, reference = io.BytesIO(), io.BytesIO()
    for buffer, write in ((shifted, write_rgb_collection), (reference, reference_write)):
        buffer.write(b"prefix")
        write(collection, buffer)
    assert shifted.getvalue() == reference.getvalue()

    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, data):
            self.data += data
            return len(data)

    streams = Unseekable(), Unseekable()
    write_rgb_collection(collection, streams[0])
    reference_write(collection, streams[1])
    assert bytes(streams[0].data) == bytes(streams[1].data)


def test_same_bytes_as_a_bare_png_encode():
    # The collection's pixels through encode_png with the same chunks.
    collection = make_collection()
    with zipfile.ZipFile(io.BytesIO(written(write_rgb_collection, collection))) as archive:
        for k, entry in enumerate(collection.index["file"]):
            wcs = collection.wcs[k]
            xmp = None if wcs is None else wcs_to_xmp(wcs, collection.images[k].shape[:2])
            png = encode_png(collection.images[k], text=collection.png_text(k), xmp=xmp)
            assert archive.read(str(entry)) == png


def zipfile_bytes(comment, entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.comment = comment
        for name, data in entries:
            archive.writestr(zip_info(name), data)
    return buffer.getvalue()


def stored_zip_bytes(comment, entries):
    buffer = io.BytesIO()
    write_stored_zip(buffer, comment, entries)
    return buffer.getvalue()


@pytest.mark.parametrize("limit", [1 << 40, 3000, 1000, 400])
@pytest.mark.parametrize("count_limit", [0xFFFF, 3])
def test_stored_zip_records_as_zipfile_writes_them(monkeypatch, limit, count_limit):
    # zipfile reads its ZIP64 limits when it uses them: lowered limits give
    # ZIP64 fields (large entries, late offsets) and end records (many
    # entries, late central directory) on small archives.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", limit)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", count_limit)
    entries = [
        (INDEX_NAME, b"a,b\r\n"),
        ("x.png", bytes(390)),
        ("é.png", bytes(420)),
        ("big.png", bytes(1500)),
    ]
    entries += [(f"{k}.png", bytes(range(k % 256)) * 3) for k in range(6)]
    comment = b'{"format": "test"}'
    assert stored_zip_bytes(comment, entries) == zipfile_bytes(comment, entries)


def test_stored_zip_long_comment_as_zipfile(recwarn):
    comment = b"c" * (zipfile.ZIP_MAX_COMMENT + 10)
    entries = [("a.png", b"x")]
    assert stored_zip_bytes(comment, entries) == zipfile_bytes(comment, entries)


def test_stored_zip_no_extra_header_writes():
    # One write for each local header, one for each content: no seeking
    # back to patch a header.
    class Counting(io.BytesIO):
        seeks = 0

        def seek(self, *args):
            type(self).seeks += 1
            return super().seek(*args)

    stream = Counting()
    write_stored_zip(stream, b"", [(f"{k}.png", b"data") for k in range(50)])
    assert Counting.seeks <= 1
    assert rgb_zip.read_rgb_index  # The module still reads what it writes:
    with zipfile.ZipFile(io.BytesIO(stream.getvalue())) as archive:
        assert archive.testzip() is None and len(archive.namelist()) == 50


def test_format_column_is_format_value_of_each_row():
    table = Table()
    table["f8"] = [1.0, np.nan, -0.0, 1e300, 0.1]
    table["f4"] = np.array([0.1, 1.5, np.nan, np.inf, -2], dtype=np.float32)
    table["i"] = np.array([1, -2, 2**62, 0, 5], dtype=np.int64)
    table["u"] = np.array([1, 2, 255, 0, 5], dtype=np.uint8)
    table["b"] = [True, False, True, False, True]
    table["U"] = ["a", "", "é", "x y", "漢"]
    table["S"] = np.array([b"a", b"b", b"", b"c", b"d"])
    table["O"] = np.array([1, "a", 2.5, None, b"x"], dtype=object)
    table["m"] = MaskedColumn([1.0, 2.0, 3.0, 4.0, 5.0], mask=[False, True, False, False, False])
    table["m0"] = MaskedColumn([1, 2, 3, 4, 5], mask=[False] * 5)
    table["2d"] = np.arange(10.0).reshape(5, 2)
    for name in table.colnames:
        assert format_column(table[name]) == [format_value(row[name]) for row in table], name


def test_csv_fields_quote_as_csv_writer():
    rng = random.Random(3)
    alphabet = ["a", " ", ",", '"', "\r", "\n", "\0", "\t", "'", "é", "\\", "\u2028"]
    for _ in range(3000):
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))) for _ in range(3)]
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="\r\n").writerow(texts)
        assert ",".join(csv_fields(texts)) + "\r\n" == buffer.getvalue()


def test_collection_pictures_are_read_only_copies():
    pixels = np.zeros((4, 5, 3), dtype=np.uint8)
    fortran = np.asfortranarray(np.ones((4, 5, 3), dtype=np.uint8))
    collection = RgbCollection([pixels, fortran], {"object_id": ["a", "b"]})
    pixels[:] = 9
    image = collection.images[0]
    assert not image.any() and not image.flags.writeable and image.flags.c_contiguous
    assert collection.images[1].flags.c_contiguous and np.array_equal(collection.images[1], fortran)
    with pytest.raises(ValueError, match="RGB image 0 must have 3 channels"):
        RgbCollection([np.zeros((4, 5, 4), np.uint8)], {"object_id": ["a"]})
    with pytest.raises(TypeError, match="RGB image 0 must have dtype uint8"):
        RgbCollection([np.zeros((4, 5, 3))], {"object_id": ["a"]})
