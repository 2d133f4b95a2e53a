"""One module per command. Each defines ``Config`` (a dataclass), ``HELP`` (one line) and
``run(cfg) -> dict`` (the summary). Modules are imported only when their stage is used.

A stage is any module in this package whose name does not start with ``_`` and is not in
``NOT_STAGES``; adding a command means adding its module, nothing else. A module name's
underscores are the command's hyphens (``compare_methods`` is ``lmlab compare-methods``)."""

from __future__ import annotations

import importlib
import pkgutil

NOT_STAGES = {"setup"}
# lifecycle order for ``lmlab --help``; stages not listed follow alphabetically
ORDER = ["tokenizer", "pretrain", "sft", "compare-methods", "reward", "dpo", "preferences",
         "self-instruct", "ppo", "grpo", "distill", "quantize", "qat", "evaluate", "generate",
         "bench", "serve", "studio", "report", "pipeline", "embed", "index", "scratch", "vision",
         "agent", "plan", "env"]


def _discover() -> dict[str, str]:
    names = [m.name for m in pkgutil.iter_modules(__path__)
             if not m.name.startswith("_") and m.name not in NOT_STAGES and not m.ispkg]
    rank = {n: i for i, n in enumerate(ORDER)}
    names.sort(key=lambda n: (rank.get(n.replace("_", "-"), len(ORDER)), n))
    return {n.replace("_", "-"): f"{__name__}.{n}" for n in names}


STAGES: dict[str, str] = _discover()


def load_stage(name: str):
    return importlib.import_module(STAGES[name])
