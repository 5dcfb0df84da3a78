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

"""``butler summarize-zooniverse-run``: the pure-black and saturated pixel
fractions of a run's pictures, and one-line errors for a collection that
does not exist or holds no pictures (issue 14).
"""

import math

import numpy as np
from click.testing import CliRunner
from zooniverse_test_utils import make_test_butler

from lsst.daf.butler.cli.butler import cli as butler_cli
from lsst.epo.zooniverse.butler.dataset_types import RGB, register_dataset_types
from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection
from lsst.epo.zooniverse.script.summarize_zooniverse_run import picture_level_fractions


def _pictures():
    """Two 4x5 pictures: 6 pure-black pixels, 3 with a channel at 255."""
    first = np.full((4, 5, 3), 40, np.uint8)
    first[0, :4] = 0  # 4 pure black
    first[1, 0] = [0, 0, 1]  # not pure black
    first[2, 0] = [255, 0, 0]  # saturated
    second = np.full((4, 5, 3), 90, np.uint8)
    second[3, 3:] = 0  # 2 pure black
    second[0, 0] = [255, 255, 255]
    second[0, 1] = [3, 255, 7]
    return [first, second]


def test_picture_level_fractions():
    black, saturated, n_pixels = picture_level_fractions(_pictures())
    assert n_pixels == 40
    assert black == 6 / 40 and saturated == 3 / 40
    black, saturated, n_pixels = picture_level_fractions([])
    assert math.isnan(black) and math.isnan(saturated) and n_pixels == 0


def _summarize(*args):
    result = CliRunner().invoke(butler_cli, ["summarize-zooniverse-run", *args])
    return result.exit_code, result.output


def _one_line_error(exit_code, output, text):
    lines = output.strip().splitlines()
    assert exit_code != 0
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], output
    assert "Traceback" not in output


def test_missing_collection_is_a_one_line_error(tmp_path):
    root = str(tmp_path / "repo")
    make_test_butler(root)
    _one_line_error(*_summarize(root, "u/nobody/run"), "u/nobody/run")
    _one_line_error(*_summarize(root, "test_run,u/nobody/run"), "u/nobody/run")


def test_collection_without_pictures_is_a_one_line_error(tmp_path):
    root = str(tmp_path / "repo")
    make_test_butler(root)  # test_run exists; zooniverse_rgb is not even registered
    _one_line_error(*_summarize(root, "test_run"), f"No {RGB.name} datasets")
    butler = make_test_butler(str(tmp_path / "repo2"))
    register_dataset_types(butler, [RGB])
    _one_line_error(*_summarize(str(tmp_path / "repo2"), "test_run"), f"No {RGB.name} datasets")


def _butler_with_pictures(root, pictures):
    """A repository with one zooniverse_rgb dataset of ``pictures`` in
    the RUN collection ``test_run``.
    """
    butler = make_test_butler(root)
    butler.registry.insertDimensionData(
        "skymap", {"name": "s", "hash": b"s", "tract_max": 10, "patch_nx_max": 10, "patch_ny_max": 10}
    )
    butler.registry.insertDimensionData("tract", {"skymap": "s", "id": 0})
    butler.registry.insertDimensionData(
        "patch", {"skymap": "s", "tract": 0, "id": 3, "cell_x": 3, "cell_y": 0}
    )
    register_dataset_types(butler, [RGB])
    index = {
        "object_id": [str(k) for k in range(len(pictures))],
        "ra": [10.0] * len(pictures),
        "dec": [0.0] * len(pictures),
    }
    from astropy.table import Table

    butler.put(RgbCollection(pictures, Table(index)), RGB.name, skymap="s", tract=0, patch=3)
    return butler


def test_summary_prints_the_pixel_fractions(tmp_path):
    root = str(tmp_path / "repo")
    _butler_with_pictures(root, _pictures())
    exit_code, output = _summarize(root, "test_run")
    assert exit_code == 0, output
    assert "pictures: 2 in 1 ZIP files" in output
    assert (
        "pixels: 15.00 % pure black (R=G=B=0), 7.50 % saturated (a channel at 255), over 40 pixels of all"
        in (output)
    )
    # Sampled: one picture in two, said so.
    exit_code, output = _summarize(root, "test_run", "--max-level-pictures", "1")
    assert exit_code == 0, output
    assert "20.00 % pure black" in output and "over 20 pixels of 1 picture in 2: 1 of 2" in output
