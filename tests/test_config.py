import pathlib

import pytest
import torch
import yaml

from lmlab.cli import main
from lmlab.config import load_config
from lmlab.errors import ConfigError
from lmlab.stages import STAGES, load_stage
from lmlab.stages.sft import Config as SFTConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
# configs/<folder>: how many YAML files ship there. Update when a config is added, so that a
# file the glob stops finding (renamed folder, wrong suffix) fails here instead of going unchecked.
EXPECTED_CONFIGS = {
    "sft": 4,
    "reward": 2,
    "dpo": 3,
    "generate": 3,
    "bench": 2,
    "grpo": 2,
    "ppo": 2,
    "preferences": 5,
    "evaluate": 2,
    "serve": 1,
    "pipelines": 2,
    "distill": 7,
    "quantize": 7,
    "qat": 3,
}


def test_every_shipped_config_loads(monkeypatch):
    found: dict[str, int] = {}
    for path in CONFIGS:
        found[path.parent.name] = found.get(path.parent.name, 0) + 1
    assert found == EXPECTED_CONFIGS, [str(c) for c in CONFIGS]
    monkeypatch.chdir(ROOT)  # pipelines name their steps' recipes relative to the repo root
    for path in CONFIGS:
        stage = path.parent.name
        if stage == "pipelines":  # every step's stage, recipe and overrides, profiles included
            cfg = load_config(load_stage("pipeline").Config, path)
            for profile in ["", *cfg.profiles]:
                cfg.profile = profile
                steps, problems = cfg.plan()
                assert problems == [] and steps, (path, profile, problems)
            continue
        assert stage in STAGES, f"{path}: folder must be a stage name"
        cfg = load_config(load_stage(stage).Config, path)
        assert getattr(cfg, "max_steps", 0) >= 0  # serve has no steps


def test_pipeline_typo_in_a_late_step_is_reported_before_running(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    body = yaml.safe_load((ROOT / "configs/pipelines/tiny.yaml").read_text())
    body["output_dir"] = str(tmp_path / "p")
    body["steps"].append({"name": "dpo2", "stage": "dpo", "config": "configs/dpo/tiny.yaml",
                          "overrides": {"model": "${dpo}", "lossx": "ipo"}})
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(body))
    assert main(["pipeline", "--config", str(f)]) == 2
    assert not (tmp_path / "p").exists()


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["lr=abc", "max_stepz=3", "method=lorra", "lora_r=0",
                                      "nokeyvalue"])
    msg = str(e.value)
    assert len(e.value.problems) == 5
    assert "lr: expected a number" in msg
    assert "did you mean 'max_steps'" in msg
    assert "did you mean 'lora'" in msg
    assert "lora_r: 0 is out of range" in msg
    assert "'nokeyvalue' is not key=value" in msg
    assert e.value.exit_code == 2


def test_yaml_then_overrides_and_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"lr": 0.001, "max_steps": 7, "lora_targets": ["q_proj"]}))
    cfg = load_config(SFTConfig, f, ["max_steps=9", "packing=true", "lora_targets=q_proj,v_proj",
                                     "data_limit=null"])
    assert (cfg.lr, cfg.max_steps, cfg.packing) == (0.001, 9, True)
    assert cfg.lora_targets == ["q_proj", "v_proj"] and cfg.data_limit is None


def test_yaml_type_errors_and_bad_files(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: [1, 2]\nbatch_size: 2.5\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f)
    assert len(e.value.problems) == 2 and str(f) in str(e.value)
    g = tmp_path / "bad.yaml"
    g.write_text("lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SFTConfig, g)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(SFTConfig, tmp_path / "missing.yaml")


def test_cli_exit_codes_and_help(capsys):
    assert main(["sft", "max_stepz=1"]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err
    assert main(["sfx"]) == 1
    assert "did you mean 'sft'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STAGES)
    assert main(["sft", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("model", "lora_r", "max_steps", "resume", "packing"):
        assert f"  {key} " in out


def test_unknown_model_lists_known_aliases(capsys, tmp_path):
    rc = main(["sft", "model=smollm9", f"output_dir={tmp_path / 'r'}", "eval_n=0"])
    assert rc == 1
    assert "smollm2-135m-instruct" in capsys.readouterr().err


def test_saved_run_config_round_trips(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump({"stage": "sft", "lr": 0.01}))
    assert load_config(SFTConfig, f, stage="sft").lr == 0.01
    with pytest.raises(ConfigError, match="for 'sft', not 'dpo'"):
        load_config(SFTConfig, f, stage="dpo")


def test_list_overrides_take_plain_and_bracketed_forms():
    a = load_config(SFTConfig, None, ["lora_targets=q_proj,v_proj"])
    b = load_config(SFTConfig, None, ["lora_targets=[q_proj, v_proj]"])
    c = load_config(SFTConfig, None, ["lora_targets=[]"])
    assert a.lora_targets == b.lora_targets == ["q_proj", "v_proj"] and c.lora_targets == []


def test_cli_drops_only_the_known_library_noise(caplog):
    import logging

    from lmlab.cli import _drop_noise

    _drop_noise()
    _drop_noise()  # idempotent: one filter per logger
    ao, pytree = logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")
    assert sum(getattr(f, "lmlab_noise", False) for f in ao.filters) == 1
    with caplog.at_level(logging.WARNING):
        ao.warning("Failed to load /x/torchao/_C_cutlass_90a.abi3.so: Could not load")
        pytree.warning("<enum 'KernelPreference'> is an Enum subclass and is now natively ...")
        ao.warning("torchao: a real warning")
        pytree.warning("another pytree message")
    got = [r.getMessage() for r in caplog.records]
    want = ["torchao: a real warning", "another pytree message"]
    if torch.version.cuda is not None:  # a CUDA build: torchao's failed kernels are news
        want.insert(0, "Failed to load /x/torchao/_C_cutlass_90a.abi3.so: Could not load")
    assert got == want


def test_keys_a_stage_does_not_use_are_hidden_and_refused(tmp_path, capsys):
    from lmlab.config import describe
    from lmlab.stages.generate import Config as GenConfig

    assert "max_steps" not in [r[0] for r in describe(GenConfig)]
    assert "max_steps" in [r[0] for r in describe(SFTConfig)]
    with pytest.raises(ConfigError, match="max_steps: not used by this stage"):
        load_config(GenConfig, None, ["max_steps=5"])
    saved = tmp_path / "config.yaml"  # a run folder's config.yaml holds every key
    saved.write_text(yaml.safe_dump({"stage": "generate", "max_steps": 100, "limit": 2}))
    assert load_config(GenConfig, saved, [], stage="generate").limit == 2
    assert main(["generate", "--help"]) == 0 and "max_steps" not in capsys.readouterr().out
