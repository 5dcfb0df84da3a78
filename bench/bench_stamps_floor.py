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

"""The least a patch's Stamps can cost on this machine, against the
Stamps writer, in one run.

A patch of the peer comparison (``bench_pipeline.py --peer``) has 800
objects of 101 x 101 pixels in three bands: its Stamps are three files of
about 117 MB, nearly all of it pixels (image, mask, variance of every
stamp, big-endian).  Whatever the writer, those bytes are copied once from
the coadd (with the byte swap) and once more by the kernel into the page
cache.  This script times, per patch, on stamps cut as ``extractStamps``
cuts them (views of a 1,100 x 1,100 coadd of each band, one shared TAN
WCS shifted per stamp):

``copy``
    every plane of every stamp swapped and copied into a reused 1 MB
    buffer (`~lsst.epo.zooniverse.formats.fits_block_writer.BlockWriter`,
    the writer's own), headers left out, nothing written: the copy the
    FITS byte order needs;
``copy + write``
    the same buffers written to a file (preallocated, unbuffered, as the
    writer writes): the pixels' bytes as far as the page cache, with no
    header, card or WCS;
``writer``
    `~lsst.epo.zooniverse.formats.stamps.write_stamps`, whole files.

The three alternate over the rounds (medians); with
``--patches-per-round 16`` each writes 16 patches (5 GB) before its files
are deleted, as a 16-patch job does, so that the kernel's writeback of
the dirty pages weighs as in that job; CPU is the process's user
and system time; the kernel's free page reporting is paused as in
``bench_pipeline.py --peer``.  Each round is a new patch (new stamp
positions), so that the writer makes the WCS cards of every stamp of the
first band as it does in a job.  Files are deleted between rounds (not
timed), so each write fills new page-cache pages as a pipeline run does.

The budget line is what the Stamps may cost a patch for the BPS job to be
1.3x the fast peer: ``(fast_peer / 1.3 - job_without_stamps) / patches``,
from the wall times given on the command line (defaults: bench/RESULTS.md
"Session 18", 16 patches).

Usage: python bench/bench_stamps_floor.py [--rounds N] [--objects N]
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from vm_memory import add_free_page_reporting_option, free_page_reporting_paused

from lsst.epo.zooniverse.butler.skymap_geometry import make_tan_wcs
from lsst.epo.zooniverse.formats.fits_block_writer import BlockWriter, open_for_writing
from lsst.epo.zooniverse.formats.fits_cards import BLOCK
from lsst.epo.zooniverse.formats.stamp_cutting import cut_stamp
from lsst.epo.zooniverse.formats.stamps import DEFAULT_MASK_PLANES, Stamps, write_stamps

COADD_SIDE = 1100
BANDS = ("g", "r", "i")


def patch_stamps(objects: int, size: int, seed: int) -> list[Stamps]:
    """One patch's stamps in every band, as extractStamps cuts them: views
    of the band's coadd, the coadd's WCS shifted to each stamp.
    """
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, COADD_SIDE - size, (objects, 2))
    wcs = make_tan_wcs(150.0, 2.2, 0.2, COADD_SIDE, COADD_SIDE)
    result = []
    for band in BANDS:
        image = rng.normal(size=(COADD_SIDE, COADD_SIDE)).astype(np.float32)
        mask = rng.integers(0, 1 << 12, size=(COADD_SIDE, COADD_SIDE), dtype=np.int32)
        variance = rng.uniform(1, 2, size=(COADD_SIDE, COADD_SIDE)).astype(np.float32)
        stamps = Stamps(
            metadata={"SKYMAP": "bench", "TRACT": 0, "PATCH": seed, "BAND": band, "BUNIT": "nJy"},
            mask_planes=dict(DEFAULT_MASK_PLANES),
        )
        for k, (x0, y0) in enumerate(corners):
            stamp = cut_stamp(
                image,
                mask,
                variance,
                parent_x0=0,
                parent_y0=0,
                x0=int(x0),
                y0=int(y0),
                width=size,
                height=size,
                share=True,
                coverage=1.0,
                ra=150.0,
                dec=2.2,
                object_id=str(1_000_000 * seed + k),
                edge_distance=10.0,
            )
            stamp.set_shifted_wcs(wcs, int(x0), int(y0))
            stamps.append(stamp)
        result.append(stamps)
    return result


class _Discard:
    """A stream that takes every byte and keeps none."""

    def write(self, data) -> int:
        return len(data)


def padded_size(data: np.ndarray) -> int:
    """Bytes of a plane's data unit, padded to whole FITS blocks."""
    return data.nbytes + (-data.nbytes % BLOCK)


