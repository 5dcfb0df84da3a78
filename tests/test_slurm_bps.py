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

"""``bps submit`` through ctrl_bps_parsl's Slurm site on a throw-away
two-node Slurm cluster (tests/slurm_cluster.py), and the site files of
config/bps/sites/ that one include switches between.

The Slurm test runs the demo pipeline once in one local process
(``pipetask run``) and once through ``sbatch`` on both nodes while one job
is killed on node ``n2``; the failure is reported, ``bps restart`` reruns
the failed job only, and then every catalog row is accounted for exactly
as in the local run and every output file is the local run's, byte for
byte (the Stamps' Butler provenance cards aside).  It skips only where
Slurm is not installed, and fails there too when ``CI`` is set.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pipeline_test_utils import BIN, ROOT, assert_run_matches, command_environment
from slurm_cluster import SlurmNotFoundError, ThrowawaySlurm

from lsst.epo.zooniverse.butler.config import get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog

SITES = ROOT / "config" / "bps" / "sites"
QUERY = "skymap = 'zooniverse_demo'"
PARSL = "lsst.ctrl.bps.parsl.ParslService"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def slurm_cluster():
    """A two-node Slurm cluster (one CPU per node) for this module.

    Skips when Slurm is not installed, except in CI (``CI`` set) or with
    ``EPO_ZOONIVERSE_REQUIRE_SLURM=1``, where that is a failure.
    """
    try:
        cluster = ThrowawaySlurm(nodes=2, cpus_per_node=1)
    except SlurmNotFoundError as exc:
        missing = str(exc)
    else:
        missing = None
    if missing:
        if IN_CI or os.environ.get("EPO_ZOONIVERSE_REQUIRE_SLURM") == "1":
            pytest.fail(f"{missing}\nCI needs Slurm for tests/test_slurm_bps.py.", pytrace=False)
        pytest.skip(missing)
    with cluster:
        yield cluster


def _site_submit_file(path: Path, site: str, extra: str = "") -> Path:
    """A PI's submit file: the shipped file, one site include, ``extra``."""
    path.write_text(
        "includeConfigs:\n"
        "  - ${EPO_ZOONIVERSE_DIR}/config/bps/zooniverse.yaml\n"
        f"  - ${{EPO_ZOONIVERSE_DIR}}/config/bps/sites/{site}.yaml\n" + extra
    )
    return path


# --- One include switches the site ----------------------------------------


def test_one_include_switches_the_site(tmp_path, monkeypatch):
    import parsl.config
    from parsl.providers import SlurmProvider

    from lsst.ctrl.bps import BpsConfig
    from lsst.ctrl.bps.parsl.site import SiteConfig
    from lsst.epo.zooniverse.pipeline.bps_site import (
        DEFAULT_STRATEGY_PERIOD,
        QuickStartLocal,
        QuickStartSlurm,
    )

    monkeypatch.setenv("EPO_ZOONIVERSE_DIR", str(ROOT))
    # ctrl_bps_panda is not installed here: a stand-in of its USDF file.
    panda_dir = tmp_path / "ctrl_bps_panda"
    (panda_dir / "config").mkdir(parents=True)
    (panda_dir / "config" / "bps_usdf.yaml").write_text("computeCloud: US\ncomputeSite: SLAC\n")
    monkeypatch.setenv("CTRL_BPS_PANDA_DIR", str(panda_dir))
    expected = {
        "local": ("lsst.ctrl.bps.parsl.ParslService", "local"),
        "slurm": ("lsst.ctrl.bps.parsl.ParslService", "slurm"),
        "htcondor": ("lsst.ctrl.bps.htcondor.HTCondorService", "my_pool"),
        "panda": ("lsst.ctrl.bps.panda.PanDAService", "SLAC"),
    }
    assert sorted(path.stem for path in SITES.glob("*.yaml")) == sorted(expected)
    shipped = BpsConfig(str(ROOT / "config" / "bps" / "zooniverse.yaml"))
    assert (shipped["wmsServiceClass"], shipped["computeSite"]) == expected["local"]
    for site, (service, compute_site) in expected.items():
        config = BpsConfig(str(_site_submit_file(tmp_path / f"{site}.yaml", site)))
        assert (config["wmsServiceClass"], config["computeSite"]) == (service, compute_site), site
        # The rest of the shipped file is still there.
        assert config["cluster"]["patches"]["partitionMaxSize"] == 10
        assert config["extraQgraphOptions"] == "--dataset-query-constraint zooniverse_targets"
    assert BpsConfig(str(tmp_path / "panda.yaml"))["computeCloud"] == "US"
    local = SiteConfig.from_config(BpsConfig(str(tmp_path / "local.yaml")))
    assert type(local) is QuickStartLocal
    # The Slurm site as a test cluster would set it.
    submit = _site_submit_file(
        tmp_path / "slurm_small.yaml",
        "slurm",
        # bps submit sets the operator; parsl's job name needs it.
        "operator: test\nsite:\n  slurm:\n    nodes: 2\n    cores_per_node: 1\n    walltime: '00:05:00'\n"
        "    address: 127.0.0.1\n",
    )
    slurm = SiteConfig.from_config(BpsConfig(str(submit)))
    assert type(slurm) is QuickStartSlurm
    config = slurm.get_parsl_config()
    assert isinstance(config, parsl.config.Config)
    assert config.strategy_period == DEFAULT_STRATEGY_PERIOD
    assert config.retries == 1  # A killed job runs again once.
    (executor,) = config.executors
    assert isinstance(executor.provider, SlurmProvider)
    assert executor.provider.nodes_per_block == 2 and executor.provider.cores_per_node == 1
    assert executor.max_workers_per_node == 1  # One worker per core, not per host core.
    assert executor.address == "127.0.0.1"
    # Without an address, ctrl_bps_parsl's choice (this host's name).
    text = submit.read_text().replace("    address: 127.0.0.1\n", "")
    submit.write_text(text)
    assert SiteConfig.from_config(BpsConfig(str(submit))).get_address() == (SiteConfig.get_address(slurm))


