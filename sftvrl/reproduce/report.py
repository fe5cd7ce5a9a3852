"""What a ``reproduce`` run did, per job: status, wall time, peak memory, error; saved as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "skipped", "failed", "blocked"]
"""``ok`` ran and finished; ``skipped`` was already done with the same parameters; ``failed``
raised (its error is recorded); ``blocked`` was not run because a job it needs failed."""


@dataclass
class JobResult:
    """One job's outcome; ``wall_s`` and ``peak_rss_mib`` come from its marker when skipped.

    ``output`` (the executed notebook) and ``log`` are relative to the report's folder, so a
    report committed beside the figures names no path of the machine that wrote it."""

    name: str
    notebook: str
    status: Status
    output: str
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    threads: int | None = None
    gpu: str | None = None
    error: str | None = None
    log: str | None = None


@dataclass
class ReproduceReport:
    """Every job of one ``reproduce`` call, in plan order."""

    tier: str
    quick: bool
    out: str
    workers: int
    wall_s: float = 0.0
    jobs: list[JobResult] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [job.name for job in self.jobs if job.status == "failed"]

    @property
    def blocked(self) -> list[str]:
        return [job.name for job in self.jobs if job.status == "blocked"]

    @property
    def ok(self) -> bool:
        """True when every job ran or was already done."""
        return not self.failed and not self.blocked

    def job(self, name: str) -> JobResult:
        return next(job for job in self.jobs if job.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "failed": self.failed, "blocked": self.blocked}

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON (atomically: a reader never sees half a file)."""
        return write_json(path, self.to_dict())


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


__all__ = ["JobResult", "ReproduceReport", "Status", "write_json"]
