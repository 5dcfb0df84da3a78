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


"""Pipeline throughput against the notebook way and against the PNG
encoder's own ceiling, measured in one run on the same objects and coadds.

Set-up: a repository with one tract of 2x2 patches (1000 px inner, 50 px
border, 0.2"/px), synthetic g/r/i coadds with stars and galaxies, and a
catalog of N objects per patch (default 800) sharded into the Butler.

Measured:

1. baseline, the notebook way (one cutout at a time, by hand, as in a
   tutorial notebook), on a sample of the same objects (best of three
   passes): per object and band
   ``butler.get("deep_coadd", parameters={"bbox": box})``, astropy
   ``make_lupton_rgb``, a matplotlib figure with the axes off saved as PNG;
2. the pipeline with ``pipetask qgraph`` then ``pipetask run -g`` with
   ``-j 1`` and ``-j 2`` (objects to finished PNGs in ZIPs; execution wall
   time including every process start, and graph + execution);
3. ``bps submit`` of the shipped file with ctrl_bps_parsl, ``cores: 1``
   against ``cores: 2``, with the file's clustering (jobs of up to 10
   patches of equal size) and without it (one job per quantum); with
   ``--compare-clustering`` also with ctrl_bps's own ``dimension_clustering``
   (jobs filled to 10 patches one after the other); "execution" is BPS's
   submit stage (parsl runs the workflow, final job included, inside it);
4. the ceiling: Pillow encoding the same RGB arrays (decoded from the
   pipeline's ZIPs) at the same compression level (zlib's default strategy,
   and the pipeline's run-length one), and this package's own PNG writer
   with ISA-L and with zlib, in one process;
5. what the data contract's I/O alone allows: one patch's Stamps written
   and read back as composeRgb reads them, and that plus the PNG encode;
6. with ``--peer`` (instead of 1-5): the honest peer of issue 17, a
   hand-written script (``bench/peer_script.py``: each band's coadd read
   once with astropy, slices, ``make_lupton_rgb``, Pillow PNG, ZIP) as a
   whole process against ``pipetask run -j 1`` as a whole process (graph
   built beforehand), alternated over ``--rounds`` rounds, also in its
   ``--fast`` form; with ``--two-cores`` the peer with a pool of two
   processes against ``bps submit`` with two workers; and the peak RSS of
   every quantum (``bench/peer_compare.py``); with ``--fused`` also the
   fused pipeline (``pipelines/ZooniverseCutoutsFused.yaml``) as another
   contender in the same alternated rounds.  So that no contender pays
   this virtual machine's cost of faulting back memory the host took
   while it was free, the kernel's free page reporting is paused for the
   rounds where this process may do so (``bench/vm_memory.py``;
   ``--keep-free-page-reporting`` leaves it on) and the rounds start with
   the free memory filled with page cache (``--cold-page-cache`` skips
   it; see ``peer_compare.fill_page_cache``).

Usage: python bench/bench_pipeline.py [--objects-per-patch N] [--stamp-size S]
       [--patches-per-side N] [--patches-per-job N] [--skip-bps | --bps-only]
       [--compare-clustering] [--peer [--rounds N] [--two-cores] [--fused]
       [--cold-page-cache] [--keep-free-page-reporting]]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from bench_repo import INPUTS, SKYMAP, build_repo
from vm_memory import add_free_page_reporting_option

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STOCK_CLUSTERING = "lsst.ctrl.bps.quantum_clustering_funcs.dimension_clustering"


def environment() -> dict[str, str]:
    from lsst.epo.zooniverse.butler.config import CONFIG_DIR

    return dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        DAF_BUTLER_CONFIG_PATH=str(CONFIG_DIR),
        EPO_ZOONIVERSE_DIR=str(ROOT),
    )


def collection_options(repo: str, output: str) -> list[str]:
    """Repository, input and output options of pipetask and bps."""
    return ["-b", repo, "-i", ",".join(INPUTS), "-o", output]


def run_pipetask(repo: str, output: str, jobs: int, stamp_size: int, workdir: Path) -> tuple[float, float]:
    """Build the graph (``pipetask qgraph``), then execute it
    (``pipetask run -g``); return both wall times in seconds.
    """
    graph = workdir / f"{output.replace('/', '_')}.qg"
    start = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "pipetask"),
            "qgraph",
            *collection_options(repo, output),
            "-p",
            str(ROOT / "pipelines" / "ZooniverseCutouts.yaml"),
            "-d",
            f"skymap='{SKYMAP}'",
            "--dataset-query-constraint",
            "zooniverse_targets",
            "-c",
            f"extractStamps:stamp_size={stamp_size}",
            "-q",
            str(graph),
        ],
        check=True,
        env=environment(),
        capture_output=True,
    )
    built = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "pipetask"),
            "run",
            "-j",
            str(jobs),
            *collection_options(repo, output),
            "-g",
            str(graph),
            "--register-dataset-types",
        ],
        check=True,
        env=environment(),
        capture_output=True,
    )
    return built - start, time.perf_counter() - built


def run_bps(
    repo: str,
    output: str,
    cores: int,
    stamp_size: int,
    workdir: Path,
    cluster: bool = True,
    patches_per_job: int | None = None,
    cluster_algorithm: str | None = None,
    fused: bool = False,
) -> tuple[float, float]:
    """``bps submit`` of the shipped file (config/bps/zooniverse.yaml, or
    with ``fused`` config/bps/zooniverse_fused.yaml), included as is, with
    ``cores`` parsl workers (``cluster_algorithm``, if given, replaces the
    file's; without ``cluster``, one job per quantum); return
    the wall time of the whole command and of its submit stage (the
    workflow's execution: parsl runs it inside ``bps submit``).
    """
    # The shipped file itself, included, with only what the bench varies
    # set here (a key of this file overrides the included one's).
    shipped = "zooniverse_fused.yaml" if fused else "zooniverse.yaml"
    text = f"includeConfigs:\n  - {ROOT / 'config' / 'bps' / shipped}\n"
    text += f"site:\n  local:\n    cores: {cores}\n"
    if not cluster:
        # ctrl_bps's default: one job per quantum.
        cluster_algorithm = "lsst.ctrl.bps.quantum_clustering_funcs.single_quantum_clustering"
    elif patches_per_job is not None:
        # Patches of a tract per job (the shipped file has 10).
        text += f"cluster:\n  patches:\n    partitionMaxSize: {patches_per_job}\n"
    if cluster_algorithm is not None:
        text += f"clusterAlgorithm: {cluster_algorithm}\n"
    if fused:
        size_option = f"-c makePictures:extractStamps.stamp_size={stamp_size}"
    else:
        size_option = f"-c extractStamps:stamp_size={stamp_size}"
    submit = workdir / f"submit_{output.replace('/', '_')}.yaml"
    submit.write_text(text)
    env = environment()
    env["PWD"] = str(workdir)
    start = time.perf_counter()
    result = subprocess.run(
        [
            str(BIN / "bps"),
            "submit",
            str(submit),
            *collection_options(repo, output),
            "-d",
            f"skymap='{SKYMAP}'",
            "--extra-qgraph-options",
            f"--dataset-query-constraint zooniverse_targets {size_option}",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    if result.returncode != 0:
        sys.exit(
            f"bps submit failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    total = time.perf_counter() - start
    stages = re.findall(r"Submit stage completed: Took ([0-9.]+) seconds", result.stdout + result.stderr)
    return total, float(stages[-1]) if stages else float("nan")


def count_pictures(repo: str, output: str) -> tuple[int, list]:
    from lsst.epo.zooniverse.butler.config import get_butler

    butler = get_butler(repo)
    refs = butler.query_datasets("zooniverse_rgb", collections=output, explain=False)
    collections = [butler.get(ref) for ref in refs]
    return sum(len(c) for c in collections), collections


def stamps_round_trip_rate(repo: str, output: str, workdir: Path) -> float:
    """Pictures per second that the data contract's Stamps I/O alone
    allows: one patch's stamps of every band written with the package's
    writer (image, mask, variance) and read back as composeRgb reads them
    (image and mask), nothing else.  Best of 3.
    """
    from lsst.epo.zooniverse.butler.config import get_butler
    from lsst.epo.zooniverse.formats.stamps import read_stamps, write_stamps

    butler = get_butler(repo)
    refs = butler.query_datasets(
        "zooniverse_stamps",
        collections=output,
        where=f"skymap = '{SKYMAP}' AND tract = 0 AND patch = 0",
        explain=False,
    )
    stamps = [butler.get(ref) for ref in refs]
    index = butler.get(
        "zooniverse_rgb.index", refs[0].dataId.subset(("skymap", "tract", "patch")), collections=output
    )
    paths = [workdir / f"round_trip_{k}.fits" for k in range(len(stamps))]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for stamp_set, path in zip(stamps, paths):
            write_stamps(stamp_set, path)
        for path in paths:
            read_stamps(path, use_variance=False)
        best = max(best, len(index) / (time.perf_counter() - start))
        for path in paths:
            path.unlink()
    return best


def encode_ceilings(collections: list, compress_level: int = 1) -> dict[str, tuple[float, float]]:
    """PNG encode rates (pictures/s, best of 3) and mean sizes (bytes) of
    the same RGB arrays: Pillow (the issue's ceiling), Pillow with the
    pipeline's run-length deflate, and this package's own writer with
    ISA-L and with zlib.
    """
    import lsst.epo.zooniverse.formats.png as png_module

    arrays = [np.asarray(image) for collection in collections for image in collection.images]

    def pillow(array: np.ndarray, compress_type: int = -1) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(array).save(
            buffer, format="PNG", compress_level=compress_level, compress_type=compress_type
        )
        return buffer.getvalue()

    def pillow_rle(array: np.ndarray) -> bytes:
        return pillow(array, compress_type=zlib.Z_RLE)

    def ours(array: np.ndarray) -> bytes:
        return png_module.encode_png(array, compress_level=compress_level)

    def measure(encode) -> tuple[float, float]:
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            sizes = [len(encode(array)) for array in arrays]
            best = max(best, len(arrays) / (time.perf_counter() - start))
        return best, float(np.mean(sizes))

    results = {f"Pillow, level {compress_level} (the ceiling)": measure(pillow)}
    if 1 <= compress_level <= png_module.RLE_MAX_LEVEL:
        # The pipeline's own settings: run-length matches only.
        results[f"Pillow, level {compress_level}, run-length deflate"] = measure(pillow_rle)
    saved = os.environ.get(png_module.DEFLATE_VARIABLE)
    try:
        for library in ("isal", "zlib"):
            os.environ[png_module.DEFLATE_VARIABLE] = library
            if png_module.png_deflate_library(compress_level) == library:
                label = "ISA-L" if library == "isal" else "zlib (the default)"
                results[f"encode_png, {label} level {compress_level}"] = measure(ours)
    finally:
        if saved is None:
            os.environ.pop(png_module.DEFLATE_VARIABLE, None)
        else:
            os.environ[png_module.DEFLATE_VARIABLE] = saved
    return results


def _jobs_label(patches_per_job: int | None) -> str:
    if patches_per_job is None:
        return "jobs as the shipped file (up to 10 patches, equal sizes)"
    return "one job per patch" if patches_per_job == 1 else f"up to {patches_per_job} patches per job"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects-per-patch", type=int, default=800)
    parser.add_argument("--stamp-size", type=int, default=101)
    parser.add_argument("--baseline-objects", type=int, default=60)
    parser.add_argument("--skip-bps", action="store_true")
    parser.add_argument(
        "--patches-per-side", type=int, default=2, help="the tract has N x N patches (default 2)"
    )
    parser.add_argument(
        "--patches-per-job",
        type=int,
        default=None,
        help="with clustering, patches of a tract per BPS job (default: the shipped file's 10)",
    )
    parser.add_argument(
        "--compare-clustering",
        action="store_true",
        help="also run BPS with ctrl_bps's dimension_clustering (jobs filled one after the other)",
    )
    parser.add_argument("--bps-only", action="store_true", help="skip pipetask and the per-quantum BPS runs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of failed jobs)")
    parser.add_argument("--peer", action="store_true", help="the pipeline against the hand-written peer")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of --peer")
    parser.add_argument("--two-cores", action="store_true", help="--peer: also peer pool against BPS")
    parser.add_argument(
        "--cold-page-cache",
        action="store_true",
        help="--peer: do not fill the free memory with page cache first (see peer_compare.fill_page_cache)",
    )
    add_free_page_reporting_option(parser, "--peer")
    parser.add_argument(
        "--fused", action="store_true", help="--peer: also the fused pipeline, alternated in the same rounds"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        t0 = time.perf_counter()
        repo, n_objects = build_repo(work, args.objects_per_patch, patches_per_side=args.patches_per_side)
        print(
            f"set-up: {n_objects} objects, {args.patches_per_side**2} patches x 3 bands, "
            f"stamps {args.stamp_size} px "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if args.peer:
            from peer_compare import compare

            compare(
                repo,
                work,
                args.stamp_size,
                args.rounds,
                args.two_cores,
                fused=args.fused,
                fill_cache=not args.cold_page_cache,
                pause_page_reporting=not args.keep_free_page_reporting,
            )
            return
        rows = []
        graph_s, exec_s = run_pipetask(repo, "out/j1", 1, args.stamp_size, work)
        n_pictures, collections = count_pictures(repo, "out/j1")
        rows.append(("pipetask -j 1, execution (per core)", n_pictures / exec_s))
        rows.append(("pipetask -j 1, graph + execution", n_pictures / (graph_s + exec_s)))
        timings = [f"pipetask: graph {graph_s:.1f} s, -j 1 {exec_s:.1f} s"]
        if not args.bps_only:
            graph2_s, exec2_s = run_pipetask(repo, "out/j2", 2, args.stamp_size, work)
            rows.append(
                ("pipetask -j 2, execution (both cores)", count_pictures(repo, "out/j2")[0] / exec2_s)
            )
            rows.append(
                ("pipetask -j 2, graph + execution", count_pictures(repo, "out/j2")[0] / (graph2_s + exec2_s))
            )
            timings.append(f"pipetask: graph {graph2_s:.1f} s, -j 2 {exec2_s:.1f} s")
        # (name, how jobs are made, clustering?, clusterAlgorithm override)
        kinds = [("clustered", _jobs_label(args.patches_per_job), True, None)]
        if args.compare_clustering:
            kinds.append(("stock", "ctrl_bps dimension_clustering", True, STOCK_CLUSTERING))
        if not args.bps_only:
            kinds.append(("per_quantum", "one job per quantum", False, None))
        bps = {}
        if not args.skip_bps:
            for kind, kind_label, cluster, algorithm in kinds:
                for cores in (1, 2):
                    name = f"out/bps_{kind}_{cores}"
                    total, submit_s = run_bps(
                        repo,
                        name,
                        cores,
                        args.stamp_size,
                        work,
                        cluster=cluster,
                        patches_per_job=args.patches_per_job,
                        cluster_algorithm=algorithm,
                    )
                    bps[kind, cores] = (total, submit_s)
                    n = count_pictures(repo, name)[0]
                    label = f"bps parsl cores: {cores}, {kind_label}"
                    rows.append((label + ", execution", n / submit_s))
                    rows.append((label + ", whole submit", n / total))
                    timings.append(f"{label}: submit stage {submit_s:.1f} s of {total:.1f} s")
        baseline_dir = work / "notebook"
        baseline_dir.mkdir()
        from notebook_way import notebook_way_rate

        baseline = notebook_way_rate(repo, args.baseline_objects, args.stamp_size, baseline_dir)
        encoders = encode_ceilings(collections)
        ceiling = next(iter(encoders.values()))[0]
        round_trip = stamps_round_trip_rate(repo, "out/j1", work)
        print(f"pictures made: {n_pictures} of {n_objects} objects (the rest are on tract edges)")
        for line in timings:
            print(line)
        print(f"{'measurement':62s} {'pictures/s':>10s} {'x baseline':>11s} {'x ceiling':>10s}")
        print(
            f"{'baseline: notebook way (1 core)':62s} {baseline:10.1f} {1.0:11.2f} {baseline / ceiling:10.3f}"
        )
        for name, rate in rows:
            print(f"{name:62s} {rate:10.1f} {rate / baseline:11.2f} {rate / ceiling:10.3f}")
        for name, (rate, size) in encoders.items():
            label = f"PNG encode only: {name}, {size / 1024:.1f} KiB"
            print(f"{label:62s} {rate:10.1f} {rate / baseline:11.2f} {rate / ceiling:10.3f}")
        # What the contract's I/O leaves: writing and reading the Stamps
        # and encoding the PNG, with nothing else, bound any pipeline rate.
        own = encoders.get("encode_png, zlib (the default) level 1")
        rows_floor = [("Stamps only: write 3 bands, read image+mask", round_trip)]
        if own is not None:
            rows_floor.append(
                ("Stamps write + read + encode_png, nothing else", 1.0 / (1.0 / round_trip + 1.0 / own[0]))
            )
        for name, rate in rows_floor:
            print(f"{name:62s} {rate:10.1f} {rate / baseline:11.2f} {rate / ceiling:10.3f}")
        for kind, kind_label, _, _ in kinds:
            if (kind, 1) in bps:
                print(
                    f"parsl scaling, 2 workers / 1 worker ({kind_label}): execution "
                    f"{bps[kind, 1][1] / bps[kind, 2][1]:.2f}x, whole submit "
                    f"{bps[kind, 1][0] / bps[kind, 2][0]:.2f}x"
                )
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