def copy_pixels(stamps: Stamps, stream, preallocate: bool = False) -> int:
    """Swap and copy every plane of every stamp into the writer's buffer
    (padded to FITS blocks, no header), written to ``stream`` whenever
    the buffer is full (the file's space reserved first with
    ``preallocate``); return the bytes.
    """
    planes = [(stamp.image, stamp.mask, stamp.variance) for stamp in stamps]
    total = sum(padded_size(data) for stamp_planes in planes for data in stamp_planes)
    writer = BlockWriter(stream)
    if preallocate:
        writer.preallocate(total)
    for stamp_planes in planes:
        for data in stamp_planes:
            nbytes, padded = data.nbytes, padded_size(data)
            base = writer.reserve(padded)
            np.ndarray(data.shape, data.dtype.newbyteorder(">"), writer.view, base)[...] = data
            if padded > nbytes:
                writer.pad(base + nbytes, padded - nbytes)
    writer.flush()
    return total


def copy_and_write(stamps: Stamps, path: str) -> int:
    """`copy_pixels` into a preallocated file; return the bytes."""
    with open_for_writing(path) as stream:
        return copy_pixels(stamps, stream, preallocate=True)


def timed(function) -> tuple[float, float, int]:
    """Wall and CPU (user + system) seconds of one call, and what it
    returned (the bytes it wrote).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    written = function()
    return time.perf_counter() - wall, time.process_time() - cpu, written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--objects", type=int, default=800, help="objects per patch (default 800)")
    parser.add_argument("--size", type=int, default=101, help="stamp side in pixels (default 101)")
    parser.add_argument("--fast-peer-s", type=float, default=23.17, help="fast peer's wall time")
    parser.add_argument(
        "--job-without-stamps-s", type=float, default=17.16, help="BPS job, write_stamps=False"
    )
    parser.add_argument("--job-with-stamps-s", type=float, default=24.09, help="BPS job with the Stamps")
    parser.add_argument("--patches", type=int, default=16, help="patches of those runs")
    parser.add_argument(
        "--patches-per-round",
        type=int,
        default=1,
        help="patches each contender writes before its files are deleted (16: as much as a 16-patch job)",
    )
    add_free_page_reporting_option(parser)
    args = parser.parse_args()

    results: dict[str, list[tuple[float, float]]] = {"copy": [], "copy + write": [], "writer": []}
    sizes: dict[str, int] = {}  # Bytes a patch.
    with (
        free_page_reporting_paused(not args.keep_free_page_reporting) as state,
        tempfile.TemporaryDirectory(prefix="stamps_floor_") as tmp,
    ):
        print(state)
        for round_number in range(args.rounds):
            # New positions every round: the writer's CRPIX cards are not
            # in its cache yet, as for a new patch in a job.
            patches = [
                patch_stamps(args.objects, args.size, seed=round_number * 1000 + k + 1)
                for k in range(args.patches_per_round)
            ]
            paths = [[os.path.join(tmp, f"{k}_{band}.fits") for band in BANDS] for k in range(len(patches))]

            def copy(patches=patches) -> int:
                return sum(copy_pixels(stamps, _Discard()) for bands in patches for stamps in bands)

            def copy_write(patches=patches, paths=paths) -> int:
                return sum(
                    copy_and_write(stamps, path)
                    for bands, band_paths in zip(patches, paths)
                    for stamps, path in zip(bands, band_paths)
                )

            def writer(patches=patches, paths=paths) -> int:
                for bands, band_paths in zip(patches, paths):
                    for stamps, path in zip(bands, band_paths):
                        write_stamps(stamps, path)
                return sum(os.path.getsize(path) for band_paths in paths for path in band_paths)

            order = [("copy", copy), ("copy + write", copy_write), ("writer", writer)]
            shift = round_number % len(order)
            for name, function in order[shift:] + order[:shift]:
                wall, cpu, written = timed(function)
                results[name].append((wall / len(patches), cpu / len(patches)))
                sizes[name] = written // len(patches)
                for band_paths in paths:
                    for path in band_paths:
                        if os.path.exists(path):
                            os.unlink(path)

    budget = (args.fast_peer_s / 1.3 - args.job_without_stamps_s) / args.patches
    in_job = (args.job_with_stamps_s - args.job_without_stamps_s) / args.patches
    print(
        f"One patch: {args.objects} objects x {len(BANDS)} bands, {args.size} px; "
        f"{args.patches_per_round} patch(es) a round; medians of {args.rounds} rounds"
    )
    print()
    print("| per patch | MB | wall s | CPU s | the BPS job with Stamps at this cost, vs fast peer |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        job = args.job_without_stamps_s + args.patches * wall
        print(
            f"| {name} | {sizes[name] / 1e6:.0f} | {wall:.3f} | {cpu:.3f} | {args.fast_peer_s / job:.2f}x |"
        )
    print(
        f"| the Stamps in the BPS job (given runs) | | {in_job:.3f} | | "
        f"{args.fast_peer_s / args.job_with_stamps_s:.2f}x |"
    )
    print(f"| budget for 1.3x the fast peer | | {budget:.3f} | | 1.30x |")


if __name__ == "__main__":
    main()
