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
import sys
from pathlib import Path

import pytest

from lsst.epo.zooniverse.butler_config import CONFIG_DIR, get_butler
from lsst.epo.zooniverse.demo import make_demo_repo
from lsst.epo.zooniverse.target_sharding import shard_target_catalog

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_bps_submit_with_parsl(tmp_path):
    demo = make_demo_repo(tmp_path / "repo")
    shard_target_catalog(get_butler(demo.root, writeable=True), demo.sample_catalog, run="targets/sample")
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DAF_BUTLER_CONFIG_PATH=str(CONFIG_DIR),
        EPO_ZOONIVERSE_DIR=str(ROOT),
    )
    submit_dir = tmp_path / "submit"
    submit_dir.mkdir()
    env["PWD"] = str(submit_dir)  # BPS's submitPath is ${PWD}/submit/...
    result = subprocess.run(
        [
            str(BIN / "bps"),
            "submit",
            str(ROOT / "config" / "bps" / "zooniverse.yaml"),
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
    from lsst.epo.zooniverse.bps_site import QuickStartLocal

    text = (ROOT / "config" / "bps" / "zooniverse.yaml").read_text()
    assert text.count("\n    cores: 2\n") == 1
    submit = tmp_path / "submit.yaml"
    submit.write_text(text.replace("\n    cores: 2\n", f"\n    cores: 2\n{extra}"))
    site = QuickStartLocal.from_config(BpsConfig(str(submit)))
    assert type(site) is QuickStartLocal  # What the shipped file names.
    return site


def test_quick_start_site_sets_the_strategy_period(tmp_path):
    import parsl.config

    from lsst.epo.zooniverse.bps_site import DEFAULT_STRATEGY_PERIOD

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
