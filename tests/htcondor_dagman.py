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

"""A stand-in for HTCondor's DAGMan, schedd and starter that runs, on this
machine, the DAG and submit files ctrl_bps_htcondor writes (``bps
prepare`` with the real plugin), for the tests of the HTCondor site.

HTCondor's daemons are not installable here: Debian has no ``htcondor``
package, and PyPI's ``htcondor`` wheel holds the Python bindings only, so
``bps submit`` stops at ``Submit.from_dag`` with ``HTCondorException:
Failed to locate condor_dagman executable in PATH``.  The job policy
expressions are evaluated with HTCondor's own ClassAd library from that
wheel (``classad2``).  What is modelled, from the HTCondor manual ("DAGMan
Workflows", "condor_submit", "The Environment of a Job") and source
(``src/condor_dagman/dag.h``, ``src/condor_utils/condor_arglist.cpp``,
``src/condor_utils/submit_utils.cpp``), and ctrl_bps_htcondor's
``prepare_utils.py`` and ``final_post.sh``; anything else in a DAG or
submit file is refused, so a file this stand-in runs is one it
understands:

========================  ====================================================
DAG / submit command      modelled as
========================  ====================================================
``JOB name file DIR d``   a node; its submit file is read relative to ``d``
``PARENT a CHILD b``      ``b`` runs only after every parent succeeded; no
                          descendant of a failed node runs
``FINAL name file DIR``   runs last, whatever happened before
``SCRIPT POST node cmd``  only on the FINAL node (ctrl_bps_htcondor's only
                          use), run in the node's ``DIR`` with
                          ``$DAG_STATUS`` (0, or 2 when a node failed) and
                          ``$RETURN`` (the job's exit code, minus the
                          signal's number when killed); the DAG succeeds
                          (0) or fails (1) as it exits
``CONFIG file``           read: ``DAGMAN_MANAGER_JOB_APPEND_GETENV = True``
                          passes the submitter's whole environment on;
                          otherwise the jobs get DAGMan's default list
                          (`DAGMAN_DEFAULT_GETENV`: ``PATH``, ``HOME``,
                          ``PYTHONPATH``, ``_CONDOR_*`` and a few more)
``NODE_STATUS_FILE``,     accepted, not written or used (so no ``bps
``SET_JOB_ATTR``          report`` or ``bps restart`` from them)
``executable``,           an absolute path or one relative to ``DIR`` (no
``arguments``             ``PATH`` search), arguments in the new syntax of
                          ``condor_arglist.cpp``; ``transfer_executable``
                          (default true) copies it into the scratch
                          directory first
``environment``           the new syntax (double-quoted ``NAME='value'``
                          entries), over what ``getenv`` gives
``getenv``                must be true; plus the starter's ``TMPDIR``,
                          ``TMP``, ``TEMP``, ``_CONDOR_SCRATCH_DIR``,
                          ``BATCH_SYSTEM`` and ``OMP_NUM_THREADS``
``should_transfer_files`` must be YES: each attempt runs in an empty
                          scratch directory, its stdout and stderr written
                          there and copied back over ``output``/``error``
                          (under ``DIR``) when it ends
``transfer_output_files`` must be empty
``output``, ``error``,    ``$(Cluster)`` is the node's job id (one for all
``log``                   its attempts), ``$$([NumJobStarts ?: 0])`` the
                          earlier starts; the log is plain text, not an
                          HTCondor event log
``request_memory``        evaluated before each start; a job whose peak
                          resident memory (``wait4``) exceeds it is held
                          (reason 34, subcode 0)
``on_exit_hold``,         evaluated (``classad2``) on the job's ad when it
``on_exit_hold_subcode``  ends; true: held (reason 3, that subcode)
``periodic_remove``,      evaluated on a held job: removed (the node fails),
``periodic_release``      else released and started again (a job neither
                          removed nor released would wait forever: an error
                          here)
``max_retries``,          a job that ends unheld leaves the queue when
``retry_until``           ``NumJobCompletions > JobMaxRetries || ExitCode
                          =?= 0 || (retry_until)`` (an integer N meaning
                          ``ExitCode =?= N``), as condor_submit writes it;
                          else it starts again
``concurrency_limit``     ignored, recorded in `Dag.unused`: condor_submit's
                          command is ``concurrency_limits`` and it warns
                          that this one is unused
``request_cpus``,         accepted, not enforced (no matchmaking here);
``request_disk``,         ``request_cpus`` sets ``OMP_NUM_THREADS``
``universe=vanilla``,
``when_to_transfer_output``,
``on_exit_hold_reason``,
``+attr``, ``queue``
``$`` in any other value  refused (``$ENV(...)`` and other macros are not
                          expanded here)
========================  ====================================================

The submit files' language (the commands accepted, the syntax of
``arguments`` and ``environment``, ``retry_until``, ClassAd evaluation)
is `htcondor_submit_file`.

Jobs run one at a time (HTCondor runs ready nodes at once); the order of
ready nodes is the DAG file's.  Eviction (a lost execute node: the job
requeued, no completion counted) is not modelled; a killed job is one
that ended by a signal, as the kernel's out-of-memory killer ends it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from htcondor_submit_file import (
    evaluate,
    parse_environment,
    read_submit_file,
    retry_until_expression,
    split_arguments,
)

DAGMAN_DEFAULT_GETENV = (
    "CONDOR_CONFIG", "_CONDOR_*", "PATH", "PYTHONPATH", "PERL*", "PEGASUS_*", "TZ", "HOME", "USER",
    "LANG", "LC_ALL", "BEARER_TOKEN", "BEARER_TOKEN_FILE", "XDG_RUNTIME_DIR", "ASAN_OPTIONS",
    "LSAN_OPTIONS",
)  # fmt: skip
"""What DAGMan's own job takes from the submitter's environment by
default (``fnmatch`` patterns; HTCondor's test of it,
``src/condor_tests/test_dagman_proper_env.py``), unless
``DAGMAN_MANAGER_JOB_APPEND_GETENV`` says otherwise.
"""

HOLD_BY_POLICY = 3
HOLD_OVER_MEMORY = 34
"""HTCondor's hold reason codes: ``JobPolicy`` and ``JobOutOfResources``."""


