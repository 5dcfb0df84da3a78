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

"""Every module of the package imports, without daf_butler at package
import time.
"""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import lsst.epo.zooniverse


def test_all_modules_import():
    names = [m.name for m in pkgutil.walk_packages(lsst.epo.zooniverse.__path__, "lsst.epo.zooniverse.")]
    assert "lsst.epo.zooniverse.butler.formatters" in names
    for name in names:
        importlib.import_module(name)


@pytest.mark.parametrize(
    "module, not_imported",
    [
        # Every submodule's import runs the package root's first.
        ("lsst.epo.zooniverse", ("astropy", "numpy", "PIL", "sqlalchemy", "lsst.daf.butler")),
        # zooniverse-epo's start-up, before a command runs.
        ("lsst.epo.zooniverse.cli.epo", ("astropy", "numpy", "PIL", "sqlalchemy", "lsst.daf.butler")),
        # What review, approve, publish and status need; poll's reads of
        # the PIs' repositories import daf_butler (and astropy) as they run.
        ("lsst.epo.zooniverse.export.service", ("astropy", "lsst.daf.butler")),
    ],
)
def test_start_up_imports_nothing_heavy(module, not_imported):
    code = f"import sys, {module}; print(sorted(m for m in {not_imported!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_package_root_names_are_those_of_their_modules():
    root = lsst.epo.zooniverse
    modules = {m: importlib.import_module(m, root.__name__) for m in set(root.ROOT_NAME_MODULES.values())}
    # The package root takes every public name of its modules but PngError
    # alone from the PNG module (whose other names are the codec's).
    expected = {
        name: m
        for m, module in modules.items()
        for name in (["PngError"] if m == ".formats.png" else module.__all__)
    }
    assert root.ROOT_NAME_MODULES == expected
    for name, m in expected.items():
        assert getattr(root, name) is getattr(modules[m], name)
    assert set(root.__all__) == {*expected, "__version__"} and set(root.__all__) <= set(dir(root))
    namespace = {}
    exec("from lsst.epo.zooniverse import *", namespace)
    assert namespace["Stamps"] is modules[".formats.stamps"].Stamps
    with pytest.raises(AttributeError, match="no attribute 'Stampz'"):
        root.Stampz


def test_version():
    assert lsst.epo.zooniverse.__version__ not in ("", "unknown")
