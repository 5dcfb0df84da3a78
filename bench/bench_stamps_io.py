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

"""Stamps FITS I/O and the WCS metadata of RGB PNGs, before and after, in
one run.

1. `write_stamps` / `read_stamps` on stamps cut as ``extractStamps`` cuts
   them (one TAN WCS per patch, each stamp's a copy with its own CRPIX;
   image, mask and variance), 36 and 500 stamps of 101x101 and 256x256,
   against the astropy-only writer and reader that remain as the
   reference and fallback (``stamps_astropy.write_stamps_astropy``,
   ``stamps._read_stamps_astropy``).  Files go to a temporary directory (page
   cache).  Reads are timed "cold": the WCS family cache is emptied first,
   so each read builds one ``astropy.wcs.WCS(header)``; "warm" reads (a
   later band of the same patch) reuse it.
2. The per-PNG metadata of `write_rgb_collection`: ``wcs_to_header_string``
   and ``wcs_to_xmp`` on picture WCS made as ``composeRgb`` makes them,
   against the astropy / pyavm reference functions, and a whole
   collection of 256x256 pictures written both ways (the ZIPs must be
   byte-identical).

Usage: python bench/bench_stamps_io.py [--quick]
"""

import io
import os
import sys
import tempfile
import time

import numpy as np

from lsst.epo.zooniverse.butler.skymap_geometry import make_tan_wcs
from lsst.epo.zooniverse.formats import rgb_collection, stamps_astropy, stamps_fast, wcs_metadata
from lsst.epo.zooniverse.formats import stamps as stamps_module
from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection, write_rgb_collection
from lsst.epo.zooniverse.formats.stamps import DEFAULT_MASK_PLANES, Stamp, Stamps, read_stamps, write_stamps
from lsst.epo.zooniverse.pipeline.orientation import affine_wcs


def make_stamps(n: int, size: int, seed: int = 1) -> Stamps:
    """Stamps of a 4200x4200 patch as extractStamps cuts them."""
    rng = np.random.default_rng(seed)
    patch_wcs = make_tan_wcs(150.0, 2.2, 0.2, 4200, 4200)
    stamps = Stamps(
        metadata={"SKYMAP": "lsst_cells_v1", "TRACT": 9813, "PATCH": 40, "BAND": "r", "BUNIT": "nJy"},
        mask_planes=dict(DEFAULT_MASK_PLANES, CROSSTALK=11, SENSOR_EDGE=12),
    )
    for k in range(n):
        x0, y0 = (int(v) for v in rng.integers(0, 4200 - size, 2))
        wcs = patch_wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - [x0, y0]
        stamps.append(
            Stamp(
                rng.normal(size=(size, size)).astype(np.float32),
                mask=rng.integers(0, 1 << 12, size=(size, size), dtype=np.int32),
                variance=rng.uniform(1, 2, size=(size, size)).astype(np.float32),
                x0=x0,
                y0=y0,
                ra=150.0 + rng.normal(),
                dec=2.2 + rng.normal(),
                object_id=str(1_000_000_000 + k),
                coverage=float(rng.uniform()),
                edge_distance=float(rng.normal() * 100),
                wcs=wcs,
            )
        )
    return stamps


