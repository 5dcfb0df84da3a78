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

"""The HTCondor site (config/bps/sites/htcondor.yaml) through the real
ctrl_bps_htcondor: ``bps prepare`` writes the HTCondor workflow (DAG and
submit files) with HTCondor's own Python bindings, and the workflow is
then run job by job as DAGMan and the schedd would
(tests/htcondor_dagman.py: HTCondor's daemons are not installable here),
with one job killed at its first attempt.  The site's settings must reach
every job, the killed job must be run again, and the outputs must be
those of one local ``pipetask run``, byte for byte (the Stamps' Butler
provenance cards aside), with every catalog row accounted for the same.
"""

from __future__ import annotations

import subprocess

import pytest
from htcondor_dagman import Dag, kill_first_attempt, split_arguments
from pipeline_test_utils import BIN, ROOT, assert_run_matches, command_environment, pipetask

from lsst.epo.zooniverse.butler.config import get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

QUERY = "skymap = 'zooniverse_demo'"


def test_htcondor_workflow_survives_a_killed_job_and_matches_local(tmp_path):
    import lsst.ctrl.bps.htcondor  # noqa: F401 (the real plugin; a test dependency)

    demo = make_demo_repo(tmp_path / "repo")
    shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run="targets/sample")
    inputs = f"{demo.collection},targets/sample"
    work = tmp_path / "work"
    work.mkdir()
    env = command_environment(PWD=str(work))  # BPS's submitPath is ${PWD}/submit/...
    # The PI's submit file: the shipped one and one include.
    submit = tmp_path / "htcondor.yaml"
    submit.write_text(
        "includeConfigs:\n"
        "  - ${EPO_ZOONIVERSE_DIR}/config/bps/zooniverse.yaml\n"
        "  - ${EPO_ZOONIVERSE_DIR}/config/bps/sites/htcondor.yaml\n"
    )
    prepared = subprocess.run(
        [str(BIN / "bps"), "prepare", str(submit), "-b", demo.root, "-i", inputs, "-o", "u/test/htcondor",
         "-d", QUERY],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr[-4000:]
    assert "Using HTCondor Python bindings" in prepared.stderr
    dag = Dag(next(work.glob("submit/u/test/htcondor/*/*.dag")))

    # The site's settings reached every job: memory 4096 MB doubled on a
    # memory hold, three retries; jobs of patches; the final job registers.
    patch_jobs = sorted(name for name in dag.nodes if name.startswith("patches_"))
    assert len(patch_jobs) == 3 and set(dag.nodes) == {"pipetaskInit", *patch_jobs}  # Tracts 0, 1, 2.
    for node in [*dag.nodes.values(), dag.final]:
        assert node.commands["max_retries"] == "3", node.name
        assert "int(4096 * pow(2.0, NumJobStarts))" in node.commands["request_memory"], node.name
    for name in patch_jobs:
        assert dag.nodes[name].parents == ["pipetaskInit"]
        assert split_arguments(dag.nodes[name].commands["arguments"])[2] == "run-qbb"
    final_script = dag.final.commands["executable"]
    assert "aggregate-graph" in open(final_script).read()

    # The local reference: one process on this machine.
    pipetask(
        "run", "-b", demo.root, "-i", inputs, "-o", "u/test/local", "-p",
        str(ROOT / "pipelines" / "ZooniverseCutouts.yaml"), "-d", QUERY,
        "--dataset-query-constraint", "zooniverse_targets", "--register-dataset-types",
    )  # fmt: skip

    # The workflow, with the first job of patches killed (SIGKILL) while it
    # starts, as a lost node would end it.
    on_start, killed = kill_first_attempt("patches_", after=0.5)
    status = dag.run(env, on_start)
    logs = "".join(path.read_text()[-2000:] for path in dag.path.parent.rglob("*.out"))
    assert status == 0, logs[-6000:]
    assert len(killed) == 1
    node = dag.nodes[killed[0]]
    assert node.exits == [-9, 0], node.exits
    assert all(node.exits == [0] for node in dag.nodes.values() if node.name != killed[0])
    assert dag.final.exits == [0]

    butler = get_butler(demo.root)
    # The final job made the output chain.
    assert butler.collections.get_info("u/test/htcondor").type.name == "CHAINED"
    assert_run_matches(butler, "u/test/local", "u/test/htcondor")


# --- The stand-in refuses what it does not model, and retries as HTCondor ---


def _submit_file(directory, executable: str, arguments: str, extra: str = "") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "job.sub").write_text(
        'universe=vanilla\nshould_transfer_files=YES\ntransfer_output_files=""\n'
        f"transfer_executable=False\ngetenv=True\nexecutable={executable}\narguments={arguments}\n"
        "max_retries=2\nretry_until=member(ExitCode, {1,2})\n"
        "output=job.$(Cluster).out\nerror=job.$(Cluster).out\nlog=job.$(Cluster).log\n"
        f'+bps_job_name = "x"\n{extra}queue\n'
    )
    return "job.sub"


