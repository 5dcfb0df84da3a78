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

"""One ``bps submit`` of a catalog against the same catalog split by tract
into submissions that run side by side, on one registry.

doc/batch_sites.md advises splitting a large catalog into submissions of
about ten tracts and running them side by side, each with its own output
RUN and one shared output chain.  This bench times, alternated in one run
on the same repository (tracts of ``--patches-per-side`` squared small
patches, the registry on SQLite or a throw-away PostgreSQL server):

- ``one``: a single ``bps submit`` of the fused submit file over every
  tract;
- ``side by side``: one ``bps submit`` per tract, all started at once,
  each with ``--output-run {output}/tract<N>``.

Each contender writes to an output chain of its own; every submission's
exit status is checked, and each round checks that the side-by-side
chain holds as many pictures as the single submission's.

Usage::

    python bench/bench_side_by_side.py [--tracts 2] [--rounds 2] \
        [--registry postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests"))

from bench_pipeline import BIN, count_pictures, environment  # noqa: E402
from bench_repo import INPUTS, SKYMAP, build_repo, registry_database  # noqa: E402
from vm_memory import add_free_page_reporting_option, free_page_reporting_paused  # noqa: E402

SUBMIT_FILE = ROOT / "config" / "bps" / "zooniverse_fused.yaml"


def submit_command(repo: str, output: str, where: str, output_run: str | None = None) -> list[str]:
    """``bps submit`` of the fused submit file."""
    command = [str(BIN / "bps"), "submit", str(SUBMIT_FILE), "-b", repo, "-i", ",".join(INPUTS),
               "-o", output, "-d", where]  # fmt: skip
    return command + (["--output-run", output_run] if output_run else [])


def run_together(commands: list[list[str]], cwd: Path) -> tuple[float, list[float]]:
    """Start every command at once, each with its output in
    ``cwd/submission<N>.log``; return the wall time until the last ends
    and each one's own.  Exits with a command's output if it failed.
    """
    env = dict(environment(), PWD=str(cwd))  # ctrl_bps submits under ${PWD}.
    logs = [cwd / f"submission{k}.log" for k in range(len(commands))]
    start = time.perf_counter()
    with contextlib.ExitStack() as files:
        processes = [
            subprocess.Popen(
                command, cwd=cwd, env=env, stdout=files.enter_context(log.open("w")), stderr=subprocess.STDOUT
            )
            for command, log in zip(commands, logs)
        ]
        ends = [math.nan] * len(processes)
        while any(math.isnan(end) for end in ends):
            for k, process in enumerate(processes):
                if math.isnan(ends[k]) and process.poll() is not None:
                    ends[k] = time.perf_counter() - start
            time.sleep(0.05)
    for process, log in zip(processes, logs):
        if process.returncode != 0:
            sys.exit(f"bps submit failed ({process.returncode}):\n{log.read_text()[-6000:]}")
    return max(ends), ends


@contextlib.contextmanager
def _work_directory(keep: bool) -> Iterator[str]:
    """A temporary directory, removed at the end unless ``keep``."""
    if keep:
        path = tempfile.mkdtemp(prefix="bench_side_")
        print(f"work directory (kept): {path}", flush=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="bench_side_") as path:
            yield path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracts", type=int, default=2, help="tracts, one side-by-side submission each")
    parser.add_argument("--patches-per-side", type=int, default=10, help="a tract has N x N patches")
    parser.add_argument("--objects-per-patch", type=int, default=4)
    parser.add_argument("--inner-size", type=int, default=100, help="patch inner size, pixels")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--registry", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--keep-work", action="store_true", help="keep the repository and the logs")
    add_free_page_reporting_option(parser)
    args = parser.parse_args()
    if args.tracts < 2:
        parser.error("--tracts: at least 2")
    with (
        contextlib.ExitStack() as stack,
        free_page_reporting_paused(not args.keep_free_page_reporting) as state,
        _work_directory(args.keep_work) as tmp,
    ):
        print(state, flush=True)
        work = Path(tmp)
        registry_db = registry_database(stack, args.registry, "bench_side")
        repo, n_objects = build_repo(
            work,
            args.objects_per_patch,
            patches_per_side=args.patches_per_side,
            inner_size=args.inner_size,
            border=max(2, args.inner_size // 20),
            registry_db=registry_db,
            n_tracts=args.tracts,
        )
        print(f"{args.tracts} tracts of {args.patches_per_side**2} patches, {n_objects} objects", flush=True)
        walls: dict[str, list[float]] = {"one": [], "side by side": []}
        for k in range(args.rounds):
            order = ["one", "side by side"] if k % 2 == 0 else ["side by side", "one"]
            for name in order:
                output = f"u/bench/{'one' if name == 'one' else 'side'}{k}"
                if name == "one":
                    commands = [submit_command(repo, output, f"skymap='{SKYMAP}'")]
                else:
                    commands = [
                        submit_command(repo, output, f"skymap='{SKYMAP}' AND tract={t}", f"{output}/tract{t}")
                        for t in range(args.tracts)
                    ]
                run_dir = work / f"{output.replace('/', '_')}"
                run_dir.mkdir()
                wall, each = run_together(commands, run_dir)
                walls[name].append(wall)
                print(
                    f"round {k + 1}: {name}: {wall:.1f} s (each: {', '.join(f'{t:.1f}' for t in each)})",
                    flush=True,
                )
            pictures = {name: count_pictures(repo, f"u/bench/{tag}{k}")[0] for name, tag in
                        (("one", "one"), ("side by side", "side"))}  # fmt: skip
            if len(set(pictures.values())) != 1:
                sys.exit(f"round {k + 1}: the contenders made different numbers of pictures: {pictures}")
    print()
    print(f"| contender | submissions | wall s (median of {args.rounds}) | rounds |")
    print("|---|---|---|---|")
    for name, values in walls.items():
        count = 1 if name == "one" else args.tracts
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {count} | {statistics.median(values):.1f} | {rounds} |")
    ratio = statistics.median(walls["one"]) / statistics.median(walls["side by side"])
    print(f"\none submission / side by side: {ratio:.2f}x")


if __name__ == "__main__":
    main()
