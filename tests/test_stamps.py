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
(`zooniverse_stamps`; the layout is described in doc/stamps_format.md):
every card and HDU our writer produces, and padding in `cut_stamp`.  Files
written the way afw writes them are read in test_stamps_afw_files.py,
subset reads in test_stamps_reads.py, the Butler formatter in
test_stamps_butler.py, and the fast writer and reader against the astropy
ones in test_stamps_fast_paths.py.
"""

import math
import os
import re

import astropy.io.fits as fits
import numpy as np
import pytest
from astropy.wcs import WCS
from stamps_test_utils import (
    ARRAY_KEYWORDS,
    MASK_PLANES,
    METADATA,
    card_images,
    cards,
    expected_plane,
    expected_primary,
    make_stamps,
    verify_fits,
)
from zooniverse_test_utils import (
    check_fits_file,
)

from lsst.epo.zooniverse.formats.stamp_cutting import cut_stamp
from lsst.epo.zooniverse.formats.stamps import (
    Stamp,
    Stamps,
    read_stamps,
    read_stamps_index,
    write_stamps,
)

# ---------------------------------------------------------------------------
# What our writer writes, card by card


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
# Cutting with padding

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
