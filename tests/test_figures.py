"""Paper figures from evaluation records: every figure draws and saves, missing data says "not
run", equal-compute selection, the verdict rule, the paper's numbers and transcript figures."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from sftvrl import figures
from sftvrl.eval import wilson_interval
from sftvrl.figures import (
    DIRECTION_ONLY,
    DOES_NOT_HOLD,
    HOLDS,
    NOT_RUN,
    QUALITATIVE_FIGURES,
    QUANTITATIVE_FIGURES,
)

COLUMNS = [
    "experiment", "variant", "task", "branch", "seed", "step", "gflops", "split", "metric",
    "rate", "k", "n", "se", "ci_low", "ci_high", "outcomes", "run",
]  # fmt: skip


# -- a synthetic evaluation frame ---------------------------------------------------------------


def record(rate: float, latent: np.ndarray, *, with_outcomes: bool = True, **labels) -> dict:
    """One evaluation row: episode i succeeds when its fixed difficulty is below ``rate``."""
    hits = latent < rate
    k, n = int(hits.sum()), len(latent)
    p = k / n
    low, high = wilson_interval(k, n)
    outcomes = "".join("1" if h else "0" for h in hits) if with_outcomes else None
    run = f"runs/{labels['experiment']}/{labels['task']}/{labels['branch']}/{labels['seed']}"
    row = {"rate": p, "k": k, "n": n, "se": math.sqrt(p * (1 - p) / n), "ci_low": low}
    return row | {"ci_high": high, "outcomes": outcomes, "run": run} | labels


def episodes(frame_seed: int, n: int, **labels) -> np.ndarray:
    """Fixed per-episode difficulties: the same evaluation episodes for every branch and step."""
    key = "/".join(str(labels[c]) for c in ("experiment", "task", "split", "metric", "seed"))
    return np.random.default_rng([frame_seed, zlib.crc32(key.encode())]).random(n)


def series(
    frame_seed: int,
    start: float,
    end: float,
    *,
    steps: int = 8,
    g0: float = 10.0,
    dg: float = 1.0,
    n: int = 80,
    seeds: tuple[int, ...] = (0, 1),
    variant: str = "",
    **labels,
) -> list[dict]:
    """A run per seed whose rate moves linearly from ``start`` to ``end`` over ``steps`` evals."""
    rows = []
    for seed in seeds:
        latent = episodes(frame_seed, n, seed=seed, **labels)
        for step in range(steps):
            rate = start + (end - start) * step / max(steps - 1, 1)
            rows.append(
                record(
                    rate,
                    latent,
                    with_outcomes=labels["metric"] != "per_step",
                    seed=seed,
                    step=step,
                    gflops=g0 + dg * step,
                    variant=variant,
                    **labels,
                )
            )
    return rows


MAIN_TARGETS = {  # (split, metric kind): (init, sft end, rl end)
    "id": (0.3, 0.85, 0.7),
    "rule_ood": (0.15, 0.03, 0.3),
    "visual_ood": (0.2, 0.05, 0.4),
    "recognition": (0.6, 0.4, 0.85),
}


def _main(seed: int) -> list[dict]:
    rows = []
    for task in figures.TASKS:
        vision = task.endswith("vl")
        splits = ["id", "rule_ood"] + (["visual_ood"] if vision else [])
        metrics = ["success"] + (["per_step"] if task.startswith("virl") else [])
        metrics += ["recognition"] if vision else []
        for split in splits:
            for metric in metrics:
                init, sft, rl = MAIN_TARGETS["recognition" if metric == "recognition" else split]
                labels = {"experiment": "main", "task": task, "split": split, "metric": metric}
                rows += series(seed, init, init, steps=1, branch="init", **labels)
                rows += series(seed, init, sft, dg=1.0, branch="sft", **labels)
                rows += series(seed, init, rl, dg=1.3, branch="rl", **labels)
    return rows


def _ablations(seed: int) -> list[dict]:
    rows = []
    gp_l = {"task": "gp-l", "metric": "success"}
    for lr in ("5e-7", "1e-6", "2e-6"):
        for split in ("id", "rule_ood"):
            rows += series(seed, 0.0, 0.0, experiment="no_sft", variant=f"lr={lr}", branch="rl",
                           split=split, **gp_l)  # fmt: skip
    for split, init in (("id", 0.3), ("rule_ood", 0.15)):
        rows += series(seed, init, init, steps=1, experiment="verify_iter", branch="init",
                       split=split, **gp_l)  # fmt: skip
        for viter, gain in (("1", 0.02), ("3", 0.08), ("5", 0.15), ("10", 0.3)):
            rows += series(seed, init, init + gain, experiment="verify_iter", variant=viter,
                           branch="rl", split=split, n=200, **gp_l)  # fmt: skip
    for split, (init, end) in (("id", (0.3, 0.8)), ("rule_ood", (0.15, 0.02))):
        rows += series(seed, init, init, steps=1, experiment="suboptimal", branch="init",
                       split=split, **gp_l)  # fmt: skip
        rows += series(seed, init, end, experiment="suboptimal", branch="sft", split=split, **gp_l)
    gp_vl_id = {"task": "gp-vl", "metric": "success", "split": "id"}
    for variant, end in (("lr=1e-7", 0.2), ("lr=1e-6", 0.25), ("lr=1e-7,frozen=vision", 0.22),
                         ("lr=5e-7,frozen=vision+adapter", 0.18)):  # fmt: skip
        rows += series(
            seed, 0.15, end, experiment="sft_lr", variant=variant, branch="sft", **gp_vl_id
        )
    for lr in ("1e-6", "2e-6"):
        rows += series(
            seed, 0.2, 0.45, experiment="rl_lr", variant=f"lr={lr}", branch="rl", **gp_vl_id
        )
    for lr in ("1e-7", "2e-7"):
        rows += series(seed, 0.005, 0.006, experiment="overfit_init", variant=f"lr={lr}", branch="rl",
                       task="virl-vl", split="rule_ood", metric="per_step", n=400)  # fmt: skip
    return rows


def example_frame(seed: int = 0) -> pd.DataFrame:
    """A synthetic tidy evaluation frame with every experiment, in the paper's direction."""
    return pd.DataFrame(_main(seed) + _ablations(seed), columns=COLUMNS)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return example_frame()


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]


