"""A throwaway single-node SLURM cluster on localhost, to run the SLURM profile against real SLURM.

Debian's ``slurmctld``, ``slurmd``, ``slurm-client`` and ``munge`` (SLURM 22.05 on Debian 12),
started by this module as root, without systemd or cgroups. Everything the cluster writes
lives in one directory: configs, munge key and socket, controller state, spool, logs, and
fake GPUs. Only the daemons started here are stopped, by their PIDs.

What it takes on such a machine:

- ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none``: no cgroups needed.
- ``SelectType=select/cons_tres`` with ``CR_Core_Memory`` and ``DefMemPerCPU`` (otherwise a
  job without ``--mem`` takes the whole node); ``SlurmdParameters=config_overrides`` lets the
  node claim the CPUs and memory of a GPU node it does not have.
- Fake GPUs: ``GresTypes=gpu``, node ``Gres=gpu:<model>:<n>``, ``gres.conf`` with
  ``AutoDetect=off`` and one ``File=`` per GPU, a symlink to ``/dev/null`` (GPUs without a
  file are dropped, regular files refused).
- munged with its own key and socket; the socket's directory must be mode 755 and every
  directory above it searchable by all (not so under pytest's tmp_path: the socket gets a
  directory of its own in /tmp).
- The slurm-jobstep plugin strips every ``SLURM_*`` variable, ``SLURM_CONF`` included, before
  the ``srun`` inside a job, so ``/etc/slurm/slurm.conf`` must exist: a symlink to the
  generated config, made only if that path is free and removed again by :meth:`stop`.
- Without slurmdbd ``sacct`` exists but fails: a profile must use ``squeue`` for job status.
  ``MinJobAge`` is long, so finished jobs stay visible to ``squeue`` and ``scontrol``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PACKAGES",
    "SYSTEM_CONF",
    "LocalSlurmCluster",
    "NodeSpec",
    "SlurmUnavailable",
    "ensure_installed",
    "parse_scontrol_records",
]

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
"""Debian packages providing the daemons and client commands."""
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started on this machine; the message says why."""


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(name, path=path)


