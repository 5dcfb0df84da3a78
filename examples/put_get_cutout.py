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

"""A PI's hand-made image: cut a galaxy out of the demo coadds, colour it,
store it as a ``zooniverse_cutout`` PNG in the Butler and read it back.

Usage: python examples/put_get_cutout.py REPO OUTPUT_DIR
"""

import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.visualization import make_lupton_rgb

from lsst.daf.butler import DatasetType
from lsst.epo.zooniverse import get_butler, make_cutout_image
from lsst.images import Box, Interval

repo, output_dir = sys.argv[1], Path(sys.argv[2])
output_dir.mkdir(parents=True, exist_ok=True)

# Makes a Butler that knows the zooniverse storage classes (it sets
# DAF_BUTLER_CONFIG_PATH for this process and checks the repository).
butler = get_butler(repo, writeable=True, run="u/demo_pi/cutouts", collections="demo/defaults")
data_id = {"skymap": "zooniverse_demo", "tract": 0, "patch": 4}

# One galaxy of the sample catalog; its pixel position from the coadd's WCS
# (reading only the bbox parameter's pixels: the per-object path).
catalog = Table.read(Path(repo) / "catalogs" / "sample_catalog.csv", format="ascii.csv")
row = catalog[catalog["object_id"] == 1000067][0]
position = SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg)
projection = butler.get("deep_coadd.sky_projection", data_id, band="r")
pixel = projection.sky_to_pixel(position)
x, y = int(round(float(pixel.x))), int(round(float(pixel.y)))
box = Box(y=Interval(y - 48, y + 48), x=Interval(x - 48, x + 48))
planes = {
    band: np.nan_to_num(butler.get("deep_coadd", data_id, band=band, parameters={"bbox": box}).image.array)
    for band in ("g", "r", "i")
}
rgb = make_lupton_rgb(planes["i"], planes["r"], planes["g"], stretch=1000, Q=8)
picture = np.flipud(rgb)  # FITS row 0 is the bottom: flip so north is up.

butler.registry.registerDatasetType(
    DatasetType(
        "zooniverse_cutout", ("skymap", "tract", "patch"), "ZooniverseCutout", universe=butler.dimensions
    )
)
ref = butler.put(
    make_cutout_image(picture, metadata={"object_id": str(row["object_id"]), "bands": "i,r,g"}),
    "zooniverse_cutout",
    data_id,
)
print(f"put:  {ref.datasetType.name} {dict(ref.dataId.required)} in {ref.run}")
image = butler.get("zooniverse_cutout", data_id, collections=ref.run)
print(f"get:  {image.width}x{image.height} {image.mode}, metadata {dict(image.info)}")
out = output_dir / "cutout.png"
image.save(out)
print(f"file: {out}")
