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

"""Helpers of the Stamps tests (tests/test_stamps*.py): the expected cards
of our writer, written out by hand; a deterministic set of stamps (also
made in a fresh process by the Butler test); fitsverify with the Stamps
layout's repeated keywords; an independent raw-FITS writer that writes files
the way afw does; and a file object that counts the bytes read through it.
"""

import io
import math
import os
import re
import subprocess

import astropy.io.fits as fits
import numpy as np
from zooniverse_test_utils import (
    check_fits_file,
    require_tool,
)

import lsst.epo.zooniverse.formats.stamps as stamps_module
from lsst.epo.zooniverse.formats import stamps_astropy
from lsst.epo.zooniverse.formats.stamps import (
    DEFAULT_MASK_PLANES,
    Stamp,
    Stamps,
)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

ARRAY_KEYWORDS = frozenset(
    {"OBJ_ID", "BBOX_X0", "BBOX_Y0", "BBOX_W", "BBOX_H", "COVERAGE", "EDGEDIST", "RA_DEG", "DEC_DEG"}
    | {"ARCHIVE_IDS"}
)
"""Primary keywords that are per-stamp arrays, i.e. repeated cards."""

MASK_PLANES = dict(DEFAULT_MASK_PLANES, CROSSTALK=11)
"""afw default planes plus one more, inserted last (sorts between CR and
DETECTED).
"""

METADATA = {"SKYMAP": "lsst_cells_v1", "TRACT": 9813, "PATCH": 40, "BAND": "r", "LONG_FLAG": True}


# ---------------------------------------------------------------------------
# Our writer's cards written out by hand, and the stamps they describe


def verify_fits(path, allowed_warnings=()):
    """Run fitsverify on a file.

    A file with no repeated keyword must pass `check_fits_file` as is.
    Repeated keywords are how the Stamps layout stores arrays
    (doc/stamps_format.md §3), and fitsverify warns about every
    repetition; for such files the only warnings accepted are duplicates
    of the per-stamp array keywords (and those matching
    ``allowed_warnings``), and errors must be zero.
    """
    with fits.open(path) as hdul:
        repeated = any(
            len(keywords) != len(set(keywords))
            for keywords in ([c.keyword for c in hdu.header.cards if c.keyword] for hdu in hdul)
        )
    if not repeated and not allowed_warnings:
        check_fits_file(path)
        return
    tool = require_tool("fitsverify")
    errors_only = subprocess.run([tool, "-e", "-q", path], capture_output=True, text=True)
    assert errors_only.stdout.startswith("verification OK"), errors_only.stdout + errors_only.stderr
    full = subprocess.run([tool, path], capture_output=True, text=True).stdout
    assert re.search(r" and 0 error\(s\)", full), full
    for warning in re.findall(r"\*\*\* Warning: (.*)", full):
        match = re.fullmatch(r"Keyword (\S+) is duplicated in card #\d+ and card #\d+\.", warning.strip())
        if match and match.group(1) in ARRAY_KEYWORDS:
            continue
        assert any(re.search(p, warning) for p in allowed_warnings), f"fitsverify on {path}: {warning}"


def cards(header):
    """(keyword, value type, value) of every card, in order."""
    return [(c.keyword, type(c.value).__name__, c.value) for c in header.cards]


def expected(pairs):
    return [(key, type(value).__name__, value) for key, value in pairs]


def make_stamps():
    """Three stamps of different shapes with mask and variance; stamp 1 has
    no position (NaN RA/Dec).  Deterministic (also used in a fresh process).
    """
    rng = np.random.default_rng(20250528)
    specs = [
        # (height, width, x0, y0, ra, dec, object_id, coverage, edge_distance)
        (5, 7, 1200, 3400, 150.125, 2.25, "1234567890123", 1.0, 12.5),
        (6, 4, -3, 17, math.nan, math.nan, "obj b", 0.75, -3.0),
        (3, 3, 0, 0, 10.5, -89.5, "o'c", 0.0, math.nan),
    ]
    stamps = []
    for height, width, x0, y0, ra, dec, object_id, coverage, edge_distance in specs:
        image = rng.normal(size=(height, width)).astype(np.float32)
        mask = rng.integers(0, 1 << 12, size=(height, width)).astype(np.int32)
        variance = rng.uniform(0.5, 2.0, size=(height, width)).astype(np.float32)
        stamps.append(
            Stamp(
                image,
                mask=mask,
                variance=variance,
                x0=x0,
                y0=y0,
                ra=ra,
                dec=dec,
                object_id=object_id,
                coverage=coverage,
                edge_distance=edge_distance,
            )
        )
    stamps[1].image[2, 1] = np.nan
    return Stamps(stamps, metadata=METADATA, mask_planes=MASK_PLANES)


