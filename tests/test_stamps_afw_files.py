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

"""Reading Stamps files written the way afw writes them (by the independent
raw-FITS writer of stamps_test_utils.py, from doc/stamps_format.md).
"""

import math

import astropy.io.fits as fits
import numpy as np
import pytest
from stamps_test_utils import (
    AFW_MASK_PLANES,
    CALEXP_METADATA,
    afw_stamps_data,
    make_stamps,
    raw_card,
    verify_fits,
    write_afw_file,
)

from lsst.epo.zooniverse.formats.stamps import (
    STAMPCLS,
    read_stamps,
    read_stamps_index,
    write_stamps,
)

# Files written the way afw writes them, by the raw writer of
# stamps_test_utils.py.


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