def constructed(
    rates: dict[str, float], *, n: int, outcomes: bool, task: str = "gp-l"
) -> pd.DataFrame:
    """Main-study rule-OOD rows of one task with the given Init/SFT/RL rates (one seed)."""
    rng = np.random.default_rng(1)
    latent = rng.random(n)
    labels = {"experiment": "main", "task": task, "split": "rule_ood", "seed": 0, "variant": ""}
    labels["metric"] = figures.MAIN_METRIC[task]
    rows = [
        record(
            rates["init"],
            latent,
            with_outcomes=outcomes,
            branch="init",
            step=0,
            gflops=1.0,
            **labels,
        )
    ]
    for branch in ("sft", "rl"):
        for step in range(3):
            rate = rates["init"] + (rates[branch] - rates["init"]) * step / 2
            rows.append(record(rate, latent, with_outcomes=outcomes, branch=branch, step=step,
                               gflops=1.0 + step, **labels))  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


# -- the paper's numbers --------------------------------------------------------------------------


def test_paper_numbers_equal_section_4_1():
    rule = figures.paper_numbers("fig06_rule_ood").set_index(["task", "method"])["value_percent"]
    assert rule.to_dict() == {
        ("gp-l", "init"): 11.5, ("gp-l", "rl"): 15.0, ("gp-l", "sft"): 3.4,
        ("virl-l", "init"): 80.8, ("virl-l", "rl"): 91.8, ("virl-l", "sft"): 1.3,
        ("gp-vl", "init"): 11.2, ("gp-vl", "rl"): 14.2, ("gp-vl", "sft"): 5.6,
        ("virl-vl", "init"): 35.7, ("virl-vl", "rl"): 45.0, ("virl-vl", "sft"): 2.5,
    }  # fmt: skip
    visual = figures.paper_numbers("fig07_visual_ood").set_index(["task", "method"])[
        "value_percent"
    ]
    assert visual.to_dict() == {
        ("gp-vl", "init"): 23.6, ("gp-vl", "rl"): 41.2, ("gp-vl", "sft"): 13.7,
        ("virl-vl", "init"): 16.7, ("virl-vl", "rl"): 77.8, ("virl-vl", "sft"): 11.1,
        ("virl-vl", "previous_sota"): 44.0,
    }  # fmt: skip
    viter = figures.paper_numbers("fig10_verify_iter")
    assert dict(zip(viter["verify_iter"], viter["ood_gain_percent"], strict=True)) == {
        1: 0.48,
        3: 2.15,
        5: 2.99,
        10: 5.99,
    }
    ranges = figures.paper_numbers("fig05_axis_ranges").set_index(["task", "split"])
    assert ranges.loc[("gp-l", "id"), ["y_low_percent", "y_high_percent"]].tolist() == [28, 100]
    assert ranges.loc[("virl-vl", "rule_ood"), ["y_low_percent", "y_high_percent"]].tolist() == [
        0,
        56,
    ]
    assert len(ranges) == 8
    assert pytest.approx(visual[("virl-vl", "previous_sota")] / 100) == figures.PREVIOUS_SOTA


