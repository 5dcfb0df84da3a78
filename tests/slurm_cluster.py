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

"""A throw-away Slurm cluster on this host: a controller and two compute
nodes, for the batch tests and benchmarks.

Debian's Slurm (``slurmctld``, ``slurmd``, ``slurm-client``, ``munge``) is
built with multiple-slurmd support, so several compute nodes run on one
host, each a ``slurmd -N <name>`` on its own port.  Everything lives in a
fresh temporary directory: a private munge key and socket, a private
``slurm.conf`` (clients find it through ``SLURM_CONF``), state, spool,
logs.  Nothing is read from or written to ``/etc/slurm`` or the system's
munge socket, and no system service is started.  As root (the CI) the
daemons run as root (``SlurmUser=root``), munged as the ``munge`` account
the package created.

Run ``python tests/slurm_cluster.py`` to start a cluster by hand; it
prints the ``SLURM_CONF`` to export and stops everything on Ctrl-C.
"""

from __future__ import annotations

__all__ = ["SlurmNotFoundError", "ThrowawaySlurm", "find_slurm_programs"]

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The programs a cluster needs: daemons in /usr/sbin, clients on PATH.
_DAEMONS = ("slurmctld", "slurmd", "munged")
_CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_MUNGE_ACCOUNT = "munge"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0


class SlurmNotFoundError(RuntimeError):
    """Slurm or munge programs are not installed (or cannot be run)."""


