"""One module per command. Each defines ``Config`` (a dataclass), ``HELP`` (one line) and
``run(cfg) -> dict`` (the summary). Modules are imported only when their stage is used."""

STAGES: dict[str, str] = {
    "sft": "lmlab.stages.sft",
    "reward": "lmlab.stages.reward",
    "dpo": "lmlab.stages.dpo",
    "generate": "lmlab.stages.generate",
}


def load_stage(name: str):
    import importlib

    return importlib.import_module(STAGES[name])
