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

"""bench/vm_memory.py: the benchmarks' pause of the kernel's free page
reporting, against a stand-in of its parameter directory (the real one
needs root and changes the machine).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import vm_memory


@pytest.fixture
def parameters(tmp_path, monkeypatch):
    """A parameter directory with order 9 and 100 KiB reported."""
    order = tmp_path / "page_reporting_order"
    reported = tmp_path / "reported_kib"
    order.write_text("9\n")
    reported.write_text("100\n")
    monkeypatch.setattr(vm_memory, "ORDER", order)
    monkeypatch.setattr(vm_memory, "REPORTED", reported)
    return order, reported


def test_paused_then_restored(parameters, capsys):
    order, reported = parameters
    with vm_memory.free_page_reporting_paused() as state:
        assert int(order.read_text()) > 9
        assert state == f"free page reporting: paused (page_reporting_order 9 -> {int(order.read_text())})"
        reported.write_text(str(100 + 3 * 2**20))
    assert order.read_text() == "9\n"
    assert "3.0 GiB reported while paused" in capsys.readouterr().out


def test_restored_after_an_error(parameters):
    order, _ = parameters
    with pytest.raises(RuntimeError), vm_memory.free_page_reporting_paused():
        raise RuntimeError("a contender failed")
    assert order.read_text() == "9\n"


def test_left_on_when_asked(parameters):
    order, _ = parameters
    with vm_memory.free_page_reporting_paused(pause=False) as state:
        assert order.read_text() == "9\n"
    assert state == "free page reporting: left on (page_reporting_order 9)"


def test_machine_without_it(tmp_path, monkeypatch):
    monkeypatch.setattr(vm_memory, "ORDER", tmp_path / "absent")
    with vm_memory.free_page_reporting_paused() as state:
        pass
    assert state == "free page reporting: not on this machine"
    assert not (tmp_path / "absent").exists()
