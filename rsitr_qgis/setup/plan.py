"""What "Set up engine" installs, where, how large and with which commands (pure logic, no Qt).

The plugin zip carries ``engine_dist/``: the engine wheel ``rsitr-<ver>-py3-none-any.whl``, pinned
``requirements-cpu.txt`` / ``requirements-gpu.txt`` and ``release.json`` (the default model archive: name,
version, file, sha256, size). Layout of the engine folder (default ``<QGIS profile>/rsitr/engine``)::

    venv/          private virtual environment with the engine and its runtime dependencies
    models/<name>/ model bundles installed by ``python -m engine models install``
    install.json   what is installed (fingerprint of the venv, the model), for "repeated setup changes nothing"
    .staging-*     a setup in progress (removed on success, failure, cancel, or at the next setup)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .python_finder import MIN_VERSION

DIST_DIR = Path(__file__).resolve().parent.parent / "engine_dist"
DEVICE_CPU = "cpu"
DEVICE_GPU = "gpu"
MODEL_DOWNLOAD = "download"  # from the release URL
MODEL_FOLDER = "folder"  # a bundle folder (with model.json) or a folder holding the release archive
MODEL_KEEP = "keep"  # leave the model setting alone

# CPU: measured by tests/plugin/test_install_e2e.py on Linux x86-64, Python 3.11 (wheels 105 MB, venv 381 MB).
# GPU: onnxruntime-gpu 1.31.1 (256 MB wheel) in place of onnxruntime (17 MB): estimated from the wheel sizes, not
# measured here (no GPU machine); the CUDA/cuDNN libraries come with the NVIDIA driver/CUDA install, not counted.
ESTIMATED_MB = {DEVICE_CPU: {"download": 105, "disk": 380}, DEVICE_GPU: {"download": 345, "disk": 750}}
STEP_WEIGHTS = {"venv": 5, "requirements": 60, "engine": 5, "check": 5, "model": 25}


class SetupError(Exception):
    """A setup failure, as one line for the user."""


@dataclass
class ModelRelease:
    name: str
    version: str
    file: str
    sha256: str
    size: int = 0


@dataclass
class EngineDist:
    """The engine files shipped inside the plugin zip."""

    folder: Path
    wheel: Path
    requirements: dict[str, Path]
    engine_version: str
    models: list[ModelRelease]
    requires_python: tuple[int, ...] = MIN_VERSION
    base_url: str = ""  # where this release's archives are published (release.json "base_url")

    @property
    def default_model(self) -> ModelRelease | None:
        return self.models[0] if self.models else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def wheel_requires_python(wheel: Path) -> tuple[int, ...]:
    """The minimum version from the wheel's ``Requires-Python: >=3.X`` (MIN_VERSION when absent)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = zf.read(meta).decode("utf-8", "replace") if meta else ""
    except (OSError, zipfile.BadZipFile):
        return MIN_VERSION
    m = re.search(r"^Requires-Python:\s*>=\s*([0-9]+)\.([0-9]+)", text, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else MIN_VERSION


def load_dist(folder: Path = DIST_DIR) -> EngineDist:
    """Read ``engine_dist/``; a SetupError names what is missing."""
    if not folder.is_dir():
        raise SetupError(f"this plugin build carries no engine ({folder} is missing); install the release plugin zip")
    wheels = sorted(folder.glob("rsitr-*.whl"))
    if not wheels:
        raise SetupError(f"no engine wheel (rsitr-*.whl) in {folder}")
    release_file = folder / "release.json"
    try:
        release = json.loads(release_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read {release_file}: {exc}") from None
    names = release.get("requirements") or {}  # {"cpu": "requirements-engine.txt", "gpu": ...}
    reqs = {d: folder / str(names.get(d) or f"requirements-{d}.txt") for d in (DEVICE_CPU, DEVICE_GPU)}
    for path in reqs.values():
        if not path.is_file():
            raise SetupError(f"missing {path.name} in {folder}")
    models = [
        ModelRelease(str(m["name"]), str(m["version"]), str(m["file"]), str(m["sha256"]), int(m.get("size") or 0))
        for m in release.get("models", [])
    ]
    engine = release.get("engine") or {}
    version = str(engine.get("version") or wheels[-1].name.split("-")[1])
    base_url = str(release.get("base_url") or "")
    return EngineDist(folder, wheels[-1], reqs, version, models, wheel_requires_python(wheels[-1]), base_url)


def detect_gpu(timeout: float = 10.0) -> list[str]:
    """Names of the NVIDIA GPUs that ``nvidia-smi`` reports (empty: none, or no driver)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def venv_python(venv: Path, platform: str = sys.platform) -> Path:
    return venv / ("Scripts/python.exe" if platform.startswith("win") else "bin/python")


@dataclass
class SetupOptions:
    """The user's choices in the setup dialog."""

    engine_dir: Path
    python: str
    device: str = DEVICE_CPU
    index_url: str = ""  # empty: pip's configured index (PyPI by default)
    wheel_dir: str = ""  # a folder of wheels: install offline (pip --no-index --find-links)
    model_source: str = MODEL_DOWNLOAD
    release_url: str = ""  # base URL; the archive is <release_url>/<file>
    model_folder: str = ""  # MODEL_FOLDER: a bundle folder, or a folder holding the release archive
    force: bool = False  # repair: rebuild the venv and fetch the model again even when up to date


@dataclass
class Step:
    key: str  # one of STEP_WEIGHTS
    title: str
    argv: list[str] = field(default_factory=list)


@dataclass
class Plan:
    options: SetupOptions
    dist: EngineDist
    staging: Path  # <engine_dir>/.staging-<pid>: the new venv is built here, then swapped in
    model: ModelRelease | None
    model_url: str
    steps: list[Step]
    download_mb: float
    disk_mb: float
    fingerprint: dict

    @property
    def venv(self) -> Path:
        return self.options.engine_dir / "venv"

    @property
    def staging_venv(self) -> Path:
        return self.staging / "venv"

    @property
    def models_dir(self) -> Path:
        return self.options.engine_dir / "models"

    def summary(self) -> str:
        """What will be installed, where, how large (the setup dialog shows this)."""
        o = self.options
        source = (
            f"offline from the wheel folder {o.wheel_dir}"
            if o.wheel_dir
            else f"from {o.index_url or 'the Python package index (PyPI)'}"
        )
        runtime = "onnxruntime-gpu (CUDA)" if o.device == DEVICE_GPU else "onnxruntime (CPU)"
        lines = [
            f"Engine rsitr {self.dist.engine_version} with {runtime}, rasterio, numpy, tokenizers, FastAPI, uvicorn,"
            f" shapely in a private Python environment, {source}.",
            f"Where: {self.venv} (Python: {o.python}).",
        ]
        if o.model_source == MODEL_DOWNLOAD and self.model is not None:
            lines.append(
                f"Model: {self.model.name} {self.model.version} ({self.model.size / 1e6:.0f} MB) from {self.model_url}"
                f" into {self.models_dir}."
            )
        elif o.model_source == MODEL_FOLDER:
            lines.append(f"Model: from the folder {o.model_folder}.")
        else:
            lines.append("Model: unchanged.")
        dl = f"about {self.download_mb:.0f} MB to download" if self.download_mb else "nothing to download"
        lines.append(f"Size: {dl}, about {self.disk_mb:.0f} MB on disk.")
        return "\n".join(lines)


def folder_size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total / 1e6


def pip_source_args(options: SetupOptions) -> list[str]:
    if options.wheel_dir:
        return ["--no-index", "--find-links", str(Path(options.wheel_dir).resolve())]
    if options.index_url:
        args = ["--index-url", options.index_url]
        parts = urllib.parse.urlsplit(options.index_url)
        if parts.scheme == "http" and parts.hostname:  # a plain-HTTP mirror the user typed in: pip ignores it else
            args += ["--trusted-host", parts.hostname]
        return args
    return []


def model_archive_url(options: SetupOptions, model: ModelRelease) -> str:
    """The archive URL: a file in the chosen folder (offline), else ``<release_url>/<file>``."""
    if options.model_source == MODEL_FOLDER:
        return (Path(options.model_folder) / model.file).resolve().as_uri()
    return f"{options.release_url.rstrip('/')}/{model.file}"


def model_from_folder(folder: str, model: ModelRelease | None) -> tuple[str, bool]:
    """("bundle", path) when ``folder`` is a bundle, ("archive", path) when it holds the release archive."""
    path = Path(folder).expanduser()
    if (path / "model.json").is_file():
        return "bundle", True
    if model is not None and (path / model.file).is_file():
        return "archive", True
    return "", False


def make_fingerprint(options: SetupOptions, dist: EngineDist) -> dict:
    """What decides whether the venv must be rebuilt."""
    return {
        "engine_version": dist.engine_version,
        "wheel_sha256": sha256_file(dist.wheel),
        "requirements_sha256": sha256_file(dist.requirements[options.device]),
        "device": options.device,
        "python": str(options.python),
    }


def build_plan(options: SetupOptions, dist: EngineDist, staging_name: str | None = None) -> Plan:
    """The steps of a setup with these options (commands use the staging venv; nothing runs here)."""
    if options.device not in (DEVICE_CPU, DEVICE_GPU):
        raise SetupError(f"unknown device {options.device!r} (cpu or gpu)")
    if options.wheel_dir and not Path(options.wheel_dir).is_dir():
        raise SetupError(f"wheel folder not found: {options.wheel_dir}")
    staging = options.engine_dir / (staging_name or f".staging-{os.getpid()}")
    py = str(venv_python(staging / "venv"))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *pip_source_args(options)]
    steps = [
        Step("venv", "create the Python environment", [options.python, "-m", "venv", str(staging / "venv")]),
        Step(
            "requirements",
            f"install the engine's dependencies ({options.device.upper()})",
            [*pip, "-r", str(dist.requirements[options.device])],
        ),
        Step("engine", f"install the engine {dist.engine_version}", [*pip, "--no-deps", str(dist.wheel)]),
        Step("check", "check the engine", [py, "-m", "engine", "--version"]),
    ]
    model = dist.default_model
    model_url = ""
    if options.model_source == MODEL_FOLDER:
        kind, ok = model_from_folder(options.model_folder, model)
        if not ok:
            want = f" or the archive {model.file}" if model else ""
            raise SetupError(f"{options.model_folder} holds no model bundle (model.json){want}")
        if kind == "bundle":
            model = None  # used in place
        else:
            model_url = model_archive_url(options, model)
    elif options.model_source == MODEL_DOWNLOAD:
        if model is None:
            raise SetupError("release.json lists no model to download")
        if not options.release_url:
            raise SetupError("no release URL set (RSITR settings or $RSITR_RELEASE_URL)")
        model_url = model_archive_url(options, model)
    else:
        model = None
    if model is not None and model_url:
        models_dir = str(options.engine_dir / "models")
        steps.append(
            Step(
                "model",
                f"install the model {model.name} {model.version}",
                [py, "-m", "engine", "models", "install", "--url", model_url, "--sha256", model.sha256]
                + ["--models-dir", models_dir, "--progress-json"],
            )
        )
    est = ESTIMATED_MB[options.device]
    model_mb = (model.size / 1e6) if (model is not None and model_url) else 0.0
    download = (0.0 if options.wheel_dir else est["download"]) + (
        model_mb if options.model_source == MODEL_DOWNLOAD else 0
    )
    disk = est["disk"] + model_mb * 1.1  # unpacked bundle ~ archive size (ONNX weights do not compress)
    return Plan(options, dist, staging, model, model_url, steps, download, disk, make_fingerprint(options, dist))


def read_install_record(engine_dir: Path) -> dict:
    try:
        return json.loads((engine_dir / "install.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_install_record(engine_dir: Path, record: dict) -> None:
    """Written atomically (temporary file + rename)."""
    tmp = engine_dir / "install.json.tmp"
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, engine_dir / "install.json")


def plan_record(plan: Plan, model_path: str) -> dict:
    rec = {"venv": plan.fingerprint, "model_path": model_path}
    if plan.model is not None:
        rec["model"] = asdict(plan.model)
    return rec
