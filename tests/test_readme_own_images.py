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


"""The README's "Your own images" recipe, run as written: every ``bash``
block of the section, in order, in a new directory (the shipped 2MASS
images, a small catalog, ``pipetask`` and ``bps submit``), so that the
README cannot drift from the code.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from lsst.epo.zooniverse.butler.config import get_butler
from lsst.epo.zooniverse.pipeline.accounting import account_targets

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECTION = "## Your own images"


def readme_blocks() -> list[str]:
    """The ``bash`` blocks of the README's own-images section."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```bash\n(.*?)```", text[start:end], flags=re.S)


def test_section_has_the_recipe():
    blocks = readme_blocks()
    script = "\n".join(blocks)
    assert len(blocks) == 4
    for command in (
        "butler ingest-zooniverse-images",
        "butler shard-zooniverse-catalog",
        "pipetask run",
        "bps submit",
    ):
        assert command in script, command


def test_readme_recipe_runs(tmp_path):
    env = dict(os.environ)
    env.pop("DAF_BUTLER_CONFIG_PATH", None)  # the recipe sets it
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        EPO_ZOONIVERSE_DIR=str(ROOT),
        PWD=str(tmp_path),  # BPS's submit directory is ${PWD}/submit/...
    )
    script = "set -euo pipefail\n" + "\n".join(readme_blocks())
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    assert (
        "[3/3] K: gc_2mass_k.fits 721x720 RA---TAN/DEC--TAN (fk5), DN with zero point 21.83" in result.stderr
    )

    butler = get_butler(str(tmp_path / "my_repo"))
    # The sky map: one TAN ICRS tract at the images' 5" pixels.
    geometry = butler.get("zooniverse_skymap", skymap="gc_2mass", collections="u/me/gc_images")
    wcs = geometry.tracts[0].wcs
    assert list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    assert np.allclose(np.abs(np.diag(wcs.pixel_scale_matrix)) * 3600, 5.0)
    assert {
        ref.dataId["band"] for ref in butler.query_datasets("deep_coadd", collections="u/me/gc_images")
    } == {
        "J",
        "H",
        "K",
    }
    for output in ("u/me/gc_cutouts", "u/me/gc_cutouts_bps"):
        table = account_targets(butler, output)
        status = dict(zip(table["object_id"], table["status"]))
        assert status == {
            "sgr_a_star": "pictured",
            "arches": "pictured",
            "quintuplet": "pictured",
            "field": "pictured",
            "far_away": "outside_coadds",
        }, (output, status)
    # The pictures: RGB, not blank, not saturated, the same with pipetask
    # and BPS.
    pictures = {}
    for output in ("u/me/gc_cutouts", "u/me/gc_cutouts_bps"):
        refs = butler.query_datasets("zooniverse_rgb", collections=output)
        for ref in refs:
            with zipfile.ZipFile(io.BytesIO(butler.getURI(ref).read())) as archive:
                index = list(csv.DictReader(io.StringIO(archive.read("index.csv").decode())))
                for row in index:
                    array = np.asarray(Image.open(io.BytesIO(archive.read(row["file"]))))
                    pictures.setdefault(row["object_id"], []).append(array)
                    assert row["bands"] == "H,J,K"
    assert set(pictures) == {"sgr_a_star", "arches", "quintuplet", "field"}
    for object_id, (first, second) in pictures.items():
        assert first.ndim == 3 and first.shape[2] == 3
        assert np.array_equal(first, second), object_id
        assert 20 < first.mean() < 200, (object_id, first.mean())
        assert (first == 255).mean() < 0.05 and (first == 0).mean() < 0.2, object_id
    assert (tmp_path / "gc_sheet.png").stat().st_size > 1000
