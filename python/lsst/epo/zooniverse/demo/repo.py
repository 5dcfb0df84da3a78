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

"""Build the demo repository: sky map records, synthetic g/r/i coadds, the
real 2MASS J/H/K Galactic-Centre images, and sample catalogs with every
awkward case a PI's catalog can hold.
"""

from __future__ import annotations

__all__ = [
    "COADD_MASK_PLANES",
    "DEMO_COLLECTION",
    "DEMO_SKYMAP",
    "MISSING_BAND",
    "NO_DATA_X_MAX",
    "TRACT_2MASS",
    "TRACT_POLE",
    "TRACT_WRAP",
    "DemoRepo",
    "make_demo_repo",
    "make_demo_skymap",
    "register_demo_instruments",
]

import csv
import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import astropy.io.fits as fits
import astropy.wcs
import numpy as np

from ..butler.config import get_butler, make_butler_repo
from ..butler.dataset_types import DEEP_COADD, SKYMAP, register_dataset_types
from ..butler.legacy_coadd import write_legacy_masked_image
from ..butler.skymap_geometry import Box2, SkyMapGeometry, TractGeometry, make_tan_wcs
from ..formats.mask_planes import COADD_MASK_PLANES
from ..formats.wcs_metadata import wcs_to_header_string
from .scene import DEMO_BANDS, SATURATION_NJY, DemoSource, make_sources, render_tract

_LOG = logging.getLogger("lsst.epo.zooniverse.demo")

DEMO_SKYMAP = "zooniverse_demo"
"""Name of the demo sky map."""

DEMO_COLLECTION = "demo/defaults"
"""Chained collection holding every demo input."""

SYNTHETIC_RUN = "demo/coadds"
TWOMASS_RUN = "demo/2mass"
SKYMAP_RUN = "demo/skymaps"
SYNTHETIC_INSTRUMENT = "ZooniverseDemo"
TWOMASS_INSTRUMENT = "TwoMass"
TWOMASS_BANDS = {"J": "gc_2mass_j.fits", "H": "gc_2mass_h.fits", "K": "gc_2mass_k.fits"}
TWOMASS_DIR = Path(__file__).parent / "data" / "2mass_galactic_center"
TWOMASS_SATURATION = 2999.0

TRACT_WRAP = 0
"""Synthetic tract centred on RA 0, Dec 0: patches straddle RA 0/360."""
TRACT_2MASS = 1
"""The real 2MASS J/H/K image of the Galactic Centre, one patch."""
TRACT_POLE = 2
"""Synthetic tract near the north celestial pole, one patch."""

PIXEL_SCALE_ARCSEC = 0.2
MISSING_BAND = (TRACT_WRAP, 5, "g")
"""(tract, patch, band) with no coadd: a patch missing a band."""
NO_DATA_X_MAX = 110
"""Tract-0 pixels with x below this have no data in any band (survey
edge)."""
BRIGHT_STAR_PIXEL = (490.0, 480.0)
"""Tract-0 pixel of the saturated bright star (in patch 4)."""


@dataclasses.dataclass
class DemoRepo:
    """What `make_demo_repo` built.

    Attributes
    ----------
    root : `str`
        Repository root.
    collection : `str`
        Chained collection of all inputs.
    skymap : `SkyMapGeometry`
        The sky map.
    n_coadds : `int`
        Number of ``deep_coadd`` datasets ingested.
    sample_catalog : `str`
        CSV of the sample catalog (``object_id, ra, dec, note``).
    truth_catalog : `str`
        CSV of every synthetic source and the 2MASS stars.
    """

    root: str
    collection: str
    skymap: SkyMapGeometry
    n_coadds: int
    sample_catalog: str
    truth_catalog: str


def _twomass_wcs() -> astropy.wcs.WCS:
    header = fits.getheader(TWOMASS_DIR / TWOMASS_BANDS["K"])
    wcs = astropy.wcs.WCS(header)
    wcs.wcs.radesys = "ICRS"  # FK5 J2000 in the file; the difference is far below a 5" pixel.
    return wcs


