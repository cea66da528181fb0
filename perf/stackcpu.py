"""CPU seconds spent by every process of the stack over a load level, read with psutil.

The stack is the orchestrator (uvicorn or granian, with any worker processes), tritonserver, one
`triton_python_backend_stub` per model instance (named after the model it serves) and
redis-server. Each process counts user + system time, its children's not included (a worker is
its own entry). The load generator and the machine as a whole are sampled beside them, so a level
can say how much of the box the stack used and how much went elsewhere.

Discovery and reading touch the live process table; everything that turns two samples into
numbers (`classify`, `stub_model`, `unique_names`, `level_cpu`, `busy_share`, `per_answer_ms`)
is pure and unit-tested with made-up figures.
"""
from __future__ import annotations

import argparse
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import psutil

ORCHESTRATOR = "orchestrator"
TRITON = "tritonserver"
REDIS = "redis-server"
STUB_BINARY = "triton_python_backend_stub"
STUB_PREFIX = "stub:"
ASGI_SERVERS = ("uvicorn", "granian", "gunicorn", "hypercorn")
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD")
# psutil.cpu_times(): guest time is already inside user/nice on Linux, so it is not added again
NOT_IN_TOTAL = frozenset({"guest", "guest_nice"})
IDLE_FIELDS = frozenset({"idle", "iowait"})


@dataclass(frozen=True)
class StackProcess:
    name: str  # role, unique within a stack: "orchestrator", "stub:prerank", "tritonserver#2", ...
    pid: int


def stub_model(cmdline: Sequence[str]) -> str:
    """The model a Python-backend stub serves: its first argument is `<repo>/<model>/<version>/model.py`."""
    for arg in cmdline[1:]:
        path = PurePosixPath(arg)
        if path.suffix == ".py" and len(path.parts) >= 3:
            return path.parts[-3]
    return "unknown"


def classify(name: str, cmdline: Sequence[str]) -> str | None:
    """The role of a process from its name and command line, or None if it is not part of the stack.

    The orchestrator is an ASGI server whose command line names `orchestrator` (so neither
    `python -m orchestrator.stack` nor a test run that mentions it is taken for it).
    """
    exe = PurePosixPath(cmdline[0]).name if cmdline else ""
    if name == TRITON or exe == TRITON:
        return TRITON
    if name == REDIS or exe == REDIS:  # redis rewrites its argv into one title string; its name stays
        return REDIS
    if name == STUB_BINARY[:15] or exe == STUB_BINARY:  # the kernel truncates names to 15 characters
        return STUB_PREFIX + stub_model(cmdline)
    words = " ".join(cmdline)
    if ORCHESTRATOR in words and any(re.search(rf"\b{server}\b", words) for server in ASGI_SERVERS):
        return ORCHESTRATOR
    return None


def unique_names(roles: Sequence[str]) -> list[str]:
    """Roles made unique in order: a second `stub:rank` (two instances) becomes `stub:rank#2`.

    Orchestrator workers share one name on purpose: their CPU is summed as the orchestrator's.
    """
    seen: Counter[str] = Counter()
    out = []
    for role in roles:
        seen[role] += 1
        out.append(role if seen[role] == 1 or role == ORCHESTRATOR else f"{role}#{seen[role]}")
    return out


def role_order(name: str) -> tuple[int, str]:
    """Orchestrator, tritonserver, its stubs, redis-server, anything else: the order of a request's path."""
    rank = {ORCHESTRATOR: 0, TRITON: 1, REDIS: 3}
    base = name.split("#")[0]
    return (2 if base.startswith(STUB_PREFIX) else rank.get(base, 4), name)


