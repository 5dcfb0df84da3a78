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

"""shifted_wcs makes the WCS a deep copy shifted by hand makes."""

import warnings

import numpy as np
import pytest
from astropy.wcs import WCS, DistortionLookupTable
from zooniverse_test_utils import galactic_sin_wcs, tan_sip_wcs

from lsst.epo.zooniverse.formats.stamps_layout import shifted_wcs


def _kinds():
    """TAN (CD, with the native pole as PV), galactic SIN, CAR with a
    pixel shape and bounds, TAN-SIP, and one with distortion tables.
    """
    tan = WCS(naxis=2)
    tan.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tan.wcs.crval = [150.0, 2.2]
    tan.wcs.cd = [[-5.5e-5, 0.0], [0.0, 5.5e-5]]
    tan.wcs.set_pv([(1, 3, 180.0), (1, 4, 2.2)])
    tan.wcs.set()
    car = WCS(naxis=2, preserve_units=True)
    car.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    car.wcs.crval = [10.0, 0.0]
    car.wcs.cdelt = [-1e-3, 1e-3]
    car.pixel_shape = (300, 200)
    car.pixel_bounds = [(-0.5, 299.5), (-0.5, 199.5)]
    tables = tan.deepcopy()
    table = DistortionLookupTable(np.zeros((4, 4), np.float32), (1.0, 1.0), (1.0, 1.0), (100.0, 100.0))
    tables.cpdis1 = table
    return {"tan": tan, "gal": galactic_sin_wcs(), "car": car, "sip": tan_sip_wcs(), "tables": tables}


@pytest.mark.parametrize("kind", ["tan", "gal", "car", "sip", "tables"])
def test_shifted_wcs_is_a_shifted_deep_copy(kind):
    base = _kinds()[kind]
    before = base.to_header_string(relax=True)
    crpix = [-1234.5, 56.25]
    expected = base.deepcopy()
    expected.wcs.crpix = crpix
    if expected.sip is not None:
        expected.sip = type(expected.sip)(
            expected.sip.a, expected.sip.b, expected.sip.ap, expected.sip.bp, crpix
        )
    expected.wcs.set()
    got = shifted_wcs(base, crpix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Distortion tables are not written to a header.
        assert got.to_header_string(relax=True) == expected.to_header_string(relax=True)
    assert got.pixel_shape == expected.pixel_shape
    assert got.pixel_bounds == expected.pixel_bounds
    assert got.preserve_units == expected.preserve_units
    assert (got.sip is None) == (expected.sip is None)
    if got.sip is not None:
        assert list(got.sip.crpix) == crpix
        np.testing.assert_array_equal(got.sip.a, expected.sip.a)
    assert (got.cpdis1 is None) == (expected.cpdis1 is None)
    pixels = np.array([[0.0, 0.0], [10.0, 20.0], [-300.0, 150.0]])
    np.testing.assert_array_equal(got.all_pix2world(pixels, 0), expected.all_pix2world(pixels, 0))
    # The copy is its own: changing it leaves the base alone.
    got.wcs.crval = [1.0, 1.0]
    got.wcs.set()
    assert base.to_header_string(relax=True) == before
    if base.sip is not None:
        assert list(base.sip.crpix) != crpix
