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
"""How long operations of the export service report their progress."""

from __future__ import annotations

__all__ = ["NoProgress", "Progress"]

from typing import Protocol


class Progress(Protocol):
    """What long operations report their progress to."""

    def start(self, label: str, total: int) -> None:
        """Begin a phase of ``total`` units."""

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units as done."""

    def finish(self) -> None:
        """End the phase."""


class NoProgress:
    """A `Progress` that reports nothing (the default of every operation)."""

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass
