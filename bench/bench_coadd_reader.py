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

"""Per-object coadd reads and PNG compression levels, measured in one run.

1. The notebook path: ``butler.get("deep_coadd", ..., parameters={"bbox":
   box})`` for one 64x64 box per object, through a real Butler on the demo
   repository, with this package's reader (rows read once, metadata cached)
   against the general lsst.images reader (astropy sections +
   ``MaskedImage.from_hdu_list``) and a full read then slice.
2. PNG encoding of realistic 256x256 RGB stamps at zlib levels 1, 6 and 9.

Usage: python bench/bench_coadd_reader.py [N_OBJECTS]
"""

import sys
import tempfile
import time

import numpy as np

from lsst.epo.zooniverse import get_butler
from lsst.epo.zooniverse.butler import legacy_coadd
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.formats.png import encode_png
from lsst.images import Box, Interval


def rate(function, n):
    start = time.perf_counter()
    for k in range(n):
        function(k)
    return n / (time.perf_counter() - start)


def main(n_objects: int = 300) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        demo = make_demo_repo(f"{tmp}/repo", progress=lambda m: None)
        butler = get_butler(demo.root, collections=demo.collection)
        data_id = {"skymap": "zooniverse_demo", "tract": 0, "patch": 4, "band": "r"}
        path = butler.getURI("deep_coadd", data_id).ospath
        rng = np.random.default_rng(1)
        corners = rng.integers(310, 600, size=(n_objects, 2))
        boxes = [Box(y=Interval(int(y), int(y) + 64), x=Interval(int(x), int(x) + 64)) for x, y in corners]

        fast = rate(lambda k: butler.get("deep_coadd", data_id, parameters={"bbox": boxes[k]}), n_objects)
        fast_direct = rate(lambda k: legacy_coadd.read_legacy_coadd(path, bbox=boxes[k]), n_objects)
        sections = rate(lambda k: legacy_coadd._read_box_with_sections(path, boxes[k]), n_objects)
        full = rate(lambda k: legacy_coadd.read_legacy_coadd(path)[boxes[k]], max(n_objects // 5, 10))

        print("## Per-object deep_coadd bbox reads (64x64, demo patch 380x380)")
        print()
        print("| path | reads/s | ratio |")
        print("|---|---|---|")
        print(f"| full read, then slice (baseline) | {full:.0f} | 1.0 |")
        print(f"| astropy sections + lsst.images from_hdu_list | {sections:.0f} | {sections / full:.1f} |")
        print(f"| this package, direct | {fast_direct:.0f} | {fast_direct / full:.1f} |")
        print(f"| this package, through butler.get(bbox) | {fast:.0f} | {fast / full:.1f} |")
        print()

        coadds = {
            band: np.nan_to_num(butler.get("deep_coadd", {**data_id, "band": band}).image.array)
            for band in ("g", "r", "i")
        }
        stamps = []
        for x, y in corners[:60]:
            planes = [coadds[b][y - 300 : y - 300 + 256, x - 300 : x - 300 + 256] for b in ("i", "r", "g")]
            if planes[0].shape != (256, 256):
                continue
            scaled = np.arcsinh(np.clip(np.stack(planes, axis=-1), 0, None) / 50.0)
            stamps.append((np.clip(scaled / 6.0, 0, 1) * 255).astype(np.uint8))
        print("## PNG encoding, 256x256 RGB stamps of the demo coadd (Pillow)")
        print()
        print("| zlib level | PNGs/s | mean KB | speed vs level 6 |")
        print("|---|---|---|---|")
        results = {}
        for level in (1, 6, 9):
            sizes = [len(encode_png(s, compress_level=level)) for s in stamps]
            results[level] = (
                rate(lambda k: encode_png(stamps[k % len(stamps)], compress_level=level), 120),
                np.mean(sizes),
            )
        for level, (speed, size) in results.items():
            print(f"| {level} | {speed:.0f} | {size / 1024:.1f} | {speed / results[6][0]:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
