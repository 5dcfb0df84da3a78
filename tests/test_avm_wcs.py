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
"""The AVM/XMP WCS of the pictures (issue 14): right for every rotation of
north, read back with pyavm and with an independent reader of the AVM
tags (tests/avm_tags.py), within 0.5 px at the corners of the picture.

Before the fix, every WCS whose north was turned by a positive angle came
back turned by 180° (pyavm's ``from_wcs`` wrote a positive first scale
with the rotation of the FITS convention, and AVM 1.2 readers force the
first scale negative).
"""

import math
import warnings

import astropy.wcs
import numpy as np
import pytest
from avm_tags import AvmTanReader, parse_avm_tags

from lsst.epo.zooniverse.formats.wcs_metadata import wcs_to_xmp

HEIGHT, WIDTH = 150, 200
SCALE = 0.2 / 3600.0
NORTH_UP = np.diag([-SCALE, SCALE])
ANGLES = [0.0, 0.01, -0.01, 7.85, -7.85, 28.0, -28.0, 90.0, 179.0, -179.0, 180.0, 270.0]
# The picture's outer corners (pixel centres +- 0.5) and its centre, 0-based
# FITS order.
POINTS = np.array(
    [
        [-0.5, -0.5],
        [WIDTH - 0.5, -0.5],
        [-0.5, HEIGHT - 0.5],
        [WIDTH - 0.5, HEIGHT - 0.5],
        [(WIDTH - 1) / 2, (HEIGHT - 1) / 2],
    ]
)


def rotation(degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def make_wcs(cd, crpix=(WIDTH / 2 + 0.5, HEIGHT / 2 + 0.5), crval=(150.0, 2.0), sip=None) -> astropy.wcs.WCS:
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"] if sip is None else ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = np.asarray(cd, float)
    wcs.wcs.radesys = "ICRS"
    if sip is not None:
        wcs.sip = sip
    wcs.wcs.set()
    return wcs


def separation_degrees(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    haversine = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(haversine)))


