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

"""A stand-in for HTCondor's DAGMan and schedd that runs, on this
machine, the DAG and submit files ctrl_bps_htcondor writes (``bps
prepare`` with the real plugin), for the tests of the HTCondor site.

HTCondor's daemons are not installable here: Debian has no ``htcondor``
package, and PyPI's ``htcondor`` wheel holds the Python bindings only, so
``bps submit`` stops at ``Submit.from_dag`` with ``HTCondorException:
Failed to locate condor_dagman executable in PATH``.  What is modelled,
from the HTCondor manual ("DAGMan Workflows"; "condor_submit": the
commands below) and ctrl_bps_htcondor's ``prepare_utils.py`` and
``final_post.sh``; anything else in a DAG or submit file is refused, so a
file this stand-in runs is one it understands:

========================  ====================================================
DAG / submit command      modelled as
========================  ====================================================
``JOB name file DIR d``   a node; its submit file is read relative to ``d``
``PARENT a CHILD b``      ``b`` runs only after every parent succeeded; a
                          node whose parent failed never runs
``FINAL name file DIR``   runs last, whatever happened before
``SCRIPT POST node cmd``  only on the FINAL node (ctrl_bps_htcondor's only
                          use): run in the DAG's directory with
                          ``$DAG_STATUS`` and ``$RETURN``; its exit status is
                          the DAG's
``CONFIG``,               accepted, no effect here
``NODE_STATUS_FILE``,
``SET_JOB_ATTR``
``executable``,           run as a process, arguments in HTCondor's new
``arguments``             syntax (double-quoted, single quotes group);
                          ``transfer_executable=True`` copies it into the
                          job's scratch directory first
``getenv``                must be true: the submitter's environment
``should_transfer_files`` must be YES: each attempt runs in an empty
                          scratch directory, not in ``DIR``
``transfer_output_files`` must be empty
``output``, ``error``,    written under ``DIR``; ``$(Cluster)`` is the
``log``                   attempt's cluster id, ``$$([NumJobStarts ?: 0])``
                          the number of earlier starts
``max_retries``,          exit 0 ends the job; an exit code
``retry_until``           ``retry_until`` names (``member(ExitCode, {...})``
                          or one integer) ends it failed; any other exit
                          is retried up to ``max_retries`` times
``on_exit_hold`` with     a job killed by a signal or exiting above 128 is
``periodic_release``      held and released again, as ctrl_bps_htcondor's
                          memory-retry expressions do below their cap: it
                          counts as a retry
``request_*``, ``+attr``, accepted, not enforced (no matchmaking here)
``universe=vanilla``,
``queue``
========================  ====================================================

Jobs run one at a time (HTCondor runs ready nodes at once); the order of
ready nodes is the DAG file's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

ACCEPTED_SUBMIT_COMMANDS = {
    "universe", "should_transfer_files", "when_to_transfer_output", "transfer_output_files",
    "transfer_executable", "on_exit_hold", "on_exit_hold_reason", "on_exit_hold_subcode",
    "request_cpus", "request_memory", "request_disk", "retry_until", "max_retries",
    "periodic_release", "periodic_remove", "getenv", "executable", "arguments", "output",
    "error", "log", "concurrency_limit",
}  # fmt: skip
"""Submit commands whose meaning the table of this module covers."""


@dataclasses.dataclass
class DagNode:
    """A DAG node, its submit file's commands and its attempts' exit
    codes (negative: the signal that ended it).
    """

    name: str
    directory: Path
    commands: dict[str, str]
    parents: list[str] = dataclasses.field(default_factory=list)
    starts: int = 0
    status: int | None = None
    exits: list[int] = dataclasses.field(default_factory=list)


def read_submit_file(path: Path) -> dict[str, str]:
    """Return a submit file's commands, refusing any not modelled."""
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("+") or line == "queue":
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or key not in ACCEPTED_SUBMIT_COMMANDS:
            raise ValueError(f"{path}: submit command not modelled: {line!r}")
        commands[key] = value.strip()
    if commands.get("getenv", "").lower() != "true":
        raise ValueError(f"{path}: only getenv = True is modelled")
    if commands.get("should_transfer_files", "").upper() != "YES":
        raise ValueError(f"{path}: only should_transfer_files = YES is modelled")
    if commands.get("transfer_output_files", '""') != '""':
        raise ValueError(f"{path}: only an empty transfer_output_files is modelled")
    return commands


def split_arguments(value: str) -> list[str]:
    """Split HTCondor's new-syntax ``arguments`` value."""
    if not (len(value) >= 2 and value.startswith('"') and value.endswith('"')):
        raise ValueError(f"only the new (double-quoted) arguments syntax is modelled: {value}")
    body = value[1:-1].replace('""', '"')
    words, word, quoted, k = [], [], False, 0
    while k < len(body):
        char = body[k]
        if char == "'":
            if quoted and body[k + 1 : k + 2] == "'":
                word.append("'")
                k += 2
                continue
            quoted = not quoted
        elif char.isspace() and not quoted:
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(char)
        k += 1
    if quoted:
        raise ValueError(f"unbalanced single quote in arguments: {value}")
    if word:
        words.append("".join(word))
    return words


