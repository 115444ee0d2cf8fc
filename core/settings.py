"""Every setting of the engine and the dashboard, and the repository's paths, in one place.

Each ``FEWSHOT_*`` environment variable is read here and nowhere else, and read **on every call**: tests and
the dashboard's launcher change them at run time (``monkeypatch.setenv``), so nothing below caches a value.
A malformed value raises :class:`SettingError` naming the variable and what it accepts.

:data:`SETTINGS` lists them all (name, default, what it does); the README's settings table shows the same
list and a test keeps the two equal.

This module imports neither torch nor numpy: the run store (``core.store``) reads its URL from here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ADMINS",
    "CHECKPOINT_DIRS",
    "CHROMIUM",
    "DATABASE_URL",
    "DATA_DIR",
    "DEFAULT_CHECKPOINT_DIRS",
    "DEFAULT_DATABASE_FILE",
    "DEMO_MODE",
    "DEMO_UPLOAD_MB",
    "DEVICE",
    "JOBS_REDIS_URL",
    "JOB_WORKERS",
    "MAX_UPLOAD_MB",
    "OMNIGLOT_ROOT",
    "REPO_ROOT",
    "RUNS_DIR",
    "SETTINGS",
    "SHIPPED_CHECKPOINT_DIR",
    "TUNE_MALLOC",
    "Setting",
    "SettingError",
    "admin_emails",
    "checkpoint_search_dirs",
    "chromium_path",
    "database_url",
    "demo_mode",
    "demo_upload_bytes",
    "device_name",
    "job_queue_file",
    "job_workers",
    "jobs_redis_url",
    "max_upload_bytes",
    "omniglot_root",
    "omniglot_search_order",
    "tune_malloc",
]

# --- Paths -------------------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINT_DIR = REPO_ROOT / "assets" / "checkpoints"
RUNS_DIR = REPO_ROOT / "runs"  # what `python -m core train` writes
DATA_DIR = REPO_ROOT / "data"
DEFAULT_DATABASE_FILE = DATA_DIR / "fewshot.sqlite3"
# Beside the checkout (several worktrees share one copy of the data), else inside it.
SHARED_OMNIGLOT_ROOT = REPO_ROOT.parent / "shared" / "datasets" / "omniglot"
LOCAL_OMNIGLOT_ROOT = DATA_DIR / "omniglot"


class SettingError(ValueError):
    """A ``FEWSHOT_*`` variable holds a value its setting cannot use."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, its default as the README shows it, and what it does."""

    name: str
    default: str
    description: str

    def raw(self) -> str | None:
        """The variable's value with surrounding whitespace removed; None when it is not set."""
        value = os.environ.get(self.name)
        return None if value is None else value.strip()


DEVICE = Setting(
    "FEWSHOT_DEVICE", "auto",
    "Device the engine and the dashboard compute on: `auto` (CUDA, then Apple MPS, then the CPU), `cpu`, "
    "`cuda`, `cuda:N` or `mps`. The CLI's `--device` wins over it.",
)
TUNE_MALLOC = Setting(
    "FEWSHOT_TUNE_MALLOC", "1",
    "`0` keeps glibc's default allocator in `python -m core` and the benchmarks (see *The allocator*); "
    "`1` serves every block from the heap.",
)
OMNIGLOT_ROOT = Setting(
    "FEWSHOT_OMNIGLOT_ROOT", "`../shared/datasets/omniglot` if it exists, else `data/omniglot`",
    "Folder holding the unzipped Omniglot folders (`images_background/`, `images_evaluation/`, ...).",
)
MAX_UPLOAD_MB = Setting(
    "FEWSHOT_MAX_UPLOAD_MB", "20",
    "Largest image file the dashboard accepts, in megabytes (a positive number).",
)
DATABASE_URL = Setting(
    "FEWSHOT_DATABASE_URL", "`sqlite:///<repo>/data/fewshot.sqlite3`",
    "SQLAlchemy URL of the run store (dashboard runs, uploaded images, traces).",
)
DEFAULT_CHECKPOINT_DIRS = Setting(
    "FEWSHOT_DEFAULT_CHECKPOINT_DIRS", "`assets/checkpoints` and `runs`",
    "When set (even to nothing), replaces the folders searched for checkpoints by these "
    "(separated by `:`, `;` on Windows).",
)
CHECKPOINT_DIRS = Setting(
    "FEWSHOT_CHECKPOINT_DIRS", "(none)",
    "More folders searched for checkpoints after the default ones (separated by `:`, `;` on Windows).",
)
CHROMIUM = Setting(
    "FEWSHOT_CHROMIUM", "`/usr/bin/chromium`",
    "The browser that the browser tests and `bench/dashboard_speed.py` drive.",
)