def expected_primary(stamps, metadata=METADATA, provenance=()):
    """The primary-header cards of our writer, written out by hand."""
    pairs = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)]
    pairs += list(metadata.items()) + list(provenance)
    pairs += [("OBJ_ID", s.object_id) for s in stamps]
    pairs += [("BBOX_X0", s.x0) for s in stamps]
    pairs += [("BBOX_Y0", s.y0) for s in stamps]
    pairs += [("BBOX_W", s.width) for s in stamps]
    pairs += [("BBOX_H", s.height) for s in stamps]
    pairs += [("COVERAGE", "NAN" if math.isnan(s.coverage) else s.coverage) for s in stamps]
    pairs += [("EDGEDIST", "NAN" if math.isnan(s.edge_distance) else s.edge_distance) for s in stamps]
    pairs += [("RA_DEG", "NAN" if math.isnan(s.ra) else s.ra) for s in stamps]
    pairs += [("DEC_DEG", "NAN" if math.isnan(s.dec) else s.dec) for s in stamps]
    pairs += [
        ("HAS_MASK", True),
        ("HAS_VARIANCE", True),
        ("HAS_ARCHIVE", False),
        ("N_STAMPS", len(stamps)),
        ("STAMPCLS", "lsst.meas.algorithms.stamps.Stamps"),
        ("VERSION", 1),
    ]
    return expected(pairs)


def expected_plane(plane, number, stamp, mask_planes):
    bitpix = {"IMAGE": -32, "MASK": 32, "VARIANCE": -32}[plane]
    pairs = [
        ("XTENSION", "IMAGE"),
        ("BITPIX", bitpix),
        ("NAXIS", 2),
        ("NAXIS1", stamp.width),
        ("NAXIS2", stamp.height),
        ("PCOUNT", 0),
        ("GCOUNT", 1),
        ("EXTVER", number),
        ("EXTNAME", plane),
    ]
    if plane == "MASK":
        pairs += [(f"MP_{name}", mask_planes[name]) for name in sorted(mask_planes)]
    pairs += [
        ("CTYPE1A", "LINEAR"),
        ("CTYPE2A", "LINEAR"),
        ("CRPIX1A", 1.0),
        ("CRPIX2A", 1.0),
        ("CRVAL1A", float(stamp.x0)),
        ("CRVAL2A", float(stamp.y0)),
        ("CUNIT1A", "PIXEL"),
        ("CUNIT2A", "PIXEL"),
    ]
    return expected(pairs)


def card_images(header, keyword):
    return [c.image.rstrip() for c in header.cards if c.keyword == keyword]


# ---------------------------------------------------------------------------
# Files written the way afw writes them, by an independent raw writer
#
# Everything below builds FITS bytes card by card from doc/stamps_format.md
# (cfitsio card formats, 2880-byte blocks, big-endian data) without our
# writer or astropy's: it is the "foreign" writer.

BLOCK = 2880


