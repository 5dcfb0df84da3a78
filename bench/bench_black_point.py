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

"""Pure-black and saturated pixel fractions of the demo pictures with the
fixed and the sky black point (issue 14, items 4e and 5).

Builds the demo repository (or reuses ``--repo``), runs the cutout
pipeline once with ``config/composeRgb_demo.py``, then composeRgb again
for each black point, and prints, for the synthetic g/r/i pictures
(tracts 0 and 2) and the 2MASS J/H/K pictures (tract 1), the fraction of
pixels with R=G=B=0 (pure black), with a channel at 255 (saturated) and
of channel values at 0 (zero chan.).

Use: .venv/bin/python bench/bench_black_point.py [--repo DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_pipeline import DEMO_CONFIG, TARGETS_RUN, run_pipeline  # noqa: E402

from lsst.epo.zooniverse.butler.config import get_butler  # noqa: E402
from lsst.epo.zooniverse.demo import make_demo_repo  # noqa: E402
from lsst.epo.zooniverse.script.summarize_zooniverse_run import picture_level_fractions  # noqa: E402

FIELDS = {"demo g/r/i (tracts 0, 2)": (0, 2), "2MASS J/H/K (tract 1)": (1,)}
MODES = {
    "fixed (minimum=0)": ["-c", "composeRgb:stretch.black_point=fixed"],
    "sky (sky - 2 sigma)": ["-c", "composeRgb:stretch.black_point=sky"],
    "sky (sky - 1 sigma)": [
        "-c",
        "composeRgb:stretch.black_point=sky",
        "-c",
        "composeRgb:stretch.sky_sigma_below=1",
    ],
    "sky, per_image": ["-c", "composeRgb:stretch.scaling=per_image"],
    "fixed, per_image": [
        "-c",
        "composeRgb:stretch.scaling=per_image",
        "-c",
        "composeRgb:stretch.black_point=fixed",
    ],
}


def pictures_by_field(butler, collection: str) -> dict[str, list]:
    """The decoded pictures of a collection, by field of `FIELDS`."""
    result: dict[str, list] = {name: [] for name in FIELDS}
    for ref in butler.query_datasets("zooniverse_rgb", collections=collection, find_first=True):
        for name, tracts in FIELDS.items():
            if ref.dataId["tract"] in tracts:
                result[name].extend(butler.get(ref).images)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo", help="An existing demo repository with the pipeline run once (see --inputs)."
    )
    parser.add_argument("--inputs", default="u/bench/base", help="With --repo: the collection of that run.")
    parser.add_argument("--work", help="Directory for a new demo repository (default: a temporary one).")
    args = parser.parse_args()
    if args.repo:
        repo = args.repo
        inputs = args.inputs
    else:
        work = Path(args.work or tempfile.mkdtemp(prefix="bench_black_point_"))
        demo = make_demo_repo(work / "repo")
        repo = demo.root
        from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

        shard_target_catalog(get_butler(repo, writeable=True), demo.sample_catalog, run=TARGETS_RUN)
        inputs = "u/bench/base"
        run_pipeline(repo, f"{demo.collection},{TARGETS_RUN}", inputs, "-C", f"composeRgb:{DEMO_CONFIG}")
    print(f"repository: {repo}")
    print(
        f"{'field':28s} {'black point':22s} {'pictures':>8s} {'pure black':>11s} {'saturated':>10s} "
        f"{'zero chan.':>10s}"
    )
    for k, (mode, options) in enumerate(MODES.items()):
        output = f"u/bench/black_point_{k}"
        run_pipeline(repo, inputs, output, "-C", f"composeRgb:{DEMO_CONFIG}", *options, subset="composeRgb")
        butler = get_butler(repo)
        for name, pictures in pictures_by_field(butler, output).items():
            black, saturated, _ = picture_level_fractions(pictures)
            zero = sum(float((p == 0).sum()) for p in pictures) / max(1, sum(p.size for p in pictures))
            print(
                f"{name:28s} {mode:22s} {len(pictures):8d} {100 * black:10.2f}% {100 * saturated:9.2f}% "
                f"{100 * zero:9.2f}%"
            )


if __name__ == "__main__":
    main()
