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
from pathlib import Path

import pytest
import yaml
from htcondor_dagman import Dag, kill_first_attempt
from htcondor_submit_file import parse_environment, split_arguments
from pipeline_test_utils import BIN, ROOT, assert_run_matches, command_environment, pipetask

from lsst.epo.zooniverse.butler.config import CONFIG_DIR, get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

QUERY = "skymap = 'zooniverse_demo'"


def _as_existing_repository(root: str) -> None:
    """Take this package's configuration out of a repository's own
    butler.yaml, as in a repository it did not make (e.g. the USDF's
    /repo/main): every process then needs it on DAF_BUTLER_CONFIG_PATH.
    """
    path = Path(root) / "butler.yaml"
    config = yaml.safe_load(path.read_text())
    del config["storageClasses"]
    del config["datastore"]["formatters"]
    path.write_text(yaml.safe_dump(config))


def _prepare(submit: Path, demo, inputs: str, output: str, work: Path, env: dict) -> Dag:
    """``bps prepare`` with the real plugin; return its workflow."""
    prepared = subprocess.run(
        [str(BIN / "bps"), "prepare", str(submit), "-b", demo.root, "-i", inputs, "-o", output, "-d", QUERY],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr[-4000:]
    assert "Using HTCondor Python bindings" in prepared.stderr
    # These bindings do not know DAGMAN_MANAGER_JOB_APPEND_GETENV, so the
    # plugin leaves it out of dagman.conf: the jobs get DAGMan's default
    # environment (doc/batch_sites.md).
    assert "DAGMAN_MANAGER_JOB_APPEND_GETENV" in prepared.stderr
    dag = Dag(next(work.glob(f"submit/{output}/*/*.dag")))
    assert not dag.append_getenv
    return dag


def test_htcondor_workflow_survives_a_killed_job_and_matches_local(tmp_path):
    import lsst.ctrl.bps.htcondor  # noqa: F401 (the real plugin; a test dependency)

    demo = make_demo_repo(tmp_path / "repo")
    shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run="targets/sample")
    _as_existing_repository(demo.root)
    inputs = f"{demo.collection},targets/sample"
    work = tmp_path / "work"
    work.mkdir()
    env = command_environment(PWD=str(work))  # BPS's submitPath is ${PWD}/submit/...
    # The PI's submit file: the shipped one, one include, and this
    # package's configuration for the jobs (doc/batch_sites.md).
    submit = tmp_path / "htcondor.yaml"
    submit.write_text(
        "includeConfigs:\n"
        "  - ${EPO_ZOONIVERSE_DIR}/config/bps/zooniverse.yaml\n"
        "  - ${EPO_ZOONIVERSE_DIR}/config/bps/sites/htcondor.yaml\n"
        f"environment:\n  DAF_BUTLER_CONFIG_PATH: {CONFIG_DIR}\n"
    )
    dag = _prepare(submit, demo, inputs, "u/test/htcondor", work, env)
    assert dag.nodes["pipetaskInit"].commands["environment"] == f"\"DAF_BUTLER_CONFIG_PATH='{CONFIG_DIR}'\""

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
    # The memory policy the stand-in's own tests use is the plugin's.
    for line in _memory_policy(4096, 491520).splitlines():
        key, value = line.split("=", 1)
        assert dag.nodes[patch_jobs[0]].commands[key] == value, key
    final_script = dag.final.commands["executable"]
    assert "aggregate-graph" in open(final_script).read()

    # The local reference: one process on this machine.
    pipetask(
        "run", "-b", demo.root, "-i", inputs, "-o", "u/test/local", "-p",
        str(ROOT / "pipelines" / "ZooniverseCutouts.yaml"), "-d", QUERY,
        "--dataset-query-constraint", "zooniverse_targets", "--register-dataset-types",
    )  # fmt: skip

    # The workflow, with the first job of patches killed (SIGKILL) while it
    # starts, as the out-of-memory killer would end it.
    on_start, killed = kill_first_attempt("patches_", after=0.5)
    status = dag.run(env, on_start)
    logs = "".join(path.read_text()[-2000:] for path in dag.path.parent.rglob("*.out"))
    assert status == 0, logs[-6000:]
    assert len(killed) == 1
    node = dag.nodes[killed[0]]
    assert node.exits == [-9, 0] and node.holds == [(3, 34)], (node.exits, node.holds)
    assert all(node.exits == [0] for node in dag.nodes.values() if node.name != killed[0])
    assert dag.final.exits == [0]
    # ctrl_bps_htcondor writes the final job's concurrency_limit, which
    # condor_submit ignores (its command is concurrency_limits).
    assert dag.unused == {"finalJob": ["concurrency_limit"]}

    butler = get_butler(demo.root)
    # The final job made the output chain.
    assert butler.collections.get_info("u/test/htcondor").type.name == "CHAINED"
    assert_run_matches(butler, "u/test/local", "u/test/htcondor")

    # Without the environment line the jobs do not find this package's
    # storage classes (DAGMan does not pass DAF_BUTLER_CONFIG_PATH on):
    # every job of patches fails, and so does the DAG.
    submit.write_text(submit.read_text().split("environment:")[0])
    bare = _prepare(submit, demo, inputs, "u/test/htcondor_bare", work, env)
    assert "environment" not in bare.nodes["pipetaskInit"].commands
    assert bare.run(env) == 1
    assert all(bare.nodes[name].status == 1 for name in bare.nodes if name.startswith("patches_"))
    logs = "".join(path.read_text() for path in bare.path.parent.glob("jobs/patches/*/*.out"))
    assert "KeyError: 'Zooniverse" in logs


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
    assert split_arguments("\"a '' b\"") == ["a", "", "b"]
    assert split_arguments('"a\fb"') == ["a\fb"]  # Only space, tab, CR and LF split.
    for bad in ("a b", '"a \'b"', '"a "b"', '"a""""'):
        with pytest.raises(ValueError):
            split_arguments(bad)
    assert parse_environment("\"A='x y' B=2 C=''\"") == {"A": "x y", "B": "2", "C": ""}
    with pytest.raises(ValueError, match="NAME=value"):
        parse_environment('"A=1 novalue"')


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
    _submit_file(tmp_path / "c", "/bin/echo", '"$ENV(HOME)"')
    (tmp_path / "four.dag").write_text('JOB c "job.sub" DIR "c"\n')
    with pytest.raises(ValueError, match="macro not modelled"):
        Dag(tmp_path / "four.dag")
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
        "SCRIPT POST final /bin/sh -c 'echo $0 > post_status; exit $0' $DAG_STATUS\n"
    )
    dag = Dag(tmp_path / "w.dag")
    assert dag.run({"PATH": "/usr/bin:/bin"}) == 1
    assert (tmp_path / "final" / "post_status").read_text() == "2\n"  # DAG_STATUS_NODE_FAILED.
    assert dag.nodes["flaky"].exits == [3, 3, 0]
    assert dag.nodes["stop"].exits == [2]
    assert dag.nodes["child"].exits == []
    assert dag.final.exits == [0]