def make_demo_skymap() -> SkyMapGeometry:
    """Return the demo sky map: tract 0 (3x2 patches across RA 0/360),
    tract 1 (2MASS, one patch) and tract 2 (near the north pole, one
    patch).

    Returns
    -------
    skymap : `SkyMapGeometry`
        The sky map.
    """
    inner, border = 300, 40
    wrap_width, wrap_height = 3 * inner + 2 * border, 2 * inner + 2 * border
    wrap = TractGeometry(
        tract_id=TRACT_WRAP,
        wcs_header=wcs_to_header_string(make_tan_wcs(0.0, 0.0, PIXEL_SCALE_ARCSEC, wrap_width, wrap_height)),
        nx=3,
        ny=2,
        patch_inner_size=(inner, inner),
        border=border,
    )
    header = fits.getheader(TWOMASS_DIR / TWOMASS_BANDS["K"])
    twomass = TractGeometry(
        tract_id=TRACT_2MASS,
        wcs_header=wcs_to_header_string(_twomass_wcs()),
        nx=1,
        ny=1,
        patch_inner_size=(header["NAXIS1"], header["NAXIS2"]),
        border=0,
    )
    pole = TractGeometry(
        tract_id=TRACT_POLE,
        wcs_header=wcs_to_header_string(make_tan_wcs(45.0, 89.9, PIXEL_SCALE_ARCSEC, 300, 300)),
        nx=1,
        ny=1,
        patch_inner_size=(300, 300),
        border=0,
    )
    return SkyMapGeometry(name=DEMO_SKYMAP, tracts=(wrap, twomass, pole))


def register_demo_instruments(butler: Any) -> None:
    """Register the demo's instruments and their physical filters, which
    carry its bands (band records cannot be inserted directly).

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        A writeable Butler.
    """
    registry = butler.registry
    for instrument, bands in ((SYNTHETIC_INSTRUMENT, DEMO_BANDS), (TWOMASS_INSTRUMENT, tuple(TWOMASS_BANDS))):
        registry.syncDimensionData(
            "instrument",
            {
                "name": instrument,
                "visit_max": 1,
                "visit_system": 0,
                "exposure_max": 1,
                "detector_max": 1,
                "class_name": f"lsst.epo.zooniverse.demo.{instrument}",
            },
        )
        for band in bands:
            registry.syncDimensionData(
                "physical_filter",
                {"instrument": instrument, "name": f"{instrument}-{band}", "band": band},
            )


def _synthetic_planes(
    tract: TractGeometry, sources: list[DemoSource], band: str, seed: int, edge_x_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bbox = tract.bbox
    wcs = tract.wcs
    image, variance = render_tract(
        sources, wcs, bbox.width, bbox.height, band, seed=seed, scale_arcsec=PIXEL_SCALE_ARCSEC
    )
    mask = np.zeros(image.shape, dtype=np.int32)
    detected = image > 5 * np.sqrt(np.median(variance))
    mask[detected] |= 1 << COADD_MASK_PLANES["DETECTED"]
    saturated = image >= SATURATION_NJY
    image[saturated] = SATURATION_NJY
    mask[saturated] |= 1 << COADD_MASK_PLANES["SAT"]
    if edge_x_max > 0:
        image[:, :edge_x_max] = np.nan
        variance[:, :edge_x_max] = np.nan
        mask[:, :edge_x_max] = 1 << COADD_MASK_PLANES["NO_DATA"]
    return image, mask, variance


def _cut(planes: tuple[np.ndarray, ...], box: Box2) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(p[box.y0 : box.y1, box.x0 : box.x1]) for p in planes)


