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
    "sft": 7,
    "compare-methods": 1,
    "reward": 2,
    "dpo": 3,
    "generate": 3,
    "bench": 2,
    "grpo": 2,
    "ppo": 2,
    "preferences": 5,
    "evaluate": 2,
    "serve": 1,
    "pipelines": 7,
    "distill": 7,
    "quantize": 7,
    "qat": 3,
    "pretrain": 5,
    "scratch": 1,
    "tokenizer": 2,
    "embed": 2,
    "index": 1,
    "agent": 11,
    "vision": 10,
    "clip": 2,
    "self-instruct": 2,
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


# --- values pydantic checks: floats that are not finite, mappings, lists ----------------------


def _float_keys(cls):
    import typing

    hints = typing.get_type_hints(cls)
    # a mapping of floats (compare-methods' method_lr) checks its values itself
    # (tests/badinput/test_methods.py)
    return [k for k, tp in hints.items() if "float" in str(tp) and not str(tp).startswith(
        "dict") and k not in getattr(cls, "UNUSED", ())]


def test_every_float_option_of_every_stage_refuses_nan_and_inf():
    checked = 0
    for stage in STAGES:
        cls = load_stage(stage).Config
        for key in _float_keys(cls):
            for bad in ("nan", "inf", "-inf", ".nan", "-.inf", "Infinity"):
                with pytest.raises(ConfigError) as e:
                    load_config(cls, None, [f"{key}={bad}"])
                assert f"{key}" in str(e.value) and "finite" in str(e.value), (stage, key, bad)
                checked += 1
    assert checked >= 6 * 90  # 99 float keys in 12 stages when written: the loop did run


def test_yaml_nan_and_inf_are_refused_with_the_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: .nan\nbeta1: .inf\nlora_dropout: -.inf\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f)
    assert [p.split(":")[0] for p in e.value.problems] == ["lr", "beta1", "lora_dropout"]
    assert all("must be a finite number" in p for p in e.value.problems)


def test_numbers_and_booleans_do_not_stand_in_for_each_other(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: true\nmax_steps: yes\nresume: no\npacking: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f)
    got = "\n".join(e.value.problems)
    assert "lr: expected a number, got True" in got
    assert "max_steps: expected an integer, got True" in got
    assert "resume: expected a string (YAML reads yes/no" in got  # `resume: no` is False in YAML
    assert "packing: expected true or false, got 2" in got
    g = tmp_path / "ok.yaml"
    g.write_text("max_steps: 3.0\nlr: 1\nresume: 'no'\nstop_words_are_text: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'stop_words_are_text'"):
        load_config(SFTConfig, g)
    g.write_text("max_steps: 3.0\nlr: 1\nresume: 'no'\n")
    cfg = load_config(SFTConfig, g)
    assert (cfg.max_steps, cfg.lr, cfg.resume) == (3, 1.0, "no")
    assert type(cfg.max_steps) is int and type(cfg.lr) is float


