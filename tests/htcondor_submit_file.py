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

"""HTCondor's submit description language, as far as
`htcondor_dagman` (the tests' stand-in for DAGMan and the schedd) models
it: which submit commands it accepts (those its docstring's table
covers), the new syntax of ``arguments`` and ``environment``
(``src/condor_utils/condor_arglist.cpp``), ``retry_until`` as
condor_submit puts it in the job's exit policy
(``src/condor_utils/submit_utils.cpp``), and ClassAd expressions
evaluated with HTCondor's own library (``classad2``, from the PyPI
``htcondor`` wheel).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import classad2

ACCEPTED_SUBMIT_COMMANDS = {
    "universe", "should_transfer_files", "when_to_transfer_output", "transfer_output_files",
    "transfer_executable", "on_exit_hold", "on_exit_hold_reason", "on_exit_hold_subcode",
    "request_cpus", "request_memory", "request_disk", "retry_until", "max_retries",
    "periodic_release", "periodic_remove", "getenv", "executable", "arguments", "output",
    "error", "log", "environment",
}  # fmt: skip
"""Submit commands whose meaning the table of `htcondor_dagman` covers."""

UNUSED_BY_CONDOR_SUBMIT = {"concurrency_limit"}
"""Commands condor_submit warns are unused (and ignores)."""


def read_submit_file(path: Path, unused: list[str]) -> dict[str, str]:
    """Return a submit file's commands.

    Parameters
    ----------
    path : `pathlib.Path`
        The submit file.
    unused : `list` [`str`]
        Appended with the commands condor_submit would ignore.

    Returns
    -------
    commands : `dict` [`str`, `str`]
        Command (lower case) to value.

    Raises
    ------
    ValueError
        Raised for a command or value the stand-in does not model.
    """
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("+") or line == "queue":
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if sep and key in UNUSED_BY_CONDOR_SUBMIT:
            unused.append(key)
            continue
        if not sep or key not in ACCEPTED_SUBMIT_COMMANDS:
            raise ValueError(f"{path}: submit command not modelled: {line!r}")
        commands[key] = value.strip()
    for key, value in commands.items():
        if "$" in value and key not in ("output", "error", "log"):
            raise ValueError(f"{path}: macro not modelled in {key} = {value}")
    if commands.get("getenv", "").lower() != "true":
        raise ValueError(f"{path}: only getenv = True is modelled")
    if commands.get("should_transfer_files", "").upper() != "YES":
        raise ValueError(f"{path}: only should_transfer_files = YES is modelled")
    if commands.get("transfer_output_files", '""') != '""':
        raise ValueError(f"{path}: only an empty transfer_output_files is modelled")
    return commands


def split_arguments(value: str) -> list[str]:
    """Split an ``arguments`` value in HTCondor's new syntax.

    Parameters
    ----------
    value : `str`
        The whole in double quotes (``""`` a literal one); words split at
        space, tab, CR and LF; single quotes group (``''`` is a literal
        one inside them, and an empty argument alone).

    Returns
    -------
    arguments : `list` [`str`]
        The words.

    Raises
    ------
    ValueError
        Raised for the old syntax, a lone double quote or an unbalanced
        single quote.
    """
    if not (len(value) >= 2 and value.startswith('"') and value.endswith('"')):
        raise ValueError(f"only the new (double-quoted) arguments syntax is modelled: {value}")
    inner = value[1:-1]
    body = []
    k = 0
    while k < len(inner):
        if inner[k] == '"':
            if inner[k + 1 : k + 2] != '"':
                raise ValueError(f"unexpected double quote in arguments: {value}")
            k += 1
        body.append(inner[k])
        k += 1
    words: list[str] = []
    word: list[str] = []
    started = quoted = False
    k = 0
    while k < len(body):
        char = body[k]
        if quoted and char == "'" and k + 1 < len(body) and body[k + 1] == "'":
            word.append("'")
            k += 2
            continue
        if char == "'":
            quoted = not quoted
            started = True
        elif char in " \t\r\n" and not quoted:
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            word.append(char)
            started = True
        k += 1
    if quoted:
        raise ValueError(f"unbalanced single quote in arguments: {value}")
    if started:
        words.append("".join(word))
    return words


def parse_environment(value: str) -> dict[str, str]:
    """Parse an ``environment`` value in HTCondor's new syntax.

    Parameters
    ----------
    value : `str`
        In double quotes, ``NAME=value`` entries separated by whitespace,
        a value in single quotes where it holds spaces (``''`` a literal
        one); the same quoting as `split_arguments`.

    Returns
    -------
    environment : `dict` [`str`, `str`]
        Name to value; these override what ``getenv`` gives the job.

    Raises
    ------
    ValueError
        Raised for the old syntax or an entry without ``=``.
    """
    environment = {}
    for entry in split_arguments(value):
        name, sep, entry_value = entry.partition("=")
        if not sep or not name:
            raise ValueError(f"environment entry is not NAME=value: {entry!r} in {value}")
        environment[name] = entry_value
    return environment


def retry_until_expression(retry_until: str | None) -> str:
    """Return ``retry_until`` as condor_submit puts it in the job's exit
    policy.

    Parameters
    ----------
    retry_until : `str` or `None`
        The submit command's value: an expression, or an integer N
        meaning ``ExitCode =?= N``.

    Returns
    -------
    expression : `str`
        A ClassAd expression (``false`` when there is none).
    """
    if retry_until is None:
        return "false"
    if re.fullmatch(r"-?\d+", retry_until.strip()):
        return f"ExitCode =?= {retry_until.strip()}"
    return retry_until


def evaluate(expression: str, ad: Mapping) -> object:
    """Evaluate a ClassAd expression on a job ad with HTCondor's library.

    Parameters
    ----------
    expression : `str`
        The expression.
    ad : `~collections.abc.Mapping`
        The job's attributes.

    Returns
    -------
    value : `object`
        Its value (``classad2.Value.Undefined`` where it is undefined).
    """
    return classad2.ExprTree(expression).eval(classad2.ClassAd(dict(ad)))