def _fmt_value(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = "%.15G" % value  # noqa: UP031 (cfitsio ffpkyd, decim=-15)
        if "." not in text and "E" not in text:
            text += "."
        return text
    text = value.replace("'", "''")
    return "'" + text.ljust(8) + "'"


def raw_card(key, value=None, comment=None, *, undefined=False):
    """One 80-character card formatted as cfitsio/afw write it."""
    if key in ("COMMENT", "HISTORY"):
        card = f"{key:<8}  {value}"
    else:
        text = None if undefined else _fmt_value(value)
        if len(key) > 8:
            prefix = f"HIERARCH {key} = "
            # cfitsio right-justifies non-string values to column 30.
            if text is not None and not text.startswith("'") and len(prefix) + len(text) < 30:
                text = text.rjust(30 - len(prefix))
            card = prefix + (text or "")
        elif text is None:
            card = f"{key:<8}="
        elif text.startswith("'"):
            card = f"{key:<8}= {text:<20}"
        else:
            card = f"{key:<8}= {text:>20}"
        if comment:
            card += f" / {comment}"
    assert len(card) <= 80, card
    return card.ljust(80)


def raw_header(card_list):
    text = "".join(card_list) + "END".ljust(80)
    text += " " * (-len(text) % BLOCK)
    return text.encode("ascii")


def raw_data(data):
    payload = data.tobytes()
    return payload + b"\0" * (-len(payload) % BLOCK)


def raw_primary(card_list):
    return raw_header(
        [
            raw_card("SIMPLE", True, "file does conform to FITS standard"),
            raw_card("BITPIX", 8, "number of bits per data pixel"),
            raw_card("NAXIS", 0, "number of data axes"),
            raw_card("EXTEND", True, "FITS dataset may contain extensions"),
            raw_card("COMMENT", "FITS (Flexible Image Transport System) format is defined in 'Astronomy"),
            raw_card("COMMENT", "and Astrophysics', volume 376, page 359; bibcode: 2001A&A...376..359H"),
        ]
        + card_list
    )


def raw_image_hdu(extname, extver, data, xy0, *, mask_planes=None, old_afw_scaling=False):
    """An afw ``Image``/``Mask`` HDU (doc/stamps_format.md §4)."""
    bitpix = {np.dtype(np.float32): -32, np.dtype(np.int32): 32}[data.dtype]
    height, width = data.shape
    header = [
        raw_card("XTENSION", "IMAGE", "IMAGE extension"),
        raw_card("BITPIX", bitpix, "number of bits per data pixel"),
        raw_card("NAXIS", 2, "number of data axes"),
        raw_card("NAXIS1", width, "length of data axis 1"),
        raw_card("NAXIS2", height, "length of data axis 2"),
        raw_card("PCOUNT", 0, "required keyword; must = 0"),
        raw_card("GCOUNT", 1, "required keyword; must = 1"),
        raw_card("EXTVER", extver),
        raw_card("EXTNAME", extname),
    ]
    for name in sorted(mask_planes or {}):  # std::map order
        header.append(raw_card(f"MP_{name}", mask_planes[name]))
    header += [
        raw_card("CTYPE1A", "LINEAR", "Type of projection"),
        raw_card("CTYPE2A", "LINEAR", "Type of projection"),
        raw_card("CRPIX1A", 1.0, "Column Pixel Coordinate of Reference"),
        raw_card("CRPIX2A", 1.0, "Row Pixel Coordinate of Reference"),
        raw_card("CRVAL1A", float(xy0[0]), "Column pixel of Reference Pixel"),
        raw_card("CRVAL2A", float(xy0[1]), "Row pixel of Reference Pixel"),
        raw_card("CUNIT1A", "PIXEL", "Column unit"),
        raw_card("CUNIT2A", "PIXEL", "Row unit"),
    ]
    if old_afw_scaling and bitpix < 0:
        # afw before 6ecac9f (2025-10-22): ImageScale(NONE) on float images.
        header.append("BZERO   =   0.000000000000E+00 / Scaling: MEMORY = BZERO + BSCALE * DISK".ljust(80))
        header.append("BSCALE  =   1.000000000000E+00 / Scaling: MEMORY = BZERO + BSCALE * DISK".ljust(80))
    return raw_header(header) + raw_data(data.astype(data.dtype.newbyteorder(">")))


def raw_bintable_hdu(columns, rows, extra_cards):
    """A BINTABLE; ``columns`` are (name, TFORM, numpy big-endian dtype)."""
    dtype = np.dtype([(name, dt) for name, _, dt in columns])
    table = np.array(rows, dtype=dtype)
    header = [
        raw_card("XTENSION", "BINTABLE", "binary table extension"),
        raw_card("BITPIX", 8, "8-bit bytes"),
        raw_card("NAXIS", 2, "2-dimensional binary table"),
        raw_card("NAXIS1", dtype.itemsize, "width of table in bytes"),
        raw_card("NAXIS2", len(rows), "number of rows in table"),
        raw_card("PCOUNT", 0, "size of special data area"),
        raw_card("GCOUNT", 1, "one data group (required keyword)"),
        raw_card("TFIELDS", len(columns), "number of fields in each row"),
    ]
    for i, (name, tform, _) in enumerate(columns, start=1):
        header += [raw_card(f"TTYPE{i}", name), raw_card(f"TFORM{i}", tform)]
    header += [raw_card(key, value) for key, value in extra_cards]
    return raw_header(header) + raw_data(table)


def raw_archive_hdus():
    """An afw OutputArchive (doc/stamps_format.md §5): index plus two data
    catalogs that share a persistence name (hence EXTVER 1 and 2).
    """
    index_columns = [
        ("id", "1J", ">i4"),
        ("cat.archive", "1J", ">i4"),
        ("cat.persistable", "1J", ">i4"),
        ("row0", "1J", ">i4"),
        ("nrows", "1J", ">i4"),
        ("name", "30A", "S30"),
        ("module", "20A", "S20"),
    ]
    index_rows = [
        (1, 1, 0, 0, 1, b"TransformPoint2ToPoint2", b"lsst.afw.geom"),
        (2, 2, 0, 0, 1, b"TransformPoint2ToPoint2", b"lsst.afw.geom"),
    ]
    hdus = raw_bintable_hdu(
        index_columns,
        index_rows,
        [("EXTTYPE", "ARCHIVE_INDEX"), ("EXTNAME", "ARCHIVE_INDEX"), ("AR_CATN", 0), ("AR_NCAT", 3)],
    )
    for catn in (1, 2):
        hdus += raw_bintable_hdu(
            [("bytes", "16A", "S16")],
            [(b"AST serialised",)],
            [
                ("EXTTYPE", "ARCHIVE_DATA"),
                ("AR_CATN", catn),
                ("AR_NAME", "TransformPoint2ToPoint2"),
                ("EXTNAME", "TransformPoint2ToPoint2"),
                ("EXTVER", catn),
            ],
        )
    return hdus


AFW_MASK_PLANES = dict(DEFAULT_MASK_PLANES, CROSSTALK=11, SENSOR_EDGE=12, UNMASKEDNAN=13)

CALEXP_METADATA = [
    ("FILTER", "r_57"),
    ("EXPTIME", 30.0),
    ("MJD-OBS", 60345.123456789),
    ("DATE-OBS", "2024-02-02T02:57:46.000"),
    ("LSST ISR DOBIAS", True),
    ("AR_HDU", 5),
]
"""User metadata as a calexp header would give it (doc/stamps_format.md §3,
`CalexpCutoutTask`)."""


def afw_stamps_data():
    """Stamps written below with the foreign writer: (image, mask,
    variance, xy0, ra, dec); stamp 1 has afw's default position.
    """
    rng = np.random.default_rng(7)
    result = []
    for k, ((height, width), xy0, ra, dec) in enumerate(
        [
            ((4, 6), (1234, 2345), 150.123456789012, 2.20833333333333),
            ((5, 5), (-3, 17), math.nan, math.nan),
            ((3, 2), (0, 0), 10.0, -45.5),
        ]
    ):
        image = rng.normal(size=(height, width)).astype(np.float32)
        mask = rng.integers(0, 1 << 14, size=(height, width)).astype(np.int32)
        variance = rng.uniform(1, 2, size=(height, width)).astype(np.float32)
        if k == 0:
            image[1, 2] = np.nan
            mask[0, 0] = (1 << 11) | (1 << 13)  # CROSSTALK | UNMASKEDNAN
        result.append((image, mask, variance, xy0, ra, dec))
    return result


def write_afw_file(
    path, *, with_archive=True, has_mask=True, has_variance=True, old_afw_scaling=True, data=None
):
    """Write a Stamps file as afw's ``writeFits`` does, from raw cards."""
    data = afw_stamps_data() if data is None else data
    n = len(data)
    primary = [raw_card(key, value) for key, value in CALEXP_METADATA]
    primary += [raw_card("RA_DEG", "NAN" if math.isnan(d[4]) else d[4]) for d in data]
    primary += [raw_card("DEC_DEG", "NAN" if math.isnan(d[5]) else d[5]) for d in data]
    primary += [
        raw_card("HAS_MASK", has_mask),
        raw_card("HAS_VARIANCE", has_variance),
        raw_card("HAS_ARCHIVE", with_archive),
        raw_card("N_STAMPS", n),
        raw_card("STAMPCLS", "lsst.meas.algorithms.stamps.Stamps"),
        raw_card("VERSION", 1),
    ]
    if with_archive:
        primary += [raw_card("ARCHIVE_IDS", i) for i in [1, 0, 2][:n]]
    content = raw_primary(primary)
    if with_archive:
        content += raw_archive_hdus()
    for k, (image, mask, variance, xy0, _, _) in enumerate(data, start=1):
        content += raw_image_hdu("IMAGE", k, image, xy0, old_afw_scaling=old_afw_scaling)
        if has_mask:
            content += raw_image_hdu("MASK", k, mask, xy0, mask_planes=AFW_MASK_PLANES)
        if has_variance:
            content += raw_image_hdu("VARIANCE", k, variance, xy0, old_afw_scaling=old_afw_scaling)
    with open(path, "wb") as stream:
        stream.write(content)
    return data


class CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read through it."""

    def __init__(self, path):
        self._file = open(path, "rb")
        self.name = path
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer):
        n = self._file.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def read(self, size=-1):
        data = self._file.read(size)
        self.bytes_read += len(data)
        return data

    def seek(self, offset, whence=io.SEEK_SET):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def close(self):
        self._file.close()
        super().close()


def make_many(n=60, size=32):
    rng = np.random.default_rng(60)
    return Stamps(
        [
            Stamp(
                rng.normal(size=(size, size)),
                mask=rng.integers(0, 512, size=(size, size)),
                variance=rng.uniform(1, 2, size=(size, size)),
                x0=10 * k,
                y0=-k,
                ra=float(k),
                dec=-float(k) / 2,
                object_id=f"{4000000 + k}",
            )
            for k in range(n)
        ],
        metadata={"BAND": "z"},
    )


def same_reads(fast, reference):
    """Check that two reads of one file give the same stamps, metadata,
    planes and WCS, and writeable pixels."""
    assert fast.equals(reference)
    assert fast.metadata == reference.metadata and fast.provenance == reference.provenance
    assert fast.mask_planes == reference.mask_planes
    assert (fast.use_mask, fast.use_variance) == (reference.use_mask, reference.use_variance)
    for a, b in zip(fast, reference):
        assert a.image.dtype == b.image.dtype and a.image.flags.writeable
        assert (a.wcs is None) == (b.wcs is None)
        if a.wcs is not None:
            assert a.wcs.to_header_string(relax=True) == b.wcs.to_header_string(relax=True)
            assert a.wcs.pixel_shape == b.wcs.pixel_shape
            assert a.wcs.wcs.compare(b.wcs.wcs)


def no_astropy_reader(monkeypatch):
    """Make the astropy reader fail the test if the fast reader calls it."""

    def refuse(*args):
        raise AssertionError("the fast reader left this file to astropy")

    monkeypatch.setattr(stamps_module, "_read_stamps_astropy", refuse)
    monkeypatch.setattr(stamps_module, "read_stamps_index_astropy", refuse)


def astropy_bytes(stamps):
    """The file the astropy-only writer (the reference) makes of stamps."""
    buffer = io.BytesIO()
    stamps_astropy.write_stamps_astropy(stamps, buffer)
    return buffer.getvalue()
