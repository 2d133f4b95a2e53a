"""The launch form: built from a stage's Config (what --help shows), prefilled from a recipe,
refusing bad values with the CLI's own messages, and the CLI's overwrite rule."""

from __future__ import annotations

import dataclasses

import pytest

from lmlab.cli import main
from lmlab.config import describe
from lmlab.errors import UserError
from lmlab.stages import load_stage
from lmlab.studio import launch

from .conftest import client, make_run


def test_form_fields_come_from_the_config():
    f = launch.form("sft")
    cls = load_stage("sft").Config
    by_key = {x["key"]: x for x in f["fields"]}
    # the same keys, in the same order, as `lmlab sft --help`
    assert [x["key"] for x in f["fields"]] == [r[0] for r in describe(cls)]
    assert f["help_rows"] == [list(r) for r in describe(cls)]
    meta = {x.name: x.metadata for x in dataclasses.fields(cls)}
    assert by_key["max_steps"]["type"] == "int" and by_key["max_steps"]["kind"] == "number"
    assert by_key["max_steps"]["min"] == meta["max_steps"]["min"] == 0
    assert by_key["lr"]["min_exclusive"] and by_key["lr"]["default"] == "0.0002"
    assert by_key["schedule"]["kind"] == "select"
    assert by_key["schedule"]["choices"] == list(meta["schedule"]["choices"])
    assert by_key["overwrite"]["kind"] == "checkbox" and by_key["overwrite"]["value"] == "false"
    assert by_key["lr"]["help"] == meta["lr"]["help"]
    assert "tiny" in f["recipes"]


def test_form_is_prefilled_from_a_recipe():
    by_key = {x["key"]: x for x in launch.form("sft", "tiny")["fields"]}
    assert by_key["model"]["value"] == "tiny:llama"
    assert by_key["max_steps"]["value"] == "3" and by_key["max_steps"]["default"] == "100"
    assert by_key["output_dir"]["value"] == "sft-tiny"  # runs/sft-tiny: a name under the root
    with pytest.raises(UserError, match="no recipe"):
        launch.form("sft", "../../etc/passwd")


@pytest.mark.parametrize("values", [
    {"max_steps": "-1"}, {"lr": "abc"}, {"schedule": "cosin"}, {"max_stepz": "3"},
    {"batch_size": "0", "overwrite": "maybe"}, {"lr": ".nan"}])
def test_validation_messages_equal_the_cli(tmp_path, capsys, values):
    result = launch.check("sft", {"model": "tiny:llama", **values}, tmp_path)
    assert not result["ok"]
    shown = [m for msgs in result["errors"].values() for m in msgs] + result["general"]
    argv = ["sft", "model=tiny:llama", f"output_dir={tmp_path / 'x'}",
            *(f"{k}={v}" for k, v in values.items())]
    assert main(argv) == 2
    cli = capsys.readouterr().err
    assert cli.startswith("lmlab: error: invalid config:")
    assert sorted(shown) == sorted(line[4:] for line in cli.splitlines()[1:])
    for key in values:  # each message beside its own field
        assert key in result["errors"], result


def test_output_dir_is_a_name_under_the_root_and_follows_the_overwrite_rule(tmp_path):
    ok = launch.check("sft", {"model": "tiny:llama", "output_dir": "t1"}, tmp_path)
    assert ok["ok"] and ok["overrides"]["output_dir"] == str(tmp_path / "t1")
    assert set(ok["overrides"]) == {"model", "output_dir"}  # defaults are not sent
    for bad in ("../t1", "/tmp/x", "a/b"):
        r = launch.check("sft", {"output_dir": bad}, tmp_path)
        assert "not a run folder name" in r["errors"]["output_dir"][0]
    make_run(tmp_path, "t1")
    r = launch.check("sft", {"model": "tiny:llama", "output_dir": "t1"}, tmp_path)
    assert r["errors"]["output_dir"] == [(
        f"{tmp_path / 't1'} already holds a sft run: pass resume=auto to continue it or "
        f"overwrite=true to replace it (or choose another output_dir)")]
    assert launch.check("sft", {"output_dir": "t1", "resume": "auto"}, tmp_path)["ok"]
    assert launch.check("sft", {"output_dir": "t1", "overwrite": "true"}, tmp_path)["ok"]
    r = launch.check("dpo", {"output_dir": "t1"}, tmp_path)
    assert "holds a 'sft' run, not 'dpo'" in r["errors"]["output_dir"][0]


def test_only_known_stages(tmp_path):
    for stage in ("rm -rf", "studio", "serve", "nope"):
        with pytest.raises(UserError, match="unknown stage"):
            launch.check(stage, {}, tmp_path)
    r = client(tmp_path).post("/api/launch/nope", json={"values": {}})
    assert r.status_code == 400 and "unknown stage" in r.json()["error"]


def test_a_refused_launch_queues_nothing(tmp_path):
    c = client(tmp_path)
    r = c.post("/api/launch/sft", json={"values": {"max_steps": "-5", "output_dir": "x"}})
    assert r.status_code == 422
    assert r.json()["errors"]["max_steps"] == ["max_steps: -5 is out of range (must be >= 0)"]
    assert c.get("/api/jobs").json()["jobs"] == []
    assert not (tmp_path / "x").exists()
