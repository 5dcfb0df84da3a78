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

"""DRP's ``deep_coadd`` (``ExposureF``, an afw Exposure) read as
``MaskedImageV2`` through the converter this package's Butler
configuration declares (doc/rsp_dp1.md).  afw cannot be installed here:
these tests use a stand-in ``lsst.afw.image`` module with the few methods
the conversion calls; the real afw is exercised only on the RSP.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import astropy.units as u
import numpy as np

from lsst.epo.zooniverse.butler.config import CONFIG_DIR
from lsst.epo.zooniverse.butler.legacy_coadd import masked_image_from_exposure

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for the part of lsst.afw.image the storage classes name.
_FAKE_AFW = """
import sys, types
afw = types.ModuleType("lsst.afw")
image = types.ModuleType("lsst.afw.image")
class MaskedImage: pass
class Exposure: pass
class ExposureF(Exposure): pass
image.MaskedImage, image.Exposure, image.ExposureF = MaskedImage, Exposure, ExposureF
afw.image = image
sys.modules["lsst.afw"] = afw
sys.modules["lsst.afw.image"] = image
import lsst
lsst.afw = afw
"""

_SCRIPT = """
import os, sys, tempfile
from lsst.daf.butler import Butler, Config, DatasetType, StorageClassFactory
from lsst.pipe.base import Pipeline

root = tempfile.mkdtemp()
Butler.makeRepo(root, config=Config(sys.argv[1]) if sys.argv[1] != "-" else None)
butler = Butler.from_config(root, writeable=True)
factory = StorageClassFactory()
target, source = factory.getStorageClass("MaskedImageV2"), factory.getStorageClass("ExposureF")
print("CAN_CONVERT", target.can_convert(source))
if sys.argv[1] != "-":
    butler.registry.registerDatasetType(
        DatasetType("deep_coadd", ("skymap", "tract", "patch", "band"), "ExposureF",
                    universe=butler.dimensions)
    )
    graph = Pipeline.from_uri(sys.argv[2]).to_graph()
    graph.resolve(registry=butler.registry)
    print("COADD_INPUT", graph.dataset_types["deep_coadd"].storage_class_name)
"""


def _run(seed: str, env_path: str | None) -> str:
    env = {k: v for k, v in __import__("os").environ.items() if k != "DAF_BUTLER_CONFIG_PATH"}
    if env_path:
        env["DAF_BUTLER_CONFIG_PATH"] = env_path
    code = textwrap.dedent(_FAKE_AFW) + textwrap.dedent(_SCRIPT)
    pipeline = str(ROOT / "pipelines" / "ZooniverseCutouts.yaml")
    result = subprocess.run(
        [sys.executable, "-c", code, seed, pipeline], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_pipeline_graph_accepts_an_exposure_coadd_with_this_package_config():
    # daf_butler alone cannot give MaskedImageV2 from an afw Exposure ...
    assert "CAN_CONVERT False" in _run("-", None)
    # ... with this package's configuration it can, and the unchanged
    # pipeline resolves against deep_coadd registered as ExposureF.
    out = _run(str(Path(CONFIG_DIR) / "seed.yaml"), CONFIG_DIR)
    assert "CAN_CONVERT True" in out
    assert "COADD_INPUT ExposureF" in out


class _Plane:
    def __init__(self, array, x0, y0, planes=None):
        self.array, self._x0, self._y0, self._planes = array, x0, y0, planes

    def getX0(self):
        return self._x0

    def getY0(self):
        return self._y0

    def getMaskPlaneDict(self):
        return self._planes


def test_converter_keeps_pixels_origin_unit_and_mask_planes():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(6, 8)).astype(np.float32)
    variance = np.abs(rng.normal(size=(6, 8))).astype(np.float32)
    mask = np.zeros((6, 8), dtype=np.int32)
    mask[2, 3] = 1 << 1  # SAT
    mask[4, 5] = 1 << 8  # NO_DATA
    planes = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "DETECTED_NEGATIVE": 6,
              "SUSPECT": 7, "NO_DATA": 8}  # fmt: skip
    masked = SimpleNamespace(
        getImage=lambda: _Plane(image, 300, 200),
        getMask=lambda: _Plane(mask, 300, 200, planes),
        getVariance=lambda: _Plane(variance, 300, 200),
    )
    exposure = SimpleNamespace(
        getWcs=lambda: None, getMetadata=lambda: {"BUNIT": "nJy"}, getMaskedImage=lambda: masked
    )
    result = masked_image_from_exposure(exposure)
    assert (result.bbox.x.start, result.bbox.y.start) == (300, 200)
    assert result.bbox.x.size == 8 and result.bbox.y.size == 6
    np.testing.assert_array_equal(result.image.array, image)
    np.testing.assert_array_equal(result.variance.array, variance)
    assert result.image.unit == u.nJy
    names = set(result.mask.schema.names)
    saturated = next(n for n in names if n.startswith("SAT"))
    no_data = next(n for n in names if n.startswith("NO_DATA"))
    assert result.mask.get(saturated)[2, 3] and not result.mask.get(saturated)[4, 5]
    assert result.mask.get(no_data)[4, 5] and result.mask.get(no_data).sum() == 1
