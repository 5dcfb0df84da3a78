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


"""A catalog split by tract into ``bps submit``s that run side by side
against one PostgreSQL registry, each with its own output RUN and one
shared output chain (doc/batch_sites.md, "Large catalogs: several
submissions side by side"), as ``butler plan-zooniverse-submissions``
prints them: both land, and every catalog row ends up as one submission
of the whole catalog leaves it.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess

import numpy as np
import pytest
from pipeline_test_utils import BIN, ROOT, command_environment, run_pipeline_file

from lsst.daf.butler import CollectionType
from lsst.epo.zooniverse.butler.config import get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.accounting import account_targets
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog
from lsst.epo.zooniverse.pipeline.submission_plan import catalog_tracts, plan_submissions
from lsst.epo.zooniverse.script.plan_zooniverse_submissions import check_outputs

SKYMAP = "zooniverse_demo"
TARGETS_RUN = "targets/sample"
OUTPUT = "u/test/side"


@pytest.fixture(scope="module")
def demo_on_postgres(tmp_path_factory, postgres_server):
    """The demo repository with its registry on the tests' PostgreSQL
    server and the sample catalog sharded.
    """
    with postgres_server.temporary_registry_database("side") as url:
        demo = make_demo_repo(tmp_path_factory.mktemp("side") / "repo", registry_db=url)
        shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run=TARGETS_RUN)
        yield demo


def test_catalog_tracts(demo_on_postgres):
    butler = get_butler(demo_on_postgres.root)
    assert catalog_tracts(butler, [TARGETS_RUN], SKYMAP) == [0, 1, 2]
    assert catalog_tracts(butler, [TARGETS_RUN], SKYMAP, where="tract > 0") == [1, 2]
    with pytest.raises(LookupError, match="not registered"):
        catalog_tracts(butler, [TARGETS_RUN], "lsst_cells_v1")
    with pytest.raises(LookupError, match="No zooniverse_targets"):
        catalog_tracts(butler, [demo_on_postgres.collection], SKYMAP)


def test_plan_refuses_a_run_that_exists(demo_on_postgres):
    butler = get_butler(demo_on_postgres.root, writeable=True)
    parts = plan_submissions(
        [0, 1, 2],
        skymap=SKYMAP,
        submit_file="f",
        output="u/test/taken",
        tracts_per_submission=1,
        plan="T",
    )
    check_outputs(butler, parts)  # Nothing there yet.
    butler.collections.register("u/test/taken/T/part002", CollectionType.RUN)
    with pytest.raises(ValueError, match="Run u/test/taken/T/part002 exists already"):
        check_outputs(butler, parts)
    # An existing chain is what the parts prepend to.
    butler.collections.register("u/test/chain", CollectionType.CHAINED)
    check_outputs(butler, plan_submissions([0], skymap=SKYMAP, submit_file="f", output="u/test/chain"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repo": "no/such/repo"}, "does not exist"),
        ({"collections": "no/such/run"}, "no/such/run"),
        ({"--skymap": "lsst_cells_v1"}, "not registered"),
        ({"--where": "tract >"}, "Failed to parse"),
        ({"--where": "tract >\n 0"}, "control character"),
        ({"--output": TARGETS_RUN}, "is a RUN collection"),
    ],
)
def test_plan_command_errors_are_one_line(demo_on_postgres, change, message):
    arguments = {
        "repo": demo_on_postgres.root,
        "collections": TARGETS_RUN,
        "--skymap": SKYMAP,
        "--submit-file": str(ROOT / "config" / "bps" / "zooniverse_fused.yaml"),
        "--output": OUTPUT,
    } | change
    options = [item for key, value in arguments.items() if key.startswith("--") for item in (key, value)]
    result = subprocess.run(
        [str(BIN / "butler"), "plan-zooniverse-submissions", arguments["repo"], arguments["collections"],
         *options],
        env=command_environment(),
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr


def test_submissions_side_by_side_share_one_output_chain(tmp_path, demo_on_postgres):
    demo = demo_on_postgres
    inputs = f"{demo.collection},{TARGETS_RUN}"
    plan = subprocess.run(
        [str(BIN / "butler"), "plan-zooniverse-submissions", demo.root, TARGETS_RUN, "--skymap", SKYMAP,
         "--submit-file", str(ROOT / "config" / "bps" / "zooniverse_fused.yaml"), "--output", OUTPUT,
         "--tracts-per-submission", "2", "--inputs", inputs],
        env=command_environment(),
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr[-3000:]
    lines = plan.stdout.splitlines()
    assert len(lines) == 2 and "3 tracts in 2 submissions" in plan.stderr
    runs = [shlex.split(line)[shlex.split(line).index("--output-run") + 1] for line in lines]
    assert len(set(runs)) == 2 and all(run.startswith(f"{OUTPUT}/") for run in runs)
    # The lines run as printed, at once, from one directory: distinct
    # output runs also mean distinct submit directories
    # (``${PWD}/submit/{outputRun}``).
    submit_dir = tmp_path / "submit"
    submit_dir.mkdir()
    env = command_environment(PWD=str(submit_dir))
    logs = [tmp_path / f"part{k}.log" for k in range(len(lines))]
    with contextlib.ExitStack() as files:
        # Output to files: a pipe that fills would hold one submission up.
        submissions = [
            subprocess.Popen(
                ["sh", "-c", line],
                cwd=submit_dir,
                env=env,
                stdout=files.enter_context(log.open("w")),
                stderr=subprocess.STDOUT,
            )
            for line, log in zip(lines, logs)
        ]
        for process in submissions:
            process.wait()
    for line, process, log in zip(lines, submissions, logs):
        assert process.returncode == 0, f"{line}:\n{log.read_text()[-6000:]}"
    butler = get_butler(demo.root)
    # Both final jobs prepended their run to the one chain, in either order,
    # before the inputs the first of them put there.
    chain = butler.collections.get_info(OUTPUT).children
    assert sorted(chain[:2]) == sorted(runs)
    assert list(chain[2:]) == list(butler.collections.query(inputs.split(","), flatten_chains=True))
    # Each tract's outputs are in the run of the submission that had it
    # (tracts 0 and 1 in the first, 2 in the second).
    rgb = butler.query_datasets("zooniverse_rgb", collections=OUTPUT, explain=False)
    assert {ref.dataId["tract"] for ref in rgb} == {0, 1, 2}
    for ref in rgb:
        assert ref.run == runs[0 if ref.dataId["tract"] < 2 else 1], ref
    # Every row ends up as in one submission of the whole catalog (the
    # same pipeline and options as the submit file, through pipetask).
    run_pipeline_file(
        demo.root, inputs, "u/test/whole", str(ROOT / "pipelines" / "ZooniverseCutoutsFused.yaml"),
        f"skymap = '{SKYMAP}'",
    )  # fmt: skip
    split = account_targets(butler, OUTPUT)
    whole = account_targets(butler, "u/test/whole")
    assert len(split) == split.meta["n_rows"] > 100
    assert "not_processed" not in set(split["status"])
    assert (split["status"] == "pictured").sum() > 100
    for name in split.colnames:
        a, b = np.asarray(split[name]), np.asarray(whole[name])
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
