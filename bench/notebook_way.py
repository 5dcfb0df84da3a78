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


"""The notebook way, the slow baseline of bench/bench_pipeline.py: one
cutout at a time, by hand, as in a tutorial notebook (per object and band
a ``butler.get`` of a bbox, astropy ``make_lupton_rgb``, a matplotlib
figure saved as PNG).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from bench_pipeline import INPUTS, SKYMAP


def notebook_way_rate(repo: str, n_objects: int, stamp_size: int, out_dir: Path, repeats: int = 3) -> float:
    """The notebook way, per object: three bbox gets, make_lupton_rgb, a
    matplotlib figure saved as PNG.  Returns objects per second, the best
    of ``repeats`` passes over the same objects (the first pass also pays
    matplotlib's warm-up; the best pass is the baseline least favourable
    to the pipeline).
    """
    import matplotlib

    matplotlib.use("Agg")

    from lsst.epo.zooniverse.butler.config import get_butler

    butler = get_butler(repo, collections=list(INPUTS))
    skymap = butler.get("zooniverse_skymap", skymap=SKYMAP)
    tract = skymap.tract(0)
    refs = butler.query_datasets("zooniverse_targets", explain=False)
    targets = butler.get(refs[0])
    for ref in refs[1:]:
        if len(targets) >= n_objects:
            break
        from astropy.table import vstack

        targets = vstack([targets, butler.get(ref)])
    targets = targets[:n_objects]
    x, y = tract.wcs.wcs_world2pix(np.asarray(targets["ra"]), np.asarray(targets["dec"]), 0)
    half = stamp_size // 2
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        done = notebook_pass(butler, tract, targets, x, y, half, stamp_size, out_dir)
        best = max(best, done / (time.perf_counter() - start))
    return best


def notebook_pass(butler, tract, targets, x, y, half: int, stamp_size: int, out_dir: Path) -> int:
    """One pass of the notebook way over ``targets``; returns the number of
    PNGs made.
    """
    import matplotlib.pyplot as plt
    from astropy.visualization import make_lupton_rgb

    from lsst.images import Box, Interval

    done = 0
    for k in range(len(targets)):
        patches = [
            p for p in tract.patch_ids() if tract.patch_inner_bbox(p).contains(np.array(x[k]), np.array(y[k]))
        ]
        if not patches:
            continue
        outer = tract.patch_outer_bbox(patches[0])
        cx, cy = int(np.floor(x[k] + 0.5)), int(np.floor(y[k] + 0.5))
        x0 = min(max(cx - half, outer.x0), outer.x1 - stamp_size)
        y0 = min(max(cy - half, outer.y0), outer.y1 - stamp_size)
        bbox = Box(y=Interval(y0, y0 + stamp_size), x=Interval(x0, x0 + stamp_size))
        planes = [
            butler.get(
                "deep_coadd", skymap=SKYMAP, tract=0, patch=patches[0], band=band, parameters={"bbox": bbox}
            ).image.array
            for band in ("i", "r", "g")
        ]
        rgb = make_lupton_rgb(*planes, stretch=400, Q=8)
        figure = plt.figure()
        plt.imshow(rgb, origin="lower")
        plt.axis("off")
        figure.savefig(out_dir / f"cutout{targets['object_id'][k]}.png")
        plt.close(figure)
        done += 1
    return done
