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

"""Tests of postage stamps in the `lsst.meas.algorithms.Stamps` FITS layout
(`zooniverse_stamps`; the layout is described in doc/stamps_format.md): every
card and HDU our writer produces, reading files written the way afw writes
them (by an independent raw-FITS writer in this module), padding in
`cut_stamp`, subset reads that touch only a small part of the file, and
the Butler formatter (read back in a fresh process).
"""

import gzip
import io
import json
import math
import os
import re
import subprocess
import warnings

import astropy.io.fits as fits
import numpy as np
import pytest
from astropy.wcs import WCS, Sip
from zooniverse_test_utils import (
    check_fits_file,
    galactic_sin_wcs,
    repository_files,
    require_tool,
    run_in_fresh_process,
    tan_sip_wcs,
)

import lsst.epo.zooniverse.formats.stamps as stamps_module
from lsst.epo.zooniverse.formats import fits_cards, stamps_astropy, stamps_fast, stamps_layout
from lsst.epo.zooniverse.formats.stamp_cutting import cut_stamp
from lsst.epo.zooniverse.formats.stamps import (
    DEFAULT_MASK_PLANES,
    STAMPCLS,
    Stamp,
    Stamps,
    read_stamps,
    read_stamps_index,
    write_stamps,
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
# Helpers


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
# 1. What our writer writes, card by card


def test_writer_pins_every_card_and_hdu(tmp_path):
    stamps = make_stamps()
    path = str(tmp_path / "stamps.fits")
    write_stamps(stamps, path)
    verify_fits(path)

    with fits.open(path) as hdul:
        primary = hdul[0].header
        assert cards(primary) == expected_primary(stamps)
        assert hdul[0].data is None
        # Card images where doc/stamps_format.md fixes the form.
        assert card_images(primary, "RA_DEG")[1] == "RA_DEG  = 'NAN     '"
        assert card_images(primary, "DEC_DEG")[1] == "DEC_DEG = 'NAN     '"
        assert card_images(primary, "HAS_MASK") == ["HAS_MASK=                    T"]
        assert re.fullmatch(r"HIERARCH HAS_VARIANCE = +T", card_images(primary, "HAS_VARIANCE")[0])
        assert re.fullmatch(r"HIERARCH HAS_ARCHIVE = +F", card_images(primary, "HAS_ARCHIVE")[0])
        assert re.fullmatch(r"HIERARCH LONG_FLAG = +T", card_images(primary, "LONG_FLAG")[0])
        assert card_images(primary, "STAMPCLS") == ["STAMPCLS= 'lsst.meas.algorithms.stamps.Stamps'"]
        assert card_images(primary, "OBJ_ID")[2] == "OBJ_ID  = 'o''c    '"

        assert len(hdul) == 1 + 3 * len(stamps)
        assert [(h.name, h.ver) for h in hdul[1:]] == [
            (plane, number) for number in (1, 2, 3) for plane in ("IMAGE", "MASK", "VARIANCE")
        ]
        for k, stamp in enumerate(stamps):
            for j, (plane, dtype, data) in enumerate(
                [
                    ("IMAGE", ">f4", stamp.image),
                    ("MASK", ">i4", stamp.mask),
                    ("VARIANCE", ">f4", stamp.variance),
                ]
            ):
                hdu = hdul[1 + 3 * k + j]
                assert isinstance(hdu, fits.ImageHDU)
                assert cards(hdu.header) == expected_plane(plane, k + 1, stamp, MASK_PLANES)
                assert "EXTTYPE" not in hdu.header and "BZERO" not in hdu.header
                assert hdu.data.dtype.str == dtype
                assert hdu.data.shape == (stamp.height, stamp.width)
                np.testing.assert_array_equal(hdu.data, data)
        mask_header = hdul[2].header
        assert card_images(mask_header, "MP_BAD") == ["MP_BAD  =                    0"]
        assert card_images(mask_header, "MP_INTRP") == ["MP_INTRP=                    2"]
        assert re.fullmatch(
            r"HIERARCH MP_DETECTED_NEGATIVE = +6", card_images(mask_header, "MP_DETECTED_NEGATIVE")[0]
        )
        assert re.fullmatch(r"HIERARCH MP_CROSSTALK = +11", card_images(mask_header, "MP_CROSSTALK")[0])

    back = read_stamps(path)
    assert back.equals(stamps)
    assert back.metadata == METADATA and back.provenance == {}
    assert back.mask_planes == MASK_PLANES
    assert [s.bbox for s in back] == [s.bbox for s in stamps]


def test_writer_one_stamp_has_single_array_cards(tmp_path):
    stamp = make_stamps()[1]
    stamps = Stamps([stamp], metadata={"BAND": "i"})
    path = str(tmp_path / "one.fits")
    write_stamps(stamps, path)
    check_fits_file(path)  # No repeated keyword at all.
    with fits.open(path) as hdul:
        assert cards(hdul[0].header) == expected_primary(stamps, metadata={"BAND": "i"})
        assert [c.keyword for c in hdul[0].header.cards].count("RA_DEG") == 1
        assert card_images(hdul[0].header, "RA_DEG") == ["RA_DEG  = 'NAN     '"]
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
    back = read_stamps(path)
    assert back.equals(stamps) and math.isnan(back[0].ra) and math.isnan(back[0].dec)


def test_writer_zero_stamps(tmp_path):
    stamps = Stamps([], metadata={"BAND": "g"})
    path = str(tmp_path / "zero.fits")
    write_stamps(stamps, path)
    check_fits_file(path)
    with fits.open(path) as hdul:
        assert len(hdul) == 1
        assert cards(hdul[0].header) == expected_primary(stamps, metadata={"BAND": "g"})
        keywords = {c.keyword for c in hdul[0].header.cards}
        assert not keywords & ARRAY_KEYWORDS
        assert hdul[0].header["N_STAMPS"] == 0
    back = read_stamps(path)
    assert len(back) == 0 and back.metadata == {"BAND": "g"}
    assert len(read_stamps_index(path)) == 0


def test_writer_use_mask_variance_false(tmp_path):
    stamps = make_stamps()
    stamps.use_mask = False
    stamps.use_variance = False
    path = str(tmp_path / "image_only.fits")
    write_stamps(stamps, path)
    verify_fits(path)
    with fits.open(path) as hdul:
        assert [(h.name, h.ver) for h in hdul[1:]] == [("IMAGE", 1), ("IMAGE", 2), ("IMAGE", 3)]
        assert hdul[0].header["HAS_MASK"] is False and hdul[0].header["HAS_VARIANCE"] is False
    back = read_stamps(path)
    assert all(s.mask is None and s.variance is None for s in back)
    for a, b in zip(back, stamps):
        np.testing.assert_array_equal(a.image, b.image)


def test_writer_header_value_types(tmp_path):
    metadata = {
        "UNDEF": None,
        "INFV": math.inf,
        "NINF": -math.inf,
        "FLAG": False,
        "NUMBER": np.int64(-7),
        "SMALL": 1.5e-20,
        "LSST ISR DOBIAS": True,
        "LONGSTR": "x" * 100,
    }
    stamps = Stamps([make_stamps()[0]], metadata=metadata, mask_planes=MASK_PLANES)
    path = str(tmp_path / "types.fits")
    write_stamps(stamps, path)
    verify_fits(path, allowed_warnings=("UNDEF has a null value", "OGIP long string keyword convention"))
    header = fits.getheader(path)
    assert card_images(header, "UNDEF") == ["UNDEF   ="]
    assert card_images(header, "INFV") == ["INFV    = '+INFINITY'"]
    assert card_images(header, "NINF") == ["NINF    = '-INFINITY'"]
    assert card_images(header, "FLAG") == ["FLAG    =                    F"]
    assert card_images(header, "NUMBER") == ["NUMBER  =                   -7"]
    assert re.fullmatch(r"HIERARCH LSST ISR DOBIAS = +T", card_images(header, "LSST ISR DOBIAS")[0])
    back = read_stamps(path)
    assert back.metadata == {
        "UNDEF": None,
        "INFV": math.inf,
        "NINF": -math.inf,
        "FLAG": False,
        "NUMBER": -7,
        "SMALL": 1.5e-20,
        "LSST ISR DOBIAS": True,
        "LONGSTR": "x" * 100,
    }
    assert back.equals(stamps)


def test_writer_celestial_wcs_on_image_only(tmp_path):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [3.0, 2.0]
    wcs.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    stamp = make_stamps()[0]
    stamp.wcs = wcs
    path = str(tmp_path / "wcs.fits")
    write_stamps(Stamps([stamp]), path)
    check_fits_file(path)
    with fits.open(path) as hdul:
        image_keys = [c.keyword for c in hdul["IMAGE", 1].header.cards]
        # The A-WCS (xy0) comes first, then the celestial WCS.
        assert image_keys.index("CUNIT2A") < image_keys.index("CTYPE1")
        assert hdul["IMAGE", 1].header["CTYPE1"] == "RA---TAN"
        assert "CTYPE1" not in hdul["MASK", 1].header and "CTYPE1" not in hdul["VARIANCE", 1].header
        assert hdul["IMAGE", 1].header["CRVAL1A"] == 1200.0
        assert "WCSAXES" not in hdul["IMAGE", 1].header  # It would have to precede CTYPE1A.
    back = read_stamps(path)[0]
    assert (back.x0, back.y0) == (1200, 3400)
    np.testing.assert_allclose(back.wcs.pixel_to_world_values(4, 5), wcs.pixel_to_world_values(4, 5))


def test_writer_refusals(tmp_path):
    stamp = make_stamps()[0]
    path = str(tmp_path / "bad.fits")
    for key in ("N_STAMPS", "ra_deg", "OBJ_ID", "HAS_ARCHIVE", "ARCHIVE_IDS", "SIMPLE", "EXTEND"):
        with pytest.raises(ValueError, match="reserved"):
            write_stamps(Stamps([stamp], metadata={key: 1}), path)
    with pytest.raises(TypeError, match="Cannot write"):
        write_stamps(Stamps([stamp], metadata={"LIST": [1, 2]}), path)
    with pytest.raises(ValueError, match="no mask"):
        write_stamps(Stamps([Stamp(np.ones((2, 2)))]), path)
    with pytest.raises(ValueError, match="no variance"):
        write_stamps(Stamps([Stamp(np.ones((2, 2)), mask=np.zeros((2, 2)))]), path)
    with pytest.raises(TypeError):
        Stamps([stamp, "not a stamp"])
    with pytest.raises(ValueError, match="shape"):
        Stamp(np.ones((2, 3)), mask=np.zeros((3, 2)))
    assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# 2. Files written the way afw writes them, by an independent raw writer
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


def test_foreign_writer_card_formats():
    # The raw writer's cards are doc/stamps_format.md's (guards the foreign
    # file itself).
    assert raw_card("HAS_VARIANCE", True).rstrip() == "HIERARCH HAS_VARIANCE =      T"
    assert raw_card("HAS_ARCHIVE", False).rstrip() == "HIERARCH HAS_ARCHIVE =       F"
    assert raw_card("N_STAMPS", 3).rstrip() == "N_STAMPS=                    3"
    assert raw_card("RA_DEG", "NAN").rstrip() == "RA_DEG  = 'NAN     '"
    assert raw_card("STAMPCLS", STAMPCLS).rstrip() == "STAMPCLS= 'lsst.meas.algorithms.stamps.Stamps'"
    assert raw_card("CRPIX1A", 1.0).rstrip() == "CRPIX1A =                   1."
    assert raw_card("EXTNAME", "IMAGE", "x").rstrip() == "EXTNAME = 'IMAGE   '           / x"


def test_read_afw_written_file_with_archive(tmp_path):
    path = str(tmp_path / "afw.fits")
    data = write_afw_file(path)
    # afw writes the archive's column names as-is ("cat.archive").
    verify_fits(path, allowed_warnings=(r'Column #\d+: Name "cat\.\w+" contains character',))
    with fits.open(path) as hdul:  # The foreign file has the intended layout.
        assert [h.name for h in hdul] == ["PRIMARY", "ARCHIVE_INDEX"] + ["TransformPoint2ToPoint2"] * 2 + [
            "IMAGE",
            "MASK",
            "VARIANCE",
        ] * 3
        assert hdul["IMAGE", 1].header["BZERO"] == 0.0 and "BZERO" not in hdul["MASK", 1].header

    stamps = read_stamps(path)
    assert len(stamps) == 3
    assert stamps.use_mask and stamps.use_variance
    assert stamps.mask_planes == AFW_MASK_PLANES
    assert stamps.metadata == dict(CALEXP_METADATA)  # No COMMENT, layout or ARCHIVE_IDS keys.
    assert stamps.provenance == {}
    for stamp, (image, mask, variance, xy0, ra, dec) in zip(stamps, data):
        assert stamp.image.dtype == np.float32 and stamp.mask.dtype == np.int32
        np.testing.assert_array_equal(stamp.image, image)
        np.testing.assert_array_equal(stamp.mask, mask)
        np.testing.assert_array_equal(stamp.variance, variance)
        assert (stamp.x0, stamp.y0) == xy0
        assert stamp.bbox == (xy0[0], xy0[1], image.shape[1], image.shape[0])
        if math.isnan(ra):
            assert math.isnan(stamp.ra) and math.isnan(stamp.dec)
        else:
            assert (stamp.ra, stamp.dec) == (ra, dec)
        assert stamp.object_id is None
        assert math.isnan(stamp.coverage) and math.isnan(stamp.edge_distance)
    assert stamps[0].ra == 150.123456789012
    assert stamps[0].mask[0, 0] & (1 << stamps.mask_planes["CROSSTALK"])

    index = read_stamps_index(path)
    assert list(index["index"]) == [0, 1, 2]
    assert list(index["object_id"]) == ["", "", ""]
    assert list(index["bbox_x0"]) == [-1, -1, -1]  # afw records no bbox keywords.
    assert index["ra"][0] == 150.123456789012 and math.isnan(index["ra"][1])

    subset = read_stamps(path, indices=[2, 0])
    assert [(s.x0, s.y0) for s in subset] == [(0, 0), (1234, 2345)]
    np.testing.assert_array_equal(subset[0].variance, data[2][2])
    with pytest.raises(ValueError, match="object ids"):
        read_stamps(path, object_ids=["1"])

    # Re-written by our writer (no archive), the stamps read back the same.
    again = str(tmp_path / "again.fits")
    write_stamps(stamps, again)
    verify_fits(again)
    assert read_stamps(again).equals(stamps)
    assert fits.getheader(again)["HAS_ARCHIVE"] is False


@pytest.mark.parametrize("has_variance, n", [(False, 2), (True, 1)])
def test_read_afw_written_file_without_mask(tmp_path, has_variance, n):
    path = str(tmp_path / "nomask.fits")
    data = write_afw_file(
        path,
        with_archive=False,
        has_mask=False,
        has_variance=has_variance,
        old_afw_scaling=False,
        data=afw_stamps_data()[1 : 1 + n],
    )
    verify_fits(path)
    with fits.open(path) as hdul:
        expected_names = ["IMAGE", "VARIANCE"] if has_variance else ["IMAGE"]
        assert [h.name for h in hdul[1:]] == expected_names * n
    stamps = read_stamps(path)
    assert len(stamps) == n
    assert not stamps.use_mask and stamps.use_variance == has_variance
    for stamp, (image, _, variance, xy0, ra, _) in zip(stamps, data):
        assert stamp.mask is None
        np.testing.assert_array_equal(stamp.image, image)
        if has_variance:
            np.testing.assert_array_equal(stamp.variance, variance)
        else:
            assert stamp.variance is None
        assert (stamp.x0, stamp.y0) == xy0
        assert math.isnan(stamp.ra) == math.isnan(ra)
    assert math.isnan(stamps[0].ra)  # The single RA_DEG = 'NAN' card (n == 1) or the first of two.


def test_xy0_needs_crpix_one(tmp_path):
    # afw's getImageXY0FromMetadata: (0, 0) unless CRPIX1A == CRPIX2A == 1.
    path = str(tmp_path / "crpix.fits")
    write_stamps(make_stamps(), path)
    with fits.open(path, mode="update") as hdul:
        hdul["IMAGE", 1].header["CRPIX1A"] = 2.0
    assert (read_stamps(path)[0].x0, read_stamps(path)[0].y0) == (0, 0)
    assert (read_stamps(path)[1].x0, read_stamps(path)[1].y0) == (-3, 17)


# ---------------------------------------------------------------------------
# 3. Cutting with padding

NO_DATA = 1 << 8


def _parent():
    height, width = 8, 10
    image = np.arange(height * width, dtype=np.float32).reshape(height, width)
    mask = np.full((height, width), 0b101, dtype=np.int32)  # BAD | INTRP, not NO_DATA
    variance = image / 2 + 1
    return image, mask, variance


def test_cut_stamp_partly_outside():
    image, mask, variance = _parent()
    # Parent spans x 100..109, y 200..207; the stamp x 97..102, y 205..209.
    stamp = cut_stamp(
        image, mask, variance, parent_x0=100, parent_y0=200, x0=97, y0=205, width=6, height=5, object_id="a"
    )
    assert stamp.bbox == (97, 205, 6, 5) and stamp.object_id == "a"
    assert stamp.image.dtype == np.float32 and stamp.mask.dtype == np.int32
    inside = (slice(0, 3), slice(3, 6))
    np.testing.assert_array_equal(stamp.image[inside], image[5:8, 0:3])
    np.testing.assert_array_equal(stamp.variance[inside], variance[5:8, 0:3])
    np.testing.assert_array_equal(stamp.mask[inside], mask[5:8, 0:3])
    padded = np.ones((5, 6), bool)
    padded[inside] = False
    assert np.isnan(stamp.image[padded]).all() and np.isnan(stamp.variance[padded]).all()
    assert (stamp.mask[padded] == NO_DATA).all()
    assert stamp.coverage == 9 / 30


def test_cut_stamp_larger_than_parent_on_all_sides():
    image, mask, variance = _parent()
    stamp = cut_stamp(image, mask, variance, parent_x0=0, parent_y0=0, x0=-2, y0=-1, width=14, height=11)
    np.testing.assert_array_equal(stamp.image[1:9, 2:12], image)
    assert np.isnan(stamp.image).sum() == 14 * 11 - 80
    assert (stamp.mask == NO_DATA).sum() == 14 * 11 - 80
    assert stamp.coverage == 80 / 154


def test_cut_stamp_wholly_outside():
    image, mask, variance = _parent()
    for x0, y0 in [(110, 200), (90, 200), (100, 208), (95, 190), (-1000, 5000)]:
        stamp = cut_stamp(
            image, mask, variance, parent_x0=100, parent_y0=200, x0=x0, y0=y0, width=4, height=3
        )
        assert np.isnan(stamp.image).all() and np.isnan(stamp.variance).all()
        assert (stamp.mask == NO_DATA).all()
        assert stamp.coverage == 0.0
        assert stamp.bbox == (x0, y0, 4, 3)


def test_cut_stamp_no_data_inside_parent():
    image, mask, variance = _parent()
    mask[2, 3] |= NO_DATA
    mask[6, 7] |= NO_DATA
    image[4, 4] = np.nan  # Not finite: no data either.
    stamp = cut_stamp(image, mask, variance, parent_x0=0, parent_y0=0, x0=2, y0=1, width=7, height=6)
    np.testing.assert_array_equal(stamp.mask, mask[1:7, 2:9])
    np.testing.assert_array_equal(stamp.image, image[1:7, 2:9])
    assert stamp.coverage == (42 - 3) / 42
    # Fully inside and clean: coverage 1, mask untouched.
    clean = cut_stamp(image, mask, variance, parent_x0=0, parent_y0=0, x0=5, y0=0, width=3, height=2)
    assert clean.coverage == 1.0 and (clean.mask == 0b101).all()


def test_cut_stamp_options():
    image, mask, variance = _parent()
    # Another NO_DATA bit.
    stamp = cut_stamp(
        image, mask, variance, parent_x0=0, parent_y0=0, x0=8, y0=0, width=4, height=1, no_data_bit=3
    )
    np.testing.assert_array_equal(stamp.mask[0], [0b101, 0b101, 8, 8])
    assert stamp.coverage == 0.5
    # Bit 8 set in the parent is data when NO_DATA is bit 3.
    mask2 = mask | NO_DATA
    stamp = cut_stamp(
        image, mask2, variance, parent_x0=0, parent_y0=0, x0=0, y0=0, width=2, height=2, no_data_bit=3
    )
    assert stamp.coverage == 1.0
    # No parent mask/variance: mask 0 inside, NO_DATA outside; no variance.
    stamp = cut_stamp(
        image, None, None, parent_x0=0, parent_y0=0, x0=-1, y0=0, width=2, height=1, ra=1.5, dec=-2.5
    )
    np.testing.assert_array_equal(stamp.mask, [[NO_DATA, 0]])
    assert stamp.variance is None and (stamp.ra, stamp.dec) == (1.5, -2.5)
    assert stamp.coverage == 0.5
    for width, height in [(0, 3), (3, 0), (-1, 2)]:
        with pytest.raises(ValueError, match="positive"):
            cut_stamp(image, mask, variance, parent_x0=0, parent_y0=0, x0=0, y0=0, width=width, height=height)


def test_cut_stamps_write_and_read(tmp_path):
    image, mask, variance = _parent()
    stamps = Stamps(
        [
            cut_stamp(image, mask, variance, parent_x0=0, parent_y0=0, x0=x0, y0=y0, width=4, height=4)
            for x0, y0 in [(-2, -2), (3, 2), (50, 50)]
        ]
    )
    path = str(tmp_path / "cut.fits")
    write_stamps(stamps, path)
    verify_fits(path)
    header = fits.getheader(path)
    assert [c.value for c in header.cards if c.keyword == "COVERAGE"] == [0.25, 1.0, 0.0]
    back = read_stamps(path)
    assert back.equals(stamps)
    assert [s.coverage for s in back] == [0.25, 1.0, 0.0]


# ---------------------------------------------------------------------------
# 4. Subset reads


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


@pytest.fixture(scope="module")
def many_file(tmp_path_factory):
    stamps = make_many()
    path = str(tmp_path_factory.mktemp("many") / "many.fits")
    write_stamps(stamps, path)
    return stamps, path


def test_subset_read_by_index_reads_little(many_file):
    stamps, path = many_file
    size = os.path.getsize(path)
    reader = CountingReader(path)
    subset = read_stamps(reader, indices=[1])
    assert len(subset) == 1 and subset[0].equals(stamps[1])
    assert subset.metadata == {"BAND": "z"}
    assert reader.bytes_read < 0.15 * size, (reader.bytes_read, size)

    reader = CountingReader(path)
    subset = read_stamps(reader, object_ids=["4000002", "4000000"])
    assert subset.object_ids == ["4000002", "4000000"]
    assert subset[0].equals(stamps[2]) and subset[1].equals(stamps[0])
    assert reader.bytes_read < 0.15 * size, (reader.bytes_read, size)

    # The index alone: the primary header only.
    reader = CountingReader(path)
    index = read_stamps_index(reader)
    assert list(index["object_id"]) == stamps.object_ids
    assert list(index["bbox_x0"]) == [10 * k for k in range(60)]
    assert reader.bytes_read < 0.05 * size

    # A late stamp and a full read still give the right data.
    late = read_stamps(path, indices=[59, 30, 30])
    assert [s.object_id for s in late] == ["4000059", "4000030", "4000030"]
    assert late[0].equals(stamps[59])
    assert read_stamps(CountingReader(path)).equals(stamps)


def test_read_without_variance_skips_its_bytes(many_file, monkeypatch):
    stamps, path = many_file
    size = os.path.getsize(path)
    full_reader = CountingReader(path)
    read_stamps(full_reader)
    reader = CountingReader(path)
    light = read_stamps(reader, use_variance=False)
    assert not light.use_variance and light.use_mask
    assert len(light) == len(stamps) and light.object_ids == stamps.object_ids
    for got, original in zip(light, stamps):
        assert got.variance is None
        np.testing.assert_array_equal(got.image, original.image)
        np.testing.assert_array_equal(got.mask, original.mask)
        assert (got.x0, got.y0, got.coverage) == (original.x0, original.y0, original.coverage)
    # The variance pixels are not read (the headers still are).
    variance_bytes = sum(stamp.variance.nbytes for stamp in stamps)
    assert full_reader.bytes_read - reader.bytes_read >= variance_bytes, (reader.bytes_read, size)
    # With a subset, and through the astropy reader (the reference).
    subset = read_stamps(path, indices=[59, 3], use_variance=False)
    assert [s.object_id for s in subset] == ["4000059", "4000003"]
    assert subset[0].variance is None and np.array_equal(subset[1].image, stamps[3].image)
    reference = stamps_module._read_stamps_astropy(path, None, None, "reference", False)
    _no_astropy_reader(monkeypatch)
    _same_reads(read_stamps(path, use_variance=False), reference)
    assert read_stamps(path, use_variance=True).equals(stamps)


def test_subset_read_errors(many_file):
    _, path = many_file
    with pytest.raises(ValueError, match="out of range"):
        read_stamps(path, indices=[60])
    with pytest.raises(ValueError, match="out of range"):
        read_stamps(path, indices=[-1])
    with pytest.raises(ValueError, match="object ids"):
        read_stamps(path, object_ids=["4000000", "nope"])
    with pytest.raises(ValueError, match="not both"):
        read_stamps(path, indices=[0], object_ids=["4000000"])


def test_inconsistent_files_are_refused(tmp_path):
    stamps = make_stamps()
    path = str(tmp_path / "good.fits")
    write_stamps(stamps, path)

    # Fewer stamp HDUs than N_STAMPS.
    truncated = str(tmp_path / "truncated.fits")
    with fits.open(path) as hdul:
        fits.HDUList([hdu.copy() for hdu in hdul[:7]]).writeto(truncated)
    with pytest.raises(ValueError, match="N_STAMPS"):
        read_stamps(truncated)
    with pytest.raises(ValueError, match="stamp 3"):
        read_stamps(truncated, indices=[2])

    # N_STAMPS disagreeing with the per-stamp arrays.
    wrong_n = str(tmp_path / "wrong_n.fits")
    with fits.open(path) as hdul:
        hdul[0].header["N_STAMPS"] = 2
        hdul.writeto(wrong_n)
    with pytest.raises(ValueError, match="N_STAMPS=2"):
        read_stamps(wrong_n)
    with pytest.raises(ValueError, match="N_STAMPS=2"):
        read_stamps_index(wrong_n)

    # An extension that is neither IMAGE, MASK, VARIANCE nor a table.
    unknown = str(tmp_path / "unknown.fits")
    with fits.open(path) as hdul:
        hdus = [hdu.copy() for hdu in hdul] + [fits.ImageHDU(np.zeros((2, 2), np.float32), name="PSF")]
        fits.HDUList(hdus).writeto(unknown)
    with pytest.raises(ValueError, match="unknown extension type 'PSF'"):
        read_stamps(unknown)

    # Not a Stamps file at all.
    plain = str(tmp_path / "plain.fits")
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(plain)
    with pytest.raises(ValueError, match="not a Stamps file"):
        read_stamps(plain)


# ---------------------------------------------------------------------------
# 5. Butler


def test_butler_round_trip_in_fresh_process(tmp_path, test_butler):
    original = make_stamps()
    ref = test_butler.put(original, "test_stamps")
    assert original.metadata == METADATA  # put does not change the caller's object
    path = test_butler.getURI(ref).ospath
    assert path.endswith(".fits")
    verify_fits(path)

    header = fits.getheader(path)
    provenance = [(c.keyword, c.value) for c in header.cards if c.keyword.startswith("LSST BUTLER ")]
    assert dict(provenance)["LSST BUTLER ID"] == str(ref.id)
    assert dict(provenance)["LSST BUTLER RUN"] == "test_run"
    assert dict(provenance)["LSST BUTLER DATASETTYPE"] == "test_stamps"
    for card in header.cards:
        if card.keyword.startswith("LSST BUTLER "):
            assert card.image.startswith(f"HIERARCH {card.keyword} = ")
    # Provenance sits after the user metadata, as obs_base adds it.
    assert cards(header) == expected_primary(original, provenance=provenance)

    root = str(tmp_path / "repo")
    code = f"""
        import json, math, sys
        import numpy as np
        sys.path.insert(0, {TESTS_DIR!r})
        from lsst.daf.butler import Butler
        from test_stamps import make_stamps

        butler = Butler.from_config({root!r}, collections="test_run")
        full = butler.get("test_stamps")
        by_index = butler.get("test_stamps", parameters={{"indices": [2, 0]}})
        by_id = butler.get("test_stamps", parameters={{"object_ids": ["obj b"]}})
        light = butler.get("test_stamps", parameters={{"use_variance": False, "indices": [1]}})
        try:
            butler.get("test_stamps", parameters={{"use_variance": "no"}})
            bad_parameter = ""
        except ValueError as err:
            bad_parameter = str(err)
        index = butler.get("test_stamps.index")
        original = make_stamps()
        print(json.dumps({{
            "type": type(full).__name__,
            "equals": full.equals(original),
            "metadata": full.metadata,
            "provenance": full.provenance,
            "mask_planes": full.mask_planes,
            "by_index": [s.object_id for s in by_index],
            "by_index_equal": by_index[0].equals(original[2]) and by_index[1].equals(original[0]),
            "by_id_equal": len(by_id) == 1 and by_id[0].equals(original[1]),
            "light": [light.use_variance, light[0].variance is None,
                      bool(np.array_equal(light[0].image, original[1].image, equal_nan=True))],
            "bad_parameter": bad_parameter,
            "index_type": type(index).__name__,
            "index_ids": [str(v) for v in index["object_id"]],
            "index_bbox": [[int(index[c][k]) for c in ("bbox_x0", "bbox_y0", "bbox_width", "bbox_height")]
                           for k in range(len(index))],
            "index_ra": [None if math.isnan(v) else float(v) for v in index["ra"]],
        }}))
    """
    result = json.loads(run_in_fresh_process(code).strip().splitlines()[-1])
    assert result["type"] == "Stamps"
    assert result["equals"]
    assert result["metadata"] == METADATA
    assert result["provenance"] == dict(provenance)
    assert result["mask_planes"] == MASK_PLANES
    assert result["by_index"] == ["o'c", "1234567890123"] and result["by_index_equal"]
    assert result["by_id_equal"]
    assert result["light"] == [False, True, True]
    assert "use_variance must be True or False" in result["bad_parameter"]
    assert result["index_type"] == "Table"
    assert result["index_ids"] == ["1234567890123", "obj b", "o'c"]
    assert result["index_bbox"] == [list(s.bbox) for s in original]
    assert result["index_ra"] == [150.125, None, 10.5]

    # Same in this process, through the component name.
    index = test_butler.get("test_stamps.index")
    assert list(index["object_id"]) == original.object_ids
    assert "LSST BUTLER ID" not in index.meta


def test_butler_bad_put_leaves_nothing(tmp_path, test_butler):
    root = str(tmp_path / "repo")
    before = repository_files(root)
    stamp = make_stamps()[0]
    with pytest.raises(TypeError):
        test_butler.put([stamp], "test_stamps")
    with pytest.raises(TypeError):
        test_butler.put(stamp, "test_stamps")
    # Errors raised while writing come wrapped in the datastore's
    # RuntimeError (or directly, if the formatter checks in can_accept).
    for bad, error, regex in [
        (Stamps([stamp], metadata={"LIST": [1, 2]}), TypeError, "Cannot write"),
        (Stamps([stamp], metadata={"NAME": "\u00c9toile"}), ValueError, "ASCII"),
        (Stamps([stamp], metadata={"N_STAMPS": 1}), ValueError, "reserved"),
        (Stamps([Stamp(np.ones((2, 2)))]), ValueError, "no mask"),
    ]:
        with pytest.raises((error, RuntimeError)) as info:
            test_butler.put(bad, "test_stamps")
        cause = info.value if isinstance(info.value, error) else info.value.__cause__
        assert isinstance(cause, error) and re.search(regex, str(cause)), repr(info.value)
    assert test_butler.query_datasets("test_stamps", collections="test_run", explain=False) == []
    assert list(test_butler.registry.queryDatasets("test_stamps", collections="test_run")) == []
    assert repository_files(root) == before
    # The repository is still usable.
    ref = test_butler.put(Stamps([stamp], metadata={"BAND": "y"}), "test_stamps")
    assert test_butler.get(ref).equals(Stamps([stamp], metadata={"BAND": "y"}))


# ---------------------------------------------------------------------------
# 6. The fast writer and reader against the astropy ones they replace
#
# `write_stamps` and `read_stamps` format and parse the cards themselves;
# the astropy-only writer and reader stay in the module as the reference
# and as the fallback for what the fast paths leave alone.


def _wcs_kinds():
    """A patch-like TAN WCS (CD), PC + CDELT with a date, galactic SIN,
    cylindrical CAR and TAN-SIP (the last two: astropy for every stamp).
    """
    tan = WCS(naxis=2)
    tan.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tan.wcs.crval = [150.0, 2.2]
    tan.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    tan.wcs.radesys = "ICRS"
    pc = WCS(naxis=2)
    pc.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    pc.wcs.crval = [359.9, -89.0]
    pc.wcs.pc = [[0.7, 0.2], [-0.1, 0.9]]
    pc.wcs.cdelt = [-2e-4, 3e-4]
    pc.wcs.dateobs = "2024-05-06T01:02:03"
    gal = galactic_sin_wcs()
    car = WCS(naxis=2)
    car.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    car.wcs.crval = [10.0, 0.0]
    car.wcs.cdelt = [-1e-3, 1e-3]
    sip = tan_sip_wcs()
    return {"tan": tan, "pc": pc, "gal": gal, "car": car, "sip": sip}


def _with_wcs(stamps, base, seed=0):
    """Give every stamp a copy of ``base`` with its own CRPIX."""
    rng = np.random.default_rng(seed)
    for stamp in stamps:
        wcs = base.deepcopy()
        crpix = [float(rng.normal() * 1e3), float(rng.uniform(-1, 1) * 10.0 ** rng.integers(-3, 9))]
        wcs.wcs.crpix = crpix
        if base.sip is not None:
            wcs.sip = Sip(base.sip.a, base.sip.b, None, None, crpix)
        stamp.wcs = wcs
    return stamps


def _odd_stamps(n, seed):
    """Stamps with values at the edges of card formatting."""
    rng = np.random.default_rng(seed)
    floats = [math.nan, math.inf, -math.inf, 1e300, 1e-300, -0.0, 0.1, 2.0 / 3.0, 0.0026246461264677334]
    ids = ["", "a", "o'c", "''", "&", "a" * 67, "b" * 80, " lead", "trail  ", None, "1234567890123456789"]
    stamps = []
    for k in range(n):
        height, width = (int(v) for v in rng.integers(1, 9, 2))
        stamps.append(
            Stamp(
                rng.normal(size=(height, width)).astype(np.float32),
                mask=rng.integers(-(2**31), 2**31 - 1, size=(height, width)),
                variance=rng.normal(size=(height, width)),
                x0=int(rng.integers(-(10**12), 10**12)),
                y0=int(rng.integers(-5, 5)),
                ra=floats[k % len(floats)],
                dec=float(rng.normal() * 10.0 ** rng.integers(-20, 20)),
                object_id=ids[k % len(ids)],
                coverage=float(rng.uniform()),
                edge_distance=floats[(k + 3) % len(floats)],
            )
        )
    return stamps


def _fast_cases():
    """(name, Stamps) the fast writer writes itself."""
    cases = [("pinned", make_stamps()), ("zero", Stamps([], metadata={"BAND": "g"}))]
    image_only = make_stamps()
    image_only.use_mask = image_only.use_variance = False
    cases.append(("image only", image_only))
    metadata = {
        "UNDEF": None,
        "INFV": math.inf,
        "FLAG": np.bool_(False),
        "NUMBER": np.int64(-7),
        "F32": np.float32(0.1),
        "SMALL": 1.5e-20,
        "LSST ISR DOBIAS": True,
        "LONGSTR": "x" * 100,
        "LSST BUTLER RUN": "u/someone/" + "r" * 70,
        "band": "lower case key",
        "BUNIT": "nJy",
    }
    planes = dict(MASK_PLANES, lowercase=15, VERY_LONG_PLANE_NAME=20)
    cases.append(("odd values", Stamps(_odd_stamps(22, 1), metadata=metadata, mask_planes=planes)))
    for name, base in _wcs_kinds().items():
        cases.append((f"wcs {name}", Stamps(_with_wcs(_odd_stamps(6, 2), base), metadata={"BAND": "r"})))
    return cases


def _astropy_bytes(stamps):
    buffer = io.BytesIO()
    stamps_astropy.write_stamps_astropy(stamps, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name, stamps", _fast_cases(), ids=[name for name, _ in _fast_cases()])
def test_fast_writer_is_byte_identical_to_astropy(tmp_path, name, stamps):
    expected = _astropy_bytes(stamps)
    buffer = io.BytesIO()
    assert stamps_fast.write_stamps_fast(stamps, buffer) is True  # Not left to astropy.
    assert buffer.getvalue() == expected
    path = str(tmp_path / "fast.fits")
    with open(path, "wb") as stream:
        stream.write(b"longer, older content" * 100_000)
    write_stamps(stamps, path)
    with open(path, "rb") as stream:
        assert stream.read() == expected


def test_writer_leaves_unusual_files_to_astropy(tmp_path):
    stamp = make_stamps()[0]
    # Structural metadata keywords: astropy decides (here: it refuses).
    for metadata in ({"NAXIS1": 3}, {"BZERO": 1.0}):
        stamps = Stamps([stamp], metadata=metadata)
        assert stamps_fast.write_stamps_fast(stamps, io.BytesIO()) is False
        try:
            expected = _astropy_bytes(stamps)
        except Exception as err:
            with pytest.raises(type(err)):
                write_stamps(stamps, io.BytesIO())
        else:
            buffer = io.BytesIO()
            write_stamps(stamps, buffer)
            assert buffer.getvalue() == expected
    # A plane of a type the fast writer does not write (astropy: BZERO).
    odd = make_stamps()
    odd[0].mask = odd[0].mask.astype(np.uint16)
    assert stamps_fast.write_stamps_fast(odd, io.BytesIO()) is False
    buffer = io.BytesIO()
    write_stamps(odd, buffer)
    assert buffer.getvalue() == _astropy_bytes(odd)
    # A compressed file name.
    path = str(tmp_path / "stamps.fits.gz")
    write_stamps(make_stamps(), path)
    with open(path, "rb") as stream:
        assert stream.read(2) == b"\x1f\x8b"
    assert read_stamps(path).equals(make_stamps())


def _same_reads(fast, reference):
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


def _no_astropy_reader(monkeypatch):
    def refuse(*args):
        raise AssertionError("the fast reader left this file to astropy")

    monkeypatch.setattr(stamps_module, "_read_stamps_astropy", refuse)
    monkeypatch.setattr(stamps_module, "read_stamps_index_astropy", refuse)


def _reference_read(path, **kwargs):
    return stamps_module._read_stamps_astropy(
        path, kwargs.get("indices"), kwargs.get("object_ids"), "reference"
    )


@pytest.mark.parametrize("name, stamps", _fast_cases(), ids=[name for name, _ in _fast_cases()])
def test_fast_reader_matches_astropy(tmp_path, monkeypatch, name, stamps):
    path = str(tmp_path / "stamps.fits")
    write_stamps(stamps, path)
    if name == "odd values":
        # astropy keeps 20 characters of a float: the file, not the reader,
        # loses digits (afw keeps 15).
        assert not read_stamps(path).equals(stamps)
    stamps_fast.STAMP_WCS.clear()
    reference = _reference_read(path)
    index = stamps_module.read_stamps_index_astropy(path, "reference")
    _no_astropy_reader(monkeypatch)
    for _ in range(2):  # The second time, WCS families are known already.
        _same_reads(read_stamps(path), reference)
    with open(path, "rb") as stream:
        _same_reads(read_stamps(stream), reference)
    expected_index = stamps_layout.index_table(index.index_rows(), index.metadata)
    got_index = read_stamps_index(path)
    assert repr(got_index.as_array().tolist()) == repr(expected_index.as_array().tolist())  # NaN == NaN
    assert got_index.meta == expected_index.meta
    if len(stamps) > 2:
        subset = read_stamps(path, indices=[2, 0])
        assert subset[0].equals(reference[2]) and subset[1].equals(reference[0])


def test_fast_reader_reads_afw_files(tmp_path, monkeypatch):
    paths = []
    for k, kwargs in enumerate(
        [{}, {"with_archive": False}, {"has_mask": False, "with_archive": False, "old_afw_scaling": False}]
    ):
        path = str(tmp_path / f"afw{k}.fits")
        write_afw_file(path, **kwargs)
        paths.append((path, _reference_read(path)))
    _no_astropy_reader(monkeypatch)
    for path, reference in paths:
        _same_reads(read_stamps(path), reference)


def _tan_with_native_pole():
    """A tract-like TAN WCS whose header carries PV1_3/PV1_4 (the native
    pole), as the stamps extractStamps writes do.
    """
    wcs = _wcs_kinds()["tan"].deepcopy()
    wcs.wcs.set_pv([(1, 3, 180.0), (1, 4, 2.2)])
    wcs.wcs.set()
    assert "PV1_3" in wcs.to_header()
    return wcs


@pytest.mark.parametrize("kind", ["tan", "tan_pv"])
def test_derived_wcs_equals_astropy_wcs_of_each_header(tmp_path, kind):
    base = _wcs_kinds()["tan"] if kind == "tan" else _tan_with_native_pole()
    stamps = _with_wcs(make_many(n=12, size=8), base)
    stamps[5].image = np.zeros((40, 30), np.float32)  # Another size: another family.
    stamps[5].mask = np.zeros((40, 30), np.int32)
    stamps[5].variance = np.zeros((40, 30), np.float32)
    path = str(tmp_path / "wcs.fits")
    write_stamps(stamps, path)
    stamps_fast.STAMP_WCS.clear()
    back = read_stamps(path)
    assert len(stamps_fast.STAMP_WCS) == 2
    # Family members get their WCS made when first asked for.
    assert sum(stamp.__dict__.get("_wcs_factory") is not None for stamp in back) == 10
    with fits.open(path) as hdul:
        for k, stamp in enumerate(back):
            header = hdul["IMAGE", k + 1].header
            expected = WCS(header, naxis=2, key=" ")
            assert stamp.wcs.to_header_string(relax=True) == expected.to_header_string(relax=True)
            assert stamp.wcs.pixel_shape == expected.pixel_shape == (stamp.width, stamp.height)
            assert stamp.wcs.wcs.compare(expected.wcs)
            assert list(stamp.wcs.wcs.crpix) == [header["CRPIX1"], header["CRPIX2"]]
            # (The file keeps 14 digits: astropy's to_header.)
            np.testing.assert_allclose(stamp.wcs.wcs.crpix, stamps[k].wcs.wcs.crpix, rtol=1e-13)
    # The WCS handed out are independent copies.
    back[1].wcs.wcs.crpix = [0.0, 0.0]
    again = read_stamps(path)
    np.testing.assert_allclose(again[1].wcs.wcs.crpix, stamps[1].wcs.wcs.crpix, rtol=1e-13)


def test_reader_leaves_unusual_files_to_astropy(tmp_path, monkeypatch):
    stamps = make_stamps()
    path = str(tmp_path / "plain.fits")
    write_stamps(stamps, path)
    with fits.open(path) as hdul:
        hdus = [hdu.copy() for hdu in hdul]
    # A scaled IMAGE HDU (BITPIX 16, BSCALE/BZERO).
    scaled = [hdu.copy() for hdu in hdus]
    image = fits.ImageHDU(np.round(np.nan_to_num(hdus[4].data) * 100), header=hdus[4].header)
    image.scale("int16", bscale=0.01, bzero=0.0)
    scaled[4] = image
    # Tile-compressed HDUs.
    compressed = [hdus[0]] + [fits.CompImageHDU(hdu.data, header=hdu.header) for hdu in hdus[1:]]
    files = {}
    for name, hdu_list in (("scaled", scaled), ("compressed", compressed)):
        files[name] = str(tmp_path / f"{name}.fits")
        fits.HDUList(hdu_list).writeto(files[name])
    files["gzip"] = str(tmp_path / "plain.fits.gz")
    with open(path, "rb") as source, gzip.open(files["gzip"], "wb") as target:
        target.write(source.read())
    calls = []
    reference = stamps_module._read_stamps_astropy
    monkeypatch.setattr(stamps_module, "_read_stamps_astropy", lambda *a: calls.append(a) or reference(*a))
    for name, file in files.items():
        calls.clear()
        got = read_stamps(file)
        assert len(calls) == 1, name
        _same_reads(got, reference(file, None, None, "reference"))
        if name != "scaled":
            assert got.equals(stamps)
        with open(file, "rb") as stream:  # A file object goes back to its start.
            _same_reads(read_stamps(stream), got)
            assert stream.closed  # As astropy closes a file object it is given.


def test_reader_non_seekable_stream(many_file):
    stamps, path = many_file
    with open(path, "rb") as stream:
        data = stream.read()

    class Pipe(io.RawIOBase):
        def __init__(self):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._data.read(min(len(buffer), 1000))  # Short reads.
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert read_stamps(Pipe()).equals(stamps)
    assert read_stamps(io.BufferedReader(Pipe()), indices=[59])[0].equals(stamps[59])


CARD_VALUES = [True, False, 0, -1, 12345678901234567890, 1.5, -0.0, 1e-300, 1e300, 2.2000000000000002]
CARD_VALUES += ["", "a", "o'c", "''", "x: 1", " lead", "a'' b", "&", "a" * 68, "T", "1.5", None]
ODD_CARDS = [
    "X       = 'abc' / c",
    "X       =   1.5D3",
    "X       = 1.5e3",
    "X       = +.5",
    "X       = 007",
    "X       = (1, 2)",
    "X       = TRUE",
    "X       = 'a'' / x'",
    "X       = 'a''b'",
    "X       = 'abc",
    "X       = 1 2",
    "X       =",
    "X       = / only a comment",
    "COMMENT   hello",
    "HISTORY x = 1",
    "        blank",
    "x       = 1",
    "XX= 1",
    "HIERARCH A B = 'q' / c",
    "HIERARCH  = 1",
    "HIERARCH X = 1.0E+05",
    "HIERARCH X=1",
    "HIERARCH X = ",
    "X       = ''''",
    "X       = ' '",
    "X       = 'a' b",
    "X       = 1.",
    "X       = .",
    "DP1     = 'AXIS.1: 1'",
    "X       = 'a: b'",
    "CONTINUE  'abc'",
    "X       = F / no",
]


def test_card_parser_matches_astropy():
    images = [c.ljust(80) for c in ODD_CARDS]
    for key in ("A", "RA_DEG", "DATE-OBS", "HIERARCH LSST BUTLER RUN", "HIERARCH has_variance"):
        for value in CARD_VALUES:
            for comment in (None, "a comment", "/odd"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    image = str(fits.Card(key, value, comment))
                if len(image) == 80:
                    images.append(image)
    for image in images:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                card = fits.Card.fromstring(image)
                expected = (card.keyword, card.value)
            except Exception as err:
                expected = type(err)
            try:
                got = fits_cards.parse_card(image)
            except Exception as err:
                got = type(err)
        if isinstance(expected, tuple) and isinstance(got, tuple):
            assert got[0] == expected[0] and type(got[1]) is type(expected[1]), image
            assert got[1] == expected[1] or (got[1] != got[1] and expected[1] != expected[1]), image
        else:
            assert got == expected, image


def test_card_formatter_matches_astropy():
    rng = np.random.default_rng(11)
    values = CARD_VALUES + [float(v) for v in rng.normal(size=200) * 10.0 ** rng.integers(-30, 30, 200)]
    values += [int(v) for v in rng.integers(-(2**62), 2**62, 50)] + [math.nan, math.inf, np.float32(0.1)]
    cards = fits_cards.CardFormatter()
    for key in ("A", "RA_DEG", "CRVAL1A", "LONG_KEYWORD", "MP_DETECTED_NEGATIVE"):
        for value in values:
            for comment in (None, "Column pixel of Reference Pixel"):
                if comment and len(key) > 8:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    card = fits_cards.astropy_card(key, value)
                    if comment:
                        card.comment = comment
                    assert cards.card(key, value, comment) == str(card), (key, value, comment)


def test_shifted_wcs_written_and_made_as_an_explicit_copy(tmp_path):
    """`Stamp.set_shifted_wcs` (what extractStamps uses) writes the same
    file as a WCS copied and shifted by hand, and makes the same WCS.
    """
    parent = _tan_with_native_pole()
    parent.wcs.crpix = [1234.5, -56.25]
    lazy, eager = make_many(n=6, size=9), make_many(n=6, size=9)
    for k, (a, b) in enumerate(zip(lazy, eager)):
        dx, dy = 17.0 * k, 3.0 - 5.0 * k
        a.set_shifted_wcs(parent, dx, dy)
        copy = parent.deepcopy()
        copy.wcs.crpix = [1234.5 - dx, -56.25 - dy]
        b.wcs = copy
    write_stamps(lazy, str(tmp_path / "lazy.fits"))
    write_stamps(eager, str(tmp_path / "eager.fits"))
    assert (tmp_path / "lazy.fits").read_bytes() == (tmp_path / "eager.fits").read_bytes()
    assert list(parent.wcs.crpix) == [1234.5, -56.25]  # The shared parent is left alone.
    for a, b in zip(lazy, eager):
        assert a.wcs.to_header_string() == b.wcs.to_header_string()
        assert a.wcs is a.wcs  # Made once.


def test_shifted_sip_wcs_and_duplicate_selection(tmp_path):
    """A SIP parent's shifted WCS maps pixels as the parent does at the
    offset; selecting one stamp twice gives two independent WCS.
    """
    parent = _wcs_kinds()["sip"].deepcopy()
    parent.wcs.crpix = [1.0, 1.0]
    parent.sip = Sip(parent.sip.a, parent.sip.b, None, None, [1.0, 1.0])
    stamp = make_many(n=1, size=9)[0]
    stamp.set_shifted_wcs(parent, 1500, 900)
    np.testing.assert_allclose(
        stamp.wcs.all_pix2world([[0.0, 0.0], [3.0, 4.0]], 0),
        parent.all_pix2world([[1500.0, 900.0], [1503.0, 904.0]], 0),
        rtol=0,
        atol=1e-11,
    )
    path = str(tmp_path / "tan.fits")
    write_stamps(_with_wcs(make_many(n=3, size=8), _wcs_kinds()["tan"]), path)
    stamps_fast.STAMP_WCS.clear()
    twice = read_stamps(path, indices=[0, 0])
    assert twice[0].wcs is not twice[1].wcs
    assert twice[0].wcs.to_header_string() == twice[1].wcs.to_header_string()
