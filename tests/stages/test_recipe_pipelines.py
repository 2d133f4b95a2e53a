"""The shipped recipe pipelines, end to end on the tiny model (profile=tiny): every step runs
and the report draws the recipe's table. Slow (about a minute each on 2 cores)."""

from pathlib import Path

import pytest

from lmlab.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("name, title", [
    ("curriculum", "Curriculum vs random order"),
    ("multitask", "Single-task vs mixed training"),
    ("continual", "Continual learning: task A then task B"),
])
def test_recipe_pipeline_tiny_profile(tmp_path, monkeypatch, name, title):
    monkeypatch.chdir(ROOT)
    out = tmp_path / name
    assert main(["pipeline", "--config", f"configs/pipelines/{name}.yaml", "profile=tiny",
                 f"output_dir={out}"]) == 0
    assert title in (out / "report" / "report.md").read_text()
