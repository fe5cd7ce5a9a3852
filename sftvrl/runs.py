"""Run folders: a run is a folder holding everything needed to trust, plot and resume it.

::

    runs/gp_l_sft/
      config.yaml               the resolved config (defaults included); marks the folder as a run
      provenance.json           seed, git commit + dirty flag, versions, command, host, devices
      git.diff                  uncommitted changes of the sftvrl checkout, when it was dirty
      metrics.jsonl             one JSON object per line: step, time, then the caller's metrics
      metrics.discarded.jsonl   lines dropped on resume (work that is redone), kept for audit
      checkpoints/checkpoint-<step>/COMPLETE   a checkpoint counts only with its marker

Writes are crash-safe: a metric line is appended with a single ``write`` and ``fsync``, and a reader
tolerates a torn last line; a checkpoint is written into a temporary folder and renamed into place
with its ``COMPLETE`` marker, so a killed run never leaves a checkpoint that looks whole but is not.
:meth:`Run.resume` reopens a killed run at its latest complete checkpoint and drops the metric lines
logged after it, so the resumed run neither loses nor repeats them. Convention for trainers: log
the metrics of step ``s`` before writing checkpoint ``s``.

Only one process should write a run folder (the main process under accelerate).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftvrl.config import (
    ConfigError,
    _write_text_atomic,
    config_to_dict,
    dump_yaml,
    flatten_config,
    load_config,
    load_yaml,
    save_config,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHECKPOINT_MARKER",
    "Run",
    "RunError",
    "busy_elsewhere",
    "collect_provenance",
    "exclusive",
    "git_info",
    "read_metric_records",
    "read_metrics",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
METRICS_FILE = "metrics.jsonl"
DISCARDED_FILE = "metrics.discarded.jsonl"
GIT_DIFF_FILE = "git.diff"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_MARKER = "COMPLETE"
_RUN_FILES = (CONFIG_FILE, PROVENANCE_FILE, METRICS_FILE, DISCARDED_FILE, GIT_DIFF_FILE)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"
_RESERVED_KEYS = ("step", "time")

PACKAGES = (
    "sftvrl",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "numpy",
    "pandas",
    "pyyaml",
    "gymnasium",
    "bitsandbytes",
)
"""Packages whose versions go into ``provenance.json`` (``None`` when not installed)."""

_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "SLURM_JOB_ID",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "HF_HUB_OFFLINE",
)


class RunError(RuntimeError):
    """A run folder that cannot be created, resumed or read; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Provenance


def _git(cwd: Path, *args: str) -> str | None:
    """Output of a read-only git command, or None if git or the repository is unavailable."""
    try:
        result = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        logger.debug("git %s failed: %s", " ".join(args), err)
        return None
    if result.returncode != 0:
        return None
    return result.stdout