def pyavm_wcs(xmp: bytes) -> astropy.wcs.WCS:
    from pyavm import AVM

    packet = xmp[xmp.index(b"<x:xmpmeta") : xmp.index(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AVM.from_xml(packet).to_wcs()


def errors_in_pixels(truth: astropy.wcs.WCS, xmp: bytes, independent: bool = True) -> tuple[float, float]:
    """Largest distance (in pixels of the true WCS) between where the true
    WCS and each reader put POINTS: (pyavm, independent reader)."""
    pixel = math.sqrt(abs(np.linalg.det(truth.pixel_scale_matrix)))
    ra, dec = truth.all_pix2world(POINTS[:, 0], POINTS[:, 1], 0)
    ra1, dec1 = pyavm_wcs(xmp).all_pix2world(POINTS[:, 0], POINTS[:, 1], 0)
    result = [float(separation_degrees(ra, dec, ra1, dec1).max() / pixel)]
    if independent:
        ra2, dec2 = AvmTanReader(xmp, WIDTH).pixel_to_world(POINTS[:, 0], POINTS[:, 1])
        result.append(float(separation_degrees(ra, dec, ra2, dec2).max() / pixel))
    return tuple(result)


@pytest.mark.parametrize("crpix", [(WIDTH / 2 + 0.5, HEIGHT / 2 + 0.5), (20.0, 130.0), (-3000.0, 5000.0)])
@pytest.mark.parametrize("angle", ANGLES)
def test_rotated_wcs_reads_back(angle, crpix):
    # Both ways of turning north: CD = diag(-s, s) R(a) and R(a) diag(-s, s).
    for cd in (NORTH_UP @ rotation(angle), rotation(angle) @ NORTH_UP):
        truth = make_wcs(cd, crpix=crpix)
        xmp = wcs_to_xmp(truth, (HEIGHT, WIDTH))
        with_pyavm, independent = errors_in_pixels(truth, xmp)
        assert with_pyavm < 0.5 and independent < 0.5, (angle, crpix, with_pyavm, independent)


def test_unequal_scales_and_pc_cdelt_form():
    truth = make_wcs(rotation(33.0) @ np.diag([-SCALE, 1.3 * SCALE]))
    assert max(errors_in_pixels(truth, wcs_to_xmp(truth, (HEIGHT, WIDTH)))) < 0.5
    truth = astropy.wcs.WCS(naxis=2)
    truth.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    truth.wcs.crval = [10.0, -30.0]
    truth.wcs.crpix = [40.5, 60.5]
    truth.wcs.cdelt = [-SCALE, SCALE]
    truth.wcs.pc = rotation(33.0)
    truth.wcs.set()
    assert max(errors_in_pixels(truth, wcs_to_xmp(truth, (HEIGHT, WIDTH)))) < 0.5


@pytest.mark.parametrize("angle", [0.0, 20.0, -20.0, 120.0])
def test_slightly_non_orthogonal_cd(angle):
    skew = np.array([[1.0, math.tan(math.radians(0.05))], [0.0, 1.001]])
    truth = make_wcs(NORTH_UP @ skew @ rotation(angle))
    with_pyavm, independent = errors_in_pixels(truth, wcs_to_xmp(truth, (HEIGHT, WIDTH)))
    assert with_pyavm < 0.5 and independent < 0.5, (angle, with_pyavm, independent)


@pytest.mark.parametrize("angle", ANGLES)
def test_tags_follow_avm_1_2(angle):
    tags = parse_avm_tags(wcs_to_xmp(make_wcs(NORTH_UP @ rotation(angle)), (HEIGHT, WIDTH)))
    first, second = (float(value) for value in tags["Spatial.Scale"])
    assert first < 0 < second
    assert 0.0 <= float(tags["Spatial.Rotation"]) < 360.0
    assert "Spatial.CDMatrix" not in tags  # deprecated in AVM 1.2
    assert [int(float(v)) for v in tags["Spatial.ReferenceDimension"]] == [WIDTH, HEIGHT]


def test_mirrored_wcs_is_not_written_wrong():
    # East right with north up (det CD > 0) has no AVM 1.2 Scale/Rotation
    # form: no Scale/Rotation is written (a reader that needs them finds
    # none rather than a wrong WCS); the CD matrix pyavm reads is exact.
    truth = make_wcs(np.diag([SCALE, SCALE]) @ rotation(12.0))
    xmp = wcs_to_xmp(truth, (HEIGHT, WIDTH))
    tags = parse_avm_tags(xmp)
    assert "Spatial.Scale" not in tags and "Spatial.Rotation" not in tags
    assert errors_in_pixels(truth, xmp, independent=False)[0] < 0.5


def test_sip_wcs_is_approximated_over_the_whole_picture():
    # AVM cannot hold SIP terms: the packet carries the TAN WCS that fits
    # the distorted one best over the picture (the text WCS chunk keeps the
    # exact one).  Dropping the terms would be exact only at CRPIX.
    sip = astropy.wcs.Sip(
        np.array([[0, 0, 1e-4], [0, 5e-5, 0], [1.5e-4, 0, 0]]),
        np.array([[0, 0, -5e-5], [0, 1e-4, 0], [5e-5, 0, 0]]),
        None,
        None,
        (WIDTH / 2 + 0.5, HEIGHT / 2 + 0.5),
    )
    truth = make_wcs(NORTH_UP @ rotation(28.0), sip=sip)
    pixel = math.sqrt(abs(np.linalg.det(truth.pixel_scale_matrix)))
    ra, dec = truth.all_pix2world(POINTS[:, 0], POINTS[:, 1], 0)
    dropped = make_wcs(NORTH_UP @ rotation(28.0))
    ra0, dec0 = dropped.all_pix2world(POINTS[:, 0], POINTS[:, 1], 0)
    without_terms = separation_degrees(ra, dec, ra0, dec0).max() / pixel
    with_pyavm, independent = errors_in_pixels(truth, wcs_to_xmp(truth, (HEIGHT, WIDTH)))
    assert without_terms > 1.0  # the distortion matters at the corners
    assert with_pyavm < 0.75 * without_terms and independent < 0.75 * without_terms


def test_picture_png_round_trip(tmp_path):
    from pyavm import AVM

    from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection

    truth = make_wcs(NORTH_UP @ rotation(28.0), crpix=(60.5, 40.5))
    collection = RgbCollection([np.zeros((HEIGHT, WIDTH, 3), np.uint8)], {"object_id": ["a"]}, wcs=[truth])
    path = tmp_path / "picture.png"
    path.write_bytes(collection.encode(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = AVM.from_image(str(path)).to_wcs()
    pixel = math.sqrt(abs(np.linalg.det(truth.pixel_scale_matrix)))
    ra, dec = truth.all_pix2world(POINTS[:, 0], POINTS[:, 1], 0)
    ra1, dec1 = read.all_pix2world(POINTS[:, 0], POINTS[:, 1], 0)
    assert separation_degrees(ra, dec, ra1, dec1).max() / pixel < 0.5