def discover(orchestrator_pids: Iterable[int] = ()) -> list[StackProcess]:
    """Every stack process on this machine. Given orchestrator pids replace the command-line match;
    either way the orchestrator's descendants (uvicorn/granian workers) count as orchestrator."""
    me = os.getpid()
    pinned = set(orchestrator_pids)
    found: list[tuple[str, psutil.Process]] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.pid == me:
            continue
        role = classify(proc.info["name"] or "", proc.info["cmdline"] or [])
        if pinned and (role == ORCHESTRATOR or proc.pid in pinned):
            role = ORCHESTRATOR if proc.pid in pinned else None
        if role is not None:
            found.append((role, proc))
    for role, proc in list(found):
        if role == ORCHESTRATOR:
            try:
                found += [(ORCHESTRATOR, child) for child in proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    by_pid = {proc.pid: role for role, proc in found}
    pids = sorted(by_pid, key=lambda pid: (role_order(by_pid[pid]), pid))
    return [StackProcess(n, pid) for n, pid in zip(unique_names([by_pid[p] for p in pids]), pids)]


def pids_by_name(processes: Iterable[StackProcess]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for proc in processes:
        out.setdefault(proc.name, []).append(proc.pid)
    return out


def describe(processes: Sequence[StackProcess]) -> str:
    if not processes:
        return "stack: no process found (the CPU columns stay empty)"
    return "stack: " + ", ".join(f"{name} {','.join(map(str, pids))}" for name, pids in pids_by_name(processes).items())


def process_cpu(pid: int) -> float | None:
    """user + system seconds of one process (children excluded), None once it is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return t.user + t.system


def self_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


@dataclass(frozen=True)
class CpuSample:
    wall_s: float
    processes: dict[StackProcess, float]  # missing: the process was gone when sampled
    machine: dict[str, float]  # psutil.cpu_times()._asdict()
    generator_s: float


@dataclass(frozen=True)
class LevelCpu:
    wall_s: float
    processes_s: dict[str, float]  # per role, summed over its processes
    generator_s: float
    machine_busy: float  # share of all cores busy, 0..1
    n_cpus: int
    vanished: list[str] = field(default_factory=list)  # roles with a process that exited during the level

    @property
    def stack_s(self) -> float:
        return sum(self.processes_s.values())

    @property
    def other_s(self) -> float:
        """Busy CPU seconds on the machine that neither the stack nor the generator spent."""
        return max(0.0, self.machine_busy * self.n_cpus * self.wall_s - self.stack_s - self.generator_s)

    def as_dict(self, answered: int) -> dict:
        return {
            "wall_s": round(self.wall_s, 3), "n_cpus": self.n_cpus, "machine_busy": round(self.machine_busy, 4),
            "seconds": {k: round(v, 4) for k, v in {**self.processes_s, "stack": self.stack_s,
                                                     "generator": self.generator_s, "other": self.other_s}.items()},
            "ms_per_answer": per_answer_ms({**self.processes_s, "stack": self.stack_s, "generator": self.generator_s},
                                           answered),
            "vanished": self.vanished,
        }


def busy_share(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Share of the machine's CPU time that was not idle between two psutil.cpu_times() readings."""
    delta = {k: after[k] - before[k] for k in before if k not in NOT_IN_TOTAL}
    total = sum(delta.values())
    if total <= 0:
        return 0.0
    return 1.0 - sum(v for k, v in delta.items() if k in IDLE_FIELDS) / total


def level_cpu(before: CpuSample, after: CpuSample, n_cpus: int) -> LevelCpu:
    """Per-role CPU seconds between two samples; a process present in only one of them is left out
    and its role listed as vanished (its partial time cannot be attributed to the level)."""
    seconds: dict[str, float] = {}
    vanished = []
    for proc, start in before.processes.items():
        end = after.processes.get(proc)
        role = proc.name
        if end is None:
            vanished.append(role)
            continue
        if end < start:
            raise ValueError(f"CPU time of {role} (pid {proc.pid}) went backwards: {start} -> {end}")
        seconds[role] = seconds.get(role, 0.0) + end - start
    return LevelCpu(after.wall_s - before.wall_s, seconds, after.generator_s - before.generator_s,
                    busy_share(before.machine, after.machine), n_cpus, sorted(set(vanished)))


def per_answer_ms(seconds: Mapping[str, float], answered: int) -> dict[str, float | None]:
    """CPU milliseconds per answered request; None when nothing was answered."""
    return {k: (1000.0 * v / answered if answered else None) for k, v in seconds.items()}


class StackSampler:
    """Samples the discovered processes, the machine and the generator (whose CPU is read by
    `generator_cpu`: our own process for loadgen, finished children for wrk)."""

    def __init__(self, processes: list[StackProcess], generator_cpu: Callable[[], float] = self_cpu) -> None:
        self.processes = processes
        self.generator_cpu = generator_cpu
        self.n_cpus = psutil.cpu_count() or 1

    def sample(self) -> CpuSample:
        readings = {p: s for p in self.processes if (s := process_cpu(p.pid)) is not None}
        return CpuSample(time.perf_counter(), readings, psutil.cpu_times()._asdict(), self.generator_cpu())

    def between(self, before: CpuSample, after: CpuSample) -> LevelCpu:
        return level_cpu(before, after, self.n_cpus)


def cascade_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The CASCADE_* variables of an environment, values of secret-looking names masked."""
    return {k: ("***" if any(m in k.upper() for m in SECRET_MARKERS) else v)
            for k, v in sorted(environ.items()) if k.startswith("CASCADE_")}


def orchestrator_settings(processes: Sequence[StackProcess]) -> dict:
    """The orchestrator's CASCADE_* settings, read from its process environment."""
    for proc in processes:
        if proc.name == ORCHESTRATOR:
            try:
                return {"pid": proc.pid, "env": cascade_settings(psutil.Process(proc.pid).environ())}
            except (psutil.NoSuchProcess, psutil.AccessDenied) as err:
                return {"pid": proc.pid, "error": f"{type(err).__name__}: cannot read its environment"}
    return {"error": "no orchestrator process found"}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_note() -> dict:
    return {"cpu_count": psutil.cpu_count(), "load_average": load_average()}


def add_orchestrator_pids(parser: argparse.ArgumentParser) -> None:
    """The load tools' option naming the orchestrator's processes (else `discover` finds them)."""
    parser.add_argument("--orchestrator-pids", type=lambda s: [int(x) for x in s.split(",")], default=[],
                        help="orchestrator pids (default: ASGI servers whose command line names `orchestrator`)")