def test_unknown_paper_table_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match="fig06_rule_ood"):
        figures.paper_numbers("fig99_nothing")


# -- selection and statistics ---------------------------------------------------------------------


def test_equal_compute_point_is_the_last_compute_both_reached():
    rows = pd.DataFrame(
        {
            "branch": ["sft"] * 3 + ["rl"] * 3,
            "seed": [0] * 6,
            "gflops": [1.0, 2.0, 3.0, 1.0, 2.5, 4.0],
            "step": [0, 1, 2, 0, 1, 2],
        }
    )
    assert figures.equal_compute_point(rows) == 3.0
    assert figures.at_compute(rows[rows["branch"] == "rl"], 3.0)["gflops"].tolist() == [2.5]
    assert figures.at_compute(rows[rows["branch"] == "sft"], 3.0)["gflops"].tolist() == [3.0]
    assert figures.equal_compute_point(rows[rows["branch"] == "sft"]) is None


def test_at_compute_picks_per_seed():
    rows = pd.DataFrame(
        {"seed": [0, 0, 1, 1], "gflops": [1.0, 2.9, 1.0, 3.1], "step": [0, 1, 0, 1]}
    )
    chosen = figures.at_compute(rows, 3.0).sort_values("seed")
    assert chosen["gflops"].tolist() == [2.9, 1.0]


def test_a_seed_not_yet_evaluated_at_equal_compute_counts_as_its_init():
    """Two evaluations a branch: one seed's SFT halfway point lies beyond RL's end, so at the
    equal-compute point that seed has spent less than the point on SFT and is still Init."""
    base = {"variant": "", "split": "id", "metric": "success", "n": 10, "outcomes": None}
    rows = pd.DataFrame(
        [base | {"branch": "init", "seed": s, "step": 20, "gflops": 1.0, "k": 1} for s in (0, 1)]
        + [
            base | {"branch": "sft", "seed": 0, "step": 15, "gflops": 1.8, "k": 5},
            base | {"branch": "sft", "seed": 1, "step": 15, "gflops": 1.9, "k": 6},
            base | {"branch": "sft", "seed": 0, "step": 30, "gflops": 2.6, "k": 7},
            base | {"branch": "sft", "seed": 1, "step": 30, "gflops": 2.6, "k": 8},
            base | {"branch": "rl", "seed": 0, "step": 2, "gflops": 1.85, "k": 2},
            base | {"branch": "rl", "seed": 1, "step": 2, "gflops": 1.7, "k": 3},
        ]
    )
    assert figures.equal_compute_point(rows) == 1.85
    sft = figures.branch_at_compute(rows, "sft", 1.85)
    assert sft[["seed", "branch", "k"]].values.tolist() == [[0, "sft", 5], [1, "init", 1]]
    estimates = figures.final_estimates(rows)
    assert estimates["sft"].seeds == 2 and estimates["sft"].k == 6
    assert estimates["rl"].seeds == 2 and estimates["rl"].k == 5


def test_init_falls_back_to_step_zero_of_sft(frame):
    rows = figures.select(frame, experiment="main", task="gp-l", split="id", metric="success")
    no_init = rows[rows["branch"] != "init"]
    init = figures.init_rows(no_init)
    assert set(init["branch"]) == {"sft"} and set(init["step"]) == {0} and len(init) == 2


def test_pool_sums_k_and_n_over_seeds(frame):
    rows = figures.select(frame, experiment="main", task="gp-l", split="id", metric="success")
    estimate = figures.pool(figures.last_rows(rows[rows["branch"] == "sft"]))
    assert estimate.n == 160 and estimate.seeds == 2 and set(estimate.outcomes) == {0, 1}
    assert (estimate.low, estimate.high) == wilson_interval(estimate.k, estimate.n)