@dataclasses.dataclass
class DagNode:
    """A DAG node, its submit file's commands, its job id and its
    attempts' exit codes (negative: the signal that ended it).
    """

    name: str
    directory: Path
    commands: dict[str, str]
    cluster: int
    parents: list[str] = dataclasses.field(default_factory=list)
    status: int | None = None
    exits: list[int] = dataclasses.field(default_factory=list)
    holds: list[tuple[int, int]] = dataclasses.field(default_factory=list)


class Dag:
    """A DAG file ctrl_bps_htcondor wrote, ready to run (`run`).

    Parameters
    ----------
    dag_file : `pathlib.Path`
        The DAG.

    Attributes
    ----------
    nodes : `dict` [`str`, `DagNode`]
        The JOB nodes, in the DAG file's order.
    final : `DagNode` or `None`
        The FINAL node.
    post : `list` [`str`] or `None`
        The FINAL node's POST script and its arguments.
    append_getenv : `bool`
        Whether the DAG's CONFIG file passes the whole environment on.
    unused : `dict` [`str`, `list` [`str`]]
        Per node, the submit commands condor_submit would warn are unused.
    env : `dict` [`str`, `str`]
        The jobs' environment in the last `run`.
    """

    def __init__(self, dag_file: Path):
        self.path = dag_file
        self.nodes: dict[str, DagNode] = {}
        self.final: DagNode | None = None
        self.post: list[str] | None = None
        self.append_getenv = False
        self.unused: dict[str, list[str]] = {}
        self.env: dict[str, str] = {}
        for line in dag_file.read_text().splitlines():
            words = shlex.split(line)
            if not words:
                continue
            keyword = words[0].upper()
            if keyword in ("JOB", "FINAL") and len(words) == 5 and words[3].upper() == "DIR":
                self._add_node(keyword, words[1], dag_file.parent / words[4], words[2])
            elif keyword == "PARENT" and "CHILD" in words:
                split = words.index("CHILD")
                for child in words[split + 1 :]:
                    self.nodes[child].parents.extend(words[1:split])
            elif keyword == "SCRIPT" and words[1].upper() == "POST":
                if self.final is None or words[2] != self.final.name:
                    raise ValueError(f"a POST script on a node other than FINAL is not modelled: {line}")
                self.post = words[3:]
            elif keyword == "CONFIG" and len(words) == 2:
                self._read_config(dag_file.parent / words[1])
            elif keyword in ("NODE_STATUS_FILE", "SET_JOB_ATTR"):
                continue
            else:
                raise ValueError(f"{dag_file}: DAG command not modelled: {line!r}")

    def _add_node(self, keyword: str, name: str, directory: Path, submit_file: str) -> None:
        unused: list[str] = []
        cluster = 1000 + len(self.nodes) + (self.final is not None)
        node = DagNode(name, directory, read_submit_file(directory / submit_file, unused), cluster)
        if unused:
            self.unused[name] = unused
        if keyword == "FINAL":
            self.final = node
        else:
            self.nodes[name] = node

    def _read_config(self, path: Path) -> None:
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip().upper() == "DAGMAN_MANAGER_JOB_APPEND_GETENV":
                self.append_getenv = value.strip().lower() == "true"

    def job_environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """Return what the jobs get of the submitter's environment
        (``getenv = True`` in each job gives them DAGMan's own).

        Parameters
        ----------
        env : `~collections.abc.Mapping` [`str`, `str`]
            The submitter's environment.

        Returns
        -------
        job_env : `dict` [`str`, `str`]
            The whole of it if the DAG's CONFIG file appends it, else the
            variables `DAGMAN_DEFAULT_GETENV` matches.
        """
        if self.append_getenv:
            return dict(env)
        return {
            key: value
            for key, value in env.items()
            if any(fnmatch.fnmatchcase(key, pattern) for pattern in DAGMAN_DEFAULT_GETENV)
        }

    def run(
        self,
        env: Mapping[str, str],
        on_start: Callable[[DagNode, subprocess.Popen], None] | None = None,
    ) -> int:
        """Run every node as DAGMan would.

        Parameters
        ----------
        env : `~collections.abc.Mapping` [`str`, `str`]
            The submitter's environment.
        on_start : `~collections.abc.Callable`, optional
            Called with the node and its process as each attempt starts (a
            test may kill the process there).

        Returns
        -------
        status : `int`
            The DAG's exit status: 0, or 1 when it failed.
        """
        self.env = self.job_environment(env)
        pending = list(self.nodes.values())
        while pending:
            ready = [n for n in pending if all(self.nodes[p].status == 0 for p in n.parents)]
            blocked = [n for n in pending if any(self.nodes[p].status not in (None, 0) for p in n.parents)]
            if not ready:
                break
            for node in ready:
                self._run_node(node, on_start)
            pending = [n for n in pending if n not in ready and n not in blocked]
        dag_status = 2 if any(node.status != 0 for node in self.nodes.values()) else 0
        if self.final is None:
            return 0 if dag_status == 0 else 1
        self._run_node(self.final, on_start)
        if self.post is None:
            return 0 if self.final.status == 0 else 1
        arguments = [
            {"$DAG_STATUS": str(dag_status), "$RETURN": str(self.final.status)}.get(word, word)
            for word in self.post
        ]
        post = subprocess.run(arguments, cwd=self.final.directory, env=self.env)
        return 0 if post.returncode == 0 else 1

    def _run_node(self, node: DagNode, on_start) -> None:
        """Run a node's job until it leaves the queue, as its submit
        file's policy says.
        """
        commands = node.commands
        ad: dict[str, object] = {"JobMaxRetries": int(commands.get("max_retries", "0")),
                                 "NumJobStarts": 0, "NumJobCompletions": 0, "JobStatus": 1}  # fmt: skip
        exit_policy = (
            f"NumJobCompletions > JobMaxRetries || ExitCode =?= 0 || "
            f"({retry_until_expression(commands.get('retry_until'))})"
        )
        while True:
            request = evaluate(commands.get("request_memory", "0"), ad)
            code, peak_mb = self._attempt(node, on_start, int(ad["NumJobStarts"]))
            ad["NumJobStarts"] = int(ad["NumJobStarts"]) + 1
            ad["MemoryUsage"] = peak_mb
            node.exits.append(code)
            for key in ("ExitCode", "ExitSignal", "HoldReasonCode", "HoldReasonSubCode"):
                ad.pop(key, None)
            if isinstance(request, int | float) and request > 0 and peak_mb > request:
                hold = (HOLD_OVER_MEMORY, 0)
            else:
                ad["NumJobCompletions"] = int(ad["NumJobCompletions"]) + 1
                ad["ExitBySignal"] = code < 0
                ad["ExitSignal" if code < 0 else "ExitCode"] = -code if code < 0 else code
                hold = None
                if evaluate(commands.get("on_exit_hold", "false"), ad) is True:
                    hold = (HOLD_BY_POLICY, int(commands.get("on_exit_hold_subcode", "0")))
                elif evaluate(exit_policy, ad) is True:
                    node.status = code
                    return
                else:
                    continue
            node.holds.append(hold)
            ad.update(JobStatus=5, HoldReasonCode=hold[0], HoldReasonSubCode=hold[1])
            if evaluate(commands.get("periodic_remove", "false"), ad) is True:
                node.status = code if code != 0 else -1002
                return
            if evaluate(commands.get("periodic_release", "false"), ad) is not True:
                raise RuntimeError(f"{node.name}: held {hold} and never released nor removed")
            ad.update(JobStatus=1, LastJobStatus=5, LastHoldReasonCode=hold[0], LastHoldReasonSubCode=hold[1])

    def _attempt(self, node: DagNode, on_start, earlier_starts: int) -> tuple[int, float]:
        """Run one attempt in an empty scratch directory; return its exit
        code (negative: the signal that ended it) and its peak resident
        memory in MB.
        """
        commands = node.commands

        def name(key: str) -> Path:
            value = commands[key].replace("$(Cluster)", str(node.cluster))
            value = value.replace("$$([NumJobStarts ?: 0])", str(earlier_starts))
            if "$" in value:
                raise ValueError(f"{node.name}: macro not modelled in {key} = {commands[key]}")
            return node.directory / value

        executable = Path(commands["executable"])
        if not executable.is_absolute():
            executable = node.directory / executable
        with tempfile.TemporaryDirectory(prefix=f"htcondor_{node.name}_") as scratch:
            if commands.get("transfer_executable", "True").lower() == "true":
                executable = Path(shutil.copy(executable, scratch))
            starter = {"TMPDIR": scratch, "TMP": scratch, "TEMP": scratch, "_CONDOR_SCRATCH_DIR": scratch}
            starter.update(BATCH_SYSTEM="HTCondor", OMP_NUM_THREADS=commands.get("request_cpus", "1"))
            env = dict(self.env, **parse_environment(commands.get("environment", '""')), **starter)
            stdout, stderr = Path(scratch, "_condor_stdout"), Path(scratch, "_condor_stderr")
            with open(stdout, "wb") as out, open(stderr, "wb") as err:
                shared = commands.get("error") == commands.get("output")
                process = subprocess.Popen(
                    [str(executable), *split_arguments(commands.get("arguments", '""'))],
                    cwd=scratch, stdout=out, stderr=out if shared else err, env=env,
                )  # fmt: skip
                if on_start is not None:
                    on_start(node, process)
                _, wait_status, usage = os.wait4(process.pid, 0)
                process.returncode = code = os.waitstatus_to_exitcode(wait_status)
            shutil.copyfile(stdout, name("output"))
            if not shared:
                shutil.copyfile(stderr, name("error"))
        with open(name("log"), "a") as log:
            log.write(f"attempt {earlier_starts} exit {code}\n")
        return code, usage.ru_maxrss / 1024


def kill_first_attempt(label: str, after: float = 1.0):
    """Return an ``on_start`` that kills the first attempt of the first
    node whose name starts with ``label``, as the out-of-memory killer
    would.

    Parameters
    ----------
    label : `str`
        Start of the node's name.
    after : `float`, optional
        Seconds after the start to send SIGKILL.

    Returns
    -------
    on_start : `~collections.abc.Callable`
        For `Dag.run`.
    killed : `list` [`str`]
        The killed node's name, once it is chosen.
    """
    killed: list[str] = []

    def on_start(node: DagNode, process: subprocess.Popen) -> None:
        if killed or not node.name.startswith(label) or node.exits:
            return
        killed.append(node.name)

        def kill() -> None:
            # Not process.poll(): reaping here would take the exit status
            # from the stand-in's os.wait4.
            if process.returncode is None:
                os.kill(process.pid, signal.SIGKILL)

        threading.Timer(after, kill).start()

    return on_start, killed