def _memory_policy(base_mb: int, cap_mb: int) -> str:
    """ctrl_bps_htcondor's memory-retry commands (prepare_utils.py) for
    ``requestMemory: base_mb``, ``memoryMultiplier: 2.0`` and
    ``memoryLimit: cap_mb``.
    """
    held_for_memory = (
        "(HoldReasonCode =?= 34 && HoldReasonSubCode =?= 0 "
        "|| HoldReasonCode =?= 3 && HoldReasonSubCode =?= 34)"
    )
    last_held = held_for_memory.replace("Hold", "LastHold")
    grown = f"min({{int({base_mb} * pow(2.0, NumJobStarts - 1)), {cap_mb}}})"
    return (
        "on_exit_hold=ExitBySignal == true || ExitCode > 128\non_exit_hold_subcode=34\n"
        f"request_memory=(LastJobStatus =?= 5 && {last_held}) ? "
        f"min({{int({base_mb} * pow(2.0, NumJobStarts)), {cap_mb}}}) : "
        f"min({{max({{{base_mb}, MemoryUsage ?: 0}}), {cap_mb}}})\n"
        "periodic_release=JobStatus == 5 && NumJobStarts <= JobMaxRetries && (HoldReasonCode =?= 12 || "
        f"{held_for_memory} && {grown} < {cap_mb})\n"
        f"periodic_remove=JobStatus == 5 && (NumJobStarts > JobMaxRetries || ({held_for_memory} && "
        f"{grown} == {cap_mb}))\n"
    )


