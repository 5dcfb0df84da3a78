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

"""Tests of afw-layout coadds read with lsst.images: full and bounding-box
reads agree, touch only part of the file, keep the sky projection exact,
and work through a real Butler with the read-only formatter.
"""

import mmap
import os

import astropy.io.fits as fits
import astropy.wcs
import numpy as np
import pytest

from lsst.daf.butler import Butler, ButlerConfig, DatasetRef, FileDataset
from lsst.epo.zooniverse.butler import legacy_coadd
from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
from lsst.epo.zooniverse.butler.dataset_types import DEEP_COADD, register_dataset_types
from lsst.epo.zooniverse.butler.formatters import LegacyCoaddFormatter
from lsst.epo.zooniverse.butler.legacy_coadd import (
    _read_box_with_sections,
    read_legacy_coadd,
    to_pixel_box,
    write_legacy_masked_image,
)
from lsst.epo.zooniverse.formats.mask_planes import COADD_MASK_PLANES
from lsst.images import Box, Interval
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

WIDTH, HEIGHT = 300, 250
X0, Y0 = 1000, 2000
FULL_BOX = Box(y=Interval(Y0, Y0 + HEIGHT), x=Interval(X0, X0 + WIDTH))

NEW_PLANE_NAMES = {
    "SAT": "SATURATED",
    "INTRP": "INTERPOLATED",
    "CR": "COSMIC_RAY",
    "EDGE": "DETECTION_EDGE",
    "UNMASKEDNAN": "UNMASKED_NAN",
}
"""lsst.images names of the legacy planes that are renamed."""

NO_DATA_COLUMNS = 17
"""The first columns have no data (NaN image, NO_DATA)."""


def _parent_wcs():
    """A TAN WCS of the parent (tract) pixel grid, 0.2"/pixel, slightly
    rotated, reference pixel outside the coadd.
    """
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [1500.5, 1800.5]  # FITS 1-based, parent pixels.
    angle = np.radians(3.0)
    scale = 0.2 / 3600
    wcs.wcs.cd = scale * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    wcs.wcs.radesys = "ICRS"
    return wcs


def _planes(seed=1):
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 5.0, size=(HEIGHT, WIDTH)).astype(np.float32)
    variance = rng.uniform(20.0, 30.0, size=(HEIGHT, WIDTH)).astype(np.float32)
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.int32)
    for bit in COADD_MASK_PLANES.values():
        mask[rng.random((HEIGHT, WIDTH)) < 0.03] |= 1 << bit
    # A realistic structure: REJECTED implies INEXACT_PSF, CLIPPED implies
    # REJECTED, a block of SENSOR_EDGE, and a no-data strip.
    mask[100:140, 200:260] |= 1 << COADD_MASK_PLANES["CLIPPED"]
    clipped = (mask & (1 << COADD_MASK_PLANES["CLIPPED"])) != 0
    mask[clipped] |= 1 << COADD_MASK_PLANES["REJECTED"]
    rejected = (mask & (1 << COADD_MASK_PLANES["REJECTED"])) != 0
    mask[rejected] |= 1 << COADD_MASK_PLANES["INEXACT_PSF"]
    mask[:, 150:153] |= 1 << COADD_MASK_PLANES["SENSOR_EDGE"]
    image[:, :NO_DATA_COLUMNS] = np.nan
    variance[:, :NO_DATA_COLUMNS] = np.inf
    mask[:, :NO_DATA_COLUMNS] = 1 << COADD_MASK_PLANES["NO_DATA"]
    return image, mask, variance


def _write(path, planes=None, mask_planes=COADD_MASK_PLANES):
    image, mask, variance = planes if planes is not None else _planes()
    write_legacy_masked_image(
        path,
        image=image,
        mask=mask,
        variance=variance,
        x0=X0,
        y0=Y0,
        wcs=_parent_wcs(),
        mask_planes=mask_planes,
        metadata={"BAND": "r", "SKYMAP": "test_skymap", "TRACT": 3, "PATCH": 5},
    )
    return str(path)


@pytest.fixture(scope="module")
def coadd(tmp_path_factory):
    """Path of the coadd file and the planes written into it."""
    planes = _planes()
    path = _write(tmp_path_factory.mktemp("coadd") / "coadd.fits", planes)
    return path, planes


@pytest.fixture(scope="module")
def full(coadd):
    return read_legacy_coadd(coadd[0])


