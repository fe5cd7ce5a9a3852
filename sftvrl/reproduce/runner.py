"""Run a plan of notebooks with papermill: resumable, in parallel where jobs are independent.

Every job runs in a worker process of its own (:mod:`.worker`), with its thread counts (and, on a
machine with several GPUs, one GPU) set through the environment its kernel inherits. A job that
finishes leaves a marker ``<out>/notebooks/<name>.done.json`` (parameters, notebook hash, status,
wall time, peak memory); the next call skips a job whose marker says it succeeded with the same
parameters and notebook, unless a job it needs ran again or the run logs it reads (``Job.reads``:
the figures job reads every run folder) changed since. A killed job has no marker and simply
runs again; the experiment notebooks resume their run folders through the library, so no work is
lost. A failed job records its error; the jobs that need it are blocked, the others go on.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sftvrl.reproduce.kernel import ensure_kernel
from sftvrl.reproduce.memory import wait_with_peak
from sftvrl.reproduce.plan import NOTEBOOKS, TIERS, Job, build_plan
from sftvrl.reproduce.report import JobResult, ReproduceReport, write_json

logger = logging.getLogger(__name__)

RUNTIME_PARAMETERS = frozenset({"threads"})
"""Set per call from the machine, not part of what a job computes: changing them reruns nothing."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ReproduceError(ValueError):
    """A request ``reproduce`` cannot run (unknown tier or job name, bad plan); one-line message."""


def notebook_parameters(path: str | Path) -> list[str]:
    """The names assigned in the notebook's cell tagged ``parameters`` (empty if it has none)."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            names: list[str] = []
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                if isinstance(node, ast.AnnAssign):
                    targets = [node.target]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    return []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


RUN_LOGS = ("metrics.jsonl", "study.json")
"""The files of a run folder that figures are drawn from."""


def logs_fingerprint(folders: Sequence[Path]) -> str:
    """A hash of the name, size and modification time of every run log under ``folders``: it
    changes when a run is added, resumed or redone (reading only file metadata, so it is cheap)."""
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(str(folder).encode() + b"\0")
        if not folder.is_dir():
            continue
        paths = sorted(p for name in RUN_LOGS for p in folder.rglob(name) if p.is_file())
        for path in paths:
            stat = path.stat()
            digest.update(
                f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


def _normalised(parameters: dict[str, Any]) -> Any:
    """Parameters as JSON would give them back (tuples become lists), runtime ones left out."""
    kept = {k: v for k, v in parameters.items() if k not in RUNTIME_PARAMETERS}
    return json.loads(json.dumps(kept, sort_keys=True, default=str))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


JOB_MEMORY = 3 * 2**30
"""Memory set aside per parallel job when ``jobs`` is chosen automatically: the tiny tier's
largest job peaked at 2.5 GiB (V-IRL-VL main; README, "How long it takes")."""


def _available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def auto_jobs(gpus: Sequence[str], cores: int, memory: int | None) -> int:
    """How many notebooks to run at once when not told: one per GPU where there are GPUs, else
    one per core (each job then runs one thread, which beats two threads for one job on the
    tiny models), as many as ``memory`` holds at :data:`JOB_MEMORY` each."""
    if gpus:
        return len(gpus)
    fits = cores if memory is None else memory // JOB_MEMORY
    return max(1, min(cores, fits))


def _gpu_ids() -> list[str]:
    """The CUDA devices jobs may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``.

    Not torch: importing it here would cost seconds and hundreds of MiB in the runner."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def _select(plan: Sequence[Job], only: Sequence[str] | None) -> list[Job]:
    """The jobs named (or matched as ``fnmatch`` patterns) by ``only``, in plan order."""
    if not only:
        return list(plan)
    names = [job.name for job in plan]
    unknown = [p for p in only if not fnmatch.filter(names, p)]
    if unknown:
        raise ReproduceError(f"no job named {unknown[0]!r}; the plan has {names}")
    return [job for job in plan if any(fnmatch.fnmatch(job.name, p) for p in only)]


def _check_plan(plan: Sequence[Job]) -> None:
    names = [job.name for job in plan]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ReproduceError(f"job names must be unique; repeated: {duplicates}")
    for job in plan:
        missing = [n for n in job.needs if n not in names]
        if missing:
            raise ReproduceError(f"job {job.name!r} needs {missing[0]!r}, which is not in the plan")