def test_stand_in_splits_arguments_as_htcondor():
    assert split_arguments("\"a 'b c' 'it''s' \"\"q\"\"  d\"") == ["a", "b c", "it's", '"q"', "d"]
    for bad in ("a b", '"a \'b"'):
        with pytest.raises(ValueError):
            split_arguments(bad)


def test_stand_in_refuses_what_it_does_not_model(tmp_path):
    name = _submit_file(tmp_path / "a", "/bin/true", '""', "requirements = (Memory > 1)\n")
    (tmp_path / "one.dag").write_text(f'JOB a "{name}" DIR "a"\n')
    with pytest.raises(ValueError, match="submit command not modelled"):
        Dag(tmp_path / "one.dag")
    _submit_file(tmp_path / "b", "/bin/true", '""')
    for line in ("RETRY b 3", 'VARS b x="1"', "SCRIPT PRE b /bin/true", "SUBDAG EXTERNAL c c.dag"):
        (tmp_path / "two.dag").write_text(f'JOB b "job.sub" DIR "b"\n{line}\n')
        with pytest.raises(ValueError, match="not modelled"):
            Dag(tmp_path / "two.dag")
    (tmp_path / "b" / "job.sub").write_text(
        (tmp_path / "b" / "job.sub").read_text().replace("getenv=True", "")
    )
    (tmp_path / "three.dag").write_text('JOB b "job.sub" DIR "b"\n')
    with pytest.raises(ValueError, match="getenv"):
        Dag(tmp_path / "three.dag")


def test_stand_in_retries_and_stops_as_htcondor(tmp_path):
    # A job that fails with 3 twice, then succeeds; one that exits 2 (a
    # retry_until code: failed at once) and its child, which never runs;
    # the FINAL node runs anyway and the POST script gives the DAG status.
    counter = tmp_path / "count"
    flaky = tmp_path / "flaky.sh"
    flaky.write_text(f"#!/bin/sh\necho x >> {counter}\n[ $(wc -l < {counter}) -ge 3 ]\nexit $((3 * $?))\n")
    flaky.chmod(0o755)
    _submit_file(tmp_path / "flaky", str(flaky), '""')
    _submit_file(tmp_path / "stop", "/bin/sh", "\"-c 'exit 2'\"")
    _submit_file(tmp_path / "child", "/bin/sh", "\"-c 'exit 0'\"")
    _submit_file(tmp_path / "final", "/bin/sh", "\"-c 'exit 0'\"")
    (tmp_path / "w.dag").write_text(
        'JOB flaky "job.sub" DIR "flaky"\nJOB stop "job.sub" DIR "stop"\nJOB child "job.sub" DIR "child"\n'
        'PARENT stop CHILD child\nFINAL final "job.sub" DIR "final"\n'
        "SCRIPT POST final /bin/sh -c 'exit $0' $DAG_STATUS\n"
    )
    dag = Dag(tmp_path / "w.dag")
    assert dag.run({"PATH": "/usr/bin:/bin"}) == 1
    assert dag.nodes["flaky"].exits == [3, 3, 0]
    assert dag.nodes["stop"].exits == [2]
    assert dag.nodes["child"].exits == []
    assert dag.final.exits == [0]
