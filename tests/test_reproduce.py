"""``make reproduce``: the plan matches the notebooks, and the runner skips, reruns, fails and
parallelises as it says, on throwaway notebooks (real kernels, a few seconds each)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbformat.v4 import new_code_cell, new_notebook

from sftvrl.cli import main
from sftvrl.reproduce import (
    NOTEBOOKS,
    TIERS,
    Job,
    ReproduceError,
    build_plan,
    ensure_kernel,
    reproduce,
)
from sftvrl.reproduce import runner as runner_module


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the cell tagged ``parameters``, read independently of the library."""
    notebook = nbformat.read(str(path), as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} must have exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("tier", TIERS)
def test_plan_matches_the_notebooks(tier, quick, tmp_path):
    plan = build_plan(tier, quick=quick, out=tmp_path / "figs", model="some/model")
    names = [job.name for job in plan]
    assert len(set(names)) == len(names)
    for index, job in enumerate(plan):
        path = NOTEBOOKS / job.notebook
        assert path.is_file(), job.notebook
        unknown = set(job.parameters) - declared_parameters(path)
        assert not unknown, f"{job.notebook} lacks parameters {unknown}"
        assert all(need in names[:index] for need in job.needs), job.name
    assert plan[-1].notebook == "10_figures.ipynb"
    assert set(plan[-1].needs) == set(names[:-1])
    assert {job.parameters["task"] for job in plan if job.name.startswith("main-")} == {
        "gp-l",
        "virl-l",
        "gp-vl",
        "virl-vl",
    }
    if tier == "tiny":  # the design notebook runs these studies too: they share its seeds
        needs = {job.name: job.needs for job in plan}
        assert "tiny-design" not in needs["main-gp-l"] + needs["main-virl-l"]
    studies = [job for job in plan if "tier" in job.parameters]
    assert all(job.parameters["tier"] == tier for job in studies)
    assert all(job.parameters["model"] == "some/model" for job in studies)
    assert all(job.parameters["quick"] is quick for job in studies)
    if quick:  # quick runs keep their run folders beside their output, away from real runs
        assert all(job.parameters["out"] == str(tmp_path / "figs" / "runs") for job in studies)
        assert all(job.parameters["seeds"] == [0] for job in studies)


def test_paths_inside_the_checkout_reach_the_notebooks_relative():
    root = NOTEBOOKS.parent
    plan = build_plan(out=root / "figures", runs=root / "runs" / "tiny")
    assert plan[-1].parameters == {"runs_root": "../runs/tiny", "out": "../figures"}
    assert plan[1].parameters["out"] == "../runs/tiny"


def test_every_experiment_notebook_takes_threads():
    for job in build_plan():
        if "tier" in job.parameters:
            assert "threads" in declared_parameters(NOTEBOOKS / job.notebook), job.notebook


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_is_valid_with_unique_cell_ids(path):
    """nbformat 4.5 wants an id on every cell (a missing one is a warning today, an error later);
    papermill and JupyterLab rely on them being unique."""
    raw = json.loads(path.read_text())
    ids = [cell.get("id") for cell in raw["cells"]]
    assert None not in ids, f"{path.name}: a cell has no id"
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))


def test_the_kernel_runs_this_interpreter():
    spec = KernelSpecManager().get_kernel_spec(ensure_kernel())
    assert spec.argv[0] in ("python", "python3", sys.executable)


# -- the runner, on throwaway notebooks ------------------------------------------------------


def write_notebook(folder: Path, name: str, body: str, parameters: str) -> str:
    cells = [new_code_cell(parameters, metadata={"tags": ["parameters"]}), new_code_cell(body)]
    nbformat.write(new_notebook(cells=cells), str(folder / name))
    return name


RECORD = """
import json, os, time
start = time.time()
time.sleep(pause)
record = {"x": x, "threads": threads, "omp": os.environ["OMP_NUM_THREADS"],
          "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}
with open(log, "a") as f:
    f.write(json.dumps(record) + "\\n")
"""