class _Runner:
    """Schedules one plan: markers, resources, worker processes and the report."""

    def __init__(
        self,
        jobs: list[Job],
        report: ReproduceReport,
        out: Path,
        notebooks: Path,
        threads: int,
        gpus: list[str],
    ) -> None:
        self.jobs = jobs
        self.report = report
        self.out = out
        self.notebooks = notebooks
        self.threads = threads
        self.free_gpus = list(gpus)
        self.folder = out / "notebooks"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kernel = ensure_kernel()
        self.selected = {job.name for job in jobs}
        self.results: dict[str, JobResult] = {}
        self.ran: set[str] = set()

    # -- markers ------------------------------------------------------------------------------
    def marker(self, job: Job) -> Path:
        return self.folder / f"{job.name}.done.json"

    def up_to_date(self, job: Job) -> dict[str, Any] | None:
        """The job's marker if it succeeded with these parameters and this notebook, else None."""
        path, output = self.marker(job), self.folder / f"{job.name}.ipynb"
        source = self.notebooks / job.notebook
        if not (path.is_file() and output.is_file() and source.is_file()):
            return None
        try:
            marker = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        same = (
            marker.get("status") == "ok"
            and marker.get("parameters") == _normalised(job.parameters)
            and marker.get("notebook_sha256") == _sha256(source)
            and marker.get("reads_fingerprint") == self.reads_fingerprint(job)
        )
        return marker if same else None

    def reads_fingerprint(self, job: Job) -> str | None:
        """:func:`logs_fingerprint` of the folders the job reads (None when it reads none)."""
        if not job.reads:
            return None
        return logs_fingerprint([(self.notebooks / folder).resolve() for folder in job.reads])

    # -- one job ------------------------------------------------------------------------------
    def parameters(self, job: Job, source: Path) -> dict[str, Any]:
        """The job's parameters plus the runtime ones its notebook declares; unknown names fail."""
        declared = notebook_parameters(source)
        unknown = [name for name in job.parameters if name not in declared]
        if unknown:
            raise ReproduceError(
                f"{job.notebook} has no parameter {unknown[0]!r} in its 'parameters' cell "
                f"(it declares {declared})"
            )
        runtime = {"threads": self.threads} if "threads" in declared else {}
        return {**job.parameters, **runtime}

    def execute(self, job: Job, gpu: str | None) -> JobResult:
        """Run ``job`` in a worker process and wait for it; never raises for a failing notebook."""
        source = self.notebooks / job.notebook
        output = self.folder / f"{job.name}.ipynb"
        log = self.folder / f"{job.name}.log"
        result_path = self.folder / f".{job.name}.result.json"
        result = JobResult(
            job.name, job.notebook, "failed", f"notebooks/{output.name}", threads=self.threads
        )
        result.gpu, result.log = gpu, f"notebooks/{log.name}"
        start = time.monotonic()
        try:
            if not source.is_file():
                raise ReproduceError(f"notebook {source} not found")
            spec = {
                "input": str(source),
                "output": str(output),
                "parameters": self.parameters(job, source),
                "kernel": self.kernel,
                "cwd": str(source.parent),
                "result": str(result_path),
            }
        except (ReproduceError, OSError, SyntaxError, ValueError) as error:
            result.error = str(error)
            return result
        result_path.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update({name: str(self.threads) for name in THREAD_VARIABLES})
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        command = [sys.executable, "-m", "sftvrl.reproduce.worker", json.dumps(spec)]
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
            try:
                result.peak_rss_mib = wait_with_peak(process)
            except BaseException:
                process.terminate()  # our own child, by its pid; its kernel follows its parent
                process.wait()
                raise
        result.wall_s = round(time.monotonic() - start, 2)
        try:
            outcome = json.loads(result_path.read_text())
            result_path.unlink()
        except (OSError, json.JSONDecodeError):
            code = process.returncode
            outcome = {"status": "failed", "error": f"worker exited with code {code}; see {log}"}
        result.status, result.error = outcome["status"], outcome["error"]
        return result

    def record(self, job: Job, result: JobResult) -> None:
        """Keep ``result``; a job that ran leaves its marker, and the report is rewritten."""
        self.results[job.name] = result
        if result.status in ("ok", "failed"):
            source = self.notebooks / job.notebook
            write_json(
                self.marker(job),
                {
                    "name": job.name,
                    "notebook": job.notebook,
                    "notebook_sha256": _sha256(source) if source.is_file() else None,
                    "parameters": _normalised(job.parameters),
                    "reads_fingerprint": self.reads_fingerprint(job),
                    "status": result.status,
                    "error": result.error,
                    "wall_s": result.wall_s,
                    "peak_rss_mib": result.peak_rss_mib,
                    "threads": result.threads,
                    "gpu": result.gpu,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "output": result.output,
                    "log": result.log,
                },
            )
        if result.status == "ok":
            self.ran.add(job.name)
        level = logging.WARNING if result.status in ("failed", "blocked") else logging.INFO
        detail = f": {result.error}" if result.error else ""
        logger.log(level, "%s %s%s", job.name, result.status, detail)
        self.report.jobs = [self.results[j.name] for j in self.jobs if j.name in self.results]
        self.report.write(self.out / "reproduce_report.json")

    # -- scheduling ---------------------------------------------------------------------------
    def settle(self, job: Job) -> str | None:
        """``"wait"``, ``"blocked"``, ``"skipped"`` or None (ready to run) for a pending job."""
        needs = [name for name in job.needs if name in self.selected]
        if any(
            self.results.get(n) and self.results[n].status in ("failed", "blocked") for n in needs
        ):
            return "blocked"
        if not all(n in self.results for n in needs):
            return "wait"
        if not any(n in self.ran for n in needs) and self.up_to_date(job) is not None:
            return "skipped"
        return None

    def run(self, workers: int) -> None:
        pending = list(self.jobs)
        running: dict[Future[JobResult], tuple[Job, str | None]] = {}
        bar = tqdm(total=len(pending), desc="reproduce", unit="notebook", disable=None)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while pending or running:
                for job in list(pending):
                    state = self.settle(job)
                    if state == "wait":
                        continue
                    if state is None and len(running) >= workers:
                        break  # keep plan order: later jobs wait for a free slot too
                    pending.remove(job)
                    if state == "blocked":
                        result = JobResult(job.name, job.notebook, "blocked", "")
                        result.error = "a job it needs failed"
                        self.record(job, result)
                        bar.update()
                    elif state == "skipped":
                        self.record(job, self.skipped(job))
                        bar.update()
                    else:
                        gpu = self.free_gpus.pop(0) if self.free_gpus else None
                        logger.info("%s: running %s", job.name, job.notebook)
                        running[pool.submit(self.execute, job, gpu)] = (job, gpu)
                if not running:
                    if pending and all(self.settle(job) == "wait" for job in pending):
                        raise ReproduceError("the plan's needs form a cycle")
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job, gpu = running.pop(future)
                    if gpu is not None:
                        self.free_gpus.append(gpu)
                    self.record(job, future.result())
                    bar.set_postfix_str(job.name)
                    bar.update()
        bar.close()

    def skipped(self, job: Job) -> JobResult:
        marker = self.up_to_date(job) or {}
        return JobResult(
            job.name,
            job.notebook,
            "skipped",
            f"notebooks/{job.name}.ipynb",
            wall_s=marker.get("wall_s"),
            peak_rss_mib=marker.get("peak_rss_mib"),
            threads=marker.get("threads"),
            gpu=marker.get("gpu"),
            log=marker.get("log"),
        )


