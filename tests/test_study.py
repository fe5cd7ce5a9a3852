"""The study runner: Init -> SFT and RL branches as run folders, and the tidy frame they give."""

import json

import pandas as pd
import pytest

from sftvrl.study import (
    FRAME_COLUMNS,
    STUDY_FILE,
    StudyConfig,
    concat,
    final_table,
    load_evals,
    pick_by_final_id,
    pick_init_steps,
    run_study,
    show_table,
    trajectory_table,
)


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    """The whole chain at quick budgets on the random-init tiny model (what `make test` runs)."""
    out = tmp_path_factory.mktemp("study")
    config = StudyConfig.for_tier(
        "tiny", "gp-l", quick=True, model="tiny-text", out=str(out), threads=1
    )
    return config, run_study(config)


def test_quick_study_runs_init_and_both_branches_into_labelled_run_folders(quick_study):
    config, frame = quick_study
    assert list(frame.columns) == FRAME_COLUMNS
    assert set(frame["branch"]) == {"init", "sft", "rl"}
    assert set(frame["split"]) == {"id", "rule_ood"}
    assert {"success", "numbers_read", "face_as_ten"} <= set(frame["metric"])
    for branch in ("init", "sft", "rl"):
        folder = config.folder / f"{branch}_s0"
        label = json.loads((folder / STUDY_FILE).read_text())
        assert label["branch"] == branch and label["task"] == "gp-l" and label["seed"] == 0
        if branch == "init":  # Init is shared by every experiment with the same Init
            folder = (folder / label["source"]).resolve()
            assert folder.parent.parent.parent.name == "init"
        assert (folder / "final").is_dir()
    success = frame[frame["metric"] == "success"]
    assert (success["n"] == 2).all() and success["outcomes"].str.len().eq(2).all()
    init_gflops = success[success["branch"] == "init"]["gflops"].max()
    branches = success[success["branch"] != "init"]
    assert (branches["gflops"] >= init_gflops - 1e-9).all()  # branches start at Init's compute
    assert branches["drift"].notna().all()
    assert (branches[branches["step"] == 0]["drift"] == 0).all()


def test_experiments_with_the_same_init_share_it(quick_study):
    config, _ = quick_study
    other = StudyConfig.for_tier(
        "tiny", "gp-l", quick=True, model="tiny-text", out=config.out, threads=1,
        experiment="suboptimal", suboptimal=True, branches=["sft"],
    )  # fmt: skip
    frame = run_study(other)
    assert set(frame["branch"]) == {"init", "sft"} and set(frame["experiment"]) == {"suboptimal"}
    assert len(list((config.folder.parents[1] / "init" / "gp-l").iterdir())) == 1


def test_a_finished_study_is_read_back_not_rerun(quick_study):
    config, frame = quick_study
    before = {p: p.stat().st_mtime for p in config.folder.rglob("metrics.jsonl")}
    again = run_study(config)
    assert {p: p.stat().st_mtime for p in config.folder.rglob("metrics.jsonl")} == before
    pd.testing.assert_frame_equal(again, frame)


def test_tables_pool_seeds_at_equal_compute(quick_study):
    _, frame = quick_study
    table = final_table(frame)
    assert {"init", "sft @ last", "rl @ last"} <= set(table["branch"])
    assert (table["seeds"] == 1).all()
    assert show_table(frame)["rate"].between(0, 100).all()
    trajectory = trajectory_table(frame)
    assert {"id success", "rule_ood success", "rule_ood face_as_ten"} <= set(trajectory.columns)
    assert list(trajectory["branch"].drop_duplicates()) == ["init", "sft", "rl"]


def _init_row(steps: int, rate: float) -> dict:
    return {
        "experiment": "design", "variant": f"init-{steps}", "task": "gp-l", "branch": "init",
        "seed": 0, "step": steps, "gflops": float(steps), "drift": 1.0, "split": "id",
        "metric": "success", "rate": rate, "k": int(100 * rate), "n": 100, "se": 0.0,
        "ci_low": 0.0, "ci_high": 1.0, "outcomes": None, "run": "",
    }  # fmt: skip


def test_init_calibration_rule():
    frame = pd.DataFrame([_init_row(10, 0.1), _init_row(20, 0.35), _init_row(40, 0.55)])
    assert pick_init_steps(frame) == 20
    frame = pd.DataFrame([_init_row(10, 0.1), _init_row(20, 0.2), _init_row(40, 0.9)])
    assert pick_init_steps(frame) == 20  # none inside: the closest to [0.3, 0.6]
    assert concat([pd.DataFrame(columns=FRAME_COLUMNS), frame]).shape == frame.shape
    with pytest.raises(ValueError, match="init-"):
        pick_init_steps(pd.DataFrame(columns=FRAME_COLUMNS))


def test_for_tier_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown task"):
        StudyConfig.for_tier("tiny", "chess")
    with pytest.raises(ValueError, match="unknown StudyConfig fields"):
        StudyConfig.for_tier("tiny", "gp-l", init_step=3)
    with pytest.raises(ValueError, match="no default model"):
        _ = StudyConfig.for_tier("gpu", "gp-l").base_model


def test_load_evals_of_an_empty_folder(tmp_path):
    assert load_evals(tmp_path).empty


def test_rl_learning_rate_rule_judges_final_id_only():
    rows = []
    for variant, (ood, rate) in {"rl-lr-1e-05": (0.01, 0.3), "rl-lr-5e-05": (0.9, 0.2)}.items():
        for split, value in (("id", rate), ("rule_ood", ood)):
            row = _init_row(80, value) | {"variant": variant, "branch": "rl", "split": split}
            rows += [row | {"step": 0, "rate": 0.25}, row | {"step": 16}]
    assert pick_by_final_id(pd.DataFrame(rows)) == "rl-lr-1e-05"


def test_run_study_trains_free_seeds_before_one_another_process_holds(tmp_path, monkeypatch):
    """``make reproduce JOBS=2`` runs the design notebook and a main-study notebook at once: both
    ask for the same seeds. A seed whose run is locked elsewhere waits until no free seed is left,
    so the two processes share the seeds instead of one idling on the other's lock."""
    import fcntl

    from sftvrl import study

    config = StudyConfig.for_tier("tiny", "gp-l", quick=True, seeds=[0, 1, 2], out=str(tmp_path))
    order = []
    monkeypatch.setattr(study, "run_seed", lambda cfg, seed: order.append(seed))
    monkeypatch.setattr(study, "load_evals", lambda folder: pd.DataFrame(columns=FRAME_COLUMNS))
    lock = config.folder / ".rl_s0.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        run_study(config)
    assert order == [1, 2, 0]
    order.clear()
    run_study(config)  # nothing held: the configured order
    assert order == [0, 1, 2]