def test_savgol_keeps_cubics_and_leaves_short_series():
    x = np.arange(12, dtype=float)
    cubic = 0.01 * x**3 - 0.2 * x**2 + x
    assert np.allclose(figures.savgol(cubic), cubic)
    assert np.array_equal(figures.savgol([0.1, 0.5, 0.2]), [0.1, 0.5, 0.2])
    noisy = np.sin(x / 3) + np.random.default_rng(0).normal(0, 0.3, 12)
    assert np.std(np.diff(figures.savgol(noisy))) < np.std(np.diff(noisy))


def test_parse_variant():
    assert figures.parse_variant("lr=1e-4,frozen=vision") == {"lr": "1e-4", "frozen": "vision"}
    assert figures.parse_variant("5") == {"value": "5"}
    assert figures.parse_variant("") == {}


# -- the verdict rule -----------------------------------------------------------------------------


def test_verdict_rule():
    assert figures.verdict(None, True) == NOT_RUN
    assert figures.verdict(False, True) == DOES_NOT_HOLD
    assert figures.verdict(True, True) == HOLDS
    assert figures.verdict(True, False) == DIRECTION_ONLY


@pytest.mark.parametrize(
    ("rates", "n", "outcomes", "expected"),
    [
        ({"init": 0.3, "sft": 0.1, "rl": 0.6}, 200, True, HOLDS),
        ({"init": 0.3, "sft": 0.1, "rl": 0.6}, 200, False, HOLDS),
        ({"init": 0.3, "sft": 0.2, "rl": 0.4}, 30, False, DIRECTION_ONLY),
        ({"init": 0.3, "sft": 0.6, "rl": 0.1}, 200, True, DOES_NOT_HOLD),
        ({"init": 0.3, "sft": 0.1, "rl": 0.25}, 200, True, DOES_NOT_HOLD),
    ],
)
def test_rule_ood_verdicts_on_constructed_cases(rates, n, outcomes, expected):
    finding = figures.findings(constructed(rates, n=n, outcomes=outcomes))[0]
    assert finding.number == 1 and finding.verdict == expected
    assert (finding.p_value is not None) == outcomes
    assert finding.seeds == 1


def test_paired_test_detects_what_intervals_miss():
    # Same episodes, RL solves 12 more and loses none: intervals overlap, McNemar does not.
    finding = figures.findings(
        constructed({"init": 0.40, "sft": 0.39, "rl": 0.46}, n=200, outcomes=True)
    )[0]
    rl, sft = finding.estimates["rl"], finding.estimates["sft"]
    assert rl.low < sft.high
    assert finding.p_value < 0.05 and finding.verdict == HOLDS


def test_missing_data_is_not_run():
    items = figures.findings(pd.DataFrame(columns=COLUMNS))
    assert [f.number for f in items] == list(range(1, 11))
    assert all(f.verdict == NOT_RUN for f in items)


def test_example_frame_findings_hold(frame, tmp_path):
    items = figures.write_summary(frame, tmp_path / "figures" / "summary.md")
    verdicts = {f.number: f.verdict for f in items}
    assert verdicts == dict.fromkeys(range(1, 11), HOLDS)
    text = (tmp_path / "figures" / "summary.md").read_text()
    assert "ten directional findings" in text and "Fig. 10" in text and "| 15.0% |" in text
    assert "V-IRL-VL landmark recognition" in text  # the VL diagnostic beside Fig. 8
    assert f"**{NOT_RUN}**" not in text and f"\n{NOT_RUN}.\n" not in text


def test_a_rate_over_no_episodes_is_shown_as_a_dash_with_its_count():
    empty = figures.Estimate(float("nan"), 0, 0, 0.0, 1.0, 3, 1.0)
    assert figures._fmt(empty) == "- (n=0, 3 seeds)"
    assert figures._fmt(None) == "-"
    some = figures.Estimate(0.25, 1, 4, 0.05, 0.7, 1, 1.0)
    assert figures._fmt(some).startswith("25.0% [5.0, 70.0] (n=4, 1 seeds)")


def test_fig10_points_at_matched_compute(frame):
    points = figures.verify_iter_points(frame)
    assert [p.verify_iter for p in points] == ["1", "3", "5", "10"]
    assert len({p.gflops for p in points}) == 1
    gains = [p.ood_gain for p in points]
    assert gains == sorted(gains) and gains[-1] > 0.2


