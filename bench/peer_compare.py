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

"""The pipeline against the hand-written peer (`peer_script.py`), run
side by side on the benchmark repository of `bench_pipeline.py` (issue
17), and the peak memory of every quantum.

Every contender runs as a whole process and is timed from outside
(wall time, and the CPU time of the process and its children); rates
are objects pictured per second (the three-task pipeline pictures an
object once per patch that overlaps it, the others once); the
contenders alternate (peer, pipeline, fast peer, peer, pipeline, ...) so
that a loaded machine slows them alike, and each figure is the median of
the rounds. The pipeline's graph is built beforehand (not timed). On two
cores the peer with a pool of two processes runs against ``bps submit``
with two parsl workers, alternated the same way.  With ``fused``, the
fused pipeline (``pipelines/ZooniverseCutoutsFused.yaml``: shardCatalog +
makePictures, the pictures made from the stamps in memory) runs as a
further contender in the same rounds, the same way, and so does the
fused pipeline without the Stamps (``makePictures.write_stamps=False``:
the peer's own job, the same picture bytes), and so does the fused
pipeline the way a BPS job runs it (``pipetask run-qbb``: a
quantum-backed Butler, no registry), its init outputs and registration
(BPS's first and final jobs) timed apart and added in a further line,
and that BPS job once more without the Stamps.
"""

from __future__ import annotations

import csv
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_pipeline as bench
from bench_repo import SKYMAP
from vm_memory import free_page_reporting_paused

PEER = Path(__file__).resolve().parent / "peer_script.py"
FUSED = bench.ROOT / "pipelines" / "ZooniverseCutoutsFused.yaml"