# --- The pipeline on Slurm ---------------------------------------------------


class _JobKiller(threading.Thread):
    """Kill the first pipeline job seen on ``node`` (SIGKILL to its
    ``pipetask run-qbb`` process) once it has finished a quantum, as a node
    that dies or an out-of-memory kill would.
    """

    def __init__(self, cluster: ThrowawaySlurm, node: str, timeout: float = 240.0):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.node = node
        self.timeout = timeout
        self.killed: tuple[int, str, str] | None = None  # pid, command, log
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            for pid, command in self.cluster.processes(self.node).items():
                if "run-qbb" not in command or "pipetask" not in command:
                    continue
                try:
                    log = os.readlink(f"/proc/{pid}/fd/2")
                    done = "Execution of task" in Path(log).read_text(errors="replace")
                except OSError:
                    continue
                if done:
                    os.kill(pid, signal.SIGKILL)
                    self.killed = (pid, command, log)
                    return
            time.sleep(0.05)


def _run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 300.0):
    start = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"{' '.join(Path(part).name for part in command[:2])}: {time.monotonic() - start:.1f} s")
    return result, result.stdout + result.stderr


def _failed_count(output: str) -> int:
    """parsl's count of failed tasks in ``bps submit``/``restart`` output."""
    counts = re.findall(r"'tasks_failed_count': (\d+)", output)
    assert counts, output[-3000:]
    return int(counts[-1])


def _job_nodes(submit_dir: Path) -> dict[str, str]:
    """Node of each pipeline job: the first line of its stdout (the test's
    ``commandPrefix`` prints ``SLURMD_NODENAME``).
    """
    nodes = {}
    for path in submit_dir.rglob("logs/patches/**/*.stdout"):
        lines = path.read_text().splitlines()
        nodes[path.stem] = lines[0].strip() if lines else ""
    return nodes


# The whole scenario in one test: the cluster, repository and runs are
# shared and CI's budget for this part is about three minutes.
def test_slurm_run_survives_a_killed_job_and_matches_local(slurm_cluster, tmp_path):
    from lsst.epo.zooniverse.pipeline.accounting import account_targets

    demo = make_demo_repo(tmp_path / "repo")
    shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run="targets/sample")
    inputs = f"{demo.collection},targets/sample"
    work = tmp_path / "work"
    work.mkdir()
    env = command_environment(slurm_cluster.env(), PWD=str(work))  # BPS's submitPath is ${PWD}/submit/...

    # The local reference: one process on this machine.
    local, output = _run(
        [
            str(BIN / "pipetask"),
            "run",
            "-b",
            demo.root,
            "-i",
            inputs,
            "-o",
            "u/test/local",
            "-p",
            str(ROOT / "pipelines" / "ZooniverseCutouts.yaml"),
            "-d",
            QUERY,
            "--dataset-query-constraint",
            "zooniverse_targets",
            "--register-dataset-types",
        ],
        env,
        work,
    )
    assert local.returncode == 0, output[-4000:]

    # The same pipeline through sbatch on both nodes, no retry, and a job
    # killed on n2 mid-run.
    submit = _site_submit_file(
        tmp_path / "slurm.yaml",
        "slurm",
        "site:\n"
        "  slurm:\n"
        "    nodes: 2\n"
        "    cores_per_node: 1\n"
        "    walltime: '00:10:00'\n"
        "    address: 127.0.0.1\n"
        "    retries: 0\n"
        "    commandPrefix: printenv SLURMD_NODENAME\n",
    )
    killer = _JobKiller(slurm_cluster, "n2")
    killer.start()
    try:
        first, output = _run(
            [
                str(BIN / "bps"),
                "submit",
                str(submit),
                "-b",
                demo.root,
                "-i",
                inputs,
                "-o",
                "u/test/slurm",
                "-d",
                QUERY,
            ],
            env,
            work,
        )
    finally:
        killer.stop()
    assert first.returncode == 0, output[-6000:]
    assert killer.killed is not None, f"no job ran on n2: {_job_nodes(work)}\n{output[-3000:]}"
    # Reported: parsl counts the failed job and its log ends in the kill;
    # the row accounting names the rows of its patches not processed.
    assert _failed_count(output) == 1
    butler = get_butler(demo.root)
    after_failure = account_targets(butler, "u/test/slurm")
    assert "not_processed" in set(after_failure["status"])
    # The block ran on both nodes.
    assert set(_job_nodes(work).values()) == {"n1", "n2"}

    # The rerun: bps restart runs the failed job again, nothing else.
    submit_path = next(work.glob("submit/u/test/slurm/*"))
    second, output = _run(
        [str(BIN / "bps"), "restart", "--wms-service-class", PARSL, "--id", str(submit_path)], env, work
    )
    assert second.returncode == 0 and _failed_count(output) == 0, output[-6000:]
    # parsl's checkpoints: the two jobs that succeeded are not run again.
    assert re.findall(r"'tasks_completed_count': (\d+)", output)[-1] == "1", output[-3000:]
    assert not slurm_cluster.run("squeue", "-h").strip()  # parsl cancelled its blocks.

    butler = get_butler(demo.root)
    assert_run_matches(butler, "u/test/local", "u/test/slurm")
