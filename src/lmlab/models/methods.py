"""Fine-tuning methods: which parameters a method trains, how it is injected, how it saves.

full: every weight. lora / qlora / dora / ia3 / prefix / prompt / ptuning: peft tuners.
adapter: our bottleneck adapters (models.bottleneck). Each function takes plain values, not a
stage's config, so any stage (sft, dpo, grpo) can build a method from its own keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmlab.errors import ConfigError

METHODS = ("full", "lora", "qlora", "dora", "ia3", "prefix", "prompt", "ptuning", "adapter")
LORA_LIKE = ("lora", "qlora", "dora")
VIRTUAL = ("prefix", "prompt", "ptuning")  # prompt learning: virtual tokens, no merge
MERGEABLE = ("full", "lora", "dora", "ia3")  # linear in the base weights: fold into them
WHAT = {  # what each method trains (for docs, help and the comparison table)
    "full": "every weight",
    "lora": "low-rank updates B·A beside the attention and MLP projections",
    "qlora": "LoRA over a frozen 4/8-bit base",
    "dora": "LoRA direction + a per-output-channel magnitude (weight-decomposed LoRA)",
    "ia3": "one scaling vector per adapted projection (keys, values, MLP input)",
    "prefix": "per-layer key/value vectors of n virtual tokens",
    "prompt": "n virtual input embeddings",
    "ptuning": "n virtual input embeddings produced by a small MLP/LSTM encoder",
    "adapter": "bottleneck MLPs (down -> act -> up) after attention and/or MLP blocks",
}


@dataclass(frozen=True)
class MethodSpec:
    """The keys a method reads (filled from a stage's config)."""

    method: str
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=list)
    ia3_targets: list[str] = field(default_factory=list)
    ia3_feedforward: list[str] = field(default_factory=list)
    num_virtual_tokens: int = 20
    prefix_projection: bool = False
    ptuning_encoder: str = "mlp"
    ptuning_hidden: int = 0
    adapter_dim: int = 16
    adapter_style: str = "houlsby"
    adapter_act: str = "relu"


def spec_from(cfg) -> MethodSpec:
    """A MethodSpec from any config that has (some of) its keys."""
    names = MethodSpec.__dataclass_fields__
    return MethodSpec(**{k: getattr(cfg, k) for k in names if hasattr(cfg, k)})


def problems(spec: MethodSpec, *, merge_on_save: bool | None, packing: bool = False,
             activation_checkpointing: bool = False, strategy: str = "ddp") -> list[str]:
    """Combinations that cannot work, each naming its keys (config validation)."""
    m, out = spec.method, []
    if spec.lora_targets and m not in LORA_LIKE:
        out.append(f"lora_targets: only used with method=lora, qlora or dora, not "
                   f"method={m}")
    if (spec.ia3_targets or spec.ia3_feedforward) and m != "ia3":
        out.append(f"ia3_targets / ia3_feedforward: only used with method=ia3, not method={m}")
    extra = set(spec.ia3_feedforward) - set(spec.ia3_targets)
    if m == "ia3" and spec.ia3_feedforward and spec.ia3_targets and extra:
        out.append(f"ia3_feedforward: {sorted(extra)} must also be in ia3_targets")
    if merge_on_save and m not in MERGEABLE:
        why = ("its virtual tokens are not weights" if m in VIRTUAL else
               "its adapters are nonlinear" if m == "adapter" else
               "merging into 4/8-bit weights would round the update away")
        out.append(f"merge_on_save=true: method={m} cannot be merged into the base model "
                   f"({why}); leave merge_on_save unset or false (final/ then holds the "
                   f"adapter and names its base)")
    if activation_checkpointing and m in VIRTUAL:
        out.append(f"activation_checkpointing=true: not with method={m} (the recomputed "
                   f"blocks would write the virtual tokens' cache twice)")
    if strategy == "fsdp" and m in (*VIRTUAL, "adapter"):
        out.append(f"strategy=fsdp: not with method={m} (its wrapper is not sharded); use "
                   f"strategy=ddp")
    if packing and m in VIRTUAL:
        out.append(f"packing=true: not with method={m} (only the first example of a packed "
                   f"row would follow the virtual tokens)")
    return out


