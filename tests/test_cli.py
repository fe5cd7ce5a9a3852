"""The ``sftvrl`` command: help, actionable errors, and real sft/eval runs on the tiny model."""

import json

from sftvrl.cli import CONFIG_DIR, main
from sftvrl.runs import read_metric_records


def test_help_lists_commands_and_options(capsys):
    assert main(["--help"]) == 0
    assert "sft" in capsys.readouterr().out
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    assert "train.learning_rate" in out and "data.task" in out


def test_bad_key_gets_a_suggestion_not_a_traceback(capsys):
    assert main(["eval", "sampling.temprature=0.5"]) == 2
    assert "sampling.temperature" in capsys.readouterr().err


def test_missing_model_and_unknown_task(tmp_path, capsys):
    assert main(["eval", f"model.name_or_path={tmp_path}/nope", f"output={tmp_path}"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["eval", "task=chess", f"output={tmp_path}"]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_sft_then_eval_from_the_shipped_configs(tmp_path, capsys):
    sft = [
        "sft",
        "--config",
        str(CONFIG_DIR / "tiny" / "gp_l_sft.yaml"),
        "train.max_steps=2",
        "train.batch_size=4",
        "data.n=16",
        f"output={tmp_path}",
    ]
    assert main(sft) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])["final"]
    evaluation = [
        "eval",
        "--config",
        str(CONFIG_DIR / "tiny" / "gp_l_eval.yaml"),
        f"model.name_or_path={final}",
        "n_episodes=4",
        "verify_iter=1",
        "sampling.max_new_tokens=8",
        f"output={tmp_path}",
    ]
    assert main(evaluation) == 0
    summaries = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [s["split"] for s in summaries] == ["id", "rule_ood"]
    records = read_metric_records(tmp_path / "gp_l_eval")
    assert [r["success_n"] for r in records] == [4, 4]
