"""Shared helpers: statistics, machine description, measured subprocesses, result files.

Pure helpers (``percentile``, ``summarise``, ``recall_at_k``, ``median``) are unit-tested in tests/bench.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


# ---------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (numpy's default).

    Raises ``ValueError`` for an empty sequence or ``q`` outside 0..100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile of an empty sequence")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summarise(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict:
    """``{"n", "p50", "p95", "p99", "min", "max", "mean"}`` of a sample (empty sample: only ``n``)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"n": 0}
    out = {"n": len(vals)}
    out.update({f"p{int(q) if float(q).is_integer() else q}": percentile(vals, q) for q in qs})
    out.update(min=min(vals), max=max(vals), mean=sum(vals) / len(vals))
    return out


def recall_at_k(approx: Sequence[int], exact: Sequence[int], k: int) -> float:
    """|top-k(approx) ∩ top-k(exact)| / k, both given as id lists ranked best first.

    With fewer than ``k`` exact ids the denominator is the number of exact ids.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    ex = list(exact)[:k]
    if not ex:
        return 1.0
    return len(set(list(approx)[:k]) & set(ex)) / len(ex)


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares ``y = a*x + b`` with R² (for "time grows linearly with tiles")."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if len(xa) < 2:
        return {"slope": None, "intercept": None, "r2": None}
    a, b = np.polyfit(xa, ya, 1)
    pred = a * xa + b
    ss_res = float(((ya - pred) ** 2).sum())
    ss_tot = float(((ya - ya.mean()) ** 2).sum())
    return {"slope": float(a), "intercept": float(b), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0}


def rnd(x, nd: int = 3):
    """Round floats (recursively in lists/dicts) for compact JSON."""
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: rnd(v, nd) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rnd(v, nd) for v in x]
    return x


# ---------------------------------------------------------------- machine
def _cpuinfo() -> dict:
    model, physical = "unknown", set()
    try:
        cur = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            if not line.strip():
                if "physical id" in cur or "core id" in cur:
                    physical.add((cur.get("physical id"), cur.get("core id")))
                cur = {}
                continue
            k, _, v = line.partition(":")
            cur[k.strip()] = v.strip()
            if k.strip() == "model name" and model == "unknown":
                model = v.strip()
    except OSError:
        pass
    return {"cpu_model": model, "physical_cores": len(physical) or None}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def mem_available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_info() -> dict:
    """Cores, CPU model, memory, load, library versions and ONNX Runtime providers of this machine."""
    import onnxruntime as ort

    mem_total = 0
    try:
        mem_total = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    info = {
        **_cpuinfo(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_total_gb": round(mem_total / 1e9, 1),
        "mem_available_gb": round(mem_available_bytes() / 1e9, 1),
        "loadavg": list(os.getloadavg()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "ort_available_providers": ort.get_available_providers(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "rasterio": _version("rasterio"),
        "gpu": _gpu_name(),
    }
    return info


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def code_info() -> dict:
    """What code was measured: engine version, git HEAD, and a sha1 of engine/*.py (the tree may be dirty)."""
    import hashlib

    from engine import __version__

    h = hashlib.sha1(usedforsecurity=False)
    for f in sorted((ROOT / "engine").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    try:
        head = (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        head = None
    return {"engine_version": __version__, "git_head": head, "engine_sources_sha1": h.hexdigest()[:12]}


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------- context
@dataclass
class Ctx:
    """What every benchmark gets: the bundle, mode, output and scratch folders, and a logger."""

    model: Path
    quick: bool
    results_dir: Path
    work: Path
    checkpoint: Path | None = None
    model_is_default: bool = False
    mr_images: int | None = None
    variants: dict[str, Path] = field(default_factory=dict)  # extra bundles of the same model: name -> dir
    started: float = field(default_factory=time.time)

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def cmd_for(self, name: str) -> str:
        """The command line that reproduces one benchmark's figures."""
        parts = [".venv/bin/python", "bench/run.py", "--only", name]
        if self.quick:
            parts.append("--quick")
        if not self.model_is_default:
            m = Path(self.model)
            parts += ["--model", str(m.relative_to(ROOT)) if m.is_relative_to(ROOT) else str(m)]
        if self.checkpoint:
            parts += ["--checkpoint", str(self.checkpoint)]
        if name == "throughput":
            for v, d in self.variants.items():
                parts += ["--variant", f"{v}={d}"]
        if self.mr_images and name == "throughput":
            parts += ["--mr-images", str(self.mr_images)]
        return " ".join(shlex.quote(p) for p in parts)


def bench_env(**extra: str) -> dict:
    """Environment for child processes: offline, project on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def proc_status_mb(pid: int | str, field: str = "VmRSS") -> float | None:
    """A memory field (``VmRSS``, ``VmHWM``) of ``/proc/<pid>/status`` in MB (None when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def proc_rss_mb(pid: int) -> float | None:
    """Current resident set size of a process in MB (None when it is gone)."""
    return proc_status_mb(pid, "VmRSS")


# Runs a Python module like ``python -m MODULE ARGS`` and writes the process's VmHWM (peak RSS of its own
# address space, reset at exec, so not inflated by the parent's image that fork copies) to a file at exit.
# ``getrusage``/``wait4`` ``ru_maxrss`` is not used for this: Linux carries it across exec, so a child forked
# from a large benchmark process reports the parent's size.
HWM_WRAPPER = r"""
import atexit, runpy, sys
out, module = sys.argv[1], sys.argv[2]
def _hwm():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                with open(out, "w") as o:
                    o.write(line.split()[1])
atexit.register(_hwm)
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def module_cmd_with_hwm(module: str, args: list[str], hwm_file: Path) -> list[str]:
    """Command line running ``python -m module args`` that reports its peak RSS (KiB) in ``hwm_file``."""
    return [PY, "-c", HWM_WRAPPER, str(hwm_file), module, *args]


def run_measured(
    cmd: list[str],
    env: dict | None = None,
    timeout: float = 600,
    sample_s: float = 0.25,
    cwd: Path | None = None,
    hwm_file: Path | None = None,
) -> dict:
    """Run ``cmd`` to completion: wall time, exit code, peak RSS, an RSS timeline, output.

    Peak RSS: the VmHWM the child wrote to ``hwm_file`` at exit (see ``HWM_WRAPPER``), else the largest VmHWM
    sampled from /proc every ``sample_s`` (may miss growth in the last interval). The timeline (``rss_samples``,
    VmRSS) shows whether memory stays flat. The child's process group is killed after ``timeout`` seconds.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd or ROOT, start_new_session=True)
        samples: list[tuple[float, float]] = []
        hwm = [0.0]
        done = threading.Event()
        timed_out = threading.Event()

        def sampler() -> None:
            while not done.is_set():
                r = proc_rss_mb(p.pid)
                h = proc_status_mb(p.pid, "VmHWM")
                if r is not None:
                    samples.append((round(time.perf_counter() - t0, 2), round(r, 1)))
                if h is not None and time.perf_counter() - t0 > 0.05:
                    hwm[0] = max(hwm[0], h)
                done.wait(sample_s)

        def killer() -> None:
            if not done.wait(timeout):
                timed_out.set()
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        threads = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=killer, daemon=True)]
        for t in threads:
            t.start()
        p.wait()
        wall = time.perf_counter() - t0
        done.set()
        for t in threads:
            t.join(1)
        peak, source = hwm[0] or None, "sampled VmHWM"
        if hwm_file is not None:
            try:
                peak, source = int(Path(hwm_file).read_text().strip()) / 1024, "VmHWM at exit"
            except (OSError, ValueError):
                pass
        out.seek(0)
        err.seek(0)
        return {
            "rc": p.returncode,
            "wall_s": wall,
            "peak_rss_mb": peak,
            "peak_rss_source": source,
            "rss_samples": samples,
            "stdout": out.read(),
            "stderr": err.read()[-4000:],
            "timed_out": timed_out.is_set(),
        }


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each measurement function once per round, ``repeats`` rounds (A B A B ...), so slow drifts of a
    shared machine hit every contender alike; returns the samples per name."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            out[k].append(fn())
    return out


def model_meta(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "model.json").read_text(encoding="utf-8"))


def fmt(x, nd: int = 1, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}f}{unit}"
    return f"{x}{unit}"
