"""Runs a setup plan: builds the venv in a staging folder inside the engine folder, installs the model, then
swaps the new venv into place. A failed, cancelled or interrupted setup leaves the earlier engine untouched
(the staging folder is deleted, or cleaned up by the next setup). No Qt here: the QgsTask wraps it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .plan import (
    STEP_WEIGHTS,
    Plan,
    SetupError,
    Step,
    plan_record,
    read_install_record,
    venv_python,
    write_install_record,
)
from .python_finder import probe_env


class SetupCancelled(SetupError):
    """The user cancelled the setup."""


@dataclass
class Hooks:
    """How the installer reports to its host (the QgsTask, or a test)."""

    log: Callable[[str], None] = print
    progress: Callable[[float], None] = lambda pct: None  # 0..100
    cancelled: Callable[[], bool] = lambda: False
    env: dict[str, str] = field(default_factory=dict)  # added to the commands' environment (QGIS's proxy)


@dataclass
class InstallResult:
    interpreter: str
    model_dir: str  # "" when the model setting stays as it is
    changed: bool
    message: str


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        if sys.platform.startswith("win"):
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_command(
    argv: list[str], hooks: Hooks, on_line: Callable[[str], None] | None = None, cwd: Path | None = None
) -> None:
    """Run ``argv`` (own process group), stream its output to the log; cancel kills it; failure -> SetupError.

    ``cwd`` matters: ``python -m engine`` would import an ``engine`` folder in the working directory first."""
    hooks.log("$ " + " ".join(argv))
    kwargs = {"start_new_session": True} if not sys.platform.startswith("win") else {}
    if sys.platform.startswith("win"):
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**probe_env(), **hooks.env},
            cwd=str(cwd) if cwd else None,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
    except OSError as exc:
        raise SetupError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    lines: queue.Queue = queue.Queue()
    tail: deque[str] = deque(maxlen=40)

    def reader():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=reader, daemon=True, name="rsitr-setup-reader").start()
    done = False
    while not done:
        if hooks.cancelled():
            _kill_tree(proc)
            raise SetupCancelled("setup cancelled")
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            done = True
            continue
        if line.strip():
            tail.append(line.strip())
            hooks.log(line)
            if on_line is not None:
                on_line(line)
    code = proc.wait()
    if code != 0:
        raise SetupError(failure_line(list(tail)) or f"{Path(argv[0]).name} exited with code {code}")


def failure_line(tail: list[str]) -> str:
    """The most telling line of a failed command's output (pip's ``ERROR:``, the engine's one-line error)."""
    for line in reversed(tail):
        if line.startswith("ERROR:"):
            return line[len("ERROR:") :].strip()
    for line in reversed(tail):
        if not line.startswith(("{", "Traceback", "File ", "  ")):
            return line
    return ""


