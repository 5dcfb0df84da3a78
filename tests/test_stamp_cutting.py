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


"""CoverageMap gives every stamp's coverage as cut_stamp counts it."""

import numpy as np
import pytest

from lsst.epo.zooniverse.formats.stamp_cutting import CoverageMap, cut_stamp


@pytest.mark.parametrize("with_mask", [True, False])
def test_coverage_map_equals_counted_coverage(with_mask):
    """Boxes inside, across every edge, larger than and outside the
    parent, over NaN and NO_DATA pixels: the same float, bit for bit.
    """
    rng = np.random.default_rng(5)
    image = rng.normal(size=(70, 90)).astype(np.float32)
    image[rng.random(image.shape) < 0.1] = np.nan
    image[:, 40:43] = np.inf
    mask = rng.integers(0, 1 << 12, size=image.shape, dtype=np.int32) if with_mask else None
    no_data_bit = 8
    parent_x0, parent_y0 = 1000, -20
    covered = CoverageMap(image, mask, no_data_bit, parent_x0, parent_y0)
    boxes = [(1000, -20, 90, 70), (990, -30, 120, 100), (2000, 0, 5, 5), (1085, 45, 11, 11)]
    boxes += [
        (int(rng.integers(970, 1100)), int(rng.integers(-50, 60)), size, size)
        for size in rng.choice([1, 3, 11, 31, 101], size=300)
    ]
    for x0, y0, width, height in boxes:
        stamp = cut_stamp(
            image, mask, None, parent_x0=parent_x0, parent_y0=parent_y0, x0=x0, y0=y0,
            width=width, height=height, no_data_bit=no_data_bit,
        )  # fmt: skip
        assert covered.coverage(x0, y0, width, height) == stamp.coverage, (x0, y0, width)
        assert covered.count(x0, y0, width, height) == round(stamp.coverage * width * height)


def test_cut_stamp_keeps_a_given_coverage():
    """A coverage handed in is the stamp's, not counted again."""
    image = np.ones((10, 10), np.float32)
    box = {"x0": 0, "y0": 0, "width": 4, "height": 4}
    stamp = cut_stamp(image, None, None, parent_x0=0, parent_y0=0, coverage=0.25, **box)
    assert stamp.coverage == 0.25
