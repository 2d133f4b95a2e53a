"""Fine-tuning methods that cannot combine with a requested option: each fails cleanly and names
the keys (models.methods.problems, ia3 targets, compare-methods' list, unmergeable adapters)."""

from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SFT = ["sft", "model=tiny:llama", f"data={ASSETS / 'sft' / 'chat.jsonl'}", "max_steps=1",
       "batch_size=2", "progress=false", "eval_n=0"]


@pytest.mark.parametrize("args, says", [
    (["method=prompt", "merge_on_save=true"], ["merge_on_save", "method=prompt", "virtual"]),
    (["method=prefix", "merge_on_save=true"], ["merge_on_save", "method=prefix"]),
    (["method=adapter", "merge_on_save=true"], ["merge_on_save", "method=adapter",
                                                "nonlinear"]),
    (["method=qlora", "merge_on_save=true"], ["merge_on_save", "method=qlora"]),
    (["method=prefix", "lora_targets=[q_proj]"], ["lora_targets", "method=prefix"]),
    (["method=lora", "ia3_targets=[k_proj]"], ["ia3_targets", "method=lora"]),
    (["method=ia3", "ia3_targets=[k_proj]", "ia3_feedforward=[down_proj]"],
     ["ia3_feedforward", "down_proj", "ia3_targets"]),
    (["method=ptuning", "packing=true"], ["packing", "method=ptuning"]),
    (["method=prompt", "activation_checkpointing=true"], ["activation_checkpointing",
                                                          "method=prompt"]),
    (["method=adapter", "strategy=fsdp"], ["strategy=fsdp", "method=adapter"]),
    (["method=adapter", "adapter_style=lora"], ["adapter_style", "houlsby"]),
    (["method=prompts"], ["method", "prompt"]),
])
def test_impossible_combinations_name_their_keys(fail, tmp_path, args, says):
    assert fail(*SFT, f"output_dir={tmp_path / 'run'}", *args).says(*says)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


@pytest.mark.parametrize("target, says", [
    ("input_layernorm", ["ia3_targets", "input_layernorm", "LlamaRMSNorm", "linear"]),
    ("kv_proj", ["ia3_targets", "kv_proj", "not a module"]),
])
def test_ia3_on_a_module_it_cannot_scale(fail, tmp_path, target, says):
    assert fail(*SFT, f"output_dir={tmp_path / 'run'}", "method=ia3",
                f"ia3_targets=[{target}]").says(*says)


@pytest.mark.parametrize("args, says", [
    (["methods=[lora,bogus]"], ["methods", "bogus"]),
    (["methods=[]"], ["methods"]),
    (["methods=[lora,lora]"], ["methods", "twice"]),
    (["method=dora"], ["method"]),  # one key for one method: compare-methods runs a list
    (["methods=[ptuning]", "packing=true"], ["packing", "method=ptuning"]),
    (["methods=[lora]", "method_lr.lorra=0.03"], ["method_lr", "lorra"]),
    (["methods=[lora]", "method_lr.lora=nan"], ["method_lr", "finite"]),
    (["methods=[lora]", "method_lr.lora=-1"], ["method_lr", "positive"]),
])
def test_compare_methods_list(fail, tmp_path, args, says):
    assert fail("compare-methods", "model=tiny:llama", f"output_dir={tmp_path / 'cm'}",
                *args).says(*says)


def test_a_stage_that_starts_from_a_plain_model_refuses_an_unmergeable_adapter(fail, tmp_path):
    from lmlab.models import load_model, write_meta
    from lmlab.models.methods import MethodSpec, apply_method, save_method

    folder = tmp_path / "adapter-run" / "final"
    model = apply_method(load_model("tiny:llama"), MethodSpec("prompt", num_virtual_tokens=2))
    save_method(model, folder, "prompt", merge=False)
    write_meta(folder, stage="sft", method="prompt", merged=False, base="tiny:llama")
    (tmp_path / "adapter-run" / "config.yaml").write_text("stage: sft\n")
    assert fail("distill", f"model={tmp_path / 'adapter-run'}", "student=tiny:llama",
                f"output_dir={tmp_path / 'd'}", "max_steps=1", "progress=false").says(
        "cannot be merged", "PROMPT_TUNING")