def _setup_running_elsewhere(staging: Path) -> bool:
    """A ``.staging-<pid>`` folder of another live process (a second QGIS setting up the same folder)."""
    pid = staging.name.rsplit("-", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    if sys.platform.startswith("win"):
        return False  # no cheap liveness check without extra packages: treat it as left over
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True


def clean_leftovers(engine_dir: Path) -> None:
    """Undo what an interrupted setup left: restore a venv moved aside, delete staging folders of dead setups."""
    if not engine_dir.is_dir():
        return
    venv = engine_dir / "venv"
    olds = sorted(engine_dir.glob(".old-venv-*"))
    if not venv.exists() and olds:
        os.replace(olds[-1], venv)  # interrupted between the two renames of swap_into_place
        olds = olds[:-1]
    stale = [p for p in engine_dir.glob(".staging-*") if not _setup_running_elsewhere(p)]
    for path in [*olds, *stale]:
        shutil.rmtree(path, ignore_errors=True)


def swap_into_place(new: Path, target: Path) -> None:
    """Replace ``target`` by ``new`` (same file system): move the old one aside, move the new one in, delete the
    old one. An interruption between the renames is undone by ``clean_leftovers``."""
    old = target.parent / f".old-venv-{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def engine_works(python: Path, hooks: Hooks | None = None) -> str:
    """``python -m engine --version`` output, or "" when the engine does not run."""
    if not python.exists():
        return ""
    try:
        out = subprocess.run(
            [str(python), "-m", "engine", "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            env=probe_env(),
            cwd=str(python.parent),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def venv_up_to_date(plan: Plan) -> bool:
    record = read_install_record(plan.options.engine_dir)
    return record.get("venv") == plan.fingerprint and bool(engine_works(venv_python(plan.venv)))


def model_up_to_date(plan: Plan) -> str:
    """The installed bundle path when the planned model is already there (same sha256), else ""."""
    if plan.model is None:
        return ""
    record = read_install_record(plan.options.engine_dir)
    path = record.get("model_path", "")
    same = (record.get("model") or {}).get("sha256") == plan.model.sha256
    return path if same and path and (Path(path) / "model.json").is_file() else ""


class Progress:
    """Maps step-local fractions to the overall 0..100 by STEP_WEIGHTS of the planned steps."""

    def __init__(self, steps: list[Step], hooks: Hooks):
        self.hooks = hooks
        self.total = sum(STEP_WEIGHTS[s.key] for s in steps) or 1
        self.done = 0.0
        self.current = 0.0

    def start(self, step: Step) -> None:
        self.current = STEP_WEIGHTS[step.key]

    def within(self, fraction: float) -> None:
        self.hooks.progress(100.0 * (self.done + self.current * max(0.0, min(1.0, fraction))) / self.total)

    def finish(self) -> None:
        self.done += self.current
        self.current = 0.0
        self.hooks.progress(100.0 * self.done / self.total)


def pip_line_tracker(requirements: Path, progress: Progress) -> Callable[[str], None]:
    try:
        n = sum(1 for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#"))
    except OSError:
        n = 20
    seen = [0]

    def on_line(line: str) -> None:
        if line.startswith(("Collecting", "Processing", "Looking in")):
            seen[0] += 1
            progress.within(0.8 * seen[0] / max(n, 1))
        elif line.startswith("Installing collected packages"):
            progress.within(0.85)

    return on_line


def model_line_tracker(progress: Progress, installed: dict) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        if not line.startswith("{"):
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        if event.get("event") == "progress" and event.get("total"):
            progress.within(float(event["done"]) / float(event["total"]))
        elif event.get("event") == "installed":
            installed.update(event)

    return on_line


def install(plan: Plan, hooks: Hooks) -> InstallResult:
    """Run the plan. Raises SetupError (one line) or SetupCancelled; the earlier engine stays as it was."""
    engine_dir = plan.options.engine_dir
    try:
        engine_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create {engine_dir}: {exc.strerror or exc}") from None
    clean_leftovers(engine_dir)
    t0 = time.monotonic()
    force = plan.options.force
    rebuild = force or not venv_up_to_date(plan)
    have_model = "" if force else model_up_to_date(plan)
    steps = [s for s in plan.steps if (s.key != "model" or not have_model) and (s.key == "model" or rebuild)]
    progress = Progress(steps, hooks)
    installed: dict = {}
    try:
        for step in steps:
            if hooks.cancelled():
                raise SetupCancelled("setup cancelled")
            hooks.log(f"RSITR setup: {step.title}")
            progress.start(step)
            on_line = None
            if step.key == "requirements":
                on_line = pip_line_tracker(plan.dist.requirements[plan.options.device], progress)
            elif step.key == "model":
                on_line = model_line_tracker(progress, installed)
            python = venv_python(plan.staging_venv) if rebuild else venv_python(plan.venv)
            argv = list(step.argv)
            if not rebuild and step.key == "model":
                argv[0] = str(python)  # the venv is already in place: install the model with it
            try:
                run_command(argv, hooks, on_line, cwd=engine_dir)
            except SetupCancelled:
                raise
            except SetupError as exc:
                raise SetupError(f"{step.title} failed: {exc}") from None
            progress.finish()
        if rebuild:
            swap_into_place(plan.staging_venv, plan.venv)
    finally:
        shutil.rmtree(plan.staging, ignore_errors=True)
    model_dir = installed.get("path") or have_model
    if plan.options.model_source == "folder" and plan.model is None:
        model_dir = str(Path(plan.options.model_folder).expanduser().resolve())
    if model_dir:
        write_install_record(engine_dir, plan_record(plan, str(model_dir)))
    else:
        record = read_install_record(engine_dir)
        record["venv"] = plan.fingerprint
        write_install_record(engine_dir, record)
    changed = rebuild or bool(installed)
    hooks.progress(100.0)
    took = time.monotonic() - t0
    message = (
        f"engine set up in {took:.0f} s: {venv_python(plan.venv)}" + (f", model {model_dir}" if model_dir else "")
        if changed
        else "engine and model are up to date; nothing changed"
    )
    hooks.log(f"RSITR setup: {message}")
    return InstallResult(str(venv_python(plan.venv)), str(model_dir or ""), changed, message)


def remove(engine_dir: Path, hooks: Hooks | None = None) -> str:
    """Delete the engine folder (venv, models, record). Returns a one-line summary."""
    hooks = hooks or Hooks()
    if not engine_dir.exists():
        return f"nothing to remove: {engine_dir} does not exist"
    if not (engine_dir / "install.json").exists() and not (engine_dir / "venv").exists():
        raise SetupError(f"{engine_dir} was not created by RSITR setup (no install.json, no venv); not removing it")
    size = sum(f.stat().st_size for f in engine_dir.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    shutil.rmtree(engine_dir)
    hooks.log(f"RSITR setup: removed {engine_dir} ({size:.0f} MB)")
    return f"removed the engine and models in {engine_dir} ({size:.0f} MB freed)"