class FakeBox2I:
    """Duck-typed `lsst.geom.Box2I` (maximum inclusive); afw is not
    installed here.
    """

    def __init__(self, min_x, min_y, max_x, max_y):
        self._values = (min_x, min_y, max_x, max_y)

    def getMinX(self):
        return self._values[0]

    def getMinY(self):
        return self._values[1]

    def getMaxX(self):
        return self._values[2]

    def getMaxY(self):
        return self._values[3]


def _assert_same(got, expected):
    """Compare two `lsst.images.MaskedImage` completely."""
    assert got.bbox == expected.bbox
    np.testing.assert_array_equal(got.image.array, expected.image.array)
    np.testing.assert_array_equal(got.variance.array, expected.variance.array)
    assert got.mask.schema == expected.mask.schema
    np.testing.assert_array_equal(got.mask.array, expected.mask.array)
    assert got.image.unit == expected.image.unit
    assert got.variance.unit == expected.variance.unit
    assert got.image.bbox == got.mask.bbox == got.variance.bbox == got.bbox


def _assert_sky_matches_astropy(result, box):
    """Pixel to sky of ``result`` agrees with astropy.wcs on the parent WCS
    to 1e-9 degrees, at the box corners, centre and random points (also
    outside the box).
    """
    rng = np.random.default_rng(3)
    xs = np.concatenate(
        [
            [box.x.start, box.x.stop - 1, box.x.start, box.x.stop - 1, (box.x.start + box.x.stop) / 2],
            rng.uniform(X0 - 50, X0 + WIDTH + 50, 20),
        ]
    )
    ys = np.concatenate(
        [
            [box.y.start, box.y.start, box.y.stop - 1, box.y.stop - 1, (box.y.start + box.y.stop) / 2],
            rng.uniform(Y0 - 50, Y0 + HEIGHT + 50, 20),
        ]
    )
    sky = result.sky_projection.pixel_to_sky(x=xs, y=ys)
    ra, dec = _parent_wcs().wcs_pix2world(xs, ys, 0)
    dra = ((sky.ra.deg - ra + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec))
    ddec = sky.dec.deg - dec
    assert np.max(np.hypot(dra, ddec)) < 1e-9


# --------------------------------------------------------------------------
# Reading files directly.


def test_full_read_matches_what_was_written(coadd, full):
    _, (image, mask, variance) = coadd
    assert full.bbox == FULL_BOX
    np.testing.assert_array_equal(full.image.array, image)
    np.testing.assert_array_equal(full.variance.array, variance)
    assert str(full.image.unit) == "nJy"
    for legacy_name, bit in COADD_MASK_PLANES.items():
        name = NEW_PLANE_NAMES.get(legacy_name, legacy_name)
        np.testing.assert_array_equal(full.mask.get(name), (mask & (1 << bit)) != 0, err_msg=legacy_name)
    assert {"INEXACT_PSF", "SENSOR_EDGE", "CLIPPED", "REJECTED", "NO_DATA"} <= set(full.mask.schema.names)
    assert full.mask.get("NO_DATA")[:, :NO_DATA_COLUMNS].all()
    _assert_sky_matches_astropy(full, FULL_BOX)


BOXES = {
    "interior": Box(y=Interval(2050, 2100), x=Interval(1100, 1180)),
    "full": FULL_BOX,
    "first_row": Box(y=Interval(Y0, Y0 + 1), x=Interval(X0, X0 + WIDTH)),
    "last_column": Box(y=Interval(Y0, Y0 + HEIGHT), x=Interval(X0 + WIDTH - 1, X0 + WIDTH)),
    "top_right": Box(y=Interval(Y0 + HEIGHT - 10, Y0 + HEIGHT), x=Interval(X0 + WIDTH - 7, X0 + WIDTH)),
    "no_data_edge": Box(y=Interval(2010, 2030), x=Interval(X0, X0 + 40)),
    "clipped_region": Box(y=Interval(2090, 2150), x=Interval(1190, 1270)),
    "one_pixel": Box(y=Interval(2123, 2124), x=Interval(1234, 1235)),
}


@pytest.mark.parametrize("name", sorted(BOXES))
def test_bbox_read_equals_full_read_sliced(coadd, full, name):
    path, (image, _, _) = coadd
    box = BOXES[name]
    expected = full[box]
    fast = read_legacy_coadd(path, bbox=box)
    _assert_same(fast, expected)
    sections = _read_box_with_sections(path, box)
    _assert_same(sections, expected)
    np.testing.assert_array_equal(
        fast.image.array, image[box.y.start - Y0 : box.y.stop - Y0, box.x.start - X0 : box.x.stop - X0]
    )
    for result in (fast, sections):
        _assert_sky_matches_astropy(result, box)


