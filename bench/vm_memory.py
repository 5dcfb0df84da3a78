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

"""A virtual machine's free page reporting, paused while a benchmark
writes GBs.

A guest kernel with free page reporting (``CONFIG_PAGE_REPORTING``, used
by the virtio balloon) tells the host which free pages it may take back;
the next write into such a page faults it in from the host again. On
this project's virtual machines a buffered write of 4 GB into the page
cache, after the freed memory had been reported, cost 9.3-10.0 s of
system CPU; with reporting stopped (the parameter below above the
largest page order) the same write cost 0.78-0.85 s once the memory had
been touched once (``dd if=/dev/zero bs=1M count=4096``, page cache
dropped and 10 s waited before each).  A batch node on bare metal has no
such cost: with reporting on, the benchmark measures the host's memory
hand-back, falling on the contender that writes most, more than the
code.

The kernel's knob is the module parameter
``/sys/module/page_reporting/parameters/page_reporting_order``: free
blocks of that order and above are reported (``mm/page_reporting.c``);
an order above the largest the buddy allocator has reports nothing.
Writing it needs root.  The value is restored when the ``with`` block
ends, also after an error; a benchmark killed outright (``SIGKILL``,
``SIGTERM``) leaves reporting paused until the value printed at the start
(9 here) is written back, or the machine restarts.
"""

from __future__ import annotations

__all__ = ["add_free_page_reporting_option", "free_page_reporting_paused"]

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

PARAMETERS = Path("/sys/module/page_reporting/parameters")
ORDER = PARAMETERS / "page_reporting_order"
REPORTED = PARAMETERS / "reported_kib"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write(path: Path, value: int) -> bool:
    try:
        path.write_text(f"{value}\n")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def free_page_reporting_paused(pause: bool = True) -> Iterator[str]:
    """Stop the kernel's free page reporting for the ``with`` block, where
    it exists and this process may change it; restore it afterwards.

    Parameters
    ----------
    pause : `bool`, optional
        `False` leaves the machine as it is (and says so).

    Yields
    ------
    state : `str`
        What was done, for the benchmark's report.
    """
    saved = _read_int(ORDER)
    if saved is None:
        yield "free page reporting: not on this machine"
        return
    if not pause:
        yield f"free page reporting: left on (page_reporting_order {saved})"
        return
    # The largest order the kernel accepts: above it, nothing is reported.
    paused = next((order for order in range(32, saved, -1) if _write(ORDER, order)), None)
    if paused is None:
        yield f"free page reporting: left on (page_reporting_order {saved} could not be raised)"
        return
    before = _read_int(REPORTED)
    try:
        yield f"free page reporting: paused (page_reporting_order {saved} -> {paused})"
    finally:
        after = _read_int(REPORTED)
        _write(ORDER, saved)
        if before is not None and after is not None:
            print(
                f"free page reporting restored (page_reporting_order {saved}); "
                f"{(after - before) / 2**20:.1f} GiB reported while paused"
            )


def add_free_page_reporting_option(parser: argparse.ArgumentParser, applies_to: str = "") -> None:
    """Add the benches' ``--keep-free-page-reporting`` option (its value:
    ``keep_free_page_reporting``), for `free_page_reporting_paused`.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The bench's parser.
    applies_to : `str`, optional
        The option it goes with, said first in the help (e.g. ``--peer``).
    """
    prefix = f"{applies_to}: " if applies_to else ""
    parser.add_argument(
        "--keep-free-page-reporting",
        action="store_true",
        help=f"{prefix}leave the kernel's free page reporting on (see vm_memory.py)",
    )