def timed(command: list[str], **kwargs) -> tuple[float, float, float]:
    """Run a command; return its wall time, the CPU time (user + system)
    of it and its children, and their system (kernel) CPU time, in
    seconds.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{command[:3]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    system = after.ru_stime - before.ru_stime
    return wall, (after.ru_utime - before.ru_utime) + system, system


def fill_page_cache(workdir: Path, keep_free: int = 2 << 30) -> Path | None:
    """Fill the free memory with the page cache of a file (kept until the
    caller deletes it), so that every contender writes in the steady state
    of a machine that has been writing for a while; return the file, or
    `None` if there was little free memory.

    Notes
    -----
    On this project's virtual machines, memory that has stayed free for a
    while is handed back to the host (free page reporting), and the first
    write into it faults it back in: ``perf`` shows the kernel's page-cache
    copy (``copy_folio_from_iter_atomic``) at 27-34 % of a fused run's
    samples and 8-13 s of system CPU for the 5.6 GB of Stamps of 16 patches,
    against 2.2-2.5 s once the page cache is full and recycles its own
    pages.  The cost falls on whoever grows the page cache first, and so
    on the contender that writes the most, whatever its code.  The filling
    holds for a minute or two only: the guest's DAMON reclaim scheme
    (``/sys/kernel/mm/damon/admin/kdamonds/0``: ``pageout`` of memory idle
    for 12 aggregation intervals of 5 s, up to 128 MiB a second) pages out
    what stays idle, the filler first, and that memory goes back to the
    host too.  Rounds later in a run are colder again, unless free page
    reporting is paused (`vm_memory.free_page_reporting_paused`, which
    `compare` does first where it can): then the filling faults every
    free page in once, and memory freed later stays the guest's.
    """
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    free = int(meminfo["MemFree"].split()[0]) * 1024
    size = free - keep_free
    if size < 1 << 30:
        return None
    path = workdir / "page_cache_filler"
    chunk = bytes(64 << 20)
    start = time.perf_counter()
    with open(path, "wb") as stream:
        for _ in range(size // len(chunk)):
            stream.write(chunk)
    print(
        f"page cache filled: {size / 2**30:.1f} GiB written to {path.name} in "
        f"{time.perf_counter() - start:.0f} s (free memory was {free / 2**30:.1f} GiB)"
    )
    return path


def peer_work_list(repo: str, output: str, workdir: Path) -> Path:
    """Write the peer's work list: per patch the coadd files (i, r, g as
    R, G, B, the pipeline's default mapping) and the same catalog rows the
    pipeline's extractStamps got (``zooniverse_targets_patch``).
    """
    from lsst.epo.zooniverse.butler.config import get_butler

    butler = get_butler(repo)
    patches = []
    for ref in butler.query_datasets("zooniverse_targets_patch", collections=output, explain=False):
        rows = butler.get(ref)
        data_id = ref.dataId
        name = f"{data_id['tract']}_{data_id['patch']}"
        objects = workdir / f"peer_objects_{name}.csv"
        with open(objects, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["object_id", "ra", "dec"])
            for object_id, ra, dec in zip(rows["object_id"], rows["ra"], rows["dec"]):
                writer.writerow([str(object_id), repr(float(ra)), repr(float(dec))])
        coadds = {
            band: butler.getURI(
                "deep_coadd", data_id.subset(("skymap", "tract", "patch")), band=band, collections="coadds"
            ).ospath
            for band in "irg"
        }
        patches.append({"name": name, "coadds": coadds, "objects": str(objects)})
    path = workdir / "peer_work.json"
    path.write_text(json.dumps(patches, indent=1))
    return path


def run_peer(work_list: Path, out_dir: Path, fast: bool, processes: int, stamp_size: int):
    """Run the peer as a whole process; return wall, CPU and (pictures,
    objects pictured).
    """
    command = [sys.executable, str(PEER), str(work_list), str(out_dir), "--stamp-size", str(stamp_size)]
    if fast:
        command.append("--fast")
    if processes > 1:
        command += ["--processes", str(processes)]
    wall, cpu, system = timed(command)
    names = [name for path in out_dir.glob("*.zip") for name in _zip_names(path)]
    return wall, cpu, (len(names), len(set(names))), system


def _zip_names(path: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [name for name in archive.namelist() if name.endswith(".png")]


def build_graph(
    repo: str,
    output: str,
    stamp_size: int,
    workdir: Path,
    *,
    fused: bool,
    pictures_only: bool = False,
    datastore_records: bool = False,
) -> Path:
    """Build a contender's quantum graph (not timed) and return its file:
    the fused pipeline or the three-task one, with ``pictures_only``
    without the Stamps, with ``datastore_records`` as BPS builds it for
    ``pipetask run-qbb``.
    """
    graph = workdir / f"{output.replace('/', '_')}.qg"
    pipeline = FUSED if fused else bench.ROOT / "pipelines" / "ZooniverseCutouts.yaml"
    size_label = "makePictures:extractStamps." if fused else "extractStamps:"
    subprocess.run(
        [
            str(bench.BIN / "pipetask"),
            "qgraph",
            *bench.collection_options(repo, output),
            "-p",
            str(pipeline),
            "-d",
            f"skymap='{SKYMAP}'",
            "--dataset-query-constraint",
            "zooniverse_targets",
            *(["--qgraph-datastore-records"] if datastore_records else []),
            "-c",
            f"{size_label}stamp_size={stamp_size}",
            *(["-c", "makePictures:write_stamps=False"] if pictures_only else []),
            "-q",
            str(graph),
        ],
        check=True,
        env=bench.environment(),
        capture_output=True,
    )
    return graph


def run_pipeline(
    repo: str,
    output: str,
    stamp_size: int,
    workdir: Path,
    jobs: int = 1,
    fused: bool = False,
    pictures_only: bool = False,
    keep_files: bool = False,
):
    """Build the graph (not timed), then run ``pipetask run -j jobs`` as a
    whole process; return wall, CPU and (pictures, objects pictured).
    ``fused`` runs the
    fused pipeline instead of the three-task one; ``pictures_only`` runs
    it without writing the Stamps (``makePictures.write_stamps=False``),
    the peer's job exactly.  The run's files are deleted once counted
    unless ``keep_files``.
    """
    fused = fused or pictures_only
    graph = build_graph(repo, output, stamp_size, workdir, fused=fused, pictures_only=pictures_only)
    options = bench.collection_options(repo, output)
    command = [str(bench.BIN / "pipetask"), "run", "-j", str(jobs), *options, "-g", str(graph)]
    wall, cpu, system = timed(command + ["--register-dataset-types"], env=bench.environment())
    counts = count_objects(repo, output)
    if not keep_files:
        delete_run_files(repo, output)
    return wall, cpu, counts, system


def run_quantum_backed(repo: str, output: str, stamp_size: int, workdir: Path, pictures_only: bool = False):
    """Run the fused pipeline the way each BPS job runs it (with
    ``pictures_only``, without writing the Stamps): build the
    graph with its datastore records (not timed), write the init outputs
    (``pipetask pre-exec-init-qbb``, BPS's ``pipetaskInit`` job), execute
    every quantum in one ``pipetask run-qbb -j 1`` process (a BPS job;
    no registry), then register the outputs (``butler
    aggregate-graph -j 1 --register-dataset-types --update-output-chain``,
    BPS's final job as the shipped submit file runs it).

    Returns
    -------
    steps : `dict` [`str`, `tuple`]
        ``init``, ``run`` and ``final``: each wall, CPU, (pictures,
        objects pictured) and system CPU, as `run_pipeline` returns them.
    """
    graph = build_graph(
        repo, output, stamp_size, workdir, fused=True, pictures_only=pictures_only, datastore_records=True
    )
    environment = bench.environment()
    steps = {}
    for step, command in [
        ("init", [str(bench.BIN / "pipetask"), "pre-exec-init-qbb", repo, str(graph)]),
        ("run", [str(bench.BIN / "pipetask"), "run-qbb", "-j", "1", repo, str(graph)]),
        (
            "final",
            [
                str(bench.BIN / "butler"),
                "aggregate-graph",
                str(graph),
                repo,
                "-j",
                "1",
                "--register-dataset-types",
                "--update-output-chain",
            ],
        ),
    ]:
        wall, cpu, system = timed(command, env=environment)
        steps[step] = (wall, cpu, system)
    counts = count_objects(repo, output)
    delete_run_files(repo, output)
    return {step: (wall, cpu, counts, system) for step, (wall, cpu, system) in steps.items()}


def delete_run_files(repo: str, output: str) -> None:
    """Delete the files a run wrote under the repository (its registry
    entries stay; nothing reads them again), so that the rounds of a
    16-patch comparison (5.6 GB of Stamps a pipeline run) fit on the disk.
    """
    shutil.rmtree(Path(repo) / output, ignore_errors=True)


def count_objects(repo: str, output: str) -> tuple[int, int]:
    """Return the pictures of a run and the distinct objects they show."""
    collections = bench.count_pictures(repo, output)[1]
    objects = {str(object_id) for c in collections for object_id in c.index["object_id"]}
    return sum(len(c) for c in collections), len(objects)


def quantum_memory(repo: str, output: str) -> dict[str, list[float]]:
    """Peak resident set size (MiB) of every quantum of a run, by task
    label, from the quantum metadata pipe_base records
    (``endMaxResidentSetSize``; per quantum when each quantum ran in its
    own process, as ``pipetask run -j 2`` does).
    """
    from lsst.daf.butler import MissingDatasetTypeError
    from lsst.epo.zooniverse.butler.config import get_butler

    butler = get_butler(repo)
    peaks: dict[str, list[float]] = {}
    for label in ("shardCatalog", "extractStamps", "composeRgb", "makePictures"):
        try:
            refs = butler.query_datasets(f"{label}_metadata", collections=output, explain=False)
        except MissingDatasetTypeError:  # A task of the other pipeline.
            continue
        for ref in refs:
            metadata = butler.get(ref)
            peaks.setdefault(label, []).append(metadata["quantum"]["endMaxResidentSetSize"] / 2**20)
    return peaks


def _rate_line(
    label: str, counts: list[tuple[int, int]], walls: list[float], cpus: list[float], systems: list[float]
) -> tuple[float, float]:
    """Print a contender's medians; return its objects pictured per
    second of wall and of CPU time.
    """
    wall, cpu, system = statistics.median(walls), statistics.median(cpus), statistics.median(systems)
    pictures, objects = counts[0]
    rate_wall, rate_cpu = objects / wall, objects / cpu
    print(
        f"{label:58s} {pictures:6d} {objects:6d} {wall:7.2f} s {rate_wall:8.1f}/s"
        f"  cpu {cpu:7.2f} s {rate_cpu:8.1f}/s (system {system:.2f} s)"
        f"  (walls {', '.join(f'{w:.2f}' for w in walls)})"
    )
    return rate_wall, rate_cpu


def compare(
    repo: str,
    workdir: Path,
    stamp_size: int,
    rounds: int,
    two_cores: bool,
    fused: bool = False,
    fill_cache: bool = True,
    pause_page_reporting: bool = True,
) -> None:
    """Alternate the pipeline (and, with ``fused``, the fused pipeline) and
    the peer; print rates and ratios.  With ``fill_cache`` (the default)
    the free memory is first filled with page cache (`fill_page_cache`);
    with ``pause_page_reporting`` (the default) the kernel's free page
    reporting is stopped for the run where it can be
    (`vm_memory.free_page_reporting_paused`).
    """
    # The peer's rows per patch: those of the fused pipeline's default
    # (each object in one patch), so that the peer, too, pictures each
    # object once.
    first = "out/peer_reference"
    run_pipeline(repo, first, stamp_size, workdir, fused=True, keep_files=True)
    work_list = peer_work_list(repo, first, workdir)
    delete_run_files(repo, first)
    with free_page_reporting_paused(pause_page_reporting) as state:
        print(state, flush=True)
        filler = fill_page_cache(workdir) if fill_cache else None
        try:
            _compare_rounds(repo, workdir, stamp_size, rounds, two_cores, fused, work_list)
        finally:
            if filler is not None:
                filler.unlink()


def _compare_rounds(
    repo: str, workdir: Path, stamp_size: int, rounds: int, two_cores: bool, fused: bool, work_list: Path
) -> None:
    """The alternated rounds of `compare` and their report."""
    runs: dict[str, tuple[list, list, list, list]] = {}

    def record(name, wall, cpu, counts, system=float("nan")):
        entry = runs.setdefault(name, ([], [], [], []))
        entry[0].append(counts)
        entry[1].append(wall)
        entry[2].append(cpu)
        entry[3].append(system)

    for k in range(rounds):
        record("peer", *run_peer(work_list, workdir / f"peer_{k}", False, 1, stamp_size))
        record("pipeline", *run_pipeline(repo, f"out/peer_round_{k}", stamp_size, workdir))
        if fused:
            record("fused", *run_pipeline(repo, f"out/peer_fused_{k}", stamp_size, workdir, fused=True))
            record(
                "pictures_only",
                *run_pipeline(repo, f"out/peer_pictures_{k}", stamp_size, workdir, pictures_only=True),
            )
            steps = run_quantum_backed(repo, f"out/peer_qbb_{k}", stamp_size, workdir)
            for step, (wall, cpu, counts, system) in steps.items():
                record(f"qbb_{step}", wall, cpu, counts, system)
            wall, cpu, system = (sum(values[i] for values in steps.values()) for i in (0, 1, 3))
            record("qbb_whole", wall, cpu, counts, system)
            steps = run_quantum_backed(
                repo, f"out/peer_qbb_pictures_{k}", stamp_size, workdir, pictures_only=True
            )
            record("qbb_pictures_run", *steps["run"])
        record("peer_fast", *run_peer(work_list, workdir / f"peer_fast_{k}", True, 1, stamp_size))
    if two_cores:
        for k in range(rounds):
            record("peer_pool", *run_peer(work_list, workdir / f"peer_pool_{k}", False, 2, stamp_size))
            # The shipped submit file, then (with fused) the fused one.
            for label, use_fused in [("bps", False), ("bps_fused", True)][: 2 if fused else 1]:
                name = f"out/peer_{label}_{k}"
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, submit = bench.run_bps(repo, name, 2, stamp_size, workdir, fused=use_fused)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                counts = count_objects(repo, name)
                delete_run_files(repo, name)
                record(label, wall, cpu, counts)
                record(f"{label}_submit_stage", submit, float("nan"), counts)
    print(f"median of {rounds} alternated rounds; the machine is shared (other jobs ran meanwhile)")
    print(
        f"{'contender':58s} {'pics':>6s} {'objects':>6s} {'wall':>9s} {'objects/s':>10s}"
        f"  {'CPU':>11s} {'objects/CPU-s':>10s}"
    )
    labels = {
        "peer": "peer, 1 process (Pillow level 1)",
        "pipeline": "pipetask run -j 1, whole process (graph built before)",
        "fused": "pipetask run -j 1, fused pipeline, whole process",
        "pictures_only": "pipetask run -j 1, fused, write_stamps=False (no Stamps)",
        "qbb_run": "pipetask run-qbb -j 1, fused (a BPS job), whole process",
        "qbb_init": "pipetask pre-exec-init-qbb (BPS pipetaskInit job)",
        "qbb_final": "butler aggregate-graph (BPS final job)",
        "qbb_whole": "fused, quantum-backed: init + run-qbb + final job",
        "qbb_pictures_run": "pipetask run-qbb -j 1, fused, write_stamps=False (no Stamps)",
        "peer_fast": "peer --fast, 1 process (Pillow Z_RLE, memmap)",
        "peer_pool": "peer, pool of 2 processes",
        "bps": "bps submit, 2 parsl workers, whole command (CPU: those of its processes waited for)",
        "bps_submit_stage": "bps submit, 2 parsl workers, submit stage",
        "bps_fused": "bps submit zooniverse_fused.yaml, 2 parsl workers, whole command",
        "bps_fused_submit_stage": "bps submit zooniverse_fused.yaml, 2 parsl workers, submit stage",
    }
    rates = {name: _rate_line(labels[name], *runs[name]) for name in labels if name in runs}
    for name in ("pipeline", "fused", "pictures_only", "qbb_run", "qbb_whole", "qbb_pictures_run"):
        if name not in rates:
            continue
        for peer in ("peer", "peer_fast"):
            print(
                f"{name} / {peer}: per core (wall, 1 process each) {rates[name][0] / rates[peer][0]:.2f}x, "
                f"per CPU second {rates[name][1] / rates[peer][1]:.2f}x"
            )
    if fused:
        print(
            f"fused / pipeline: per core {rates['fused'][0] / rates['pipeline'][0]:.2f}x, "
            f"per CPU second {rates['fused'][1] / rates['pipeline'][1]:.2f}x"
        )
    if two_cores:
        for name in ("bps", "bps_submit_stage", "bps_fused", "bps_fused_submit_stage"):
            if name not in rates:
                continue
            line = f"{name} / peer pool of 2: {rates[name][0] / rates['peer_pool'][0]:.2f}x (wall)"
            if not name.endswith("stage"):
                line += f", {rates[name][1] / rates['peer_pool'][1]:.2f}x per CPU second"
            print(line)
    memory_run = "out/peer_memory"
    run_pipeline(repo, memory_run, stamp_size, workdir, jobs=2, keep_files=True)
    memory = quantum_memory(repo, memory_run)
    delete_run_files(repo, memory_run)
    for label, peaks in memory.items():
        print(
            f"peak RSS per quantum, {label} ({len(peaks)} quanta, each in its own process, -j 2): "
            f"median {statistics.median(peaks):.0f} MiB, max {max(peaks):.0f} MiB"
        )
    if fused:
        fused_memory_run = "out/peer_memory_fused"
        run_pipeline(repo, fused_memory_run, stamp_size, workdir, jobs=2, fused=True, keep_files=True)
        fused_memory = quantum_memory(repo, fused_memory_run)
        delete_run_files(repo, fused_memory_run)
        for label, peaks in fused_memory.items():
            print(
                f"fused pipeline, peak RSS per quantum, {label} ({len(peaks)} quanta, -j 2): "
                f"median {statistics.median(peaks):.0f} MiB, max {max(peaks):.0f} MiB"
            )
