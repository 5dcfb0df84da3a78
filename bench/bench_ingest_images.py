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


"""Throughput and peak memory of ``butler ingest-zooniverse-images`` and of
the cutout pipeline on what it wrote.

Synthetic images: ``--bands`` bands (default 4), each a grid of
``--tiles-per-side``² tiles (default 5 × 5 = 25; 100 images in all) of
``--tile-size``² float32 pixels (default 2048, 0.2" pixels, tiles
overlapping by 48 pixels: a field of about 0.56 deg on a side). Every band
has its own grid, so every band is resampled: g is TAN north up, r is TAN
rotated by 20°, i is TAN in galactic coordinates, z is SIN with SIP
distortion (more bands repeat the pattern). Stars (``--objects``, default
2,000, Gaussian PSF) at known positions plus Gaussian noise; units nJy,
nanomaggies, MJy/sr and DN with a zero point by band.

Measured, each in a child process whose peak RSS comes from ``os.wait4``:
the ingest (``butler ingest-zooniverse-images``), the sharding of the star
catalog, and ``pipetask run -j JOBS`` of pipelines/ZooniverseCutouts.yaml.
Prints wall times, input images/s and megapixels/s, output coadds,
pictures and pictures/s, and the peak RSS of each step.

Usage: python bench/bench_ingest_images.py [--tiles-per-side 5]
       [--tile-size 2048] [--bands 4] [--objects 2000] [--jobs 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CENTRE = (52.0, -28.0)
SCALE = 0.2  # arcsec
PSF_SIGMA = 1.7  # pixels
OVERLAP = 48
BAND_NAMES = ["g", "r", "i", "z", "y", "u"]


def band_header(k: int, n_side: int, tile: int) -> tuple[dict, str, float]:
    """WCS cards of band ``k``'s grid (CRPIX for the whole mosaic), its
    BUNIT and the factor from nJy to that unit."""
    size = n_side * (tile - OVERLAP) + OVERLAP
    s = SCALE / 3600.0
    kind = k % 4
    angle = math.radians(20.0 if kind == 1 else 0.0)
    cards = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": CENTRE[0],
        "CRVAL2": CENTRE[1],
        "CRPIX1": (size + 1) / 2,
        "CRPIX2": (size + 1) / 2,
        "CD1_1": -s * math.cos(angle),
        "CD1_2": s * math.sin(angle),
        "CD2_1": s * math.sin(angle),
        "CD2_2": s * math.cos(angle),
    }
    if kind == 2:
        gal = SkyCoord(CENTRE[0], CENTRE[1], unit="deg").galactic
        cards.update(CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN", CRVAL1=gal.l.deg, CRVAL2=gal.b.deg)
    if kind == 3:
        cards.update(CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", A_ORDER=2, B_ORDER=2)
        cards.update({"A_2_0": 1e-7, "A_0_2": -1e-7, "B_1_1": 2e-7, "B_2_0": 0.0, "A_1_1": 0.0, "B_0_2": 0.0})
    unit, to_unit = [
        ("nJy", 1.0),
        ("nanomaggy", 1 / 3631.0),
        ("MJy/sr", 1e-15 / (math.radians(s) ** 2)),
        ("DN", 10 ** (0.4 * 30.0) / 3631e9),
    ][kind]
    return cards, unit, to_unit


def make_images(directory: Path, n_bands: int, n_side: int, tile: int, n_objects: int, seed: int = 1):
    """Write the tiles; return the ``--image`` values and the star
    catalog rows."""
    import astropy.wcs

    rng = np.random.default_rng(seed)
    size = n_side * (tile - OVERLAP) + OVERLAP
    half = 0.45 * size * SCALE / 3600.0
    ra = CENTRE[0] + rng.uniform(-half, half, n_objects) / math.cos(math.radians(CENTRE[1]))
    dec = CENTRE[1] + rng.uniform(-half, half, n_objects)
    flux = 10 ** rng.uniform(4.0, 6.0, n_objects)  # nJy
    specs = []
    r = int(5 * PSF_SIGMA) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    for k in range(n_bands):
        band = BAND_NAMES[k % len(BAND_NAMES)] + ("" if k < len(BAND_NAMES) else str(k))
        cards, unit, to_unit = band_header(k, n_side, tile)
        header = fits.Header(cards)
        wcs = astropy.wcs.WCS(header)
        frame = "galactic" if cards["CTYPE1"].startswith("GLON") else "icrs"
        sky = SkyCoord(ra, dec, unit="deg").transform_to(frame)
        x, y = wcs.all_world2pix(sky.spherical.lon.deg, sky.spherical.lat.deg, 0)
        noise = 20.0 * to_unit
        for j in range(n_side):
            for i in range(n_side):
                x0, y0 = i * (tile - OVERLAP), j * (tile - OVERLAP)
                data = rng.normal(0.0, noise, (tile, tile)).astype(np.float32)
                inside = (x > x0 - r) & (x < x0 + tile + r) & (y > y0 - r) & (y < y0 + tile + r)
                for sx, sy, f in zip(x[inside] - x0, y[inside] - y0, flux[inside]):
                    cx, cy = int(round(sx)), int(round(sy))
                    stamp = np.exp(-((xx + cx - sx) ** 2 + (yy + cy - sy) ** 2) / (2 * PSF_SIGMA**2))
                    stamp *= f * to_unit / (2 * math.pi * PSF_SIGMA**2)
                    ys0, xs0 = max(cy - r, 0), max(cx - r, 0)
                    ys1, xs1 = min(cy + r + 1, tile), min(cx + r + 1, tile)
                    if ys0 < ys1 and xs0 < xs1:
                        data[ys0:ys1, xs0:xs1] += stamp[
                            ys0 - (cy - r) : ys1 - (cy - r), xs0 - (cx - r) : xs1 - (cx - r)
                        ]
                tile_header = header.copy()
                tile_header["CRPIX1"] -= x0
                tile_header["CRPIX2"] -= y0
                tile_header["BUNIT"] = unit
                if unit == "DN":
                    tile_header["MAGZP"] = 30.0
                path = directory / f"{band}_{i}_{j}.fits"
                fits.PrimaryHDU(data, tile_header).writeto(path)
                specs.append(f"{band}={path}")
    rows = [f"star{n},{float(a)!r},{float(d)!r}" for n, (a, d) in enumerate(zip(ra, dec))]
    return specs, rows


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Run a command; return wall seconds, peak RSS (MB) and its output."""
    start = time.perf_counter()
    with open(cwd / "child.log", "w+") as log:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{output[-4000:]}")
    return wall, usage.ru_maxrss / 1024.0, output