# -- figures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(QUANTITATIVE_FIGURES))
def test_every_figure_saves_png_and_pdf(frame, tmp_path, name):
    fig = QUANTITATIVE_FIGURES[name](frame, tmp_path)
    assert isinstance(fig, Figure)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert (
        len(saved) == 2 and saved[0].startswith(name) and {p[-3:] for p in saved} == {"pdf", "png"}
    )
    assert all((tmp_path / p).stat().st_size > 1000 for p in saved)
    assert NOT_RUN not in " ".join(texts(fig))


@pytest.mark.parametrize("name", sorted(QUANTITATIVE_FIGURES))
def test_empty_frame_gives_not_run_panels(name):
    fig = QUANTITATIVE_FIGURES[name](pd.DataFrame(columns=COLUMNS))
    assert any(NOT_RUN in t for t in texts(fig))


def test_missing_task_column_says_not_run(frame):
    fig = figures.fig05_id_ood_curves(frame[frame["task"] != "virl-vl"])
    axes = fig.axes
    marked = [i for i, ax in enumerate(axes) if any(NOT_RUN in t.get_text() for t in ax.texts)]
    assert marked == [3, 7]  # the V-IRL-VL column, both rows
    assert all(ax.lines for i, ax in enumerate(axes) if i not in marked)


# -- transcripts ----------------------------------------------------------------------------------


def test_transcript_of_a_real_gp_vl_episode(tmp_path):
    from sftvrl.envs.general_points import GeneralPointsEnv
    from sftvrl.train.rollout import ScriptedResponder, rollout

    def answer(request):
        first = len(request.conversation) == 1
        return '{"cards": [], "formula": "1+1"}' if first else request.env.expert_response()

    episodes = rollout(
        lambda: GeneralPointsEnv(vision=True, image_width=200), ScriptedResponder(answer), 1
    )
    assert len(episodes[0].turns) == 2 and episodes[0].success
    messages = figures.as_transcript(episodes)
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "verifier",
        "assistant",
        "verifier",
    ]
    assert messages[0]["image"] is not None
    fig = figures.fig02_sequential_revision(episodes, tmp_path)
    assert (tmp_path / "fig02_sequential_revision.png").stat().st_size > 1000
    assert (tmp_path / "fig02_sequential_revision.pdf").is_file()
    assert any(isinstance(a, AxesImage) for ax in fig.axes for a in ax.get_images())
    shown = " ".join(texts(fig))
    assert "model answer" in shown and "verifier" in shown and messages[2]["text"][:20] in shown


def test_transcript_from_plain_dicts_and_every_qualitative_figure(tmp_path):
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    messages = [
        {
            "role": "user",
            "text": "Cards: A 3 K 6. $math$ stays text " + "long " * 1000,
            "image": image,
        },
        {"role": "assistant", "text": '{"formula": "(1+6)*3+13=24"}'},
        {"role": "verifier", "text": "[INCORRECT] you used numbers wrongly."},
    ]
    for name, draw in QUALITATIVE_FIGURES.items():
        fig = draw(messages, tmp_path)
        assert (tmp_path / f"{draw.__name__}.png").is_file(), name
    assert "more lines" in " ".join(texts(fig))
    assert any(NOT_RUN in t for t in texts(figures.fig04_virl_example([])))


def test_long_transcripts_are_cut_with_a_note():
    messages = [{"role": "assistant", "text": f"answer {i}"} for i in range(30)]
    fig = figures.draw_transcript(messages, max_messages=5)
    shown = " ".join(texts(fig))
    assert "answer 3" in shown and "answer 4" not in shown and "26 more messages" in shown


# -- qualitative figures from environments and models -------------------------------------------

EXAMPLE_FIGURES = ("fig02", "fig03", "fig04", "fig11", "fig12", "fig13", "fig14", "fig20")


def test_example_figures_without_runs(tmp_path):
    out = tmp_path / "figures"
    saved = figures.example_figures(tmp_path / "runs", out, base_model="tiny-text", image_size=64)
    assert set(saved) == set(QUALITATIVE_FIGURES)
    for name in EXAMPLE_FIGURES:
        assert saved[name] == out / f"{QUALITATIVE_FIGURES[name].__name__}.png", name
        assert saved[name].stat().st_size > 1000, name
    assert isinstance(saved["fig21"], str) and saved["fig21"].startswith(NOT_RUN)