JOBS_REDIS_URL = Setting(
    "FEWSHOT_JOBS_REDIS_URL", "(none: a SQLite queue file beside the run store)",
    "Redis URL of the background-job queue (`redis://host:6379/0`), for workers on several machines "
    "(`python -m core worker` on each); unset, the queue is one SQLite file next to the run store's database.",
)
JOB_WORKERS = Setting(
    "FEWSHOT_JOB_WORKERS", "2",
    "How many jobs one worker process (`python -m core worker`, or the dashboard's own) runs at once.",
)

ADMINS = Setting(
    "FEWSHOT_ADMINS", "(none)",
    "E-mail addresses (separated by commas) of the signed-in users who may delete anyone's runs and cancel anyone's "
    "jobs; only used when sign-in is configured (`[auth]` in `.streamlit/secrets.toml`).",
)
DEMO_MODE = Setting(
    "FEWSHOT_DEMO_MODE", "0",
    "`1` makes the dashboard a read-only public demo: visitors adapt and browse; deleting runs, saving Lab studies, "
    "the Jobs and Tune pages are off, and uploads have a per-session limit (`FEWSHOT_DEMO_UPLOAD_MB`).",
)
DEMO_UPLOAD_MB = Setting(
    "FEWSHOT_DEMO_UPLOAD_MB", "20",
    "In demo mode, the most megabytes of images one browser session may add in all (uploads, drawings, photos); "
    "`FEWSHOT_MAX_UPLOAD_MB` still limits each file.",
)

SETTINGS: tuple[Setting, ...] = (
    DEVICE, TUNE_MALLOC, OMNIGLOT_ROOT, MAX_UPLOAD_MB, DATABASE_URL, DEFAULT_CHECKPOINT_DIRS, CHECKPOINT_DIRS, CHROMIUM,
    JOBS_REDIS_URL, JOB_WORKERS, ADMINS, DEMO_MODE, DEMO_UPLOAD_MB,
)

_SQLITE_FILE_URL = re.compile(r"^sqlite(?:\+\w+)?:///([^?]+)")
_DEVICE_FORM = re.compile(r"^[a-z_]+(:\d+)?$")
_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def device_name() -> str:
    """``$FEWSHOT_DEVICE`` lower-cased (``"auto"`` when unset or empty); ``core.device`` resolves it."""
    value = (DEVICE.raw() or "auto").lower()
    if not _DEVICE_FORM.match(value):
        raise SettingError(f"{DEVICE.name} must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _switch(setting: Setting) -> bool:
    value = (setting.raw() or setting.default).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"{setting.name} must be 1 or 0 (or true/false, yes/no, on/off), got {value!r}")


def tune_malloc() -> bool:
    """``$FEWSHOT_TUNE_MALLOC`` as a switch (default on)."""
    return _switch(TUNE_MALLOC)


def demo_mode() -> bool:
    """``$FEWSHOT_DEMO_MODE`` as a switch (default off): the dashboard is a read-only public demo."""
    return _switch(DEMO_MODE)


def demo_upload_bytes() -> int:
    """In demo mode, the most bytes of images one session may add: ``$FEWSHOT_DEMO_UPLOAD_MB`` megabytes
    (default 20), in bytes."""
    return _megabytes(DEMO_UPLOAD_MB)


def admin_emails() -> frozenset[str]:
    """``$FEWSHOT_ADMINS``: the admins' e-mail addresses, lower-cased (none when unset). Each must look like an
    address (``name@host``), so that a typo does not silently make nobody an admin."""
    addresses = frozenset(part.strip().lower() for part in (ADMINS.raw() or "").split(",") if part.strip())
    malformed = sorted(address for address in addresses if not _EMAIL.fullmatch(address))
    if malformed:
        raise SettingError(f"{ADMINS.name} must be e-mail addresses separated by commas, got {', '.join(malformed)}")
    return addresses


