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

"""extractStamps on a dense patch: memory stays within a stated bound
(issue 17 item 3), and the coadd's mask bits come out as
`legacy_mask_bits` gives them.
"""

import os
import tracemalloc

import numpy as np
import pytest
from astropy.table import Table

from lsst.epo.zooniverse.butler.legacy_coadd import (
    legacy_mask_bits,
    read_legacy_coadd,
    write_legacy_masked_image,
)
from lsst.epo.zooniverse.butler.skymap_geometry import make_tan_wcs
from lsst.epo.zooniverse.formats.mask_planes import COADD_MASK_PLANES
from lsst.epo.zooniverse.formats.stamps import read_stamps_index, write_stamps
from lsst.epo.zooniverse.pipeline.extract_stamps import (
    ExtractStampsConfig,
    ExtractStampsTask,
    coadd_mask_bits,
)

SIZE = 1100  # The benchmark's patches: 1000 px inner, 50 px border.

N_OBJECTS = 20_000

STAMP = 41

# The stated bound: extractStamps holds, besides the coadd (read before),
# a few coadd-sized arrays (the mask bits and their temporaries), one
# stamp's planes and headers at a time while writing, the padded stamps
# of objects whose box leaves the coadd, and per stamp its record (views,
# metadata, WCS factory: ~2.5 KB) and its primary-header cards (9 cards,
# 720 bytes, twice while the header is joined).  Holding every plane of
# every stamp (as before issue 17) would take N_OBJECTS * STAMP**2 * 12
# bytes = 403 MB here, plus ~11 KB of headers per stamp (220 MB).
BOUND = 6 * SIZE * SIZE * 4 + 4_500 * N_OBJECTS


def _coadd(path, rng):
    wcs = make_tan_wcs(150.0, 2.0, 0.2, 4000, 4000)
    image = rng.normal(0.0, 1.0, (SIZE, SIZE)).astype(np.float32)
    # Random mask bits of every plane the coadd has.
    bits = np.array(sorted(COADD_MASK_PLANES.values()), dtype=np.int64)
    chosen = rng.integers(0, len(bits), (SIZE, SIZE))
    mask = np.where(rng.random((SIZE, SIZE)) < 0.3, 1 << bits[chosen], 0).astype(np.int32)
    write_legacy_masked_image(
        path,
        image=image,
        mask=mask,
        variance=np.ones_like(image),
        x0=1000,
        y0=2000,
        wcs=wcs,
        mask_planes=COADD_MASK_PLANES,
    )
    return read_legacy_coadd(path), wcs, mask


def test_coadd_mask_bits_as_legacy_mask_bits(tmp_path):
    coadd, _, _ = _coadd(tmp_path / "coadd.fits", np.random.default_rng(1))
    bits, planes = coadd_mask_bits(coadd.mask)
    expected_bits, expected_planes = legacy_mask_bits(coadd.mask)
    assert planes == expected_planes
    assert bits.dtype == expected_bits.dtype and np.array_equal(bits, expected_bits)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_extract_stamps_memory_on_a_dense_patch(tmp_path):
    rng = np.random.default_rng(2)
    coadd, wcs, _ = _coadd(tmp_path / "coadd.fits", rng)
    # 20,000 objects over the patch, 10 of them on its edges (padded).
    x = rng.uniform(1000 + STAMP, 1000 + SIZE - STAMP, N_OBJECTS)
    y = rng.uniform(2000 + STAMP, 2000 + SIZE - STAMP, N_OBJECTS)
    x[:10], y[:10] = 1000.0, 2000.0 + np.arange(10) * 50
    ra, dec = wcs.wcs_pix2world(x, y, 0)
    targets = Table(
        {
            "object_id": [str(k) for k in range(N_OBJECTS)],
            "ra": ra,
            "dec": dec,
            "row_index": np.arange(N_OBJECTS),
        }
    )
    config = ExtractStampsConfig()
    config.stamp_size = STAMP
    task = ExtractStampsTask(config=config)
    path = tmp_path / "stamps.fits"
    tracemalloc.start()
    try:
        stamps = task.run(targets_patch=targets, coadd=coadd, skymap="s", tract=0, patch=0, band="r").stamps
        write_stamps(stamps, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"extractStamps + write, {N_OBJECTS} stamps of {STAMP} px: peak {peak / 2**20:.1f} MiB")
    assert peak < BOUND, f"peak {peak / 2**20:.1f} MiB over the bound {BOUND / 2**20:.1f} MiB"
    index = read_stamps_index(path)
    # Half the box of the edge objects is outside the coadd.
    coverage = np.asarray(index["coverage"])
    assert len(index) == N_OBJECTS and (coverage[:10] < 0.6).all() and (coverage[10:] > 0.9).all()
    assert os.path.getsize(path) % 2880 == 0
