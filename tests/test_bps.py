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


"""``bps submit`` of the shipped submit file, end to end with the parsl
plugin on this machine (kept small: the one patch of the polar tract).
"""

from __future__ import annotations

import os
import subprocess

import pytest
from pipeline_test_utils import BIN, ROOT, command_environment

from lsst.epo.zooniverse.butler.config import CONFIG_DIR, get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.pipeline.sharding import shard_target_catalog


@pytest.mark.parametrize("submit_file", ["zooniverse.yaml", "zooniverse_fused.yaml"])
def test_bps_submit_with_parsl(tmp_path, submit_file):
    demo = make_demo_repo(tmp_path / "repo")
    shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run="targets/sample")
    submit_dir = tmp_path / "submit"
    submit_dir.mkdir()
    env = command_environment(PWD=str(submit_dir))  # BPS's submitPath is ${PWD}/submit/...
    result = subprocess.run(
        [
            str(BIN / "bps"),
            "submit",
            str(ROOT / "config" / "bps" / submit_file),
            "-b",
            demo.root,
            "-i",
            f"{demo.collection},targets/sample",
            "-o",
            "u/test/bps",
            "-d",
            "skymap = 'zooniverse_demo' AND tract = 2",
        ],
        cwd=submit_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    butler = get_butler(demo.root)
    # The final job registered the outputs and made the CHAINED collection.
    rgb = butler.get("zooniverse_rgb", skymap="zooniverse_demo", tract=2, patch=0, collections="u/test/bps")
    report = butler.get(
        "zooniverse_rgb_report", skymap="zooniverse_demo", tract=2, patch=0, collections="u/test/bps"
    )
    stamps = butler.query_datasets("zooniverse_stamps", collections="u/test/bps", explain=False)
    assert sorted(ref.dataId["band"] for ref in stamps) == ["g", "i", "r"]
    # The pictures were made by the submit file's pipeline.
    label = "makePictures" if submit_file == "zooniverse_fused.yaml" else "composeRgb"
    assert butler.query_datasets(f"{label}_metadata", collections="u/test/bps", explain=False)
    assert len(rgb) > 0 and len(rgb) == int((report["status"] == "ok").sum())
    assert set(report["status"]) <= {"ok", "low_coverage", "no_data"}
    # The submit directory exists with the run's logs; no other tract ran.
    assert any(submit_dir.rglob("*.qg"))
    assert not butler.query_datasets(
        "zooniverse_rgb",
        collections="u/test/bps",
        where="skymap = 'zooniverse_demo' AND tract = 0",
        explain=False,
    )


def _site_config(tmp_path, extra: str = ""):
    """The shipped submit file's site, with ``extra`` lines in its site
    section.
    """
    from lsst.ctrl.bps import BpsConfig
    from lsst.epo.zooniverse.pipeline.bps_site import QuickStartLocal

    text = (ROOT / "config" / "bps" / "zooniverse.yaml").read_text()
    assert text.count("\n    cores: 2\n") == 1
    submit = tmp_path / "submit.yaml"
    submit.write_text(text.replace("\n    cores: 2\n", f"\n    cores: 2\n{extra}"))
    site = QuickStartLocal.from_config(BpsConfig(str(submit)))
    assert type(site) is QuickStartLocal  # What the shipped file names.
    return site


def test_quick_start_site_sets_the_strategy_period(tmp_path):
    import parsl.config

    from lsst.epo.zooniverse.pipeline.bps_site import DEFAULT_STRATEGY_PERIOD

    config = _site_config(tmp_path).get_parsl_config()
    assert isinstance(config, parsl.config.Config)
    assert config.strategy_period == DEFAULT_STRATEGY_PERIOD < parsl.config.Config().strategy_period
    # The rest is ctrl_bps_parsl's Local: one local executor with the cores.
    (executor,) = config.executors
    assert executor.label == "local" and executor.max_workers_per_node == 2
    assert _site_config(tmp_path, "    strategyPeriod: 2\n").get_parsl_config().strategy_period == 2
    for bad in ("0", "-1.5", "soon", ".nan"):
        with pytest.raises(ValueError, match="strategyPeriod must be a positive number"):
            _site_config(tmp_path, f"    strategyPeriod: {bad}\n").get_parsl_config()


def _patches_per_job(cqgraph, label: str = "patches") -> dict[int, list[list[int]]]:
    """For each tract, the sorted patch lists of the jobs of ``label``;
    also checks that each patch's quanta are all in one job.
    """
    jobs: dict[int, list[list[int]]] = {}
    job_of_patch: dict[tuple[int, int], str] = {}
    for cluster in cqgraph.clusters():
        if cluster.label != label:
            continue
        patches = set()
        for node_id in cluster.qgraph_node_ids:
            data_id = cqgraph.get_quantum_info(node_id)["data_id"]
            key = (data_id["tract"], data_id["patch"])
            assert job_of_patch.setdefault(key, cluster.name) == cluster.name, key
            patches.add(data_id["patch"])
        jobs.setdefault(cluster.tags["tract"], []).append(sorted(patches))
    # Larger jobs first, then by patch (the order of clusters is not fixed).
    return {tract: sorted(lists, key=lambda job: (-len(job), job)) for tract, lists in jobs.items()}


def test_balanced_clustering_deals_patches_out_evenly(tmp_path, monkeypatch):
    from lsst.ctrl.bps import BpsConfig
    from lsst.ctrl.bps.drivers import cluster_qgraph_driver
    from lsst.ctrl.bps.quantum_clustering_funcs import dimension_clustering

    demo = make_demo_repo(tmp_path / "repo")
    shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run="targets/sample")
    text = (ROOT / "config" / "bps" / "zooniverse.yaml").read_text()
    assert (
        "clusterAlgorithm: lsst.epo.zooniverse.pipeline.bps_clustering.balanced_dimension_clustering\n"
        in text
    )
    submit = tmp_path / "submit.yaml"
    submit.write_text(text.replace("partitionMaxSize: 10", "partitionMaxSize: 4"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PWD", str(work))
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("DAF_BUTLER_CONFIG_PATH", str(CONFIG_DIR))
    monkeypatch.setenv("EPO_ZOONIVERSE_DIR", str(ROOT))
    config, cqgraph = cluster_qgraph_driver(
        str(submit),
        butler_config=demo.root,
        input=f"{demo.collection},targets/sample",
        output="u/test/clusters",
        data_query="skymap = 'zooniverse_demo'",
    )
    # Tract 0 has 6 patches, tracts 1 and 2 one each: at most 4 patches per
    # job means two jobs of 3 (ctrl_bps alone: 4 and 2), one job elsewhere.
    assert _patches_per_job(cqgraph) == {0: [[0, 1, 2], [3, 4, 5]], 1: [[0]], 2: [[0]]}
    assert config["cluster"]["patches"]["partitionMaxSize"] == 4  # Not changed.
    assert "partitionMaxClusters" not in config["cluster"]["patches"]
    # Every quantum is in exactly one job.
    clustered = [node for cluster in cqgraph.clusters() for node in cluster.qgraph_node_ids]
    assert len(clustered) == len(set(clustered)) == len(cqgraph.qxgraph)
    # What the balancing changes: ctrl_bps's own function on the same graph.
    stock = dimension_clustering(BpsConfig(config), cqgraph.qgraph, "stock")
    assert {tract: [len(job) for job in jobs] for tract, jobs in _patches_per_job(stock).items()} == {
        0: [4, 2],
        1: [1],
        2: [1],
    }


def test_balanced_partition_count():
    from lsst.epo.zooniverse.pipeline.bps_clustering import balanced_partition_count

    counts = [balanced_partition_count(n, 10) for n in (0, 1, 9, 10, 11, 36, 40, 41)]
    assert counts == [0, 1, 1, 1, 2, 4, 4, 5]
    assert balanced_partition_count(7, 1) == 7
    for bad in (0, -3, 2.5, "10", True, None):
        with pytest.raises(ValueError, match="partitionMaxSize must be a positive integer"):
            balanced_partition_count(5, bad)
    with pytest.raises(ValueError, match="must not be negative"):
        balanced_partition_count(-1, 4)