def omniglot_search_order() -> tuple[Path, ...]:
    """Where Omniglot is looked for, first match wins: ``$FEWSHOT_OMNIGLOT_ROOT`` when set, else the shared
    copy beside the checkout, else ``data/omniglot``."""
    configured = OMNIGLOT_ROOT.raw()
    if configured:
        return (Path(configured).expanduser(),)
    return SHARED_OMNIGLOT_ROOT, LOCAL_OMNIGLOT_ROOT


def omniglot_root() -> Path:
    """The first folder of :func:`omniglot_search_order` that exists, else its last one (where a download goes).

    A configured ``$FEWSHOT_OMNIGLOT_ROOT`` is returned even when missing, so that the error names it.
    """
    order = omniglot_search_order()
    return next((folder for folder in order[:-1] if folder.is_dir()), order[-1])


def max_upload_bytes() -> int:
    """Largest accepted upload: ``$FEWSHOT_MAX_UPLOAD_MB`` megabytes (default 20), in bytes."""
    return _megabytes(MAX_UPLOAD_MB)


def _megabytes(setting: Setting) -> int:
    value = setting.raw() or setting.default
    try:
        megabytes = float(value)
    except ValueError:
        raise SettingError(f"{setting.name} must be a number of megabytes, got {value!r}") from None
    if not 0 < megabytes < float("inf"):
        raise SettingError(f"{setting.name} must be a positive number of megabytes, got {value!r}")
    return int(megabytes * 1024 * 1024)


def database_url() -> str:
    """``$FEWSHOT_DATABASE_URL``, else the SQLite file ``data/fewshot.sqlite3`` in the checkout."""
    return DATABASE_URL.raw() or f"sqlite:///{DEFAULT_DATABASE_FILE}"


def jobs_redis_url() -> str | None:
    """``$FEWSHOT_JOBS_REDIS_URL`` (a ``redis://`` or ``rediss://`` URL), None when unset or empty."""
    value = JOBS_REDIS_URL.raw()
    if not value:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise SettingError(f"{JOBS_REDIS_URL.name} must be a redis://, rediss:// or unix:// URL, got {value!r}")
    return value


def job_workers() -> int:
    """``$FEWSHOT_JOB_WORKERS``: jobs a worker process runs at once (default 2, at least 1)."""
    value = JOB_WORKERS.raw() or JOB_WORKERS.default
    if not value.isdigit() or int(value) < 1:
        raise SettingError(f"{JOB_WORKERS.name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def job_queue_file() -> Path:
    """The embedded job queue's SQLite file: beside the run store's SQLite database (``fewshot.sqlite3`` ->
    ``fewshot.jobs.sqlite3``); for any other store (PostgreSQL, in-memory SQLite) ``data/jobs-<hash>.sqlite3``,
    named by a hash of the store's URL, so that two stores (two deployments, two test sessions) never share a
    queue whose jobs name rows of the other."""
    url = database_url()
    match = _SQLITE_FILE_URL.match(url)
    database = match.group(1) if match else ""
    if database and database != ":memory:":
        path = Path(database).expanduser()
        return path.with_name(f"{path.stem}.jobs.sqlite3")
    return DATA_DIR / f"jobs-{hashlib.sha256(url.encode()).hexdigest()[:12]}.sqlite3"


def _paths(value: str) -> list[Path]:
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def checkpoint_search_dirs() -> list[Path]:
    """The folders searched for checkpoints: the default ones (``assets/checkpoints``, ``runs``, or
    ``$FEWSHOT_DEFAULT_CHECKPOINT_DIRS`` when set, even to nothing), then ``$FEWSHOT_CHECKPOINT_DIRS``."""
    defaults = DEFAULT_CHECKPOINT_DIRS.raw()
    base = [SHIPPED_CHECKPOINT_DIR, RUNS_DIR] if defaults is None else _paths(defaults)
    return [*base, *_paths(CHECKPOINT_DIRS.raw() or "")]


def chromium_path() -> Path:
    """The Chromium binary the browser tests and the dashboard benchmark drive (``$FEWSHOT_CHROMIUM``)."""
    return Path(CHROMIUM.raw() or "/usr/bin/chromium").expanduser()