# A benchmark script reads best as one sequence of measured steps.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles-per-side", type=int, default=5)
    parser.add_argument("--tile-size", type=int, default=2048)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="pipetask -j (default 1: -j N > 1 starts a new Python for every quantum)",
    )
    parser.add_argument("--keep", default=None, help="Work in this directory and keep it.")
    options = parser.parse_args()

    work = Path(options.keep or tempfile.mkdtemp(prefix="bench_ingest_"))
    work.mkdir(parents=True, exist_ok=True)
    images = work / "images"
    images.mkdir(exist_ok=True)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    from lsst.epo.zooniverse.butler.config import CONFIG_DIR, make_butler_repo

    env["DAF_BUTLER_CONFIG_PATH"] = str(CONFIG_DIR)
    try:
        start = time.perf_counter()
        specs, rows = make_images(
            images, options.bands, options.tiles_per_side, options.tile_size, options.objects
        )
        n_images = len(specs)
        megapixels = n_images * options.tile_size**2 / 1e6
        print(
            f"made {n_images} images of {options.tile_size}x{options.tile_size} "
            f"({options.bands} bands x {options.tiles_per_side**2} tiles, {megapixels:.0f} Mpix) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        repo = work / "repo"
        make_butler_repo(str(repo))
        args = [
            str(BIN / "butler"),
            "ingest-zooniverse-images",
            str(repo),
            "--skymap",
            "bench",
            "--run",
            "bench/images",
        ]
        for spec in specs:
            args += ["--image", spec]
        wall, rss, output = run_child(args, env, work)
        n_coadds = sum(
            int(line.split(":")[-1].split()[0]) for line in output.splitlines() if "deep_coadd:" in line
        )
        print(
            f"ingest:   {wall:7.1f} s  {n_images / wall:6.2f} images/s  {megapixels / wall:6.1f} Mpix/s  "
            f"{n_coadds} deep_coadd written  peak RSS {rss:.0f} MB"
        )
        catalog = work / "stars.csv"
        catalog.write_text("object_id,ra,dec\n" + "\n".join(rows) + "\n")
        wall, rss, _ = run_child(
            [
                str(BIN / "butler"),
                "shard-zooniverse-catalog",
                str(repo),
                str(catalog),
                "--output-run",
                "bench/targets",
            ],
            env,
            work,
        )
        print(f"shard:    {wall:7.1f} s  {len(rows)} rows  peak RSS {rss:.0f} MB")
        channels = work / "channels.py"
        bands = [s.split("=")[0] for s in specs]
        bands = list(dict.fromkeys(bands))
        colours = ["blue", "green", "red"]
        lines = ["from lsst.epo.zooniverse.pipeline.compose_rgb import ChannelConfig", "config.channels = {"]
        for k, band in enumerate(bands):
            colour = colours[min(k * 3 // max(len(bands), 1), 2)]
            lines.append(f"    {band!r}: ChannelConfig({colour}=1.0),")
        lines.append("}")
        channels.write_text("\n".join(lines) + "\n")
        wall, rss, _ = run_child(
            [
                str(BIN / "pipetask"),
                "run",
                "-j",
                str(options.jobs),
                "-b",
                str(repo),
                "-i",
                "bench/images,bench/targets",
                "-o",
                "bench/cutouts",
                "-p",
                str(ROOT / "pipelines" / "ZooniverseCutouts.yaml"),
                "-d",
                "skymap = 'bench'",
                "-C",
                f"composeRgb:{channels}",
                "--dataset-query-constraint",
                "zooniverse_targets",
                "--register-dataset-types",
            ],
            env,
            work,
        )
        from lsst.epo.zooniverse.butler.config import get_butler

        butler = get_butler(str(repo))
        pictures = 0
        report_refs = butler.query_datasets(
            "zooniverse_rgb_report", collections="bench/cutouts", explain=False
        )
        for ref in report_refs:
            report = butler.get(ref)
            pictures += int((report["status"] == "ok").sum())
        print(
            f"pipeline: {wall:7.1f} s  {pictures} pictures ({len(report_refs)} patches)  "
            f"{pictures / wall:6.1f} pictures/s  peak RSS {rss:.0f} MB (pipetask -j {options.jobs})"
        )
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
