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

"""The fast Stamps writer and reader against the astropy ones they replace
(kept in `lsst.epo.zooniverse.formats.stamps_astropy` as the reference
and as the fallback for what the fast paths leave alone), and the card
parser and formatter against astropy's.
"""

import gzip
import io
import math
import warnings

import astropy.io.fits as fits
import numpy as np
import pytest
from astropy.wcs import WCS, Sip
from stamps_test_utils import (
    MASK_PLANES,
    astropy_bytes,
    make_many,
    make_stamps,
    no_astropy_reader,
    same_reads,
    write_afw_file,
)
from zooniverse_test_utils import (
    galactic_sin_wcs,
    tan_sip_wcs,
)

import lsst.epo.zooniverse.formats.stamps as stamps_module
from lsst.epo.zooniverse.formats import fits_cards, stamps_fast, stamps_layout
from lsst.epo.zooniverse.formats.stamps import (
    Stamp,
    Stamps,
    read_stamps,
    read_stamps_index,
    write_stamps,
)

# ---------------------------------------------------------------------------
# The fast writer and reader against the astropy ones they replace
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


@pytest.mark.parametrize("name, stamps", _fast_cases(), ids=[name for name, _ in _fast_cases()])
def test_fast_writer_is_byte_identical_to_astropy(tmp_path, name, stamps):
    expected = astropy_bytes(stamps)
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
            expected = astropy_bytes(stamps)
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
    assert buffer.getvalue() == astropy_bytes(odd)
    # A compressed file name.
    path = str(tmp_path / "stamps.fits.gz")
    write_stamps(make_stamps(), path)
    with open(path, "rb") as stream:
        assert stream.read(2) == b"\x1f\x8b"
    assert read_stamps(path).equals(make_stamps())


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
    no_astropy_reader(monkeypatch)
    for _ in range(2):  # The second time, WCS families are known already.
        same_reads(read_stamps(path), reference)
    with open(path, "rb") as stream:
        same_reads(read_stamps(stream), reference)
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
    no_astropy_reader(monkeypatch)
    for path, reference in paths:
        same_reads(read_stamps(path), reference)


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
        same_reads(got, reference(file, None, None, "reference"))
        if name != "scaled":
            assert got.equals(stamps)
        with open(file, "rb") as stream:  # A file object goes back to its start.
            same_reads(read_stamps(stream), got)
            assert stream.closed  # As astropy closes a file object it is given.


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