def apply_method(model, spec: MethodSpec):
    """``model`` prepared for training with ``spec.method`` (frozen base + trainable parts)."""
    m = spec.method
    if m == "full":
        return model
    if m in ("lora", "qlora", "dora"):
        from lmlab.models.adapters import add_lora

        return add_lora(model, r=spec.lora_r, alpha=spec.lora_alpha, dropout=spec.lora_dropout,
                        targets=spec.lora_targets, dora=m == "dora")
    if m == "ia3":
        return _add_ia3(model, spec)
    if m in VIRTUAL:
        return _add_virtual(model, spec)
    if m == "adapter":
        from lmlab.models.bottleneck import BottleneckConfig, add_bottleneck

        return add_bottleneck(model, BottleneckConfig(spec.adapter_dim, spec.adapter_style,
                                                      spec.adapter_act))
    raise ConfigError(f"method: unknown '{m}'; known: {', '.join(METHODS)}")


def _linear_names(model) -> dict[str, str]:
    """{last name: module class} for every submodule (the first seen of each name)."""
    out: dict[str, str] = {}
    for name, mod in model.named_modules():
        out.setdefault(name.rsplit(".", 1)[-1], type(mod).__name__)
    return out


def ia3_targets(model, spec: MethodSpec) -> tuple[list[str], list[str]]:
    """(target modules, feedforward modules): the keys, or peft's defaults for the
    architecture; each must be a linear layer of ``model``."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
    )

    kind = getattr(model.config, "model_type", "")
    targets = spec.ia3_targets or TARGETS.get(kind)
    if not targets:
        raise ConfigError(f"ia3_targets: peft has no default for model type '{kind}'; name "
                          f"the linear layers to scale, e.g. ia3_targets=[k_proj,v_proj]")
    ff = spec.ia3_feedforward if spec.ia3_targets else FF.get(kind, [])
    names = _linear_names(model)
    for t in targets:
        if t not in names:
            raise ConfigError(f"ia3_targets: '{t}' is not a module of this model")
        if names[t] not in ("Linear", "Conv1D", "Conv2d"):
            raise ConfigError(f"ia3_targets: '{t}' is a {names[t]}; IA3 scales linear layers "
                              f"only (e.g. k_proj, v_proj, down_proj)")
    return list(targets), [f for f in ff if f in targets]


def _add_ia3(model, spec: MethodSpec):
    from peft import IA3Config, get_peft_model

    targets, ff = ia3_targets(model, spec)
    return get_peft_model(model, IA3Config(target_modules=targets, feedforward_modules=ff,
                                           task_type="CAUSAL_LM"))


def _add_virtual(model, spec: MethodSpec):
    from peft import (
        PrefixTuningConfig,
        PromptEncoderConfig,
        PromptTuningConfig,
        get_peft_model,
    )

    from lmlab.models.virtual import VirtualTokensLM

    n = spec.num_virtual_tokens
    if spec.method == "prompt":
        cfg = PromptTuningConfig(num_virtual_tokens=n, task_type="CAUSAL_LM")
    elif spec.method == "ptuning":
        cfg = PromptEncoderConfig(num_virtual_tokens=n, task_type="CAUSAL_LM",
                                  encoder_reparameterization_type=spec.ptuning_encoder.upper(),
                                  encoder_hidden_size=spec.ptuning_hidden or None)
    else:
        cfg = PrefixTuningConfig(num_virtual_tokens=n, task_type="CAUSAL_LM",
                                 prefix_projection=spec.prefix_projection)
    return VirtualTokensLM(get_peft_model(model, cfg))


def can_merge(method: str) -> bool:
    return method in MERGEABLE


def save_method(model, folder, method: str, merge: bool):
    """Write ``model`` into ``folder``: merged into a plain transformers model when ``merge``
    (lora/dora/ia3), else the method's adapter alone. Returns whether it was merged."""
    if method == "adapter":
        from lmlab.models.bottleneck import save_bottleneck

        save_bottleneck(model, folder)
        return False
    merged = method == "full" or (merge and can_merge(method))
    if merged and method != "full":
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    return merged