def reproduce(
    tier: str = "tiny",
    quick: bool = False,
    jobs: int | None = None,
    out: str | Path = "figures",
    model: str | None = None,
    only: Sequence[str] | None = None,
    *,
    runs: str | Path | None = None,
    plan: Sequence[Job] | None = None,
    notebooks: str | Path | None = None,
    threads: int | None = None,
) -> ReproduceReport:
    """Run the tier's notebooks (or ``plan``) into ``out``; returns and writes the report.

    ``jobs`` independent notebooks run at once (default :func:`auto_jobs`), each with ``threads``
    threads (default: the usable cores divided among them) and, when there are several CUDA
    devices, one device each.
    ``only`` names jobs (or ``fnmatch`` patterns) to run; the jobs they need are then assumed
    done. ``runs`` is the run-folder root (default :func:`~.plan.default_runs_root`).
    """
    if tier not in TIERS:
        raise ReproduceError(f"unknown tier {tier!r}; choose from {list(TIERS)}")
    if jobs is not None and jobs < 1:
        raise ReproduceError(f"jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ReproduceError(f"threads must be at least 1, got {threads}")
    notebooks = Path(notebooks).resolve() if notebooks is not None else NOTEBOOKS
    if not notebooks.is_dir():
        raise ReproduceError(
            f"notebook folder {notebooks} not found; run from a source checkout "
            "(pip install -e .) or pass notebooks="
        )
    if plan is None:
        plan = build_plan(tier, quick=quick, out=out, model=model, runs=runs, notebooks=notebooks)
    _check_plan(plan)
    selected = _select(plan, only)
    gpus = _gpu_ids()
    if jobs is None:
        jobs = auto_jobs(gpus, _cores(), _available_memory())
    workers = max(1, min(jobs, len(selected)))
    if gpus and workers > 1:
        workers = min(workers, len(gpus))
    else:
        gpus = []  # one job at a time sees every GPU (multi-GPU tiers launch their own processes)
    threads = threads or max(1, _cores() // workers)
    out_dir = Path(out).resolve()
    report = ReproduceReport(tier=tier, quick=quick, out=str(out), workers=workers)
    logger.info(
        "reproduce %s%s: %d notebooks, %d at a time, %d threads each%s",
        tier,
        " (quick)" if quick else "",
        len(selected),
        workers,
        threads,
        f", GPUs {gpus}" if gpus else "",
    )
    start = time.monotonic()
    runner = _Runner(selected, report, out_dir, notebooks, threads, gpus)
    runner.run(workers)
    report.wall_s = round(time.monotonic() - start, 2)
    report.write(out_dir / "reproduce_report.json")
    return report


__all__ = ["ReproduceError", "notebook_parameters", "reproduce"]
