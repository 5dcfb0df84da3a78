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

"""What a pipetask job imports before it runs a quantum.

pipetask imports the task class of every task in the quantum graph and the
formatters of the datasets it reads, in every job (a BPS job that runs one
shardCatalog quantum too).  lsst.images, and scipy through it, are imported
only when a coadd is read.
"""

import subprocess
import sys

import astropy.units
import pytest

from lsst.epo.zooniverse.butler import legacy_coadd

JOB_START_MODULES = (
    "lsst.epo.zooniverse.pipeline.make_pictures",
    "lsst.epo.zooniverse.pipeline.shard_catalog",
    "lsst.epo.zooniverse.pipeline.extract_stamps",
    "lsst.epo.zooniverse.pipeline.compose_rgb",
    "lsst.epo.zooniverse.butler.formatters",
    "lsst.epo.zooniverse.formatters",
)


def _modules_after_import(names):
    code = "import sys\n" + "".join(f"import {name}\n" for name in names) + "print(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_task_and_formatter_modules_do_not_import_lsst_images_or_scipy():
    loaded = _modules_after_import(JOB_START_MODULES)
    assert "lsst.epo.zooniverse.butler.legacy_coadd" in loaded
    assert "lsst.images" not in loaded
    assert "scipy" not in loaded


def test_default_pixel_frame_is_one_frame_in_pixels():
    frame = legacy_coadd.default_pixel_frame()
    assert frame is legacy_coadd.DEFAULT_PIXEL_FRAME
    assert frame is legacy_coadd.default_pixel_frame()
    assert frame.unit == astropy.units.pix


def test_other_missing_attributes_still_raise():
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        getattr(legacy_coadd, "NO_SUCH_NAME")


FREEZE_TWICE = """
import gc
from lsst.epo.zooniverse.pipeline.startup_objects import freeze_startup_objects
before = gc.get_freeze_count()
first = freeze_startup_objects()
after_first = gc.get_freeze_count()
made_later = [[i] for i in range(5000)]
second = freeze_startup_objects()
print(before, first, after_first, second, gc.get_freeze_count())
"""


def test_startup_objects_are_frozen_once_per_process():
    result = subprocess.run([sys.executable, "-c", FREEZE_TWICE], capture_output=True, text=True, check=True)
    before, first, after_first, second, after_second = result.stdout.split()
    assert (before, first, second) == ("0", "True", "False")
    # The imported modules' objects are frozen; the lists made after the
    # first call are not, by the second.
    assert int(after_first) > 10_000
    assert int(after_second) == int(after_first)


@pytest.mark.parametrize(
    "task",
    [
        "shard_catalog.ShardCatalogTask",
        "extract_stamps.ExtractStampsTask",
        "compose_rgb.ComposeRgbTask",
        "make_pictures.MakeZooniversePicturesTask",
    ],
)
def test_every_task_freezes_startup_objects_before_its_quantum(task, monkeypatch):
    module_name, class_name = task.split(".")
    module = __import__(f"lsst.epo.zooniverse.pipeline.{module_name}", fromlist=[class_name])
    calls = []

    class StopBeforeReadingError(Exception):
        pass

    class NoInputs:
        def get(self, refs):
            raise StopBeforeReadingError

    monkeypatch.setattr(module, "freeze_startup_objects", lambda: calls.append(True))
    task_class = getattr(module, class_name)
    with pytest.raises(StopBeforeReadingError):
        task_class.runQuantum(object.__new__(task_class), NoInputs(), None, None)
    assert calls == [True]
