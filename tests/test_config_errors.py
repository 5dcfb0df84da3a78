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

"""A bad configuration value is refused in one line naming the field, the
value and what is allowed, and ``pipetask`` prints that line as its only
error line (issue 14 item 5).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import click
import pytest

from lsst.epo.zooniverse.pipeline.compose_rgb import ComposeRgbConfig
from lsst.epo.zooniverse.pipeline.config_errors import ConfigValueError
from lsst.epo.zooniverse.pipeline.extract_stamps import ExtractStampsConfig
from lsst.epo.zooniverse.pipeline.shard_catalog import ShardCatalogConfig
from lsst.epo.zooniverse.pipeline.stretch import StretchConfig
from lsst.pex.config import FieldValidationError

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "pipelines" / "ZooniverseCutouts.yaml"
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("Q", 0.0, "> 0"),
        ("stretch", -3.0, "> 0"),
        ("softening", math.inf, "> 0"),
        ("saturation", -1.0, ">= 0"),
        ("floor", 1.5, "[0, 1)"),
        ("max_luminance", 0.0, "(0, 1]"),
        ("midtone", 1.0, "(0, 1)"),
        ("minimum", [0.0, 1.0], "1 or 3"),
        ("per_image_percentiles", [99.0, 1.0], "low < high"),
    ],
)
def test_stretch_errors_are_one_line(name, value, allowed):
    config = StretchConfig()
    setattr(config, name, value)
    with pytest.raises(ConfigValueError) as excinfo:
        config.validate()
    error = excinfo.value
    text = str(error)
    assert "\n" not in text
    assert text.startswith(f"{name} = ")
    assert repr(list(value) if isinstance(value, list) else value) in text
    assert allowed in text
    # Still what pex_config and pipe_base expect, and what click prints.
    assert isinstance(error, FieldValidationError) and error.fieldName == name
    assert isinstance(error, click.ClickException) and error.format_message() == text


def test_nested_and_labelled_names():
    config = ComposeRgbConfig()
    config.stretch.Q = -1.0
    with pytest.raises(ConfigValueError) as excinfo:
        config.validate()
    assert str(excinfo.value).startswith("stretch.Q = -1.0 is not allowed")
    # pipe_base prefixes the task label to fullname after the error is made.
    excinfo.value.fullname = f"composeRgb: {excinfo.value.fullname}"
    assert str(excinfo.value).startswith("composeRgb: stretch.Q = -1.0 is not allowed")


def test_shard_catalog_pixel_scale():
    config = ShardCatalogConfig()
    config.tract_pixel_scale = 0.0
    with pytest.raises(ConfigValueError, match=r"^tract_pixel_scale = 0.0 is not allowed; allowed: arcsec"):
        config.validate()


@pytest.mark.parametrize(
    "config_class, name, value, allowed",
    [
        (ExtractStampsConfig, "stamp_size", 0, "an integer in [1, max_stamp_size="),
        (ExtractStampsConfig, "max_stamp_size", 0, "an integer >= 1"),
        (ExtractStampsConfig, "stamp_size_arcsec", -2.0, "None or a finite number > 0"),
        (ComposeRgbConfig, "min_coverage", 1.5, "a number in [0, 1]"),
        (ComposeRgbConfig, "output_size", 4, "0 or in [8, 8192]"),
        (ComposeRgbConfig, "channels", {}, "at least one band"),
    ],
)
def test_task_config_errors_are_one_line(config_class, name, value, allowed):
    config = config_class()
    setattr(config, name, value)
    with pytest.raises(ConfigValueError) as excinfo:
        config.validate()
    text = str(excinfo.value)
    assert "\n" not in text and text.startswith(f"{name} = ") and allowed in text


def _build(*args: str) -> subprocess.CompletedProcess:
    # ``pipetask build`` configures and validates every task (no repository
    # needed), as ``qgraph``, ``run`` and ``bps submit`` do first.
    return subprocess.run(
        [str(BIN / "pipetask"), "build", "-p", str(PIPELINE), *args, "--show", "pipeline-graph"],
        capture_output=True,
        text=True,
    )


def test_pipetask_prints_the_reason_as_its_only_error_line(tmp_path):
    override_file = tmp_path / "bad_stretch.py"
    override_file.write_text("config.stretch.midtone = 1.5\n")
    for args, expected in (
        (
            ("-c", "composeRgb:stretch.Q=0"),
            "composeRgb: stretch.Q = 0.0 is not allowed; allowed: a finite number > 0.",
        ),
        (
            ("-C", f"composeRgb:{override_file}"),
            "composeRgb: stretch.midtone = 1.5 is not allowed; allowed: a number in (0, 1).",
        ),
        (
            ("-c", "extractStamps:stamp_size=0"),
            "extractStamps: stamp_size = 0 is not allowed; allowed: an integer in [1, max_stamp_size=",
        ),
        (
            ("-c", "shardCatalog:tract_pixel_scale=-1"),
            "shardCatalog: tract_pixel_scale = -1.0 is not allowed",
        ),
    ):
        result = _build(*args)
        assert result.returncode == 1
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        assert "Traceback" not in result.stderr
        errors = [line for line in lines if "rror" in line]
        assert errors == [lines[0]] and lines[0].startswith(f"Error: {expected}")