@pytest.fixture
def book(tmp_path):
    """A notebook that appends one JSON line per execution to ``log``."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder, "record.ipynb", RECORD, "x = 0\npause = 0.0\nthreads = 1\nlog = ''")
    write_notebook(folder, "fail.ipynb", "raise ValueError('the data folder is missing')", "")
    return folder


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_done_jobs_are_skipped_and_changed_ones_rerun(book, tmp_path):
    log, out = tmp_path / "log.jsonl", tmp_path / "out"

    def run(x: int):
        job = Job("record.ipynb", "record", {"x": x, "log": str(log)})
        return reproduce(plan=[job], notebooks=book, out=out, threads=1)

    first = run(1)
    assert [job.status for job in first.jobs] == ["ok"] and first.ok
    marker = json.loads((out / "notebooks" / "record.done.json").read_text())
    assert marker["status"] == "ok" and marker["parameters"] == {"x": 1, "log": str(log)}
    assert marker["wall_s"] > 0 and marker["peak_rss_mib"] > 10
    assert (out / "notebooks" / "record.ipynb").is_file()
    report = json.loads((out / "reproduce_report.json").read_text())
    assert report["ok"] and report["jobs"][0]["name"] == "record"

    again = run(1)
    assert again.jobs[0].status == "skipped" and again.jobs[0].wall_s == marker["wall_s"]
    assert len(lines(log)) == 1

    changed = run(2)
    assert changed.jobs[0].status == "ok"
    assert [r["x"] for r in lines(log)] == [1, 2]
    (out / "notebooks" / "record.done.json").unlink()  # as if killed before it finished
    assert run(2).jobs[0].status == "ok" and len(lines(log)) == 3
    assert lines(log)[-1]["threads"] == 1 and lines(log)[-1]["omp"] == "1"


def test_a_job_reruns_when_the_run_logs_it_reads_change(book, tmp_path):
    log, out, runs = tmp_path / "log.jsonl", tmp_path / "out", tmp_path / "runs"
    job = Job("record.ipynb", "figures", {"x": 1, "log": str(log)}, reads=(str(runs),))

    def status() -> str:
        return reproduce(plan=[job], notebooks=book, out=out, threads=1).jobs[0].status

    assert status() == "ok"  # no runs yet
    assert status() == "skipped"
    run = runs / "main" / "gp-l" / "rl_s0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    assert status() == "ok"  # a new run
    (run / "checkpoint.bin").write_text("not a log")
    assert status() == "skipped"  # only run logs count
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 1}\n')  # the run resumed
    assert status() == "ok"
    assert status() == "skipped"
    assert len(lines(log)) == 3


def test_a_failure_is_recorded_and_blocks_only_its_dependants(book, tmp_path):
    log, out = tmp_path / "log.jsonl", tmp_path / "out"
    plan = [
        Job("fail.ipynb", "broken"),
        Job("record.ipynb", "after-broken", {"x": 1, "log": str(log)}, needs=("broken",)),
        Job("record.ipynb", "independent", {"x": 2, "log": str(log)}),
    ]
    report = reproduce(plan=plan, notebooks=book, out=out, threads=1)
    assert [job.status for job in report.jobs] == ["failed", "blocked", "ok"]
    assert report.failed == ["broken"] and report.blocked == ["after-broken"] and not report.ok
    assert "ValueError: the data folder is missing" in report.job("broken").error
    assert [r["x"] for r in lines(log)] == [2]
    marker = json.loads((out / "notebooks" / "broken.done.json").read_text())
    assert marker["status"] == "failed" and "data folder" in marker["error"]

    again = reproduce(plan=plan, notebooks=book, out=out, threads=1)  # failures run again
    assert [job.status for job in again.jobs] == ["failed", "blocked", "skipped"]


def test_unknown_parameters_fail_the_job_with_a_message(book, tmp_path):
    job = Job("record.ipynb", "typo", {"xx": 1})
    report = reproduce(plan=[job], notebooks=book, out=tmp_path / "out", threads=1)
    assert report.jobs[0].status == "failed" and "'xx'" in report.jobs[0].error


def test_two_jobs_run_in_parallel_each_with_its_share(book, tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "_cores", lambda: 2)
    monkeypatch.setattr(runner_module, "_gpu_ids", lambda: ["7", "9"])
    log = tmp_path / "log.jsonl"
    plan = [Job("record.ipynb", f"job{x}", {"x": x, "pause": 4.0, "log": str(log)}) for x in (1, 2)]
    report = reproduce(plan=plan, notebooks=book, out=tmp_path / "out", jobs=2)
    assert report.ok and report.workers == 2
    first, second = sorted(lines(log), key=lambda r: r["start"])
    assert second["start"] < first["end"], "the two notebooks did not overlap"
    assert {r["threads"] for r in (first, second)} == {1}
    assert {r["omp"] for r in (first, second)} == {"1"}
    assert {r["gpu"] for r in (first, second)} == {"7", "9"}


def test_only_selects_jobs_and_unknown_names_are_refused(book, tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    plan = [
        Job("record.ipynb", "a", {"x": 1, "log": str(log)}),
        Job("record.ipynb", "b", {"x": 2, "log": str(log)}, needs=("a",)),
    ]
    report = reproduce(plan=plan, notebooks=book, out=tmp_path / "out", only=["b"], threads=1)
    assert [job.name for job in report.jobs] == ["b"] and report.ok
    with pytest.raises(ReproduceError, match="no job named 'c'"):
        reproduce(plan=plan, notebooks=book, out=tmp_path / "out", only=["c"])
    assert main(["reproduce", "--only", "no-such-job", "--out", str(tmp_path / "x")]) == 2
    assert "no job named 'no-such-job'" in capsys.readouterr().err
    assert main(["reproduce", "--jobs", "0", "--out", str(tmp_path / "x")]) == 2


def test_the_tour_notebook_runs(tmp_path):
    report = reproduce(only=["tour"], out=tmp_path / "out", threads=1)
    assert report.ok, report.jobs[0].error
    executed = nbformat.read(str(tmp_path / "out" / "notebooks" / "tour.ipynb"), as_version=4)
    text = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    assert "you used invalid numbers: [10]" in text
    assert "100.0% (20/20" in text


def test_jobs_default_to_one_per_gpu_else_one_per_core_within_memory():
    from sftvrl.reproduce.runner import JOB_MEMORY, auto_jobs

    assert auto_jobs(["0", "1", "2", "3"], cores=16, memory=None) == 4
    assert auto_jobs([], cores=2, memory=24 * 2**30) == 2  # this machine: 2 cores, 24 GiB
    assert auto_jobs([], cores=16, memory=8 * 2**30) == 8 // 3  # memory, not cores, limits
    assert auto_jobs([], cores=4, memory=JOB_MEMORY // 2) == 1  # never fewer than one
    assert auto_jobs([], cores=3, memory=None) == 3