def test_stand_in_holds_releases_and_removes_by_the_policy(tmp_path):
    # Killed by a signal every time: held (3, 34), released with twice the
    # memory while below the cap, removed at it: two starts, not 1 + 2.
    # ($ in a submit file is a macro: the jobs are scripts.)
    scripts = {
        "oom": "kill -9 $$",
        "hungry": "x=$(head -c 20000000 /dev/zero | tr '\\0' x)\nexit 0",
    }
    for name, body in scripts.items():
        (tmp_path / f"{name}.sh").write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / f"{name}.sh").chmod(0o755)
    _submit_file(tmp_path / "oom", str(tmp_path / "oom.sh"), '""', _memory_policy(4096, 8192))
    # Over its memory request (1 MB, cap 4 MB): held (34, 0) by the
    # starter, released at 2 MB, then removed at the cap.
    _submit_file(tmp_path / "hungry", str(tmp_path / "hungry.sh"), '""', _memory_policy(1, 4))
    _submit_file(tmp_path / "fits", "/bin/sh", "\"-c 'exit 0'\"", _memory_policy(4096, 8192))
    (tmp_path / "m.dag").write_text(
        'JOB oom "job.sub" DIR "oom"\nJOB hungry "job.sub" DIR "hungry"\nJOB fits "job.sub" DIR "fits"\n'
    )
    dag = Dag(tmp_path / "m.dag")
    assert dag.run({"PATH": "/usr/bin:/bin"}) == 1
    assert dag.nodes["oom"].exits == [-9, -9] and dag.nodes["oom"].holds == [(3, 34), (3, 34)]
    assert dag.nodes["hungry"].holds == [(34, 0), (34, 0), (34, 0)]
    assert dag.nodes["fits"].exits == [0] and dag.nodes["fits"].holds == []
    assert dag.nodes["oom"].status != 0 and dag.nodes["hungry"].status != 0


def test_stand_in_gives_jobs_dagmans_environment(tmp_path):
    _submit_file(tmp_path / "show", "/usr/bin/env", '""')
    (tmp_path / "e.dag").write_text('JOB show "job.sub" DIR "show"\n')
    dag = Dag(tmp_path / "e.dag")
    submitter = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "_CONDOR_X": "1",
        "CONDOR_X": "2",
        "DAF_BUTLER_CONFIG_PATH": "/x",
    }
    assert dag.run(submitter) == 0
    seen = dict(
        line.split("=", 1) for line in next((tmp_path / "show").glob("job.*.out")).read_text().splitlines()
    )
    assert seen["HOME"] == "/root" and seen["_CONDOR_X"] == "1"
    assert "DAF_BUTLER_CONFIG_PATH" not in seen and "CONDOR_X" not in seen
    assert seen["TMPDIR"] == seen["_CONDOR_SCRATCH_DIR"] != str(tmp_path / "show")
    (tmp_path / "dagman.conf").write_text("DAGMAN_MANAGER_JOB_APPEND_GETENV = True\n")
    (tmp_path / "f.dag").write_text('CONFIG dagman.conf\nJOB show "job.sub" DIR "show"\n')
    dag = Dag(tmp_path / "f.dag")
    assert dag.run({"PATH": "/usr/bin:/bin", "DAF_BUTLER_CONFIG_PATH": "/x"}) == 0
    assert "DAF_BUTLER_CONFIG_PATH=/x" in next((tmp_path / "show").glob("job.*.out")).read_text()