def test_a_string_where_a_list_is_expected(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lora_targets: q_proj\n")
    with pytest.raises(ConfigError, match=r"lora_targets: expected a list, got 'q_proj'"):
        load_config(SFTConfig, f)
    # on the command line a list is written a,b (one item: no comma needed)
    assert load_config(SFTConfig, None, ["lora_targets=q_proj"]).lora_targets == ["q_proj"]


def test_list_items_are_checked_one_by_one():
    from lmlab.stages.grpo import Config as GRPOConfig

    with pytest.raises(ConfigError) as e:
        load_config(GRPOConfig, None, ["reward_weights=1,nan,x"])
    assert e.value.problems == [
        "reward_weights[1]: must be a finite number, not nan or inf, got 'nan'",
        "reward_weights[2]: expected a number, got 'x'"]
    cfg = load_config(GRPOConfig, None, ["rewards=task,format", "reward_weights=1,0.5"])
    assert cfg.reward_weights == [1.0, 0.5]


# --- mappings: whole in YAML, whole or entry by entry on the command line -----------------------


def test_mapping_takes_a_preset_a_yaml_dict_or_dotted_entries(tmp_path):
    assert load_config(SFTConfig, None, ["mapping=dolly"]).mapping == "dolly"
    want = {"prompt": "question", "completion": "answer"}
    dotted = load_config(SFTConfig, None, ["mapping.prompt=question",
                                           "mapping.completion=answer"])
    text = 'mapping={"prompt": "question", "completion": "answer"}'  # as the issue tried it
    flow = load_config(SFTConfig, None, [text])
    f = tmp_path / "c.yaml"
    f.write_text("mapping:\n  prompt: question\n  completion: answer\n")
    assert dotted.mapping == flow.mapping == load_config(SFTConfig, f).mapping == want
    f.write_text("mapping:\n  prompt: question\n  completion: reply\n")
    merged = load_config(SFTConfig, f, ["mapping.completion=answer", "mapping.system=sys"])
    assert merged.mapping == {**want, "system": "sys"}  # overrides add to the file's mapping
    assert load_config(SFTConfig, f, ["mapping="]).mapping == ""  # or drop it
    assert load_config(SFTConfig, f, ["mapping=", "mapping.prompt=q"]).mapping == {"prompt": "q"}
    f.write_text("mapping: dolly\n")  # a preset is replaced the same way
    assert load_config(SFTConfig, f, ["mapping=", "mapping.prompt=q"]).mapping == {"prompt": "q"}


def test_mapping_problems_name_the_key_and_the_field(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, None, ["mapping.promt=question", "mapping.completion=answer"])
    assert e.value.problems == [("mapping: unknown field 'promt' (did you mean 'prompt'?); the "
                                 "fields here: messages, prompt, completion, system")]
    f = tmp_path / "c.yaml"
    f.write_text("mapping:\n  prompt: 3\n  completion: [a, b]\n  system: null\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f)
    assert e.value.problems == ["mapping.prompt: expected a string, got 3",
                                "mapping.completion: expected a string, got ['a', 'b']",
                                "mapping.system: expected a string, got None"]
    f.write_text("mapping:\n  1: question\n")
    with pytest.raises(ConfigError, match=r"mapping: keys must be text, got 1$"):
        load_config(SFTConfig, f)
    f.write_text("mapping: dolly\n")
    with pytest.raises(ConfigError, match=r"mapping: is 'dolly'; mapping.<entry> adds to a "):
        load_config(SFTConfig, f, ["mapping.prompt=q"])
    with pytest.raises(ConfigError, match=r"lr.x: lr is a float, not a mapping"):
        load_config(SFTConfig, None, ["lr.x=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'maping.prompt' \(did you mean "
                                          r"'mapping.prompt'\?\)"):
        load_config(SFTConfig, None, ["maping.prompt=q"])


def test_every_stage_that_reads_rows_has_a_mapping_with_its_row_fields():
    from lmlab.config import ROW_FIELDS

    want = {"sft": ROW_FIELDS["chat"], "qat": ROW_FIELDS["chat"],
            "reward": ROW_FIELDS["preference"],
            "dpo": ROW_FIELDS["preference"] + ("completion", "label"),
            "distill": ROW_FIELDS["chat"] + ROW_FIELDS["text"]}
    for stage, fields_ in want.items():
        f = load_stage(stage).Config.__dataclass_fields__["mapping"]
        assert f.metadata["keys"] == fields_, stage
        cfg = load_config(load_stage(stage).Config, None, [f"mapping.{fields_[0]}=col"])
        assert cfg.mapping == {fields_[0]: "col"}
    from lmlab.stages.dpo import Config as DPOConfig

    with pytest.raises(ConfigError, match="mapping: label: not a field of preference rows"):
        load_config(DPOConfig, None, ["mapping.label=ok"])  # data_kind=preference: pairs


def test_row_fields_are_the_fields_the_row_formats_read():
    from lmlab.config import ROW_FIELDS
    from lmlab.data.formats import KINDS, normalize_row

    assert set(ROW_FIELDS) == set(KINDS) - {"task"}  # task rows keep any extra column
    rows = {"text": {"text": "t"}, "chat": {"system": "s", "prompt": "p", "completion": "c"},
            "preference": {"prompt": "p", "chosen": "a", "rejected": "b"},
            "kto": {"prompt": "p", "completion": "c", "label": True}}
    for kind, row in rows.items():
        assert set(row) <= set(ROW_FIELDS[kind])
        normalize_row(row, kind, file="x", line=1)  # every field listed is one the format reads
        out = normalize_row(row, kind, file="x", line=1)
        assert set(out) <= set(ROW_FIELDS[kind])
    with pytest.raises(Exception, match="messages"):
        normalize_row({"messages": "x"}, "chat", file="x", line=1)


def test_dotted_keys_reach_any_depth_of_an_untyped_mapping():
    from dataclasses import dataclass

    from lmlab.config import build_config, opt

    @dataclass
    class C:
        profiles: dict = opt({}, "p")
        weights: dict[str, float] = opt({}, "w")

    c = build_config(C, {"profiles": {"fast": {"sft": {"lr": 0.1}}}},
                     {"profiles.fast.sft.max_steps": "1", "weights.a": "0.5"})
    assert c.profiles == {"fast": {"sft": {"lr": 0.1, "max_steps": "1"}}}
    assert c.weights == {"a": 0.5}
    with pytest.raises(ConfigError, match=r"weights.a: must be a finite number"):
        build_config(C, {}, {"weights.a": "nan"})
    with pytest.raises(ConfigError, match=r"profiles.a.b: a is given a value too"):
        build_config(C, {}, {"profiles.a": "1", "profiles.a.b": "2"})


# --- YAML files: file and line in every message -----------------------------------------------


def test_yaml_with_a_bom_and_crlf_loads_the_same(tmp_path):
    body = "lr: 0.001\nmax_steps: 7\nlora_targets:\n  - q_proj\nmapping:\n  prompt: q\n"
    plain, windows = tmp_path / "a.yaml", tmp_path / "b.yaml"
    plain.write_text(body)
    windows.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode())
    assert load_config(SFTConfig, plain) == load_config(SFTConfig, windows)


@pytest.mark.parametrize("text, want", [
    ("lr: 0.1\nmax_steps: 3\nlr: 0.2\n", ":3: key 'lr' is given twice (lines 1 and 3)"),
    ("mapping:\n  prompt: a\n  prompt: b\n", ":3: key 'prompt' is given twice (lines 2 and 3)"),
    ("lr: 0.1\nmapping:\n  prompt: q\n\tcompletion: a\n",
     ":4: a tab in the indentation; YAML indents with spaces"),
    ("lr:\t0.1\n", ":1: a tab at column 4; YAML separates with spaces"),
    ("lr: [0.1\nmax_steps: 3\n", ":2:"),
    ("lr: 0.1\n max_steps: 3\n", ":2:11: not valid YAML: mapping values are not allowed here"),
])
def test_yaml_problems_name_the_file_and_line(tmp_path, text, want):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, f)
    assert f"{f}{want}" in str(e.value)
    assert "<unicode string>" not in str(e.value)


def test_yaml_merge_keys_may_still_override():
    from lmlab.yamlfile import _UniqueKeyLoader

    text = "base: &b {lr: 0.1, max_steps: 2}\nrun:\n  <<: *b\n  lr: 0.2\n"
    assert yaml.load(text, Loader=_UniqueKeyLoader)["run"] == {"lr": 0.2, "max_steps": 2}


def test_yaml_files_that_are_not_configs(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"lr: 0.1\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"{f}:2: not UTF-8: byte 0xe9"):
        load_config(SFTConfig, f)
    f.write_text("- lr\n- 0.1\n")
    with pytest.raises(ConfigError, match="must hold a mapping of key: value, not a list"):
        load_config(SFTConfig, f)
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_config(SFTConfig, tmp_path)
    f.write_text("")
    assert load_config(SFTConfig, f) == SFTConfig()


def test_a_pipeline_step_recipe_with_a_yaml_problem_names_its_file_and_line(tmp_path):
    from lmlab.stages.pipeline import Config as PipelineConfig

    recipe = tmp_path / "sft.yaml"
    recipe.write_text("model: tiny:llama\nlr: 0.1\nlr: 0.2\n")
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "steps": [
        {"name": "a", "stage": "sft", "config": str(recipe)}]}))
    with pytest.raises(ConfigError) as e:
        load_config(PipelineConfig, p)
    assert f"step 1 (a): {recipe}:3: key 'lr' is given twice" in str(e.value)
    p.write_text(f"output_dir: {tmp_path / 'out'}\nsteps:\n  - name: a\n\t  stage: sft\n")
    with pytest.raises(ConfigError, match=rf"{p}:4: a tab in the indentation"):
        load_config(PipelineConfig, p)


