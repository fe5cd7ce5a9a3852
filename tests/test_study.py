"""The study runner: Init -> SFT and RL branches as run folders, and the tidy frame they give."""

import json
from pathlib import Path

import pandas as pd
import pytest

from sftvrl.runs import read_metric_records
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
        # every run is kept in a folder shared by all experiments that ask for the same run
        folder = (folder / label["source"]).resolve()
        assert folder.parent.parent.parent.name == branch and folder.parent.parent.name == "gp-l"
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
    before = {p: p.stat().st_mtime for p in Path(config.out).rglob("metrics.jsonl")}
    again = run_study(config)
    assert {p: p.stat().st_mtime for p in Path(config.out).rglob("metrics.jsonl")} == before
    pd.testing.assert_frame_equal(again, frame)


def test_an_ablation_asking_for_the_main_studys_run_reuses_it(quick_study):
    """Fig. 17's default learning rate is the main study's RL branch: trained once, read twice."""
    config, frame = quick_study
    before = {p: p.stat().st_mtime for p in Path(config.out).rglob("metrics.jsonl")}
    same = StudyConfig.for_tier(
        "tiny", "gp-l", quick=True, model="tiny-text", out=config.out, threads=1,
        experiment="rl_lr", variant=f"lr={config.rl_lr:g}", branches=["rl"],
    )  # fmt: skip
    ablation = run_study(same)
    assert {p: p.stat().st_mtime for p in Path(config.out).rglob("metrics.jsonl")} == before
    mine = ablation[ablation["branch"] == "rl"].drop(columns=["experiment", "variant"])
    main = frame[frame["branch"] == "rl"].drop(columns=["experiment", "variant"])
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), main.reset_index(drop=True))
    other = StudyConfig.for_tier(
        "tiny", "gp-l", quick=True, model="tiny-text", out=config.out, threads=1,
        experiment="rl_lr", variant="lr=2e-05", rl_lr=2e-5, branches=["rl"],
    )  # fmt: skip
    run_study(other)
    sources = {
        (folder / json.loads((folder / STUDY_FILE).read_text())["source"]).resolve()
        for folder in (config.folder / "rl_s0", other.folder / "rl_s0")
    }
    assert len(sources) == 2  # another learning rate is another run
    everything = load_evals(config.out)  # the shared run counts once for each study that has it
    for experiment in ("main", "rl_lr"):
        mine = everything[(everything["experiment"] == experiment) & (everything["seed"] == 0)]
        assert {"init", "rl"} <= set(mine["branch"]), experiment
    main_rl = everything[(everything["experiment"] == "main") & (everything["branch"] == "rl")]
    assert len(main_rl) == len(main)


def test_rl_from_init_starts_with_inits_own_evaluation(quick_study):
    """A greedy evaluation of Init's weights on the same episodes is Init's evaluation: the RL
    branch logs it as update 0 instead of spending the time again."""
    config, frame = quick_study
    success = frame[frame["metric"] == "success"]
    init = success[success["branch"] == "init"].set_index("split")
    start = success[(success["branch"] == "rl") & (success["step"] == 0)].set_index("split")
    assert set(start.index) == set(config.splits)
    for column in ("rate", "k", "n", "outcomes"):
        assert start[column].to_dict() == init[column].to_dict()
    assert (start["drift"] == 0).all() and (start["gflops"] == init["gflops"]).all()
    label = json.loads((config.folder / "rl_s0" / STUDY_FILE).read_text())
    records = read_metric_records((config.folder / "rl_s0" / label["source"]).resolve())
    copied = [r for r in records if r["step"] == 0 and "eval_split" in r]
    assert copied and all(r["eval_copied_from"].startswith("..") for r in copied)


def test_a_run_made_before_runs_were_shared_is_not_overwritten(tmp_path):
    config = StudyConfig.for_tier(
        "tiny", "gp-l", quick=True, model="tiny-text", out=str(tmp_path), threads=1
    )
    legacy = config.folder / "init_s0"
    legacy.mkdir(parents=True)
    (legacy / "metrics.jsonl").write_text("")
    with pytest.raises(RuntimeError, match="move it away"):
        run_study(config)


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
    monkeypatch.setattr(study, "run_seed", lambda cfg, seed, folders=None: order.append(seed))
    monkeypatch.setattr(study, "load_evals", lambda folder: pd.DataFrame(columns=FRAME_COLUMNS))
    shared_init = study._init_folder(config, config.init_steps)
    lock = study._branch_folder(config, "rl", shared_init) / ".rl_s0.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as other_process:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        run_study(config)
    assert order == [1, 2, 0]
    order.clear()
    run_study(config)  # nothing held: the configured order
    assert order == [0, 1, 2]
