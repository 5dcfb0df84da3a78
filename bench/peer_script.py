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

"""The honest peer of the pipeline: what a skilled astronomer writes by
hand to make the same pictures (issue 17).

For each patch it reads each band's coadd once with astropy, slices every
object's stamp from memory, runs astropy's ``make_lupton_rgb``, encodes a
Pillow PNG at compression level 1 and writes the patch's PNGs into one
ZIP.  No Butler, no intermediate Stamps files.

The work list is a JSON file: a list of patches, each
``{"name": ..., "coadds": {"i": path, "r": path, "g": path},
"objects": path}`` where ``objects`` is a CSV file with ``object_id,ra,dec``
rows, and the coadds are afw-layout FITS files (``IMAGE`` in HDU 1 with
the patch's celestial WCS).  The R, G and B channels are the first, second
and third band of ``coadds``.

``--fast`` is the same script with the fastest settings Pillow and astropy
offer for this job: Pillow's run-length deflate strategy (``Z_RLE``, the
fastest of its ``compress_type`` choices at level 1), the coadds memory
mapped with only the ``IMAGE`` HDU touched.  ``--processes N`` shares the
patches among N processes (one patch per task).

Usage: python bench/peer_script.py WORK_LIST.json OUT_DIR [--fast]
       [--processes N] [--stamp-size S]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import warnings
import zipfile
import zlib
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.visualization import make_lupton_rgb
from astropy.wcs import WCS
from PIL import Image


def picture_patch(patch: dict, out_dir: str, stamp_size: int = 101, fast: bool = False) -> int:
    """Make the pictures of one patch into ``<out_dir>/<name>.zip``; return
    how many.
    """
    planes, wcs = [], None
    for path in patch["coadds"].values():  # R, G, B
        with fits.open(path, memmap=fast, lazy_load_hdus=fast) as hdus:
            planes.append(np.array(hdus["IMAGE"].data, dtype=np.float32))
            wcs = wcs or WCS(hdus["IMAGE"].header).celestial
    height, width = planes[0].shape
    with open(patch["objects"], newline="") as stream:
        rows = list(csv.DictReader(stream))
    ra = np.array([float(r["ra"]) for r in rows])
    dec = np.array([float(r["dec"]) for r in rows])
    x, y = wcs.all_world2pix(ra, dec, 0)
    half = stamp_size // 2
    png_options = {"compress_level": 1}
    if fast:
        png_options["compress_type"] = zlib.Z_RLE
    done = 0
    with zipfile.ZipFile(Path(out_dir) / f"{patch['name']}.zip", "w") as archive:
        for k, row in enumerate(rows):
            x0 = int(np.floor(x[k] + 0.5)) - half
            y0 = int(np.floor(y[k] + 0.5)) - half
            # The part of the stamp inside the coadd; the rest stays black.
            ix0, iy0 = max(x0, 0), max(y0, 0)
            ix1, iy1 = min(x0 + stamp_size, width), min(y0 + stamp_size, height)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            stamps = []
            for plane in planes:
                stamp = np.zeros((stamp_size, stamp_size), dtype=np.float32)
                stamp[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = plane[iy0:iy1, ix0:ix1]
                stamps.append(np.nan_to_num(stamp))
            rgb = make_lupton_rgb(*stamps, stretch=5, Q=8, minimum=0)
            buffer = io.BytesIO()
            # Row 0 of the array is south: flip to have north up.
            Image.fromarray(rgb[::-1]).save(buffer, format="PNG", **png_options)
            archive.writestr(f"{row['object_id']}.png", buffer.getvalue())
            done += 1
    return done


def _picture_patch(arguments: tuple) -> int:
    return picture_patch(*arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work_list")
    parser.add_argument("out_dir")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--stamp-size", type=int, default=101)
    args = parser.parse_args(argv)
    # make_lupton_rgb divides 0 by 0 on black pixels (and says so).
    warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
    patches = json.loads(Path(args.work_list).read_text())
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    work = [(patch, args.out_dir, args.stamp_size, args.fast) for patch in patches]
    if args.processes > 1:
        with Pool(args.processes) as pool:
            total = sum(pool.imap_unordered(_picture_patch, work))
    else:
        total = sum(map(_picture_patch, work))
    print(f"pictures: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
