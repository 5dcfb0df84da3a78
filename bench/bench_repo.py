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

"""The benchmark repository the pipeline benches share: tracts of synthetic
g/r/i coadds of one sky map (written as DRP's legacy ``deep_coadd`` files
and ingested), and a catalog of their sources sharded into the Butler.

bench/bench_pipeline.py (and its peer comparison), bench/bench_slurm.py
and bench/bench_serial_costs.py build it with `build_repo` and query it
with `SKYMAP` and `INPUTS`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

SKYMAP = "bench_skymap"
"""Name of the benchmark repository's sky map."""

INPUTS = ("coadds", "targets", "skymaps")
"""Input collections of the pipeline runs: coadds, sharded catalog, sky map."""


def registry_database(stack: contextlib.ExitStack, kind: str, name: str) -> str | None:
    """Return the registry URL of a bench repository: `None` (SQLite in
    the repository) for ``kind`` ``"sqlite"``, or a new database ``name``
    on a throw-away PostgreSQL server (tests/postgres_server.py, which must
    be importable) that ``stack`` stops on exit, for ``"postgresql"``.
    """
    if kind == "sqlite":
        return None
    from postgres_server import ThrowawayPostgres

    return stack.enter_context(ThrowawayPostgres()).create_registry_database(name)


def build_repo(
    root: Path,
    objects_per_patch: int,
    seed: int = 7,
    patches_per_side: int = 2,
    inner_size: int = 1000,
    border: int = 50,
    registry_db: str | None = None,
    n_tracts: int = 1,
) -> tuple[str, int]:
    """Make the benchmark repository and shard its catalog; return the repo
    path and the number of objects.  ``n_tracts`` tracts of
    ``patches_per_side`` squared patches, each ``inner_size`` pixels square
    inside a ``border``;
    the registry on SQLite, or in the database ``registry_db`` (a
    SQLAlchemy URL).
    """
    from astropy.table import Table

    from lsst.daf.butler import CollectionType, DatasetRef, FileDataset
    from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
    from lsst.epo.zooniverse.butler.dataset_types import DEEP_COADD, register_dataset_types
    from lsst.epo.zooniverse.butler.dataset_types import SKYMAP as SKYMAP_SPEC
    from lsst.epo.zooniverse.butler.formatters import LegacyCoaddFormatter
    from lsst.epo.zooniverse.butler.legacy_coadd import write_legacy_masked_image
    from lsst.epo.zooniverse.butler.skymap_geometry import SkyMapGeometry, TractGeometry, make_tan_wcs
    from lsst.epo.zooniverse.demo.repo import register_demo_instruments
    from lsst.epo.zooniverse.demo.scene import make_sources, render_tract
    from lsst.epo.zooniverse.formats.mask_planes import COADD_MASK_PLANES
    from lsst.epo.zooniverse.formats.wcs_metadata import wcs_to_header_string
    from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

    repo = str(root / "repo")
    make_butler_repo(repo, registry_db=registry_db)
    butler = get_butler(repo, writeable=True)
    inner = inner_size
    n = patches_per_side
    size = n * inner + 2 * border
    # Tracts side by side along the equator of the bench's sky, apart.
    spacing = 1.5 * size * 0.2 / 3600.0
    tracts = tuple(
        TractGeometry(
            t,
            wcs_to_header_string(make_tan_wcs(150.0 + t * spacing, 2.0, 0.2, size, size)),
            n,
            n,
            (inner, inner),
            border,
        )
        for t in range(n_tracts)
    )
    skymap = SkyMapGeometry(SKYMAP, tracts)
    register_demo_instruments(butler)
    skymap.register(butler)
    register_dataset_types(butler)
    butler.registry.registerCollection("skymaps", CollectionType.RUN)
    butler.put(skymap, SKYMAP_SPEC.name, skymap=SKYMAP, run="skymaps")
    staging = root / "staging"
    staging.mkdir()
    datasets = []
    all_sources = []
    for tract in tracts:
        sources = make_sources(
            tract.wcs,
            size,
            size,
            n_stars=n * n * objects_per_patch // 2,
            n_galaxies=n * n * objects_per_patch // 2,
            seed=seed + 1000 * tract.tract_id,
            first_id=1 + len(all_sources),
        )
        all_sources.extend(sources)
        for band_index, band in enumerate("gri"):
            image, variance = render_tract(
                sources, tract.wcs, size, size, band, seed=seed + band_index, scale_arcsec=0.2
            )
            mask = np.zeros(image.shape, np.int32)
            for patch in tract.patch_ids():
                box = tract.patch_outer_bbox(patch)
                cut = (slice(box.y0, box.y1), slice(box.x0, box.x1))
                path = staging / f"coadd_{tract.tract_id}_{patch}_{band}.fits"
                write_legacy_masked_image(
                    path,
                    image=np.ascontiguousarray(image[cut]),
                    mask=np.ascontiguousarray(mask[cut]),
                    variance=np.ascontiguousarray(variance[cut]),
                    x0=box.x0,
                    y0=box.y0,
                    wcs=tract.wcs,
                    mask_planes=COADD_MASK_PLANES,
                )
                data_id = butler.registry.expandDataId(
                    skymap=SKYMAP, tract=tract.tract_id, patch=patch, band=band
                )
                datasets.append(
                    FileDataset(
                        path=str(path),
                        refs=[DatasetRef(DEEP_COADD.make(butler.dimensions), data_id, run="coadds")],
                        formatter=LegacyCoaddFormatter,
                    )
                )
    butler.registry.registerCollection("coadds", CollectionType.RUN)
    butler.ingest(*datasets, transfer="move")
    catalog = Table(
        {
            "object_id": [str(s.source_id) for s in all_sources],
            "ra": [s.ra for s in all_sources],
            "dec": [s.dec for s in all_sources],
        }
    )
    catalog_path = root / "catalog.csv"
    catalog.write(catalog_path, format="ascii.csv")
    shard_target_catalog(butler, catalog_path, run="targets")
    return repo, len(catalog)