def stop_codes(retry_until: str | None) -> set[int]:
    """Return the exit codes ``retry_until`` stops retrying at."""
    if retry_until is None:
        return set()
    if re.fullmatch(r"\d+", retry_until):
        return {int(retry_until)}
    match = re.fullmatch(r"member\(ExitCode, \{([\d, ]*)\}\)", retry_until)
    if match is None:
        raise ValueError(f"retry_until not modelled: {retry_until}")
    return {int(code) for code in match.group(1).split(",") if code.strip()}


class Dag:
    """A DAG file ctrl_bps_htcondor wrote, ready to run (`run`)."""

    def __init__(self, dag_file: Path):
        self.path = dag_file
        self.nodes: dict[str, DagNode] = {}
        self.final: DagNode | None = None
        self.post: list[str] | None = None
        for line in dag_file.read_text().splitlines():
            words = shlex.split(line)
            if not words:
                continue
            keyword = words[0].upper()
            if keyword in ("JOB", "FINAL") and len(words) == 5 and words[3].upper() == "DIR":
                directory = dag_file.parent / words[4]
                node = DagNode(words[1], directory, read_submit_file(directory / words[2]))
                if keyword == "FINAL":
                    self.final = node
                else:
                    self.nodes[node.name] = node
            elif keyword == "PARENT" and "CHILD" in words:
                split = words.index("CHILD")
                for child in words[split + 1 :]:
                    self.nodes[child].parents.extend(words[1:split])
            elif keyword == "SCRIPT" and words[1].upper() == "POST":
                if self.final is None or words[2] != self.final.name:
                    raise ValueError(f"a POST script on a node other than FINAL is not modelled: {line}")
                self.post = words[3:]
            elif keyword in ("CONFIG", "NODE_STATUS_FILE", "SET_JOB_ATTR"):
                continue
            else:
                raise ValueError(f"{dag_file}: DAG command not modelled: {line!r}")

    def run(
        self,
        env: Mapping[str, str],
        on_start: Callable[[DagNode, subprocess.Popen], None] | None = None,
    ) -> int:
        """Run every node as DAGMan would; return the DAG's exit status.

        ``env`` is the submitter's environment (``getenv = True``);
        ``on_start(node, process)`` is called as each attempt starts (a
        test may kill the process there, as a lost node would).
        """
        self.env = dict(env)
        pending = list(self.nodes.values())
        while pending:
            ready = [n for n in pending if all(self.nodes[p].status == 0 for p in n.parents)]
            blocked = [n for n in pending if any(self.nodes[p].status not in (None, 0) for p in n.parents)]
            if not ready:
                break
            for node in ready:
                self._run_node(node, on_start)
            pending = [n for n in pending if n not in ready and n not in blocked]
        failed = any(node.status != 0 for node in self.nodes.values())
        dag_status = 1 if failed else 0
        if self.final is None:
            return dag_status
        self._run_node(self.final, on_start)
        if self.post is None:
            return dag_status or self.final.status
        arguments = [
            {"$DAG_STATUS": str(dag_status), "$RETURN": str(self.final.status)}.get(word, word)
            for word in self.post
        ]
        return subprocess.run(arguments, cwd=self.path.parent, env=self.env).returncode

    def _run_node(self, node: DagNode, on_start) -> None:
        """Run a node's job, retrying as its submit file says."""
        commands = node.commands
        retries = int(commands.get("max_retries", "0"))
        stops = stop_codes(commands.get("retry_until"))
        while True:
            code = self._attempt(node, on_start)
            node.starts += 1
            node.exits.append(code)
            killed = code < 0 or code > 128
            if code == 0 or (not killed and code in stops) or node.starts > retries:
                node.status = code
                return

    def _attempt(self, node: DagNode, on_start) -> int:
        """Run one attempt in an empty scratch directory; return its exit
        code (negative: the signal that ended it).
        """
        commands = node.commands
        cluster = str(os.getpid() * 1000 + node.starts)

        def name(key: str) -> Path:
            value = commands[key].replace("$(Cluster)", cluster)
            value = value.replace("$$([NumJobStarts ?: 0])", str(node.starts))
            if "$" in value:
                raise ValueError(f"{node.name}: macro not modelled in {key} = {commands[key]}")
            return node.directory / value

        with tempfile.TemporaryDirectory(prefix=f"htcondor_{node.name}_") as scratch:
            executable = commands["executable"]
            if commands.get("transfer_executable", "True").lower() == "true":
                executable = shutil.copy(executable, scratch)
            arguments = split_arguments(commands.get("arguments", '""'))
            with open(name("output"), "ab") as output:
                error = output if commands["error"] == commands["output"] else open(name("error"), "ab")
                try:
                    process = subprocess.Popen(
                        [executable, *arguments], cwd=scratch, stdout=output, stderr=error, env=self.env
                    )
                    if on_start is not None:
                        on_start(node, process)
                    code = process.wait()
                finally:
                    if error is not output:
                        error.close()
        with open(name("log"), "a") as log:
            log.write(f"attempt {node.starts} exit {code}\n")
        return code


def kill_first_attempt(label: str, after: float = 1.0):
    """Return an ``on_start`` that kills the first attempt of the first
    node whose name starts with ``label`` (SIGKILL after ``after`` seconds),
    and the list the killed node's name is appended to.
    """
    import threading

    killed: list[str] = []

    def on_start(node: DagNode, process: subprocess.Popen) -> None:
        if killed or not node.name.startswith(label) or node.starts:
            return
        killed.append(node.name)
        threading.Timer(after, lambda: process.poll() is None and process.send_signal(signal.SIGKILL)).start()

    return on_start, killed