def _twomass_planes(band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = fits.getdata(TWOMASS_DIR / TWOMASS_BANDS[band]).astype(np.float32)
    finite = np.isfinite(image)
    median = float(np.median(image[finite]))
    sigma = 1.4826 * float(np.median(np.abs(image[finite] - median)))
    variance = (sigma**2 + np.maximum(image - median, 0.0) / 10.0).astype(np.float32)
    mask = np.zeros(image.shape, dtype=np.int32)
    mask[image >= TWOMASS_SATURATION] |= 1 << COADD_MASK_PLANES["SAT"]
    mask[~finite] |= 1 << COADD_MASK_PLANES["NO_DATA"]
    return image, mask, variance


def _twomass_stars(n: int = 8) -> list[tuple[float, float, float]]:
    """Find bright, unsaturated, isolated stars in the 2MASS K image;
    return ``(ra, dec, peak)`` from flux-weighted centroids.
    """
    image = fits.getdata(TWOMASS_DIR / TWOMASS_BANDS["K"]).astype(np.float64)
    wcs = _twomass_wcs()
    background = np.median(image)
    work = image.copy()
    work[:25, :] = work[-25:, :] = -np.inf
    work[:, :25] = work[:, -25:] = -np.inf
    stars = []
    while len(stars) < n:
        y, x = np.unravel_index(np.argmax(work), work.shape)
        peak = work[y, x]
        work[max(y - 12, 0) : y + 13, max(x - 12, 0) : x + 13] = -np.inf
        if peak >= TWOMASS_SATURATION:
            continue
        box = image[y - 2 : y + 3, x - 2 : x + 3] - background
        box = np.clip(box, 0, None)
        yy, xx = np.mgrid[y - 2 : y + 3, x - 2 : x + 3]
        cx, cy = float((box * xx).sum() / box.sum()), float((box * yy).sum() / box.sum())
        ra, dec = wcs.wcs_pix2world([[cx, cy]], 0)[0]
        stars.append((float(ra), float(dec), float(peak)))
    return stars


def _sample_rows(skymap: SkyMapGeometry, sources: list[DemoSource], twomass_stars) -> list[dict]:
    """Make the sample catalog: objects in every situation, bad rows."""
    wrap = skymap.tract(TRACT_WRAP)
    wcs = wrap.wcs
    rows = []

    def situation(x: float, y: float) -> str:
        patches = [p for p in wrap.patch_ids() if wrap.patch_outer_bbox(p).contains(np.array(x), np.array(y))]
        if x < NO_DATA_X_MAX:
            return "no_data"
        if wrap.bbox.distance_inside(np.array(x), np.array(y)) < 12:
            return "edge"
        if any(p == MISSING_BAND[1] for p in patches) and len(patches) == 1:
            return "missing_band"
        if len(patches) > 1:
            return "overlap"
        return "inside"

    for source in sources:
        if source.mag["r"] > 22.0:
            continue
        x, y = wcs.wcs_world2pix([[source.ra, source.dec]], 0)[0]
        tract = TRACT_POLE if source.dec > 80 else TRACT_WRAP
        note = "pole" if tract == TRACT_POLE else situation(x, y)
        rows.append(
            {"object_id": str(1_000_000 + source.source_id), "ra": source.ra, "dec": source.dec, "note": note}
        )
    for k, (ra, dec, _) in enumerate(twomass_stars):
        rows.append({"object_id": str(2_000_000 + k), "ra": ra, "dec": dec, "note": "2mass_star"})
    # Partial cutouts at the outer edge of the tract.
    for k, (x, y) in enumerate(
        [(wrap.bbox.x1 - 3.0, 300.0), (500.0, 2.0), (wrap.bbox.x1 - 2.0, wrap.bbox.y1 - 2.0)]
    ):
        ra, dec = wcs.wcs_pix2world([[x, y]], 0)[0]
        rows.append(
            {"object_id": str(3_000_000 + k), "ra": float(ra % 360), "dec": float(dec), "note": "edge"}
        )
    # Exactly on a patch overlap (the middle of a shared border).
    for k, (x, y) in enumerate([(340.0, 200.0), (640.0, 340.0)]):
        ra, dec = wcs.wcs_pix2world([[x, y]], 0)[0]
        rows.append(
            {"object_id": str(3_100_000 + k), "ra": float(ra % 360), "dec": float(dec), "note": "overlap"}
        )
    extras = [
        ("4000000", 10.0, 10.0, "outside"),
        ("4000001", 180.0, -45.0, "outside"),
        ("4000002", 0.5, 0.0, "outside"),
        ("4000003", 45.0, 89.999, "outside_pole"),
        ("4000004", math.nan, 0.01, "nan"),
        ("4000005", 0.003, math.nan, "nan"),
        ("4000006", 0.001, 95.0, "bad_dec"),
        ("4000007", -0.004, 0.001, "ra_negative"),
        ("4000008", 360.002, -0.001, "ra_over_360"),
        ("", 0.002, 0.002, "empty_id"),
    ]
    rows.extend({"object_id": i, "ra": r, "dec": d, "note": n} for i, r, d, n in extras)
    # Duplicate ids: the same id twice, once at another position.
    first = rows[0]
    rows.append({**first, "note": "duplicate"})
    rows.append({"object_id": rows[1]["object_id"], "ra": 0.004, "dec": -0.002, "note": "duplicate"})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})


