"""Smoke test of the rollout benchmark: it runs, renders its table and fills the README markers."""

import pytest

from benchmarks import bench_rollout


def test_quick_run_writes_the_table_between_the_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n{bench_rollout.START_MARKER}\nold\n{bench_rollout.END_MARKER}\n\nafter\n"
    )
    arguments = ["--quick", "--models", "tiny-text", "--pool", "3", "--episodes", "3"]
    arguments += ["--max-new-tokens", "3", "--write-readme", str(readme)]
    assert bench_rollout.main(arguments) == 0
    table = capsys.readouterr().out
    for row in (bench_rollout.OFFICIAL, bench_rollout.GENERATE, bench_rollout.CACHED):
        assert f"| {row} | " in table
    assert "Goal, at least 20x" in table and "5.00" in table  # five turns per episode
    text = readme.read_text()
    assert "old" not in text and text.endswith("after\n") and table.strip() in text


def test_missing_markers_stop_before_measuring(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        bench_rollout.main(["--quick", "--write-readme", str(readme)])
    assert readme.read_text() == "# no markers\n"
