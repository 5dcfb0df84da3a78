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

"""Shared helpers for the epo_zooniverse tests: temporary Butler
repositories, external checkers and fresh-process reads.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.wcs import WCS, Sip

from lsst.daf.butler import Butler, DatasetType
from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
from lsst.epo.zooniverse.formats.png import PNG_SIGNATURE

TEST_DATASET_TYPES = {
    "zooniverse_cutout": "ZooniverseCutout",
    "test_stamps": "ZooniverseStamps",
    "test_rgb": "ZooniverseRgb",
}
"""Dataset types (no dimensions) registered in `make_test_butler`."""


def make_test_butler(root: str, run: str = "test_run") -> Butler:
    """Make a repository with this package's seed configuration and the
    dimensionless `TEST_DATASET_TYPES`, and return a writeable Butler.
    """
    make_butler_repo(root)
    butler = get_butler(root, writeable=True, run=run)
    for name, storage_class in TEST_DATASET_TYPES.items():
        butler.registry.registerDatasetType(DatasetType(name, butler.dimensions.empty, storage_class))
    return butler


def repository_files(root: str) -> list[str]:
    """Return the paths of every file under ``root``, relative to it and
    sorted (to check that a failed put left nothing behind).
    """
    found = []
    for directory, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(directory, f), root) for f in files]
    return sorted(found)


def galactic_sin_wcs() -> WCS:
    """Return a galactic SIN WCS with CDELT and CROTA (a WCS family the
    format tests exercise).
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-SIN", "GLAT-SIN"]
    wcs.wcs.crval = [10.0, -20.0]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    wcs.wcs.crota = [0.0, 30.0]
    return wcs


def tan_sip_wcs() -> WCS:
    """Return a TAN-SIP WCS (CD matrix, SIP polynomials about CRPIX
    (1, 1)), a WCS family the format tests exercise.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [10.0, 20.0]
    wcs.wcs.cd = [[1e-5, 0.0], [0.0, 1e-5]]
    wcs.sip = Sip(np.full((3, 3), 1e-7), np.zeros((3, 3)), None, None, [1.0, 1.0])
    return wcs


def require_tool(name: str) -> str:
    """Return the path of an external checker, failing (not skipping) the
    test when it is missing: the README's test command installs it.
    """
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; run the README's test command (scripts/test.sh) to install it."
        )
    return path


def check_png_file(path: str) -> None:
    """Run ``pngcheck`` on a file and fail the test if it complains."""
    result = subprocess.run([require_tool("pngcheck"), "-q", path], capture_output=True, text=True)
    assert result.returncode == 0, f"pngcheck failed on {path}: {result.stdout}{result.stderr}"


def check_png_bytes(data: bytes, tmp_path, name: str = "check.png") -> None:
    """Write PNG bytes to a file and run ``pngcheck`` on it."""
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as stream:
        stream.write(data)
    check_png_file(path)


def check_fits_file(path: str) -> None:
    """Run ``fitsverify`` on a file and fail on any error or warning."""
    result = subprocess.run([require_tool("fitsverify"), "-q", path], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and output.startswith("verification OK"), (
        f"fitsverify failed on {path}:\n{output}"
    )


def png_chunks(data):
    """``[(type, payload)]`` of a PNG, parsed independently of the package."""
    assert data.startswith(PNG_SIGNATURE)
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def run_in_fresh_process(code: str, **env: str) -> str:
    """Run Python code in a new interpreter (a fresh process with no state
    from this one) and return its standard output; fail on error.
    """
    environment = dict(os.environ, **env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, f"fresh process failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def test_butler(tmp_path) -> Butler:
    """A writeable Butler on a new repository (see `make_test_butler`)."""
    return make_test_butler(str(tmp_path / "repo"))