def test_bbox_as_box2i_and_components(coadd, full):
    path = coadd[0]
    box = BOXES["interior"]
    box2i = FakeBox2I(box.x.start, box.y.start, box.x.stop - 1, box.y.stop - 1)
    assert to_pixel_box(box2i) == box
    assert to_pixel_box(box) is box
    _assert_same(read_legacy_coadd(path, bbox=box2i), full[box])
    assert read_legacy_coadd(path, bbox=box, component="bbox") == box
    np.testing.assert_array_equal(
        read_legacy_coadd(path, bbox=box, component="image").array, full[box].image.array
    )
    np.testing.assert_array_equal(
        read_legacy_coadd(path, bbox=box, component="mask").array, full[box].mask.array
    )
    assert read_legacy_coadd(path, component="bbox") == FULL_BOX
    assert str(read_legacy_coadd(path, component="unit")) == "nJy"
    np.testing.assert_array_equal(read_legacy_coadd(path, component="variance").array, full.variance.array)
    with pytest.raises(TypeError, match="lsst.images.Box or lsst.geom.Box2I, not tuple"):
        read_legacy_coadd(path, bbox=(1000, 2000, 10, 10))


@pytest.mark.parametrize(
    "box",
    [
        Box(y=Interval(2050, 2100), x=Interval(X0 - 1, 1100)),  # Left.
        Box(y=Interval(Y0 - 5, 2100), x=Interval(1050, 1100)),  # Below.
        Box(y=Interval(2050, 2100), x=Interval(1250, X0 + WIDTH + 1)),  # Right.
        Box(y=Interval(2200, Y0 + HEIGHT + 20), x=Interval(1050, 1100)),  # Above.
        Box(y=Interval(0, 10), x=Interval(0, 10)),  # Far away.
        Box(y=Interval(Y0 - 1, Y0 + HEIGHT + 1), x=Interval(X0 - 1, X0 + WIDTH + 1)),  # Contains it.
    ],
)
def test_bbox_outside_the_image(coadd, box):
    path = coadd[0]
    for read in (lambda: read_legacy_coadd(path, bbox=box), lambda: _read_box_with_sections(path, box)):
        with pytest.raises(ValueError, match=r"is not inside the image x=\[1000, 1300\) y=\[2000, 2250\)"):
            read()


def _bytes_read_by_this_process():
    with open("/proc/self/io") as stream:
        for line in stream:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


class _NoMmap(mmap.mmap):
    """Memory mapping would hide reads from /proc/self/io; refuse it."""

    attempts = 0

    def __new__(cls, *args, **kwargs):
        _NoMmap.attempts += 1
        raise OSError("memory mapping disabled by the test")