def make_demo_repo(
    root: str | os.PathLike,
    *,
    overwrite: bool = False,
    seed: int = 20261125,
    progress: Callable[[str], None] | None = None,
    registry_db: str | None = None,
) -> DemoRepo:
    """Build a complete local repository for demonstrations and tests.

    Parameters
    ----------
    root : `str` or `os.PathLike`
        Where to create the repository (must not exist unless
        ``overwrite``).
    overwrite : `bool`, optional
        Remove an existing directory at ``root`` first.
    seed : `int`, optional
        Seed of the synthetic sky and noise.
    progress : callable, optional
        Called with a short message at each step (default: log at INFO).
    registry_db : `str`, optional
        SQLAlchemy URL of an empty database for the registry (e.g.
        PostgreSQL, as on the RSP); by default a SQLite file in ``root``.

    Returns
    -------
    demo : `DemoRepo`
        What was built.

    Raises
    ------
    FileExistsError
        Raised if ``root`` exists and ``overwrite`` is false.
    """
    from lsst.daf.butler import CollectionType

    say = progress or _LOG.info
    root = Path(root)
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"{root} exists; choose another path or pass overwrite=True (--overwrite).")
        shutil.rmtree(root)
    say(f"Creating repository {root}")
    make_butler_repo(str(root), registry_db=registry_db)
    butler = get_butler(str(root), writeable=True)
    skymap = make_demo_skymap()
    register_demo_instruments(butler)
    skymap.register(butler)
    register_dataset_types(butler)
    butler.registry.registerCollection(SKYMAP_RUN, CollectionType.RUN)
    butler.put(skymap, SKYMAP.name, skymap=DEMO_SKYMAP, run=SKYMAP_RUN)

    sources, pole_sources = _demo_sources(skymap, seed)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
    try:
        datasets = {
            SYNTHETIC_RUN: _write_synthetic_coadds(skymap, sources, pole_sources, seed, staging, say),
            TWOMASS_RUN: _write_twomass_coadds(skymap, staging, say),
        }
        n_coadds = _ingest_coadds(butler, datasets, say)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    butler.registry.registerCollection(DEMO_COLLECTION, CollectionType.CHAINED)
    butler.registry.setCollectionChain(DEMO_COLLECTION, [SYNTHETIC_RUN, TWOMASS_RUN, SKYMAP_RUN])

    say("Writing sample catalogs")
    sample, truth = _write_catalogs(root / "catalogs", skymap, sources + pole_sources)
    say(f"Demo repository ready: {n_coadds} deep_coadd datasets in {DEMO_COLLECTION}")
    return DemoRepo(
        root=str(root),
        collection=DEMO_COLLECTION,
        skymap=skymap,
        n_coadds=n_coadds,
        sample_catalog=str(sample),
        truth_catalog=str(truth),
    )


def _demo_sources(skymap: SkyMapGeometry, seed: int) -> tuple[list[DemoSource], list[DemoSource]]:
    """Return the synthetic sources of the RA-wrap tract (with the bright
    star) and of the polar tract.
    """
    wrap, pole = skymap.tract(TRACT_WRAP), skymap.tract(TRACT_POLE)
    sources = make_sources(wrap.wcs, wrap.bbox.width, wrap.bbox.height, n_stars=60, n_galaxies=70, seed=seed)
    sources.append(
        DemoSource(
            900,
            "star",
            *[float(v) for v in wrap.wcs.wcs_pix2world([BRIGHT_STAR_PIXEL], 0)[0]],
            {"g": 12.3, "r": 12.0, "i": 11.9},
        )
    )
    sources = [dataclasses.replace(s, ra=s.ra % 360.0) for s in sources]
    pole_sources = make_sources(
        pole.wcs, pole.bbox.width, pole.bbox.height, n_stars=6, n_galaxies=6, seed=seed + 1, first_id=1001
    )
    return sources, pole_sources


def _write_synthetic_coadds(
    skymap: SkyMapGeometry,
    sources: list[DemoSource],
    pole_sources: list[DemoSource],
    seed: int,
    staging: Path,
    say: Callable[[str], None],
) -> list[tuple[Path, dict[str, Any]]]:
    """Render the g/r/i coadds of the synthetic tracts into ``staging``;
    return each file with its data ID.
    """
    datasets = []
    wrap, pole = skymap.tract(TRACT_WRAP), skymap.tract(TRACT_POLE)
    for tract, tract_sources, edge in ((wrap, sources, NO_DATA_X_MAX), (pole, pole_sources, 0)):
        for band_index, band in enumerate(DEMO_BANDS):
            say(f"Rendering tract {tract.tract_id} band {band}")
            planes = _synthetic_planes(
                tract, tract_sources, band, seed + 10 * tract.tract_id + band_index, edge
            )
            for patch_id in tract.patch_ids():
                if (tract.tract_id, patch_id, band) == MISSING_BAND:
                    continue
                box = tract.patch_outer_bbox(patch_id)
                image, mask, variance = _cut(planes, box)
                path = staging / f"deep_coadd_{tract.tract_id}_{patch_id}_{band}.fits"
                write_legacy_masked_image(
                    path,
                    image=image,
                    mask=mask,
                    variance=variance,
                    x0=box.x0,
                    y0=box.y0,
                    wcs=tract.wcs,
                    mask_planes=COADD_MASK_PLANES,
                    metadata={
                        "BAND": band,
                        "SKYMAP": DEMO_SKYMAP,
                        "TRACT": tract.tract_id,
                        "PATCH": patch_id,
                    },
                )
                data_id = {"skymap": DEMO_SKYMAP, "tract": tract.tract_id, "patch": patch_id, "band": band}
                datasets.append((path, data_id))
    return datasets


