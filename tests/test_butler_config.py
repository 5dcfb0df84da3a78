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

"""Tests of how this package's storage classes and formatters reach a
Butler: seeded repositories, ``DAF_BUTLER_CONFIG_PATH`` for existing ones,
and the error a Butler without them gives.

Every Butler that matters here is made in a fresh process: daf_butler's
storage-class factory is process-wide, so a Butler made earlier in the test
process would hide a missing configuration.
"""

import json
import os
import subprocess
import sys
import textwrap

from lsst.daf.butler import Butler
from lsst.epo.zooniverse.butler.config import (
    CONFIG_DIR,
    CONFIG_PATH_VARIABLE,
    SEED_CONFIG,
    enable_butler_config,
    make_butler_repo,
)

BUTLER_CLI = os.path.join(os.path.dirname(sys.executable), "butler")


def _child_env(config_path=None):
    """The test process's environment with ``DAF_BUTLER_CONFIG_PATH``
    removed, or set to ``config_path``.
    """
    env = {k: v for k, v in os.environ.items() if k != CONFIG_PATH_VARIABLE}
    if config_path is not None:
        env[CONFIG_PATH_VARIABLE] = config_path
    return env


def _run_python(code, config_path=None):
    """Run Python code in a fresh interpreter with the environment of
    `_child_env`; return the JSON document it prints last.
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=_child_env(config_path),
    )
    assert result.returncode == 0, f"fresh process failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


# Put and get one dataset of each storage class; report what came back.
ROUND_TRIP = """
    import json, os
    import numpy as np
    from lsst.daf.butler import Butler
    from lsst.epo.zooniverse import RgbCollection, Stamp, Stamps, make_cutout_image
    from lsst.epo.zooniverse.butler.config import check_butler_config
    from lsst.epo.zooniverse.butler.dataset_types import DatasetTypeSpec, register_dataset_types

    report = {{"env": os.environ.get("DAF_BUTLER_CONFIG_PATH")}}
    butler = Butler.from_config({root!r}, writeable=True, run="run")
    check_butler_config(butler)
    register_dataset_types(butler, [
        DatasetTypeSpec("t_cutout", (), "ZooniverseCutout"),
        DatasetTypeSpec("t_stamps", (), "ZooniverseStamps"),
        DatasetTypeSpec("t_rgb", (), "ZooniverseRgb"),
    ])
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    cutout = make_cutout_image(rgb, metadata={{"object_id": "c1"}})
    image = rng.normal(size=(9, 8)).astype(np.float32)
    stamps = Stamps(
        [Stamp(image=image, mask=np.ones((9, 8), np.int32), variance=image**2, x0=3, y0=4,
               ra=10.0, dec=-5.0, object_id="s1", coverage=1.0, edge_distance=2.5)],
        metadata={{"BAND": "r"}},
    )
    collection = RgbCollection([rgb], {{"object_id": ["r1"], "ra": [10.0], "dec": [-5.0]}})
    uris = {{}}
    for name, obj in (("t_cutout", cutout), ("t_stamps", stamps), ("t_rgb", collection)):
        uris[name] = butler.getURI(butler.put(obj, name)).geturl()

    reader = Butler.from_config({root!r}, collections="run")
    got_cutout = reader.get("t_cutout")
    got_stamps = reader.get("t_stamps")
    got_rgb = reader.get("t_rgb")
    report.update(
        cutout=bool(np.array_equal(np.asarray(got_cutout), rgb)) and got_cutout.info.get("object_id") == "c1",
        cutout_array=bool(np.array_equal(reader.get("t_cutout.array"), rgb)),
        stamps=type(got_stamps).__name__ == "Stamps"
        and len(got_stamps) == 1
        and got_stamps[0].equals(stamps[0]),
        stamps_index=list(reader.get("t_stamps.index")["object_id"]) == ["s1"],
        rgb=type(got_rgb).__name__ == "RgbCollection" and got_rgb.equals(collection),
        rgb_index=list(reader.get("t_rgb.index")["object_id"]) == ["r1"],
        uris=uris,
    )
    print(json.dumps(report))