class _CountingFile:
    def __init__(self, stream, counter):
        self._stream = stream
        self._counter = counter

    def read(self, *args):
        data = self._stream.read(*args)
        self._counter.append(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stream.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
@pytest.mark.filterwarnings("ignore:Could not memory map array")
def test_bbox_read_reads_a_fraction_of_the_file(coadd, monkeypatch):
    path = coadd[0]
    size = os.path.getsize(path)
    box = Box(y=Interval(2100, 2120), x=Interval(1100, 1180))
    rows = box.y.size
    monkeypatch.setattr(mmap, "mmap", _NoMmap)
    monkeypatch.setattr(legacy_coadd, "_LAYOUT_CACHE", {})
    read_legacy_coadd(path)  # Imports everything lazily imported.

    # With memory mapping refused, the byte counter sees a full read.
    before = _bytes_read_by_this_process()
    read_legacy_coadd(path)
    assert _bytes_read_by_this_process() - before >= size * 0.95

    _NoMmap.attempts = 0
    # Cold: parses the headers, then reads the rows.
    before = _bytes_read_by_this_process()
    cold = read_legacy_coadd(path, bbox=box)
    cold_bytes = _bytes_read_by_this_process() - before
    # Warm: the layout is cached; only the rows of the three planes.
    counted = []
    real_open = open
    monkeypatch.setattr(
        legacy_coadd, "open", lambda *a, **k: _CountingFile(real_open(*a, **k), counted), raising=False
    )
    before = _bytes_read_by_this_process()
    warm = read_legacy_coadd(path, bbox=box)
    warm_bytes = _bytes_read_by_this_process() - before
    assert _NoMmap.attempts == 0

    rows_bytes = 3 * rows * WIDTH * 4  # IMAGE, MASK, VARIANCE are 4-byte pixels.
    assert sum(counted) == rows_bytes
    assert len(counted) == 3
    assert rows_bytes <= warm_bytes < rows_bytes + 16384
    assert cold_bytes < 0.2 * size, f"{cold_bytes} of {size} bytes read"
    assert warm_bytes < 0.1 * size
    full = read_legacy_coadd(path)
    _assert_same(cold, full[box])
    _assert_same(warm, full[box])


def test_compressed_file_uses_the_general_reader(coadd, full, tmp_path):
    """Tile-compressed HDUs (an ImageHDU subclass in astropy) must not be
    read as raw rows.
    """
    path = str(tmp_path / "compressed.fits")
    with fits.open(coadd[0]) as hdul:
        hdus = [fits.PrimaryHDU(header=hdul[0].header)]
        for k in (1, 2, 3):
            header = hdul[k].header.copy()
            for key in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT"):
                header.remove(key, ignore_missing=True)
            hdus.append(
                fits.CompImageHDU(
                    data=hdul[k].data, header=header, compression_type="GZIP_2", quantize_level=0.0
                )
            )
        fits.HDUList(hdus).writeto(path)
    _assert_same(read_legacy_coadd(path), full)
    for box in (BOXES["interior"], BOXES["top_right"]):
        result = read_legacy_coadd(path, bbox=box)
        _assert_same(result, full[box])
        _assert_sky_matches_astropy(result, box)


def test_rewritten_file_is_read_again(tmp_path):
    path = str(tmp_path / "coadd.fits")
    box = BOXES["interior"]
    first_planes = _planes(seed=10)
    _write(path, first_planes)
    first = read_legacy_coadd(path, bbox=box)
    second_planes = _planes(seed=11)
    _write(path, second_planes)
    second = read_legacy_coadd(path, bbox=box)
    window = (slice(box.y.start - Y0, box.y.stop - Y0), slice(box.x.start - X0, box.x.stop - X0))
    np.testing.assert_array_equal(first.image.array, first_planes[0][window])
    np.testing.assert_array_equal(second.image.array, second_planes[0][window])


def test_unmapped_mask_plane_is_not_dropped(tmp_path):
    """A legacy plane lsst.images has no place for: the full read refuses
    the file, so a bbox read of pixels that use it must refuse too (not drop
    the bits), and a bbox read elsewhere still works.
    """
    image, mask, variance = _planes()
    mask[50:60, 50:60] |= 1 << 20
    path = _write(tmp_path / "odd.fits", (image, mask, variance), {**COADD_MASK_PLANES, "MY_PLANE": 20})
    with pytest.raises(RuntimeError, match="'MY_PLANE' is not remapped"):
        read_legacy_coadd(path)
    touching = Box(y=Interval(Y0 + 55, Y0 + 70), x=Interval(X0 + 40, X0 + 80))
    with pytest.raises(RuntimeError, match="'MY_PLANE' is not remapped"):
        read_legacy_coadd(path, bbox=touching)
    elsewhere = BOXES["interior"]
    _assert_same(read_legacy_coadd(path, bbox=elsewhere), _read_box_with_sections(path, elsewhere))


# --------------------------------------------------------------------------
# Through a Butler.

DATA_ID = {"skymap": "test_skymap", "tract": 3, "patch": 5, "band": "r"}
RUN = "coadds"


def _polygon(wcs, x_min, y_min, x_max, y_max):
    corners = wcs.wcs_pix2world([[x_min, y_min], [x_max, y_min], [x_max, y_max], [x_min, y_max]], 0)
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(float(ra), float(dec))) for ra, dec in corners])


@pytest.fixture(scope="module")
def coadd_repo(coadd, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("butler") / "repo")
    make_butler_repo(root)
    butler = get_butler(root, writeable=True, run=RUN)
    registry = butler.registry
    registry.insertDimensionData(
        "instrument",
        {
            "name": "TestCam",
            "visit_max": 1,
            "visit_system": 0,
            "exposure_max": 1,
            "detector_max": 1,
            "class_name": "lsst.epo.zooniverse.tests.TestCam",
        },
    )
    registry.insertDimensionData(
        "physical_filter", {"instrument": "TestCam", "name": "TestCam-r", "band": "r"}
    )
    wcs = _parent_wcs()
    registry.insertDimensionData(
        "skymap",
        {
            "name": "test_skymap",
            "hash": b"test skymap hash",
            "tract_max": 10,
            "patch_nx_max": 4,
            "patch_ny_max": 4,
        },
    )
    registry.insertDimensionData(
        "tract", {"skymap": "test_skymap", "id": 3, "region": _polygon(wcs, 0, 0, 4000, 4000)}
    )
    registry.insertDimensionData(
        "patch",
        {
            "skymap": "test_skymap",
            "tract": 3,
            "id": 5,
            "cell_x": 1,
            "cell_y": 1,
            "region": _polygon(wcs, X0 - 0.5, Y0 - 0.5, X0 + WIDTH - 0.5, Y0 + HEIGHT - 0.5),
        },
    )
    (dataset_type,) = register_dataset_types(butler, [DEEP_COADD])
    assert dataset_type.storageClass_name == "MaskedImageV2"
    ref = DatasetRef(dataset_type, registry.expandDataId(DATA_ID), run=RUN)
    butler.ingest(FileDataset(path=coadd[0], refs=[ref], formatter=LegacyCoaddFormatter), transfer="copy")
    return root


