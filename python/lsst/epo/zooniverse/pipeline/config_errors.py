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

"""Configuration errors that ``pipetask`` shows as one line.

pipe_base validates every task's configuration when it builds the pipeline
graph (``pipeline_graph._tasks``, ``config.validate()``): it lets a
`lsst.pex.config.FieldValidationError` through after prefixing its
``fullname`` with the task label, and daf_butler's command-line wrapper
(``cli.utils.catch_and_exit``) logs any other exception with its traceback
but leaves a `click.ClickException` to click, which prints
``Error: <message>`` and exits with status 1.  `ConfigValueError` is both,
with a one-line message naming the field (with the task label when
pipe_base adds it), the value and what is allowed.
"""

from __future__ import annotations

__all__ = ["ConfigValueError"]

from typing import Any

import click

from lsst.pex.config import FieldValidationError


class ConfigValueError(FieldValidationError, click.ClickException):
    """A configuration value that is not allowed, said in one line.

    Parameters
    ----------
    field : `lsst.pex.config.Field`
        The field (``type(config).name``).
    config : `lsst.pex.config.Config`
        The configuration holding it.
    value : `object`
        The value given.
    allowed : `str`
        What is allowed, e.g. ``"a positive finite number"``.

    Notes
    -----
    ``str(error)`` and click's ``Error:`` line read, e.g.,
    ``composeRgb: stretch.Q = 0.0 is not allowed; allowed: a positive
    finite number.`` The attributes of `~lsst.pex.config.FieldValidationError`
    (``fullname``, ``history``, ...) are kept.
    """

    exit_code = 1

    def __init__(self, field: Any, config: Any, value: Any, allowed: str):
        FieldValidationError.__init__(self, field, config, f"{value!r} is not allowed; allowed: {allowed}.")
        self.value = value
        self.allowed = allowed
        click.ClickException.__init__(self, self.format_message())

    def format_message(self) -> str:
        # Docstring inherited; pipe_base prefixes ``fullname`` with the
        # task label after the error is made, so the text is made here.
        return f"{self.fullname} = {self.value!r} is not allowed; allowed: {self.allowed}."

    def __str__(self) -> str:
        return self.format_message()