def find_slurm_programs() -> dict[str, str]:
    """Return the paths of the Slurm and munge programs a cluster needs.

    Returns
    -------
    programs : `dict` [`str`, `str`]
        Program name to absolute path.

    Raises
    ------
    SlurmNotFoundError
        Raised if any program is missing, naming them and the Debian
        packages that provide them.
    """
    found: dict[str, str] = {}
    missing = []
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    for name in (*_DAEMONS, *_CLIENTS):
        path = shutil.which(name, path=search)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise SlurmNotFoundError(
            f"Slurm programs not found: {', '.join(missing)} (Debian packages slurmctld, slurmd, "
            "slurm-client and munge; 'bash scripts/setup_env.sh --test-tools' installs them)."
        )
    return found


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ancestors() -> set[int]:
    """This process and its ancestors (never signalled by `stop`)."""
    pids = set()
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _environment_of(pid: int) -> dict[str, str]:
    """The environment of process ``pid`` (empty if it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    result = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            result[key.decode(errors="replace")] = value.decode(errors="replace")
    return result


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class ThrowawaySlurm:
    """Start a private Slurm cluster of compute nodes on this host and
    remove it afterwards.

    Parameters
    ----------
    nodes : `int`, optional
        Number of compute nodes, named ``n1``, ``n2``, ...
    cpus_per_node : `int`, optional
        CPUs each node offers to Slurm.
    memory_per_node : `int`, optional
        Memory (MB) each node offers to Slurm.
    start : `bool`, optional
        Start the cluster now (the default); otherwise call `start`.

    Raises
    ------
    SlurmNotFoundError
        Raised if the programs are missing, or if munge cannot be run
        (as root, the ``munge`` account is needed).
    RuntimeError
        Raised if the cluster does not come up; the message ends with the
        tails of the daemons' logs.

    Notes
    -----
    Use it as a context manager; clients need `env` (``SLURM_CONF``)::

        with ThrowawaySlurm() as cluster:
            subprocess.run(["sinfo"], env=cluster.env(), check=True)
    """

    def __init__(
        self, nodes: int = 2, *, cpus_per_node: int = 1, memory_per_node: int = 8000, start: bool = True
    ) -> None:
        self.programs = find_slurm_programs()
        self.node_names = [f"n{i + 1}" for i in range(nodes)]
        self.cpus_per_node = cpus_per_node
        self.memory_per_node = memory_per_node
        self._munge_account = None
        if os.geteuid() == 0:
            try:
                self._munge_account = pwd.getpwnam(_MUNGE_ACCOUNT)
            except KeyError:
                raise SlurmNotFoundError(
                    f"munged refuses to run as root and there is no {_MUNGE_ACCOUNT!r} account "
                    "(the Debian 'munge' package creates it)."
                ) from None
        self.directory: Path | None = None
        self._processes: dict[str, subprocess.Popen] = {}
        if start:
            self.start()

    def __enter__(self) -> ThrowawaySlurm:
        if self.directory is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ThrowawaySlurm(nodes={self.node_names}, directory={str(self.directory)!r})"

    @property
    def conf_path(self) -> Path:
        """The cluster's ``slurm.conf`` (`pathlib.Path`)."""
        if self.directory is None:
            raise RuntimeError("The Slurm cluster is not running.")
        return self.directory / "slurm.conf"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Return an environment for the cluster's clients.

        Parameters
        ----------
        base : `dict` [`str`, `str`], optional
            Environment to extend; `os.environ` by default.

        Returns
        -------
        env : `dict` [`str`, `str`]
            ``base`` with ``SLURM_CONF`` set to this cluster's file.
        """
        return {**(os.environ if base is None else base), "SLURM_CONF": str(self.conf_path)}

    def start(self) -> None:
        """Start munged, the controller and the compute nodes, and wait
        until every node is idle.

        Raises
        ------
        RuntimeError
            Raised if a daemon exits or the nodes are not idle within a
            minute; the cluster is then stopped.
        """
        if self.directory is not None:
            return
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="epo-slurm-"))
            # The munge account must reach its own subdirectory.
            os.chmod(self.directory, 0o755)
            for name in ("state", "spool", "log", "run"):
                (self.directory / name).mkdir()
            atexit.register(self.stop)
            self._start_munge()
            self._write_conf()
            self._spawn("slurmctld", [self.programs["slurmctld"], "-D", "-c", "-f", str(self.conf_path)])
            for node in self.node_names:
                self._spawn(
                    f"slurmd-{node}", [self.programs["slurmd"], "-D", "-N", node, "-f", str(self.conf_path)]
                )
            self._wait_idle()
        except BaseException:
            self.stop()
            raise

    def run(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run a Slurm client program against this cluster.

        Parameters
        ----------
        *args : `str`
            Program name (``squeue``, ``sinfo``, ...) and its arguments.
        check : `bool`, optional
            Raise if the program fails.
        timeout : `float`, optional
            Seconds to wait for it.

        Returns
        -------
        output : `str`
            Its standard output.
        """
        program = self.programs.get(args[0], args[0])
        result = subprocess.run(
            [program, *args[1:]],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def node_states(self) -> dict[str, str]:
        """Return each node's state as ``sinfo`` reports it (``idle``,
        ``alloc``, ``down*``, ...).
        """
        states = {}
        for line in self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).splitlines():
            name, _, state = line.partition(" ")
            states[name] = state.strip()
        return states

    def processes(self, node: str | None = None) -> dict[int, str]:
        """Return the processes of this cluster's jobs (and daemons).

        Parameters
        ----------
        node : `str`, optional
            Only processes of jobs running on this node.

        Returns
        -------
        processes : `dict` [`int`, `str`]
            Process id to command line.  A process belongs to the cluster
            when its environment names this cluster's ``slurm.conf``.
        """
        if self.directory is None:
            return {}
        conf = str(self.conf_path)
        skip = _ancestors()
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in skip:
                continue
            environ = _environment_of(int(entry.name))
            if environ.get("SLURM_CONF") != conf:
                continue
            if node is not None and environ.get("SLURMD_NODENAME") != node:
                continue
            found[int(entry.name)] = _command_line(int(entry.name))
        return found

    def log_tail(self, lines: int = 20) -> str:
        """Return the last ``lines`` lines of every daemon's log."""
        if self.directory is None:
            return "(no cluster directory)"
        parts = []
        for path in sorted((self.directory / "log").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no logs)"

    def stop(self) -> None:
        """Cancel every job, stop the daemons, end any process left by a
        job of this cluster, and remove the directory.

        Safe to call more than once.
        """
        atexit.unregister(self.stop)
        if self.directory is None:
            return
        if "slurmctld" in self._processes and self._processes["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--user", pwd.getpwuid(os.geteuid()).pw_name, check=False)
                deadline = time.monotonic() + _STOP_TIMEOUT
                while self.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
                    time.sleep(0.2)
            except (OSError, subprocess.SubprocessError):
                pass
        # Daemons in reverse order of start: nodes, controller, munged.
        for name in reversed(list(self._processes)):
            self._terminate(self._processes.pop(name))
        # Job steps (slurmstepd) and job processes outlive slurmd; they
        # carry this cluster's SLURM_CONF in their environment.
        leftovers = self.processes()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    # Internals.

    def _spawn(self, name: str, command: list[str], *, user: str | None = None) -> None:
        # Our own child (no runuser in between), so that stop() reaps it.
        log = open(self.directory / "log" / f"{name}.out", "wb")
        with log:
            self._processes[name] = subprocess.Popen(
                command,
                cwd=self.directory,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=None if user is None else pwd.getpwnam(user).pw_gid,
                extra_groups=None if user is None else [],
            )

    def _terminate(self, process: subprocess.Popen) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _start_munge(self) -> None:
        # munged wants its socket directory open to every client, and its
        # key in a directory of its own.
        munge_dir = self.directory / "munge"
        munge_dir.mkdir()
        os.chmod(munge_dir, 0o755)
        (munge_dir / "key").mkdir(mode=0o700)
        key = munge_dir / "key" / "munge.key"
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(os.urandom(1024))  # A private key for this cluster.
        if self._munge_account is not None:
            for path in (munge_dir, munge_dir / "key", key):
                os.chown(path, self._munge_account.pw_uid, self._munge_account.pw_gid)
        self._spawn(
            "munged",
            [
                self.programs["munged"],
                "--foreground",
                f"--socket={munge_dir / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            user=None if self._munge_account is None else self._munge_account.pw_name,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not (munge_dir / "munge.socket").exists():
            if self._processes["munged"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start.\n{self._daemon_output('munged')}")
            time.sleep(0.05)

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        ports = _free_ports(1 + len(self.node_names))
        d = self.directory
        lines = [
            f"ClusterName=epo{os.getpid()}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ports[0]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={d / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}/%n",
            f"SlurmctldPidFile={d / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'run'}/slurmd.%n.pid",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log'}/slurmd.%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            "SchedulerType=sched/backfill",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "MinJobAge=60",
            "SchedulerParameters=sched_interval=2",
        ]
        for node, port in zip(self.node_names, ports[1:], strict=True):
            lines.append(
                f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname={host} Port={port} "
                f"CPUs={self.cpus_per_node} RealMemory={self.memory_per_node} State=UNKNOWN"
            )
        nodes = ",".join(self.node_names)
        lines.append(f"PartitionName=batch Nodes={nodes} Default=YES MaxTime=INFINITE State=UP")
        (d / "slurm.conf").write_text("\n".join(lines) + "\n")

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({process.returncode}).\n{self._daemon_output(name)}\n"
                        f"{self.log_tail()}"
                    )
            states = self.node_states()
            if sorted(states) == sorted(self.node_names) and all(
                state == "idle" for state in states.values()
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"Slurm nodes not idle after {_START_TIMEOUT:.0f} s: {states}\n{self.log_tail()}")

    def _daemon_output(self, name: str) -> str:
        path = self.directory / "log" / f"{name}.out"
        try:
            return path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def main() -> int:
    """Start a two-node cluster and keep it until interrupted."""
    with ThrowawaySlurm() as cluster:
        print(f"export SLURM_CONF={cluster.conf_path}", flush=True)
        print(cluster.run("sinfo"), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
