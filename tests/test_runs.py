"""Run folders: contents, provenance, crash-safe metrics, atomic checkpoints and resume."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from sftvrl.config import load_config
from sftvrl.runs import (
    CHECKPOINT_MARKER,
    Run,
    RunError,
    busy_elsewhere,
    collect_provenance,
    git_info,
    read_metric_records,
    read_metrics,
)

REPO = Path(__file__).resolve().parent.parent
HAS_GIT = shutil.which("git") is not None


@dataclass
class Train:
    lr: float = 1e-5
    max_steps: int = 10


@dataclass
class Config:
    task: str = "gp-l"
    train: Train = field(default_factory=Train)
    seeds: list[int] = field(default_factory=lambda: [0, 1])


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A throwaway git repository with one commit."""
    if not HAS_GIT:
        pytest.skip("git is not installed")
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q")
    (path / "code.py").write_text("x = 1\n")
    _git(path, "add", "code.py")
    _git(path, "commit", "-q", "-m", "first")
    return path


def test_create_writes_config_provenance_and_metrics(tmp_path: Path, repo: Path):
    config = Config(train=Train(lr=3e-4))
    run = Run.create(tmp_path / "runs", "gp_l_sft", config, seed=7, source_dir=repo)
    assert run.path == tmp_path / "runs" / "gp_l_sft"
    assert sorted(p.name for p in run.path.iterdir()) == [
        "config.yaml",
        "metrics.jsonl",
        "provenance.json",
    ]
    assert load_config(Config, run.path / "config.yaml") == config
    provenance = json.loads((run.path / "provenance.json").read_text())
    assert provenance["seed"] == 7
    assert provenance["git"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert provenance["git"]["dirty"] is False
    assert provenance["packages"]["torch"] == importlib.metadata.version("torch")
    assert set(provenance["packages"]) >= {
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "numpy",
        "sftvrl",
    }
    assert provenance["command"] == sys.argv
    assert provenance["python"] == sys.version.split()[0]
    assert provenance["hostname"] and provenance["start_time"] and provenance["platform"]
    assert provenance["cuda"]["available"] == torch.cuda.is_available()
    assert len(provenance["cuda"]["devices"]) == torch.cuda.device_count()
    assert len(provenance["config_sha256"]) == 64
    assert run.resumed is False and run.resume_step is None


def test_dirty_checkout_is_flagged_and_its_diff_saved(tmp_path: Path, repo: Path):
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("")
    info = git_info(repo)
    assert info is not None and info["dirty"] is True
    assert sorted(info["changed"]) == ["code.py", "new.py"]
    run = Run.create(tmp_path, "r", Config(), seed=0, source_dir=repo)
    assert "+x = 2" in (run.path / "git.diff").read_text()
    assert git_info(tmp_path / "not-a-repo-at-all") is None


@pytest.mark.skipif(not (HAS_GIT and (REPO / ".git").exists()), reason="not a git checkout")
def test_provenance_records_this_checkout_by_default():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    provenance = collect_provenance(3)
    assert provenance["git"]["commit"] == head
    assert Path(provenance["git"]["root"]).resolve() == REPO
    assert isinstance(provenance["git"]["dirty"], bool)


def test_metrics_are_logged_with_step_and_time(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    before = time.time()
    run.log({"loss": np.float32(0.5), "gflops": 1.5e9, "acc": torch.tensor(0.25)}, step=0)
    run.log({"loss": 0.25, "split": "ood", "nested": {"a": np.int64(3)}}, step=1)
    records = read_metric_records(run.path)
    assert [r["step"] for r in records] == [0, 1]
    assert before - 1 <= records[0]["time"] <= time.time() + 1
    assert records[0]["loss"] == 0.5 and records[0]["acc"] == 0.25
    assert records[1]["nested"] == {"a": 3}
    frame = run.metrics()
    assert list(frame.columns[:2]) == ["step", "time"]
    assert frame["loss"].tolist() == [0.5, 0.25]
    assert frame["gflops"].iloc[0] == 1.5e9
    # every line is a complete JSON object ending in a newline
    text = run.metrics_path.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())


def test_log_rejects_what_it_cannot_store(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    with pytest.raises(ValueError, match="reserved"):
        run.log({"step": 3}, step=3)
    with pytest.raises(ValueError, match="non-negative int"):
        run.log({"loss": 1.0}, step=-1)
    with pytest.raises(ValueError, match="non-negative int"):
        run.log({"loss": 1.0}, step=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'weights'.*scalar"):
        run.log({"weights": torch.zeros(3)}, step=0)
    with pytest.raises(TypeError, match="'obj'"):
        run.log({"obj": object()}, step=0)
    assert run.metric_records() == []


def test_empty_metrics_frame_has_step_and_time(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    frame = read_metrics(run.path / "metrics.jsonl")
    assert list(frame.columns) == ["step", "time"] and len(frame) == 0


def test_a_torn_last_line_is_tolerated_and_repaired_on_resume(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    with run.checkpoint(2):
        pass
    with open(run.metrics_path, "ab") as f:
        f.write(b'{"step":3,"time":1.0,"lo')  # the process died mid-write
    assert [r["step"] for r in read_metric_records(run.path)] == [0, 1, 2]
    resumed = Run.resume(run.path)
    assert resumed.resume_step == 2
    resumed.log({"loss": 0.25}, step=3)
    assert [r["step"] for r in read_metric_records(run.path)] == [0, 1, 2, 3]
    assert run.metrics_path.read_text().endswith("\n")


def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    run.log({"a": 1}, step=0)
    with open(run.metrics_path, "a") as f:
        f.write("garbage\n")
    run.log({"a": 2}, step=1)
    with pytest.raises(RunError, match=r"metrics\.jsonl:2: corrupt metrics line"):
        run.metrics()


def test_checkpoints_are_atomic_and_need_their_marker(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    assert run.latest_checkpoint() is None
    with run.checkpoint(10) as folder:
        assert folder != run.checkpoint_dir(10)
        assert not run.checkpoint_dir(10).exists()
        torch.save({"w": torch.ones(2)}, folder / "model.pt")
    assert run.latest_checkpoint() == run.checkpoint_dir(10)
    assert (run.checkpoint_dir(10) / CHECKPOINT_MARKER).is_file()
    assert torch.load(run.checkpoint_dir(10) / "model.pt")["w"].sum() == 2

    # a writer killed mid-save leaves a folder without its marker: it is not a checkpoint
    half = run.checkpoint_dir(20)
    half.mkdir()
    (half / "model.pt").write_bytes(b"trunc")
    assert run.latest_checkpoint() == run.checkpoint_dir(10)

    # an exception while saving leaves nothing behind
    with pytest.raises(RuntimeError, match="disk full"), run.checkpoint(30) as folder:
        (folder / "model.pt").write_bytes(b"x")
        raise RuntimeError("disk full")
    assert not run.checkpoint_dir(30).exists()
    assert not any(p.name.startswith(".tmp") for p in run.checkpoints_path.iterdir())

    # a checkpoint written by someone else (HF Trainer) counts once marked
    run.mark_checkpoint_complete(20)
    assert run.latest_checkpoint() == half
    assert Run.checkpoint_step(half) == 20
    with pytest.raises(RunError, match="no checkpoint folder"):
        run.mark_checkpoint_complete(40)


def test_saving_the_same_step_again_replaces_it(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    for value in (b"old", b"new"):
        with run.checkpoint(5) as folder:
            (folder / "state").write_bytes(value)
    assert (run.checkpoint_dir(5) / "state").read_bytes() == b"new"
    assert [p.name for p in run.checkpoints_path.iterdir()] == ["checkpoint-5"]


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    for step in (1, 2, 3, 4):
        with run.checkpoint(step) as folder:
            (folder / "w").write_text(str(step))
    run.checkpoint_dir(0).mkdir()  # incomplete leftover, older than the newest complete
    run.checkpoint_dir(9).mkdir()  # incomplete and newer: may still be being written
    (run.checkpoints_path / ".tmp-checkpoint-7-999999").mkdir()  # a killed writer's temp folder
    removed = run.prune_checkpoints(keep=2)
    assert {p.name for p in removed} == {
        "checkpoint-0",
        "checkpoint-1",
        "checkpoint-2",
        ".tmp-checkpoint-7-999999",
    }
    assert [Run.checkpoint_step(p) for p in run.checkpoints()] == [3, 4]
    assert run.checkpoint_dir(9).exists()
    with pytest.raises(ValueError, match="at least 1"):
        run.prune_checkpoints(keep=0)


def test_resume_drops_metrics_after_the_checkpoint_and_neither_loses_nor_repeats(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=5)
    for step in range(10):
        run.log({"loss": float(step)}, step=step)
        if step in (3, 6):
            with run.checkpoint(step) as folder:
                (folder / "step").write_text(str(step))
    # killed after logging step 9: steps 7..9 will be redone from checkpoint 6
    resumed = Run.resume(run.path, Config)
    assert resumed.resumed and resumed.resume_step == 6 and resumed.seed == 5
    assert resumed.config == Config()
    assert [r["step"] for r in resumed.metric_records()] == list(range(7))
    discarded = read_metric_records(run.path / "metrics.discarded.jsonl")
    assert [r["step"] for r in discarded] == [7, 8, 9]
    for step in range(7, 10):
        resumed.log({"loss": float(step)}, step=step)
    frame = resumed.metrics()
    assert frame["step"].tolist() == list(range(10))
    assert frame["loss"].tolist() == [float(s) for s in range(10)]
    provenance = json.loads((run.path / "provenance.json").read_text())
    assert provenance["resumes"][-1]["from_step"] == 6
    assert provenance["resumes"][-1]["metrics_discarded"] == 3


def test_resume_without_a_checkpoint_starts_over(tmp_path: Path):
    run = Run.create(tmp_path, "r", {"lr": 0.1}, seed=1)
    run.log({"loss": 1.0}, step=0)
    resumed = Run.resume(run.path)
    assert resumed.resume_step is None
    assert resumed.config == {"lr": 0.1}
    assert resumed.metric_records() == []
    assert run.truncate_metrics_after(None) == 0


def test_truncate_metrics_after(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=0)
    for step in (0, 5, 5, 10):
        run.log({"x": step}, step=step)
    assert run.truncate_metrics_after(5) == 1
    assert [r["step"] for r in run.metric_records()] == [0, 5, 5]
    assert run.truncate_metrics_after(5) == 0


def test_create_on_the_same_run_resumes_it(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=3)
    run.log({"loss": 1.0}, step=0)
    with run.checkpoint(0):
        pass
    again = Run.create(tmp_path, "r", Config(), seed=3)
    assert again.resumed and again.resume_step == 0
    assert [r["step"] for r in again.metric_records()] == [0]


def test_create_refuses_a_different_run_unless_exist_ok(tmp_path: Path):
    run = Run.create(tmp_path, "r", Config(), seed=3)
    run.log({"loss": 1.0}, step=0)
    with pytest.raises(RunError, match=r"different run \(train\.lr: 1e-05 -> 0\.001\).*exist_ok"):
        Run.create(tmp_path, "r", Config(train=Train(lr=1e-3)), seed=3)
    with pytest.raises(RunError, match=r"seed: 3 -> 4"):
        Run.create(tmp_path, "r", Config(), seed=4)
    fresh = Run.create(tmp_path, "r", Config(train=Train(lr=1e-3)), seed=3, exist_ok=True)
    assert not fresh.resumed and fresh.metric_records() == []
    aside = [p for p in fresh.path.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and len(read_metric_records(aside[0])) == 1


def test_create_refuses_a_foreign_folder_unless_exist_ok(tmp_path: Path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not a run folder"):
        Run.create(tmp_path, "r", Config(), seed=0)
    run = Run.create(tmp_path, "r", Config(), seed=0, exist_ok=True)
    assert (run.path / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert Run.create(tmp_path, "empty", Config(), seed=0).resumed is False
    with pytest.raises(RunError, match="invalid run name"):
        Run.create(tmp_path, "../escape", Config(), seed=0)


def test_resume_errors_are_actionable(tmp_path: Path):
    with pytest.raises(RunError, match=r"not a run folder: no config\.yaml.*does not exist"):
        Run.resume(tmp_path / "missing")

    @dataclass
    class Other:
        name: str = "x"

    run = Run.create(tmp_path, "r", Config(), seed=0)
    with pytest.raises(RunError, match="no longer fits"):
        Run.resume(run.path, Other)


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from sftvrl.runs import Run
    run = Run.create(sys.argv[1], "killed", {"lr": 0.1}, seed=0)
    step = 0
    while True:
        run.log({"loss": 1.0 / (step + 1), "payload": "x" * 500}, step=step)
        if step % 25 == 0:
            with run.checkpoint(step) as folder:
                (folder / "weights.bin").write_bytes(bytes(20000))
        if step == 60:
            print("ready", flush=True)
        step += 1
    """
)


def test_a_killed_process_leaves_a_readable_resumable_run(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    path = tmp_path / "killed"
    steps = [r["step"] for r in read_metric_records(path)]
    assert steps == list(range(len(steps))) and len(steps) > 60
    run = Run.resume(path)
    assert run.resume_step is not None and run.resume_step % 25 == 0
    assert (run.latest_checkpoint() / "weights.bin").stat().st_size == 20000
    assert [r["step"] for r in run.metric_records()] == list(range(run.resume_step + 1))


def _train_once(folder: str, log: str) -> None:
    """What a study stage does: inside the lock, train the run unless it is already finished."""
    from sftvrl.runs import exclusive

    def note(event: str) -> None:
        with open(log, "a") as handle:
            handle.write(f"{event} {os.getpid()}\n")

    with exclusive(folder):
        final = Path(folder) / "final"
        if final.is_dir():
            note("skipped")
            return
        note("start")
        time.sleep(0.5)
        final.mkdir(parents=True)
        note("end")


def test_two_processes_asked_for_the_same_run_train_it_once(tmp_path):
    """make reproduce JOBS=2 runs notebooks that share runs (an Init, a whole study): the second
    process waits for the first, then finds the run finished instead of training it again."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    folder, log = tmp_path / "runs" / "init_s0", tmp_path / "log.txt"
    workers = [context.Process(target=_train_once, args=(str(folder), str(log))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["start", "end", "skipped"]
    assert (tmp_path / "runs" / ".init_s0.lock").exists()


def test_busy_elsewhere_sees_a_lock_held_by_another_holder(tmp_path):
    """``busy_elsewhere`` peeks at :func:`exclusive`'s lock without taking it. A lock held through
    another open file (as another process holds it) is busy; a free or absent one is not."""
    import fcntl

    run = tmp_path / "runs" / "sft_s0"
    assert not busy_elsewhere(run)  # no lock file yet
    lock = tmp_path / "runs" / ".sft_s0.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    assert not busy_elsewhere(run)
    with open(lock, "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert busy_elsewhere(run)
        assert busy_elsewhere(run)  # peeking did not take or drop the other holder's lock
        fcntl.flock(holder, fcntl.LOCK_UN)
    assert not busy_elsewhere(run)