# --- the JSON schema a form is built from -------------------------------------------------------

_JSON_TYPES = {"integer": int, "number": (int, float), "string": str, "boolean": bool,
               "array": list, "object": dict, "null": type(None)}


def _fits(value, schema) -> bool:
    """A small JSON-schema check (the parts json_schema emits), enough for defaults."""
    if "anyOf" in schema:
        return any(_fits(value, s) for s in schema["anyOf"])
    want = _JSON_TYPES[schema["type"]]
    if not isinstance(value, want) or (isinstance(value, bool) and schema["type"] != "boolean"):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "minimum" in schema and value < schema["minimum"]:
        return False
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return False
    if "maximum" in schema and value > schema["maximum"]:
        return False
    if schema["type"] == "array":
        return all(_fits(v, schema["items"]) for v in value)
    return True


def test_json_schema_of_every_stage_describes_its_keys():
    import json

    from lmlab.config import describe, json_schema, to_dict

    for stage in STAGES:
        cls = load_stage(stage).Config
        schema = json.loads(json.dumps(json_schema(cls)))  # plain JSON all the way down
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert list(schema["properties"]) == [r[0] for r in describe(cls)], stage
        for f in cls.__dataclass_fields__.values():
            if f.name not in schema["properties"]:
                continue
            prop, m = schema["properties"][f.name], f.metadata
            assert prop["description"] == m["help"], (stage, f.name)
            parts = prop.get("anyOf", [prop])
            if m["choices"]:
                assert any(p.get("enum") == list(m["choices"]) for p in parts), (stage, f.name)
            if m["min"] is not None:
                bound = "exclusiveMinimum" if m["min_exclusive"] else "minimum"
                assert any(p.get(bound) == m["min"] for p in parts), (stage, f.name)
        defaults = to_dict(cls())
        for key, prop in schema["properties"].items():
            assert _fits(defaults[key], prop), (stage, key, defaults[key], prop)