def _write_twomass_coadds(
    skymap: SkyMapGeometry, staging: Path, say: Callable[[str], None]
) -> list[tuple[Path, dict[str, Any]]]:
    """Convert the shipped 2MASS J/H/K images to coadd files in
    ``staging``; return each file with its data ID.
    """
    datasets = []
    twomass = skymap.tract(TRACT_2MASS)
    for band in TWOMASS_BANDS:
        say(f"Converting 2MASS {band}")
        image, mask, variance = _twomass_planes(band)
        path = staging / f"deep_coadd_{TRACT_2MASS}_0_{band}.fits"
        write_legacy_masked_image(
            path,
            image=image,
            mask=mask,
            variance=variance,
            x0=0,
            y0=0,
            wcs=twomass.wcs,
            mask_planes=COADD_MASK_PLANES,
            bunit=None,
            metadata={
                "BAND": band,
                "SURVEY": "2MASS",
                "SKYMAP": DEMO_SKYMAP,
                "TRACT": TRACT_2MASS,
                "PATCH": 0,
            },
        )
        datasets.append((path, {"skymap": DEMO_SKYMAP, "tract": TRACT_2MASS, "patch": 0, "band": band}))
    return datasets


def _ingest_coadds(
    butler: Any, datasets: dict[str, list[tuple[Path, dict[str, Any]]]], say: Callable[[str], None]
) -> int:
    """Ingest (move) the coadd files into their runs; return how many."""
    from lsst.daf.butler import CollectionType, DatasetRef, FileDataset

    from ..butler.formatters import LegacyCoaddFormatter

    dataset_type = DEEP_COADD.make(butler.dimensions)
    n_coadds = 0
    for run, items in datasets.items():
        say(f"Ingesting {len(items)} deep_coadd files into {run}")
        butler.registry.registerCollection(run, CollectionType.RUN)
        file_datasets = [
            FileDataset(
                path=str(path),
                refs=[DatasetRef(dataset_type, butler.registry.expandDataId(data_id), run=run)],
                formatter=LegacyCoaddFormatter,
            )
            for path, data_id in items
        ]
        butler.ingest(*file_datasets, transfer="move")
        n_coadds += len(items)
    return n_coadds


def _write_catalogs(
    catalog_dir: Path, skymap: SkyMapGeometry, sources: list[DemoSource]
) -> tuple[Path, Path]:
    """Write the sample catalog, the truth catalog and the sky map's JSON;
    return the paths of the two catalogs.
    """
    catalog_dir.mkdir()
    twomass_stars = _twomass_stars()
    sample = catalog_dir / "sample_catalog.csv"
    _write_csv(sample, _sample_rows(skymap, sources, twomass_stars))
    truth = catalog_dir / "truth_catalog.csv"
    truth_rows = [
        {
            "source_id": s.source_id,
            "kind": s.kind,
            "ra": s.ra,
            "dec": s.dec,
            "mag_g": s.mag["g"],
            "mag_r": s.mag["r"],
            "mag_i": s.mag["i"],
            "tract": TRACT_POLE if s.dec > 80 else TRACT_WRAP,
        }
        for s in sources
    ] + [
        {
            "source_id": 2_000_000 + k,
            "kind": "2mass_star",
            "ra": ra,
            "dec": dec,
            "mag_g": math.nan,
            "mag_r": math.nan,
            "mag_i": math.nan,
            "tract": TRACT_2MASS,
        }
        for k, (ra, dec, _) in enumerate(twomass_stars)
    ]
    _write_csv(truth, truth_rows)
    (catalog_dir / "skymap.json").write_text(skymap.to_json())
    return sample, truth
