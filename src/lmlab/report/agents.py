"""The report's RL-lab section: `lmlab agent` runs' returns (mean +- 95% CI over seeds), a
policy-based vs value-based table per environment, evaluation curves over environment steps
(mean over seeds, band = min..max) and the trained agents' frame strips. Every number is read
from the runs' summary.json and metrics.jsonl."""

from __future__ import annotations

import io

from lmlab.report.collect import RunData
from lmlab.report.tables import MISSING, Table


def agent_runs(runs: list[RunData]) -> list[RunData]:
    return [r for r in runs if r.stage == "agent" and r.summary]


def returns_table(runs: list[RunData]) -> Table:
    t = Table("Agents: deterministic evaluation return", [
        "run", "env", "algo", "kind", "seeds", "env steps / seed", "return (mean)", "95% CI +-",
        "env steps/s", "solved after (s)", "kept policy, held-out (mean)"],
        ["text", "text", "text", "text", "int", "int", "num", "num", "num", "num", "num"],
        note="Mean over seeds of each seed's final evaluation (eval_episodes deterministic "
             "episodes on fixed evaluation seeds, apart from training); CI: Student t. "
             "Solved: the first evaluation at or above the env's reward threshold "
             "(mean over seeds of the training seconds it took). Kept policy (keep_best=true "
             "only): each seed's best-evaluated policy scored again on held-out episodes.")
    for r in sorted(runs, key=lambda r: (r.summary["env"], r.summary["algo"])):
        s = r.summary
        solved = [p["solved"]["seconds"] for p in s.get("per_seed", []) if p.get("solved")]
        t.rows.append([r.label, s["env"], s["algo"], s.get("kind", MISSING), len(s["seeds"]),
                       s.get("env_steps_per_seed"), s["eval_return_mean"],
                       s["eval_return_ci95"], s.get("env_steps_per_s"),
                       sum(solved) / len(solved) if len(solved) == len(s["seeds"]) else None,
                       s.get("best_heldout_return_mean")])
    return t


def paradigm_table(runs: list[RunData]) -> Table | None:
    """Per environment: the best value-based and the best policy-based run."""
    by_env: dict[str, dict[str, RunData]] = {}
    for r in runs:
        kind = r.summary.get("kind", "")
        best = by_env.setdefault(r.summary["env"], {}).get(kind)
        if best is None or r.summary["eval_return_mean"] > best.summary["eval_return_mean"]:
            by_env[r.summary["env"]][kind] = r
    if not any(len(k) == 2 for k in by_env.values()):
        return None
    t = Table("Policy-based vs value-based on the same environments", [
        "env", "value-based", "return", "+- CI", "policy-based", "return", "+- CI"],
        ["text", "text", "num", "num", "text", "num", "num"],
        note="The best run of each kind per environment (value-based: Q-learning, SARSA, DQN; "
             "policy-based: VPG, A2C, PPO, DDPG, TD3, SAC).")
    for env, kinds in sorted(by_env.items()):
        row = [env]
        for kind in ("value-based", "policy-based"):
            r = kinds.get(kind)
            row += [r.summary["algo"], r.summary["eval_return_mean"],
                    r.summary["eval_return_ci95"]] if r else [MISSING, None, None]
        t.rows.append(row)
    return t


def curves(runs: list[RunData]) -> dict[str, dict[str, tuple[list, list, list, list]]]:
    """env -> run label -> (env steps, mean, min, max) of eval/return over seeds."""
    out: dict = {}
    for r in runs:
        per_step: dict[int, list[float]] = {}
        for row in r.metrics:
            if "eval/return" in row and "env_step" in row:
                per_step.setdefault(int(row["env_step"]), []).append(float(row["eval/return"]))
        xs = sorted(per_step)
        out.setdefault(r.summary["env"], {})[f"{r.summary['algo']} ({r.label})"] = (
            xs, [sum(per_step[x]) / len(per_step[x]) for x in xs],
            [min(per_step[x]) for x in xs], [max(per_step[x]) for x in xs])
    return out


def curves_png(runs: list[RunData], dpi: int = 72) -> bytes | None:
    data = {env: c for env, c in curves(runs).items() if any(v[0] for v in c.values())}
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 3.0), dpi=dpi,
                             squeeze=False)
    for ax, (env, per_run) in zip(axes[0], sorted(data.items())):
        for i, (label, (xs, mean, lo, hi)) in enumerate(sorted(per_run.items())):
            ax.plot(xs, mean, color=f"C{i}", marker="o", markersize=2.5, linewidth=1.3,
                    label=label)
            ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15)
        ax.set_title(f"{env}: evaluation return", fontsize=9)
        ax.set_xlabel("environment steps", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def agent_items(runs: list[RunData]) -> list:
    """Tables, figures and text for the report's "Agents" section ([] without agent runs)."""
    from lmlab.report.render import Figure

    runs = agent_runs(runs)
    if not runs:
        return []
    items: list = [returns_table(runs)]
    paradigms = paradigm_table(runs)
    if paradigms:
        items.append(paradigms)
    png = curves_png(runs)
    if png:
        items.append(Figure("agents-curves", png, "evaluation return over environment steps "
                                                  "(line: mean over seeds; band: min..max)"))
    for i, r in enumerate(runs):
        strip = r.path / "frames.png"
        if strip.is_file():
            items.append(Figure(f"agents-frames-{i:02d}", strip.read_bytes(),
                                f"{r.label}: {r.summary['algo']} on {r.summary['env']}, one "
                                f"deterministic episode (return "
                                f"{r.summary.get('frames_return', MISSING)})"))
        policy = r.path / "policy.txt"
        if policy.is_file():
            items.append(policy_table(r.label, policy.read_text()))
    return items


def policy_table(label: str, text: str) -> Table:
    """A tabular agent's policy map (policy.txt: arrows, then values, per grid row)."""
    t = Table(f"{label}: greedy policy and V(s) = max Q(s, a) of the first seed",
              ["grid row", "greedy action", "V(s)"], ["int", "text", "text"])
    for i, line in enumerate(text.splitlines()):
        arrows, _, values = line.partition("   ")
        t.rows.append([i, arrows, values.strip()])
    return t