def test_json_schema_of_sft_in_detail():
    from lmlab.config import json_schema

    props = json_schema(SFTConfig)["properties"]
    assert props["lr"] == {"type": "number", "exclusiveMinimum": 0.0, "default": 2e-4,
                           "description": "peak learning rate"}
    assert props["data_limit"]["anyOf"] == [{"type": "integer", "minimum": 1}, {"type": "null"}]
    assert props["method"]["enum"] == ["full", "lora", "qlora", "dora", "ia3", "prefix", "prompt",
                                       "ptuning", "adapter"]
    assert props["lora_targets"]["items"] == {"type": "string"}
    text, table = props["mapping"]["anyOf"]
    assert text == {"type": "string"} and table["type"] == "object"
    assert table["additionalProperties"] is False
    assert list(table["properties"]) == ["messages", "prompt", "completion", "system"]
    assert _fits(0.5, props["lora_dropout"]) and not _fits(1.5, props["lora_dropout"])


def test_every_stage_default_config_round_trips_through_its_saved_yaml(tmp_path):
    from lmlab.config import to_dict

    alone = []  # stages whose defaults are a complete config
    for stage in STAGES:
        cls = load_stage(stage).Config
        try:
            load_config(cls, None)
        except ConfigError:
            continue  # pipeline (no steps), ppo (needs reward_model), index (needs data)
        alone.append(stage)
        f = tmp_path / f"{stage}.yaml"
        f.write_text(yaml.safe_dump({"stage": stage, **to_dict(cls())}, sort_keys=False))
        assert load_config(cls, f, stage=stage) == cls(), stage
    assert set(STAGES) - set(alone) == {"pipeline", "ppo", "index"}