"""


def _check_round_trip(report, root):
    assert report["env"] is None or report["env"] == CONFIG_DIR
    for key in ("cutout", "cutout_array", "stamps", "stamps_index", "rgb", "rgb_index"):
        assert report[key] is True, key
    extensions = {name: os.path.splitext(uri)[1] for name, uri in report["uris"].items()}
    assert extensions == {"t_cutout": ".png", "t_stamps": ".fits", "t_rgb": ".zip"}
    for uri in report["uris"].values():
        assert uri.startswith("file://" + os.path.realpath(root)) or uri.startswith("file://" + root)


def test_seed_config_with_butler_cli(tmp_path):
    root = str(tmp_path / "repo")
    result = subprocess.run(
        [BUTLER_CLI, "create", "--seed-config", SEED_CONFIG, root],
        capture_output=True,
        text=True,
        env=_child_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = _run_python(ROUND_TRIP.format(root=root))
    assert report["env"] is None
    _check_round_trip(report, root)


def test_make_butler_repo(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_PATH_VARIABLE, raising=False)
    root = str(tmp_path / "repo")
    make_butler_repo(root)
    report = _run_python(ROUND_TRIP.format(root=root))
    assert report["env"] is None
    _check_round_trip(report, root)


def test_plain_repo_with_config_path(tmp_path):
    root = str(tmp_path / "plain")
    Butler.makeRepo(root)
    report = _run_python(ROUND_TRIP.format(root=root), config_path=CONFIG_DIR)
    assert report["env"] == CONFIG_DIR
    _check_round_trip(report, root)


PLAIN_REPO_ERRORS = """
    import json, os
    from lsst.daf.butler import Butler, DatasetType
    from lsst.epo.zooniverse.butler.config import ButlerConfigError, check_butler_config, get_butler
    from lsst.epo.zooniverse.butler.dataset_types import CUTOUT, register_dataset_types

    def error_of(call):
        try:
            call()
        except Exception as err:
            return {{"type": type(err).__name__, "config_error": isinstance(err, ButlerConfigError),
                     "key_error": isinstance(err, KeyError), "message": str(err)}}
        return None

    report = {{"env": os.environ.get("DAF_BUTLER_CONFIG_PATH")}}
    plain = Butler.from_config({root!r}, writeable=True, run="run")
    report["check"] = error_of(lambda: check_butler_config(plain))
    report["register"] = error_of(lambda: register_dataset_types(plain, [CUTOUT]))
    # What the error replaces: daf_butler's bare KeyError.
    report["raw"] = error_of(
        lambda: DatasetType("x", plain.dimensions.empty, "ZooniverseCutout").storageClass
    )
    # A seeded repository used first in the same process teaches the
    # process-wide factory the storage classes, but not the plain
    # repository's datastore its formatters.
    Butler.from_config({seeded!r})
    plain_again = Butler.from_config({root!r}, writeable=True, run="run")
    report["check_after_seeded"] = error_of(lambda: check_butler_config(plain_again))
    # get_butler puts the configuration on the path itself.
    butler = get_butler({root!r}, writeable=True, run="run")
    report["env_after_get_butler"] = os.environ.get("DAF_BUTLER_CONFIG_PATH")
    register_dataset_types(butler, [CUTOUT])
    import numpy as np
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    butler.put(pixels, "zooniverse_cutout")
    report["get_butler_round_trip"] = bool(np.array_equal(
        Butler.from_config({root!r}, collections="run").get("zooniverse_cutout.array"), pixels))
    print(json.dumps(report))
"""


def test_plain_repo_without_config_path(tmp_path):
    root = str(tmp_path / "plain")
    seeded = str(tmp_path / "seeded")
    Butler.makeRepo(root)
    make_butler_repo(seeded)
    report = _run_python(PLAIN_REPO_ERRORS.format(root=root, seeded=seeded))
    assert report["env"] is None
    assert report["raw"]["type"] == "KeyError"
    for key, problem in (
        ("check", "storage class ZooniverseCutout is not defined"),
        ("register", "storage class ZooniverseCutout is not defined"),
        ("check_after_seeded", "no formatter for storage class ZooniverseCutout"),
    ):
        error = report[key]
        assert error is not None, f"{key}: no error"
        assert error["type"] == "ButlerConfigError" and error["config_error"], key
        assert not error["key_error"], key
        message = error["message"]
        assert CONFIG_PATH_VARIABLE in message, key
        assert f"export {CONFIG_PATH_VARIABLE}={CONFIG_DIR}" in message, key
        assert "--seed-config" in message and SEED_CONFIG in message, key
        assert "enable_butler_config()" in message, key
        assert problem in message, key
        assert "ZooniverseStamps" in message and "ZooniverseRgb" in message, key
        # The message names the repository.
        assert os.path.basename(root) in message, key
    assert report["env_after_get_butler"] == CONFIG_DIR
    assert report["get_butler_round_trip"] is True


def test_module_prints_config_dir():
    result = subprocess.run(
        [sys.executable, "-m", "lsst.epo.zooniverse.butler.config"],
        capture_output=True,
        text=True,
        env=_child_env(),
        check=True,
    )
    assert result.stdout.strip() == CONFIG_DIR
    assert os.path.isfile(os.path.join(result.stdout.strip(), "storageClasses.yaml"))
    assert os.path.isfile(os.path.join(result.stdout.strip(), "datastores", "fileDatastore.yaml"))
    assert os.path.isfile(SEED_CONFIG) and os.path.dirname(SEED_CONFIG) == CONFIG_DIR


def test_enable_butler_config_is_idempotent(monkeypatch, tmp_path):
    monkeypatch.delenv(CONFIG_PATH_VARIABLE, raising=False)
    assert enable_butler_config() == CONFIG_DIR
    assert enable_butler_config() == CONFIG_DIR
    assert os.environ[CONFIG_PATH_VARIABLE] == CONFIG_DIR

    other = str(tmp_path / "other")
    monkeypatch.setenv(CONFIG_PATH_VARIABLE, other)
    first = enable_butler_config()
    assert first == os.pathsep.join([CONFIG_DIR, other])
    assert enable_butler_config() == first
    assert os.environ[CONFIG_PATH_VARIABLE] == first

    # The same directory spelled differently (trailing slash, symbolic
    # link) is not added again, and empty entries are dropped.
    link = tmp_path / "link"
    link.symlink_to(CONFIG_DIR)
    for spelling in (CONFIG_DIR + "/", str(link)):
        value = os.pathsep.join(["", other, spelling, ""])
        monkeypatch.setenv(CONFIG_PATH_VARIABLE, value)
        assert enable_butler_config() == os.pathsep.join([other, spelling])
    monkeypatch.setenv(CONFIG_PATH_VARIABLE, "")
    assert enable_butler_config() == CONFIG_DIR