def ensure_installed() -> None:
    """Install the Debian packages when a binary is missing (needs root and apt-get).

    ``policy-rc.d`` keeps the packages from starting the system's own daemons while they
    install (a container usually has one already); a temporary one is removed afterwards.
    """
    missing = [b for b in BINARIES if _which(b) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(
            f"missing {', '.join(missing)}; install the Debian packages {' '.join(PACKAGES)} "
            "(this needs root and apt-get)"
        )
    policy = Path("/usr/sbin/policy-rc.d")
    temporary_policy = not policy.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if temporary_policy:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise SlurmUnavailable(f"`{' '.join(cmd)}` failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    finally:
        if temporary_policy:
            policy.unlink(missing_ok=True)
    still = [b for b in BINARIES if _which(b) is None]
    if still:
        raise SlurmUnavailable(f"installed {' '.join(PACKAGES)} but {', '.join(still)} still missing")


def parse_scontrol_records(text: str) -> list[dict[str, str]]:
    """``scontrol -o show ...`` output: one record per line of ``Key=Value`` fields.

    Values never contain spaces in one-line mode except after the last ``=`` of a few free
    text fields, so a field is split at its first ``=`` and a token without one continues the
    previous value.
    """
    records = []
    for line in text.splitlines():
        record: dict[str, str] = {}
        key = None
        for token in line.split():
            if "=" in token:
                key, value = token.split("=", 1)
                record[key] = value
            elif key is not None:
                record[key] += " " + token
        if record:
            records.append(record)
    return records


def _controller_alive(conf: Path) -> bool:
    """Whether the slurmctld of a cluster laid out by this module (``<root>/etc/slurm.conf``,
    ``<root>/run/slurmctld.pid``) still runs."""
    try:
        pid = int((conf.parent.parent / "run" / "slurmctld.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class NodeSpec:
    """The one compute node, as SLURM is told it is (not what the machine has)."""

    cpus: int = 64
    memory_mb: int = 512_000
    gpus: int = 4
    gpu_model: str = "h100"


class LocalSlurmCluster:
    """SLURM controller, one compute node and munge on 127.0.0.1, all under ``root``.

    ``partitions`` are created on that node (the first is the default), so a profile's
    partition names can be used as they are. Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(self, root: str | Path, partitions: Sequence[str], node: NodeSpec | None = None) -> None:
        if not partitions:
            raise ValueError("at least one partition is needed")
        self.root = Path(root).resolve()
        self.partitions = list(dict.fromkeys(partitions))
        self.node = node or NodeSpec()
        self.nodename = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        # munged wants every directory above its socket searchable by all: not so under a
        # pytest tmp_path (mode 700), so the socket gets a directory of its own in /tmp.
        self._socket_dir: Path | None = None
        self.logs = self.root / "log"
        self._procs: dict[str, subprocess.Popen] = {}
        self._ports = (0, 0)  # slurmctld, slurmd: free ones are picked by write_config
        self._linked_system_conf = False

    # -- configuration ---------------------------------------------------------------------

    def _slurm_conf(self) -> str:
        n = self.node
        partitions = "\n".join(
            f"PartitionName={name} Nodes=ALL Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP"
            for i, name in enumerate(self.partitions)
        )
        return f"""\
# Generated by tests/slurm/cluster.py: a private test cluster, removed after the test.
ClusterName=whatsreal-test
SlurmctldHost={self.nodename}(127.0.0.1)
SlurmctldPort={self._ports[0]}
SlurmdPort={self._ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool/slurmd
SlurmctldPidFile={self.root}/run/slurmctld.pid
SlurmdPidFile={self.root}/run/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
KillWait=10
InactiveLimit=0
GresTypes=gpu
NodeName={self.nodename} NodeAddr=127.0.0.1 CPUs={n.cpus} RealMemory={n.memory_mb} \
Gres=gpu:{n.gpu_model}:{n.gpus} State=UNKNOWN
{partitions}
"""

    def _gres_conf(self, gpu_dir: Path) -> str:
        n = self.node
        return (
            "AutoDetect=off\n"
            f"NodeName={self.nodename} Name=gpu Type={n.gpu_model} File={gpu_dir}/nvidia[0-{n.gpus - 1}]\n"
        )

    def write_config(self) -> None:
        """Lay out the cluster's directory: configs, fake GPU devices, munge key."""
        self._ports = (_free_port(), _free_port())
        for sub in ("etc", "state", "spool/slurmd", "run", "log", "gpus", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="whatsreal-munge-"))
            self._socket_dir.chmod(0o755)
        gpu_dir = self.root / "gpus"
        for i in range(self.node.gpus):
            dev = gpu_dir / f"nvidia{i}"
            if not dev.is_symlink():
                dev.symlink_to("/dev/null")
        self.conf.write_text(self._slurm_conf())
        (self.conf.parent / "gres.conf").write_text(self._gres_conf(gpu_dir))
        # munged refuses a key or socket directory that others could write.
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.root / "munge").chmod(0o700)

    @property
    def munge_socket(self) -> Path:
        if self._socket_dir is None:
            raise RuntimeError("write_config() first")
        return self._socket_dir / "munge.socket.2"

    # -- daemons ---------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (sbatch, squeue, snakemake) of this cluster."""
        sbin = os.pathsep.join(d for d in SBIN if d not in os.environ.get("PATH", "").split(os.pathsep))
        path = os.pathsep.join(p for p in (os.environ.get("PATH", ""), sbin) if p)
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def _spawn(self, name: str, cmd: list[str]) -> None:
        # Its own session: a Ctrl-C meant for the test does not reach the daemons.
        with open(self.logs / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink():
            target = Path(os.readlink(SYSTEM_CONF))
            if target != self.conf and _controller_alive(target):
                raise SlurmUnavailable(
                    f"{SYSTEM_CONF} links to {target}, a test cluster that is still running; stop it first"
                )
            SYSTEM_CONF.unlink()  # left by a test run that was killed before it could clean up
        elif SYSTEM_CONF.exists():
            raise SlurmUnavailable(
                f"{SYSTEM_CONF} exists: this machine has a SLURM of its own, which this test will not touch"
            )
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked_system_conf = True

    def start(self, timeout_s: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle, or raise with the logs."""
        if os.geteuid() != 0:
            raise SlurmUnavailable("the local test cluster runs its daemons as root")
        ensure_installed()
        self.write_config()
        self._link_system_conf()
        try:
            munge = self.root / "munge"
            self._spawn(
                "munged",
                [
                    _which("munged") or "munged",
                    "--foreground",
                    f"--socket={self.munge_socket}",
                    f"--key-file={munge / 'munge.key'}",
                    f"--pid-file={self.root / 'run' / 'munged.pid'}",
                    f"--log-file={self.logs / 'munged.log'}",
                    f"--seed-file={munge / 'munged.seed'}",
                ],
            )
            self._wait(lambda: self.munge_socket.exists(), timeout_s, "munged to open its socket")
            self._spawn("slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-c", "-f", str(self.conf)])
            self._wait(self._controller_up, timeout_s, "slurmctld to answer")
            self._spawn("slurmd", [_which("slurmd") or "slurmd", "-D", "-f", str(self.conf)])
            self._wait(self._node_idle, timeout_s, f"node {self.nodename} to become idle")
        except BaseException:
            self.stop()
            raise

    def _controller_up(self) -> bool:
        res = subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True, text=True, timeout=30)
        return res.returncode == 0 and " is UP" in res.stdout

    def _node_idle(self) -> bool:
        res = subprocess.run(
            ["sinfo", "-h", "-N", "-n", self.nodename, "-o", "%T"], env=self.env, capture_output=True, text=True
        )
        states = {line.strip().rstrip("*") for line in res.stdout.splitlines() if line.strip()}
        return res.returncode == 0 and states == {"idle"}  # one line per partition

    def _wait(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [name for name, p in self._procs.items() if p.poll() is not None]
            if dead:
                raise SlurmUnavailable(f"{', '.join(dead)} exited while waiting for {what}:\n{self.log_tails()}")
            if ready():
                return
            time.sleep(0.25)
        raise SlurmUnavailable(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.log_tails()}")

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every daemon log, for error messages."""
        parts = []
        for path in sorted(self.logs.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel the cluster's jobs, then stop the daemons started here (by PID), newest first."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self._cancel_all_jobs()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._linked_system_conf and SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == self.conf:
            SYSTEM_CONF.unlink()
        self._linked_system_conf = False
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _cancel_all_jobs(self, timeout_s: float = 30) -> None:
        """Every job of this private cluster was submitted by the test: cancel what still runs."""
        active = [j["JobId"] for j in self.jobs() if j.get("JobState") in ("PENDING", "RUNNING", "COMPLETING")]
        if not active:
            return
        subprocess.run(["scancel", *active], env=self.env, capture_output=True, timeout=30)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(j.get("JobState") in ("RUNNING", "COMPLETING") for j in self.jobs()):
                return
            time.sleep(0.5)

    def __enter__(self) -> LocalSlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries ---------------------------------------------------------------------------

    def run(self, *cmd: str, timeout_s: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout, or an error with stderr."""
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if res.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def jobs(self, ids: Iterable[str] = ()) -> list[dict[str, str]]:
        """Every job the controller still knows (finished ones too, for ``MinJobAge``), as
        ``scontrol show job`` fields: JobId, JobState, ExitCode, Partition, NumNodes, NumTasks,
        NtasksPerN:B:S:C, CPUs/Task, TresPerJob, MinMemoryNode, TimeLimit, Comment..."""
        out = self.run("scontrol", "-o", "show", "job", *ids)
        if out.strip().startswith("No jobs"):
            return []
        return parse_scontrol_records(out)
