"""The report's Agents section from real (tiny) agent runs: the returns table, the
policy-vs-value table, the curves figure, frame strips and the tabular policy map."""

from __future__ import annotations

from lmlab.config import load_config
from lmlab.report import build_report
from lmlab.report.agents import agent_items, curves, paradigm_table, returns_table
from lmlab.report.collect import discover
from lmlab.report.render import Figure
from lmlab.stages import agent as stage


def _run(out, *overrides):
    cfg = load_config(stage.Config, None, ["max_steps=200", "eval_every=100", "log_every=100",
                                          "eval_episodes=1", "progress=false",
                                          f"output_dir={out}", *overrides])
    return stage.run(cfg)


def test_agents_section(tmp_path):
    _run(tmp_path / "runs/ql", "algo=qlearning", "env=FrozenLake-v1", "seeds=2",
         "keep_best=true")
    _run(tmp_path / "runs/pg", "algo=vpg", "env=FrozenLake-v1", "n_steps=50", "n_envs=2",
         "hidden=8", "frames=false")
    runs, _, _ = discover([tmp_path / "runs"])
    t = returns_table([r for r in runs if r.stage == "agent"])
    assert [row[2] for row in t.rows] == ["qlearning", "vpg"]
    assert t.rows[0][4] == 2  # seeds
    assert 0.0 <= t.rows[0][-1] <= 1.0 and t.rows[1][-1] is None  # kept policy: keep_best only
    assert (tmp_path / "runs/ql/final/seed-1/last.npy").is_file()
    p = paradigm_table([r for r in runs if r.stage == "agent"])
    assert p.rows[0][0] == "FrozenLake-v1" and p.rows[0][1] == "qlearning" \
        and p.rows[0][4] == "vpg"
    c = curves([r for r in runs if r.stage == "agent"])["FrozenLake-v1"]
    xs, mean, lo, hi = next(v for k, v in c.items() if k.startswith("qlearning"))
    assert xs == [100, 200] and all(a <= m <= b for a, m, b in zip(lo, mean, hi))
    items = agent_items(runs)
    figures = [i for i in items if isinstance(i, Figure)]
    assert [f.name for f in figures] == ["agents-curves", "agents-frames-00"]
    assert any(getattr(i, "title", "").endswith("of the first seed") for i in items)
    out = build_report([tmp_path / "runs"], tmp_path / "report")
    md = (tmp_path / "report/report.md").read_text()
    assert "## Agents" in md and "Policy-based vs value-based" in md
    assert (tmp_path / "report/plots/agents-curves.png").is_file()
    assert out["html"].endswith("report.html")