def git_info(path: str | Path) -> dict[str, Any] | None:
    """Commit, branch and dirty state of the git checkout containing ``path`` (None if none).

    ``dirty`` counts modified, staged and untracked files (ignored files do not count);
    ``changed`` lists up to 50 of them. Only read-only git commands are run.
    """
    path = Path(path)
    top = _git(path, "rev-parse", "--show-toplevel")
    commit = _git(path, "rev-parse", "HEAD")
    if top is None or commit is None:
        return None
    status = _git(path, "status", "--porcelain") or ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    branch = (_git(path, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    return {
        "root": top.strip(),
        "commit": commit.strip(),
        "branch": branch,
        "dirty": bool(changed),
        "changed": changed[:50],
    }


def _package_checkout() -> Path | None:
    """The git checkout that holds this sftvrl package, if it runs from one."""
    package_dir = Path(__file__).resolve().parent
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != package_dir.parent:
        return None  # installed elsewhere (a wheel inside some other repository, site-packages)
    return package_dir.parent


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cuda_info() -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    info: dict[str, Any] = {"torch_cuda": torch.version.cuda, "available": False, "devices": []}
    try:
        if torch.cuda.is_available():
            info["available"] = True
            info["devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
    except (RuntimeError, AssertionError) as err:  # a broken driver should not stop a run
        info["error"] = str(err)
    return info


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def collect_provenance(seed: int, *, source_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything needed to say which code, on which machine, produced a run.

    ``source_dir`` is the git checkout to describe; by default the one sftvrl runs from.
    """
    checkout = Path(source_dir) if source_dir is not None else _package_checkout()
    return {
        "seed": seed,
        "start_time": _now(),
        "hostname": socket.gethostname(),
        "command": list(sys.argv),
        "cwd": os.getcwd(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": _package_versions(),
        "git": git_info(checkout) if checkout is not None else None,
        "cuda": _cuda_info(),
        "env": {name: os.environ[name] for name in _ENV_VARS if name in os.environ},
    }


# --------------------------------------------------------------------------------------------
# Metrics files


def _jsonable(value: Any, key: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, key) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _jsonable(value.item(), key)
        except (ValueError, RuntimeError) as err:  # a tensor with several elements
            raise TypeError(
                f"metric {key!r}: expected a scalar, got {type(value).__name__}"
            ) from err
    raise TypeError(f"metric {key!r}: cannot store {type(value).__name__} in metrics.jsonl")


def _parse_lines(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    """The (line, record) pairs of a metrics file and the torn tail (text) if the file has one."""
    if not path.exists():
        return [], None
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    records: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RunError(
                f"{path}:{number}: corrupt metrics line ({err.msg}); only the last line may be "
                "torn by a crash. Remove or fix that line by hand."
            ) from err
        if not isinstance(record, dict) or "step" not in record:
            raise RunError(f"{path}:{number}: not a metrics record (a JSON object with 'step')")
        records.append((line, record))
    torn = None
    if tail.strip():
        try:  # a complete record whose newline was cut off is still a record
            record = json.loads(tail)
            if isinstance(record, dict) and "step" in record:
                records.append((tail, record))
            else:
                torn = tail
        except json.JSONDecodeError:
            torn = tail
    if torn is not None:
        logger.warning("%s: ignoring a torn last line (the run was killed mid-write)", path)
    return records, torn


def _metrics_file(path: str | Path) -> Path:
    path = Path(path)
    return path / METRICS_FILE if path.is_dir() else path


def read_metric_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics file (or a run folder), in the order they were logged."""
    file = _metrics_file(path)
    if not file.exists():
        raise RunError(f"no metrics file at {file}; is {path} a run folder?")
    records, _ = _parse_lines(file)
    return [record for _, record in records]


def read_metrics(path: str | Path) -> pd.DataFrame:
    """A run's metrics as a DataFrame (one row per logged line; ``step`` and ``time`` first)."""
    import pandas as pd

    records = read_metric_records(path)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for column in reversed(_RESERVED_KEYS):
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="int64" if column == "step" else "float64")
        frame.insert(0, column, frame.pop(column))
    return frame


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _append_bytes(path: Path, data: bytes) -> None:
    """Append with one O_APPEND write (looped only on a short write) and fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_file(path: str | Path) -> Path:
    """The lock of run folder ``path``: ``.<name>.lock`` beside it (the folder may not exist yet)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold a lock named after the run folder ``path`` while this process trains it.

    Several processes may be asked for the same run: ``make reproduce JOBS=N`` runs notebooks that
    share an Init checkpoint, or run the same study. The first to get here trains it; the others
    wait, then find it finished (callers check for the finished run inside the lock). The lock is
    an advisory ``flock`` on ``.<name>.lock`` beside the folder, released when the process ends,
    even by a crash; where ``fcntl`` does not exist (Windows) there is no lock.
    """
    lock = _lock_file(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process that is training %s", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def busy_elsewhere(path: str | Path) -> bool:
    """Whether another process holds :func:`exclusive`'s lock on ``path`` right now.

    A peek, not a reservation: the answer may change the moment it is given. Callers use it to
    do other work first (``run_study`` trains another seed) instead of waiting on the lock.
    """
    lock = _lock_file(path)
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = flatten_config(old), flatten_config(new)
    missing = object()
    return [
        f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing) and not _both_nan(a.get(key), b.get(key))
    ]


def _both_nan(x: Any, y: Any) -> bool:
    return isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)


# --------------------------------------------------------------------------------------------
# Runs


class Run:
    """An open run folder. Make one with :meth:`create` or :meth:`resume`, not the constructor.

    ``resume_step`` is the step of the checkpoint the run continues from (None: start afresh);
    ``resumed`` says whether an existing run was reopened.
    """

    def __init__(
        self,
        path: Path,
        config: Any,
        seed: int,
        provenance: dict[str, Any],
        *,
        resumed: bool = False,
        resume_step: int | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.seed = seed
        self.provenance = provenance
        self.resumed = resumed
        self.resume_step = resume_step

    def __repr__(self) -> str:
        state = f", resumed at step {self.resume_step}" if self.resumed else ""
        return f"Run({str(self.path)!r}, seed={self.seed}{state})"

    # ---- files

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoints_path(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` is a run folder (it has a ``config.yaml``, written last on creation)."""
        return (Path(path) / CONFIG_FILE).is_file()

    # ---- creating and resuming

    @classmethod
    def create(
        cls,
        root: str | Path,
        name: str,
        config: Any,
        *,
        seed: int,
        exist_ok: bool = False,
        source_dir: str | Path | None = None,
    ) -> Run:
        """Make ``root/name/`` for a new run, or reopen it if it is the same run, killed.

        An existing run folder with the same resolved config and seed is resumed (see
        :meth:`resume`), so re-running a command continues its work. Any other existing,
        non-empty folder is an error, unless ``exist_ok``: then a different run's files are moved
        to ``root/name/replaced-<time>/`` (nothing is deleted) and a new run starts there.
        ``source_dir`` is the git checkout recorded in the provenance (default: sftvrl's own).
        """
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise RunError(f"invalid run name {name!r}: use a relative name such as 'gp_l_sft'")
        path = Path(root) / name
        config_data = config_to_dict(config)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} exists and is a file, not a run folder; choose another name")
        if path.is_dir() and any(path.iterdir()):
            if cls.is_run(path):
                differences = cls._differences(path, config_data, seed)
                if not differences:
                    logger.info("resuming run %s (same config and seed)", path)
                    return cls._reopen(path, config)
                if not exist_ok:
                    raise RunError(
                        f"run folder {path} already holds a different run "
                        f"({'; '.join(differences[:5])}"
                        f"{'; ...' if len(differences) > 5 else ''}). Choose another name, "
                        "delete the folder, or pass exist_ok=True to move its files aside."
                    )
            elif not exist_ok:
                raise RunError(
                    f"{path} exists, is not empty and is not a run folder (no {CONFIG_FILE}). "
                    "Choose another name or pass exist_ok=True to use it anyway."
                )
            cls._move_aside(path)
        path.mkdir(parents=True, exist_ok=True)

        # config.yaml is written last: it marks a complete run folder.
        (path / METRICS_FILE).touch()
        provenance = collect_provenance(seed, source_dir=source_dir)
        provenance["config_sha256"] = hashlib.sha256(
            dump_yaml(config_data).encode("utf-8")
        ).hexdigest()
        git = provenance.get("git")
        if git and git.get("dirty"):
            diff = _git(Path(git["root"]), "diff", "HEAD")
            if diff:
                _write_text_atomic(path / GIT_DIFF_FILE, diff)
        _write_text_atomic(path / PROVENANCE_FILE, json.dumps(provenance, indent=2) + "\n")
        save_config(config, path / CONFIG_FILE)
        logger.info("created run %s", path)
        return cls(path, config, seed, provenance)

    @classmethod
    def resume(cls, path: str | Path, config_cls: type | None = None) -> Run:
        """Reopen a (killed) run at its latest complete checkpoint.

        The config comes from ``config.yaml`` (as ``config_cls`` if given, else a dict). Metric
        lines with a step after the checkpoint (or all of them, if there is no checkpoint) are
        moved to ``metrics.discarded.jsonl``, since that work is redone.
        """
        path = Path(path)
        if not cls.is_run(path):
            hint = " (the folder does not exist)" if not path.exists() else ""
            raise RunError(
                f"{path} is not a run folder: no {CONFIG_FILE}{hint}. Start it with Run.create."
            )
        config_file = path / CONFIG_FILE
        if config_cls is not None:
            try:
                config = load_config(config_cls, config_file)
            except ConfigError as err:
                raise RunError(
                    f"cannot resume {path}: its config no longer fits {config_cls.__name__}: {err}"
                ) from err
        else:
            config = load_yaml(config_file.read_text(encoding="utf-8")) or {}
        return cls._reopen(path, config)

    @classmethod
    def _reopen(cls, path: Path, config: Any) -> Run:
        provenance_file = path / PROVENANCE_FILE
        try:
            provenance = json.loads(provenance_file.read_text(encoding="utf-8"))
            seed = int(provenance["seed"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RunError(
                f"cannot resume {path}: {provenance_file.name} is missing or unreadable ({err})"
            ) from err
        run = cls(path, config, seed, provenance, resumed=True)
        latest = run.latest_checkpoint()
        run.resume_step = None if latest is None else run.checkpoint_step(latest)
        dropped = run.truncate_metrics_after(run.resume_step)
        recorded_root = (provenance.get("git") or {}).get("root")
        checkout = Path(recorded_root) if recorded_root else _package_checkout()
        resumes = provenance.setdefault("resumes", [])
        resumes.append(
            {
                "time": _now(),
                "hostname": socket.gethostname(),
                "command": list(sys.argv),
                "from_step": run.resume_step,
                "metrics_discarded": dropped,
                "git": git_info(checkout) if checkout is not None else None,
            }
        )
        _write_text_atomic(provenance_file, json.dumps(provenance, indent=2) + "\n")
        logger.info(
            "resumed %s from %s; %d metric lines discarded",
            path,
            f"step {run.resume_step}" if latest else "the start (no complete checkpoint)",
            dropped,
        )
        return run

    @staticmethod
    def _differences(path: Path, config_data: dict[str, Any], seed: int) -> list[str]:
        try:
            saved = load_yaml((path / CONFIG_FILE).read_text(encoding="utf-8")) or {}
            saved_seed = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))["seed"]
        except (OSError, ValueError, KeyError) as err:
            return [f"unreadable run files ({err})"]
        differences = _config_diff(saved, load_yaml(dump_yaml(config_data)) or {})
        if saved_seed != seed:
            differences.insert(0, f"seed: {saved_seed!r} -> {seed!r}")
        return differences

    @staticmethod
    def _move_aside(path: Path) -> None:
        aside = path / f"replaced-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
        moved = False
        for name in (*_RUN_FILES, CHECKPOINTS_DIR):
            if (path / name).exists():
                aside.mkdir(exist_ok=True)
                os.replace(path / name, aside / name)
                moved = True
        if moved:
            logger.warning("moved the previous run files of %s to %s", path, aside)

    # ---- metrics

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Append one line ``{"step", "time", **metrics}`` to ``metrics.jsonl``, durably."""
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        clash = [key for key in _RESERVED_KEYS if key in metrics]
        if clash:
            raise ValueError(f"metric names {clash} are reserved; the run adds step and time")
        record: dict[str, Any] = {"step": step, "time": round(time.time(), 3)}
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise TypeError(f"metric names must be strings, got {key!r}")
            record[key] = _jsonable(value, key)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        _append_bytes(self.metrics_path, line.encode("utf-8"))

    def metric_records(self) -> list[dict[str, Any]]:
        """The logged metrics as a list of dicts."""
        return read_metric_records(self.metrics_path)

    def metrics(self) -> pd.DataFrame:
        """The logged metrics as a DataFrame (see :func:`read_metrics`)."""
        return read_metrics(self.metrics_path)

    def truncate_metrics_after(self, step: int | None) -> int:
        """Drop the metric lines with a step after ``step`` (all of them if None), and a torn tail.

        Dropped lines are appended to ``metrics.discarded.jsonl``; returns how many were dropped.
        """
        records, torn = _parse_lines(self.metrics_path)
        keep = [line for line, rec in records if step is not None and rec["step"] <= step]
        drop = [line for line, rec in records if step is None or rec["step"] > step]
        if not drop and torn is None:
            return 0
        if drop:
            _append_bytes(self.path / DISCARDED_FILE, "".join(f"{x}\n" for x in drop).encode())
        _write_text_atomic(self.metrics_path, "".join(f"{line}\n" for line in keep))
        return len(drop)

    # ---- checkpoints

    def checkpoint_dir(self, step: int) -> Path:
        """Where the checkpoint of ``step`` lives once complete (HF Trainer's naming)."""
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        return self.checkpoints_path / f"checkpoint-{step}"

    @staticmethod
    def checkpoint_step(path: str | Path) -> int:
        """The step of a checkpoint folder, from its name ``checkpoint-<step>``."""
        match = _CHECKPOINT_RE.match(Path(path).name)
        if not match:
            raise ValueError(f"{path} is not named checkpoint-<step>")
        return int(match.group(1))

    @contextlib.contextmanager
    def checkpoint(self, step: int) -> Iterator[Path]:
        """Write a checkpoint atomically: save into the yielded temporary folder; on exit it is
        marked complete and renamed to :meth:`checkpoint_dir`. On an exception it is removed.
        """
        final = self.checkpoint_dir(step)
        tmp = self.checkpoints_path / f"{_TMP_PREFIX}{step}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
        self._write_marker(tmp, step)
        old = None
        if final.exists():  # the same step saved again (e.g. redone after a resume)
            old = self.checkpoints_path / f"{_TMP_PREFIX}{step}-{os.getpid()}-old"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoints_path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def mark_checkpoint_complete(self, step: int) -> Path:
        """Mark a checkpoint written by someone else (e.g. HF Trainer's ``on_save``) complete."""
        folder = self.checkpoint_dir(step)
        if not folder.is_dir():
            raise RunError(f"no checkpoint folder {folder} to mark complete")
        self._write_marker(folder, step)
        return folder

    @staticmethod
    def _write_marker(folder: Path, step: int) -> None:
        _fsync_dir(folder)
        text = json.dumps({"step": step, "time": _now()}) + "\n"
        _write_text_atomic(folder / CHECKPOINT_MARKER, text)
        _fsync_dir(folder)

    def checkpoints(self, *, complete_only: bool = True) -> list[Path]:
        """Checkpoint folders sorted by step (only complete ones, unless asked)."""
        if not self.checkpoints_path.is_dir():
            return []
        found = []
        for folder in self.checkpoints_path.iterdir():
            match = _CHECKPOINT_RE.match(folder.name)
            if not (match and folder.is_dir()):
                continue
            if complete_only and not (folder / CHECKPOINT_MARKER).is_file():
                continue
            found.append((int(match.group(1)), folder))
        return [folder for _, folder in sorted(found)]

    def latest_checkpoint(self) -> Path | None:
        """The complete checkpoint with the highest step, or None."""
        complete = self.checkpoints()
        return complete[-1] if complete else None

    def prune_checkpoints(self, keep: int) -> list[Path]:
        """Delete all but the ``keep`` newest complete checkpoints, plus leftovers of killed
        writes (incomplete ones older than the newest complete, stale temporary folders).
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the checkpoint to resume from), got {keep}")
        complete = self.checkpoints()
        remove = complete[:-keep]
        newest = self.checkpoint_step(complete[-1]) if complete else None
        for folder in self.checkpoints(complete_only=False):
            incomplete = not (folder / CHECKPOINT_MARKER).is_file()
            if incomplete and newest is not None and self.checkpoint_step(folder) < newest:
                remove.append(folder)
        if self.checkpoints_path.is_dir():
            own = f"-{os.getpid()}"
            for folder in self.checkpoints_path.glob(f"{_TMP_PREFIX}*"):
                if not folder.name.endswith(own):
                    remove.append(folder)
        for folder in remove:
            shutil.rmtree(folder)
        return sorted(remove)