def test_butler_get_full_and_bbox(coadd, full, coadd_repo):
    butler = Butler.from_config(coadd_repo, collections=RUN)
    (ref,) = butler.registry.queryDatasets("deep_coadd", collections=RUN)
    assert ref.dataId["band"] == "r"
    uri = butler.getURI(ref)
    assert os.path.realpath(uri.ospath) != os.path.realpath(coadd[0])  # Copied in.
    with open(uri.ospath, "rb") as a, open(coadd[0], "rb") as b:
        assert a.read() == b.read()
    _assert_same(butler.get("deep_coadd", DATA_ID), full)
    for name in ("interior", "top_right", "one_pixel"):
        box = BOXES[name]
        result = butler.get("deep_coadd", DATA_ID, parameters={"bbox": box})
        _assert_same(result, full[box])
        _assert_sky_matches_astropy(result, box)
        box2i = FakeBox2I(box.x.start, box.y.start, box.x.stop - 1, box.y.stop - 1)
        _assert_same(butler.get("deep_coadd", DATA_ID, parameters={"bbox": box2i}), full[box])


def test_butler_components(full, coadd_repo):
    butler = Butler.from_config(coadd_repo, collections=RUN)
    box = BOXES["clipped_region"]
    assert butler.get("deep_coadd.bbox", DATA_ID) == FULL_BOX
    assert butler.get("deep_coadd.bbox", DATA_ID, parameters={"bbox": box}) == box
    image = butler.get("deep_coadd.image", DATA_ID, parameters={"bbox": box})
    assert image.bbox == box
    np.testing.assert_array_equal(image.array, full[box].image.array)
    np.testing.assert_array_equal(butler.get("deep_coadd.image", DATA_ID).array, full.image.array)
    mask = butler.get("deep_coadd.mask", DATA_ID, parameters={"bbox": box})
    assert mask.schema == full.mask.schema
    np.testing.assert_array_equal(mask.array, full[box].mask.array)
    assert mask.get("CLIPPED").any() and mask.get("INEXACT_PSF").any()
    variance = butler.get("deep_coadd.variance", DATA_ID, parameters={"bbox": box})
    np.testing.assert_array_equal(variance.array, full[box].variance.array)
    assert str(butler.get("deep_coadd.unit", DATA_ID)) == "nJy"
    projection = butler.get("deep_coadd.sky_projection", DATA_ID)
    sky = projection.pixel_to_sky(x=1234.0, y=2123.0)
    ra, dec = _parent_wcs().wcs_pix2world([[1234.0, 2123.0]], 0)[0]
    assert abs(sky.ra.deg - ra) < 1e-9 and abs(sky.dec.deg - dec) < 1e-9
    with pytest.raises(ValueError, match="not inside the image"):
        butler.get("deep_coadd", DATA_ID, parameters={"bbox": Box(y=Interval(0, 10), x=Interval(0, 10))})


def test_butler_put_with_the_read_only_formatter_fails(full, coadd_repo):
    """Where the datastore is configured to write deep_coadd with this
    package's formatter, a put fails with its read-only message and leaves
    nothing behind.
    """
    config = ButlerConfig(coadd_repo)
    config["datastore", "formatters", "deep_coadd"] = (
        "lsst.epo.zooniverse.butler.formatters.LegacyCoaddFormatter"
    )
    butler = Butler.from_config(config, writeable=True, run="attempted_put")
    with pytest.raises(
        NotImplementedError, match="LegacyCoaddFormatter is read-only: ingest afw-layout coadd files"
    ):
        butler.put(full, "deep_coadd", DATA_ID)
    assert list(butler.registry.queryDatasets("deep_coadd", collections="attempted_put")) == []
    assert not os.path.exists(os.path.join(coadd_repo, "attempted_put"))
