"""`lmlab STAGE [--config FILE] [key=value ...]`."""

from __future__ import annotations

import logging
import os
import sys

from lmlab.errors import UserError
from lmlab.openmp import set_spin_default

USAGE = "usage: lmlab STAGE [--config FILE] [key=value ...]\n       lmlab STAGE --help"


def _stage_help(name: str, module) -> str:
    from lmlab.config import describe

    rows = describe(module.Config)
    width = max(len(r[0]) for r in rows)
    tw = max(len(r[1]) for r in rows)
    lines = [f"lmlab {name}: {module.HELP}", "",
             f"usage: lmlab {name} [--config FILE] [key=value ...]", "", "keys:"]
    for key, tp, default, help_ in rows:
        lines.append(f"  {key:<{width}}  {tp:<{tw}}  default {default}")
        lines.append(f"  {'':<{width}}  {help_}")
    return "\n".join(lines)


def _main_help() -> str:
    from lmlab.stages import STAGES, load_stage

    lines = ["lmlab: the LLM lifecycle on the hardware you have.", "", USAGE, "", "stages:"]
    width = max(12, *map(len, STAGES))
    for name in STAGES:
        lines.append(f"  {name:<{width}} {load_stage(name).HELP}")
    lines += ["", ("Every stage writes a run folder (config.yaml, metrics.jsonl, checkpoints/, "
                   "final/, summary.json)."), "See docs/ for one page per stage."]
    return "\n".join(lines)


def parse_args(argv: list[str], stage: str = "STAGE") -> tuple[str | None, list[str], bool]:
    config, rest, want_help = None, [], False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            want_help = True
        elif a in ("-c", "--config") or a.startswith("--config="):
            if "=" in a:
                config = a.split("=", 1)[1]
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                config = argv[i + 1]
                i += 1
            else:
                config = ""
            _check_config_file(a.split("=", 1)[0], config)
        elif a.startswith("--") and "=" in a:
            rest.append(a[2:])  # tolerate --key=value
        elif a.startswith("-"):
            key = a.lstrip("-").replace("-", "_")
            raise UserError(f"unknown option {a}: options are key=value (e.g. {key}=...); "
                             f"`lmlab {stage} --help` lists the keys\n{USAGE}")
        else:
            rest.append(a)
        i += 1
    return config, rest, want_help


def _check_config_file(flag: str, path: str) -> None:
    from pathlib import Path

    if not path:
        raise UserError(f"{flag} needs a file: {flag} FILE.yaml")
    p = Path(path)
    if p.is_dir():
        saved = p / "config.yaml"
        hint = f"; did you mean {saved}?" if saved.is_file() else ""
        raise UserError(f"{flag} {path} is a folder, not a YAML file{hint}")


def _unknown_stage(name: str, stages) -> UserError:
    import difflib

    if name.startswith("-"):
        return UserError(f"'{name}' before a stage: the stage comes first "
                          f"(`lmlab STAGE {name} ...`); stages: {', '.join(stages)}\n{USAGE}")
    close = difflib.get_close_matches(name.lower(), list(stages), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(f"unknown stage '{name}'{hint}; stages: {', '.join(stages)}")


# log lines other libraries print on every run that say nothing to a user of this tool, as
# (logger, part of the message, shown on a CUDA build of torch):
# - torchao failing to load its CUDA kernels in a CPU build of torch (transformers imports torchao
#   whenever it is installed): news on a CUDA build, where those kernels should load;
# - torch deprecating how torchao registers two enums;
# - bitsandbytes (imported by peft) reaching for an optional CPU 4-bit kernel on the Hugging Face
#   hub through the `kernels` package: offline it says it skipped the publisher check, then that
#   the kernel is not cached; bitsandbytes then uses its own CPU code. lmlab runs offline by
#   design, and on a CUDA build the CPU kernel is not used at all.
_NOISE = (("torchao", "Failed to load ", True),
          ("torch.utils._pytree", "is an Enum subclass", False),
          ("kernels._internals.hf_hub", "Skipping publisher trust check", False),
          ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward", False))
# Python warnings of the same kind: (category, start of the message); peft asks transformers a
# question under its old name on every adapter
_NOISE_WARNINGS = ((FutureWarning, "`is_gradient_checkpointing` is deprecated"),)


def _cpu_torch() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and getattr(torch.version, "cuda", None) is None


def _drop_noise() -> None:
    import re
    import warnings

    for name, part, on_cuda in _NOISE:
        logger = logging.getLogger(name)
        if not any(getattr(f, "lmlab_noise", False) for f in logger.filters):
            def keep(record, part=part, on_cuda=on_cuda) -> bool:
                if part not in record.getMessage():
                    return True
                return on_cuda and not _cpu_torch()  # a CUDA build: worth seeing

            keep.lmlab_noise = True
            logger.addFilter(keep)
    for category, start in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(start), category=category)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _drop_noise()
    from lmlab.stages import STAGES, load_stage

    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(_main_help())
            return 0
        if argv[0] in ("-V", "--version"):
            from lmlab import __version__

            print(__version__)
            return 0
        name = argv[0]
        if name not in STAGES:
            raise _unknown_stage(name, STAGES)
        set_spin_default()  # before the stage loads torch (lmlab.openmp)
        module = load_stage(name)
        args = argv[1:]
        positional = getattr(module, "POSITIONAL", None)  # e.g. `lmlab bench generate`
        if positional and args and not args[0].startswith("-") and "=" not in args[0]:
            args = [f"{positional}={args[0]}", *args[1:]]
        config, overrides, want_help = parse_args(args, name)
        if want_help:
            print(_stage_help(name, module))
            return 0
        from lmlab.config import load_config

        cfg = load_config(module.Config, config, overrides, stage=name)
        module.run(cfg)
        return 0
    except UserError as e:
        print(f"lmlab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        # a training loop's Ctrl-C says what it saved (lmlab.train.interrupt); elsewhere (generate,
        # serve, before a loop starts) there is nothing more to claim than the interruption
        print(f"lmlab: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