def test_scripted_gp_l_transcript_shows_the_verifier_feedback(tmp_path):
    from sftvrl.envs.general_points import GeneralPointsEnv
    from sftvrl.train.rollout import ScriptedResponder, rollout

    episodes = rollout(
        lambda: GeneralPointsEnv(split="rule_ood", prompt="compact"),
        ScriptedResponder(figures._mistake_then_expert),
        2,
    )
    for episode in episodes:  # one rejected mistake, then the expert answer
        assert len(episode.turns) == 2 and episode.success
        assert figures._has_feedback(episode)
    fig = figures.fig12_gp_l_prompt(episodes, tmp_path)
    assert "You failed this trial because" in " ".join(texts(fig))


def test_example_figures_use_the_main_study_init_model(tmp_path):
    import json

    from sftvrl.models import ModelConfig, load_policy

    root = tmp_path / "runs"
    shared = root / "init" / "gp-l" / "abc" / "init_s0"
    load_policy(ModelConfig(name_or_path="tiny-text")).save(shared / "final")
    pointer = root / "main" / "gp-l" / "init_s0"
    pointer.mkdir(parents=True)
    label = {"experiment": "main", "task": "gp-l", "branch": "init", "seed": 0}
    label |= {"source": "../../../init/gp-l/abc/init_s0", "study": {"prompt": "compact"}}
    (pointer / "study.json").write_text(json.dumps(label))
    run = figures._study_model(root, "main", "gp-l")
    assert run is not None and run.path == (shared / "final").resolve()
    assert figures._study_model(root, "overfit_init", "virl-vl") is None
    messages = figures._revision_transcript(root, "gp-l", "rule_ood", "compact", None)
    assert messages[0]["role"] == "note"
    # a random-init model fails, so it gets feedback: the figure shows the model, not a script
    assert "Init model" in messages[0]["text"] and "scripted" not in messages[0]["text"]


def test_init_falls_back_per_seed(frame):
    rows = figures.select(frame, experiment="main", task="gp-l", split="id", metric="success")
    one_init_missing = rows[~((rows["branch"] == "init") & (rows["seed"] == 1))]
    init = figures.init_rows(one_init_missing)
    assert init["seed"].tolist() == [0, 1]
    assert init["branch"].tolist() == ["init", "sft"] and init["step"].tolist()[1] == 0


def test_fig10_rows_of_real_run_names_meet_the_papers(frame, tmp_path):
    """Runs are named ``verify_iter=5`` (the reproduce plan's variants); the paper says ``5``: one
    row per budget with both, not two half-empty rows."""
    renamed = frame.copy()
    is_viter = renamed["experiment"] == "verify_iter"
    renamed.loc[is_viter & (renamed["variant"] != ""), "variant"] = (
        "verify_iter=" + renamed.loc[is_viter & (renamed["variant"] != ""), "variant"]
    )
    assert [p.verify_iter for p in figures.verify_iter_points(renamed)] == ["1", "3", "5", "10"]
    figures.write_summary(renamed, tmp_path / "summary.md")
    text = (tmp_path / "summary.md").read_text()
    section = text.split("## Fig. 10")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 5  # the header and the four budgets
    assert all(" - " not in line for line in rows[1:]), rows


def test_an_order_finding_where_every_method_scores_zero_has_no_signal():
    rows = constructed({"init": 0.0, "sft": 0.0, "rl": 0.0}, n=48, outcomes=True, task="virl-vl")
    four = next(f for f in figures.findings(rows) if f.number == 4)
    assert four.verdict == figures.NO_SIGNAL and "all score 0" in four.note
    rows = constructed({"init": 0.1, "sft": 0.0, "rl": 0.0}, n=48, outcomes=True, task="virl-vl")
    four = next(f for f in figures.findings(rows) if f.number == 4)
    assert four.verdict == figures.DOES_NOT_HOLD


def test_a_figure_saved_twice_is_the_same_pdf(tmp_path):
    """No creation date in the PDF: rerunning the figures changes no file whose numbers held."""
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    figures.save_figure(fig, tmp_path / "a", "f")
    figures.save_figure(fig, tmp_path / "b", "f")
    first = (tmp_path / "a" / "f.pdf").read_bytes()
    assert first == (tmp_path / "b" / "f.pdf").read_bytes()
    assert b"CreationDate" not in first