def best_time(function, repeats: int, setup=lambda: None) -> float:
    """Shortest of ``repeats`` timed calls (seconds)."""
    times = []
    for _ in range(repeats):
        setup()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def stamps_io(quick: bool) -> None:
    print("### Stamps FITS write and read (image + mask + variance + TAN WCS per stamp)")
    print()
    print(
        "| stamps | size | MB | write astropy | write | speedup | read astropy | read (cold) | speedup "
        "| read (warm) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = [(36, 101), (36, 256), (500, 101), (500, 256)]
    with tempfile.TemporaryDirectory() as tmp:
        for n, size in cases:
            stamps = make_stamps(n, size)
            old_path, new_path = os.path.join(tmp, "old.fits"), os.path.join(tmp, "new.fits")
            few = 1 if quick or n * size * size > 4e6 else 3
            many = 3 if quick else 7
            write_old = best_time(lambda: stamps_astropy.write_stamps_astropy(stamps, old_path), few)
            write_new = best_time(lambda: write_stamps(stamps, new_path), many)
            with open(old_path, "rb") as old, open(new_path, "rb") as new:
                assert old.read() == new.read(), "the fast writer's bytes differ"
            read_old = best_time(lambda: stamps_module._read_stamps_astropy(new_path, None, None, "x"), few)
            read_cold = best_time(lambda: read_stamps(new_path), many, setup=stamps_fast.STAMP_WCS.clear)
            read_warm = best_time(lambda: read_stamps(new_path), many)
            # Same stamps as the astropy reader gives (not always equal to
            # the ones written: astropy keeps at most 20 characters of a
            # float, as afw keeps 15 digits).
            back = read_stamps(new_path)
            reference = stamps_module._read_stamps_astropy(new_path, None, None, "x")
            assert back.equals(reference)
            assert all(a.wcs.to_header_string() == b.wcs.to_header_string() for a, b in zip(back, reference))
            megabytes = os.path.getsize(new_path) / 1e6
            print(
                f"| {n} | {size}x{size} | {megabytes:.0f} "
                f"| {n / write_old:.0f}/s | {n / write_new:.0f}/s | {write_old / write_new:.1f}x "
                f"| {n / read_old:.0f}/s | {n / read_cold:.0f}/s | {read_old / read_cold:.1f}x "
                f"| {n / read_warm:.0f}/s |"
            )
    print()


def picture_wcs(n: int) -> list:
    """Picture WCS as composeRgb makes them from the stamps (north up,
    101x101 stamps resampled to 256x256).
    """
    stamps = make_stamps(n, 101)
    scale = 101 / 256
    matrix = np.diag([scale, scale])
    offset = np.array([0.5 * scale - 0.5, 0.5 * scale - 0.5])
    return [affine_wcs(stamp.wcs, matrix, offset) for stamp in stamps]


def png_metadata(quick: bool) -> None:
    n = 100 if quick else 300
    wcs_list = picture_wcs(n)
    shape = (256, 256)

    def old_metadata() -> None:
        for wcs in wcs_list:
            wcs_metadata._wcs_to_header_string_astropy(wcs)
            wcs_metadata._wcs_to_xmp_pyavm(wcs, shape)

    def new_metadata() -> None:
        for wcs in wcs_list:
            wcs_metadata.wcs_to_header_string(wcs)
            wcs_metadata.wcs_to_xmp(wcs, shape)

    for wcs in wcs_list:
        assert wcs_metadata.wcs_to_header_string(wcs) == wcs_metadata._wcs_to_header_string_astropy(wcs)
        assert wcs_metadata.wcs_to_xmp(wcs, shape) == wcs_metadata._wcs_to_xmp_pyavm(wcs, shape)
    old = best_time(old_metadata, 5) / n * 1e6
    new = best_time(new_metadata, 5) / n * 1e6

    # Whole collections, written with the reference functions and with the
    # new ones (write_rgb_collection also used to make each WCS text twice:
    # for the index and for the PNG).  PNG encoding is stubbed out for the
    # timings so that what remains is the metadata and ZIP work; the same
    # pictures without WCS are the floor.  The real encoder writes the ZIPs
    # compared byte for byte.
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:256, 0:256]
    images = []
    for _ in range(n):
        blob = np.exp(-((x - rng.uniform(64, 192)) ** 2 + (y - rng.uniform(64, 192)) ** 2) / 800.0)
        noise = rng.normal(0, 0.05, size=(256, 256, 3))
        images.append((np.clip(blob[..., None] * [1.0, 0.8, 0.6] + noise, 0, 1) * 255).astype(np.uint8))
    ids = {"object_id": [str(k) for k in range(n)]}
    full = RgbCollection(images, ids, wcs=wcs_list)
    without_wcs = RgbCollection(images, ids)

    def write(collection) -> bytes:
        buffer = io.BytesIO()
        write_rgb_collection(collection, buffer)
        return buffer.getvalue()

    def per_image(collection) -> float:
        return best_time(lambda: write(collection), 5) / n * 1e6

    def stub(image, *, text=None, xmp=None, compress_level=1) -> bytes:
        return b"png"

    def encode_twice(self, k, policy, compress_level, wcs_text=None, **kwargs):
        # As before: the PNG's WCS text made again, not taken from the index.
        return encode(self, k, policy, compress_level, **kwargs)

    encoder, encode = rgb_collection.encode_png, RgbCollection._encode
    references = (wcs_metadata._wcs_to_header_string_astropy, wcs_metadata._wcs_to_xmp_pyavm, encode_twice)
    news = (rgb_collection.wcs_to_header_string, rgb_collection.wcs_to_xmp, encode)
    results = {}
    for label, functions in (("before", references), ("now", news)):
        rgb_collection.wcs_to_header_string, rgb_collection.wcs_to_xmp, RgbCollection._encode = functions
        try:
            results[label, "zip"] = write(full)
            rgb_collection.encode_png = stub
            results[label, "full"] = per_image(full)
            results[label, "no wcs"] = per_image(without_wcs)
        finally:
            rgb_collection.encode_png = encoder
            rgb_collection.wcs_to_header_string, rgb_collection.wcs_to_xmp, RgbCollection._encode = news
    assert results["before", "zip"] == results["now", "zip"], "the ZIPs differ"
    encode = best_time(lambda: [encoder(image, compress_level=1) for image in images], 3) / n * 1e6

    def metadata(label: str) -> float:
        return results[label, "full"] - results[label, "no wcs"]

    print(f"### WCS metadata of RGB PNGs ({n} pictures of 256x256, composeRgb-style WCS)")
    print()
    print("| µs per picture | before (astropy / pyavm) | now | speedup |")
    print("|---|---|---|---|")
    print(f"| wcs_to_header_string + wcs_to_xmp | {old:.0f} | {new:.0f} | {old / new:.0f}x |")
    print(
        f"| write_rgb_collection without PNG encoding | {results['before', 'full']:.0f} "
        f"| {results['now', 'full']:.0f} | {results['before', 'full'] / results['now', 'full']:.1f}x |"
    )
    print(
        f"| WCS metadata cost in write_rgb_collection (with minus without WCS) | {metadata('before'):.0f} "
        f"| {metadata('now'):.0f} | {metadata('before') / metadata('now'):.0f}x |"
    )
    print(f"| for scale: PNG encoding (Pillow, zlib level 1) | {encode:.0f} | {encode:.0f} | |")
    print()
    print("ZIPs written with the reference functions and with the new ones are byte-identical.")
    print()


def main(quick: bool = False) -> None:
    stamps_io(quick)
    png_metadata(quick)


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
