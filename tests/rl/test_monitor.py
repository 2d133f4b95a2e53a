"""The RL warning signs on hand-made metric rows."""

from lmlab.rl.monitor import (health_warnings, mode_collapse, reward_hacking, runaway_length,
                              top_share)

BEFORE = {"eval/reward": 0.20, "eval/accuracy": 0.40}


def test_top_share_counts_the_most_common_text():
    assert top_share(["a", " a ", "b", "c"]) == (0.5, "a")
    assert top_share([]) == (0.0, "")


def test_reward_up_and_accuracy_down_is_hacking():
    rows = [{"step": 10, "eval/reward": 0.50, "eval/accuracy": 0.30},
            {"step": 20, "eval/reward": 0.90, "eval/accuracy": 0.20}]
    msg = reward_hacking(rows, BEFORE)
    assert msg is not None and "update 20" in msg and "40% -> 20%" in msg and "0.900" in msg


def test_reward_and_accuracy_up_together_is_not_hacking():
    rows = [{"step": 10, "eval/reward": 0.90, "eval/accuracy": 0.60}]
    assert reward_hacking(rows, BEFORE) is None


def test_small_accuracy_dip_is_below_the_threshold():
    rows = [{"step": 10, "eval/reward": 0.90, "eval/accuracy": 0.38}]  # -2 points < 5
    assert reward_hacking(rows, BEFORE) is None
    assert reward_hacking(rows, BEFORE, acc_drop=0.02) is not None


def test_reward_down_is_not_hacking_and_no_baseline_means_no_verdict():
    rows = [{"step": 10, "eval/reward": 0.10, "eval/accuracy": 0.10}]
    assert reward_hacking(rows, BEFORE) is None
    assert reward_hacking(rows, None) is None


def test_mode_collapse_by_share_or_entropy():
    assert mode_collapse([{"step": 3, "train/top_share": 0.75, "train/entropy": 1.0}]) \
        == "mode collapse suspected at update 3: 75% of the rollout's responses are the same text"
    assert "entropy 0.010" in mode_collapse([{"step": 4, "train/top_share": 0.1,
                                              "train/entropy": 0.01}])
    assert mode_collapse([{"step": 5, "train/top_share": 0.25, "train/entropy": 0.8}]) is None


def test_runaway_length_compares_first_and_latest_rollouts():
    rows = [{"step": 1, "train/truncated": 0.25}, {"step": 9, "train/truncated": 0.875}]
    assert "25% truncated at the start, 88% now" in runaway_length(rows)
    assert runaway_length([{"step": 1, "train/truncated": 0.9},
                           {"step": 2, "train/truncated": 1.0}]) is None
    assert runaway_length(rows[:1]) is None


def test_health_warnings_keeps_only_what_fires():
    rows = [{"step": 1, "train/truncated": 0.0, "train/top_share": 0.1, "train/entropy": 1.0},
            {"step": 2, "train/truncated": 0.0, "train/top_share": 0.6, "train/entropy": 1.0,
             "eval/reward": 0.5, "eval/accuracy": 0.1}]
    assert sorted(health_warnings(rows, BEFORE)) == ["mode_collapse", "reward_hacking"]
    assert health_warnings(rows[:1], BEFORE) == {}


def test_check_health_reports_each_kind_once(capsys):
    from types import SimpleNamespace

    from lmlab.rl.online import check_health

    on = SimpleNamespace(before=BEFORE, warnings={})
    rows = [{"step": 10, "eval/reward": 0.9, "eval/accuracy": 0.1}]
    check_health(on, rows)
    check_health(on, rows + [{"step": 20, "eval/reward": 1.0, "eval/accuracy": 0.0}])
    out = capsys.readouterr().out
    assert out.count("warning: reward hacking suspected") == 1
    assert "update 10" in on.warnings["reward_hacking"]  # the first sighting is kept
