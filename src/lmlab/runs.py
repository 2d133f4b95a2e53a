"""Run folders: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/step-N/``, ``final/``,
``summary.json``, ``samples.jsonl`` (DESIGN.md, "Contracts")."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lmlab.common import is_main
from lmlab.config import to_dict
from lmlab.errors import UserError

STEP_RE = re.compile(r"^step-(\d+)$")


@dataclass
class Run:
    path: Path
    stage: str
    started: float = field(default_factory=time.time)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    def log_metrics(self, row: dict) -> None:
        if is_main():
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def write_json(self, name: str, data) -> None:
        if is_main():
            tmp = self.path / f".{name}.tmp"
            tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
            os.replace(tmp, self.path / name)

    def write_jsonl(self, name: str, rows: list[dict]) -> None:
        if is_main():
            with open(self.path / name, "w") as f:
                for r in rows:
                    f.write(json.dumps(r, default=str) + "\n")

    def append_jsonl(self, name: str, rows: list[dict]) -> None:
        """Add ``rows`` to ``name`` in one write (a stopped run loses at most a partial line,
        which ``read_done_jsonl`` cuts)."""
        if is_main():
            with open(self.path / name, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, default=str) + "\n" for r in rows))

    def read_metrics(self) -> list[dict]:
        f = self.path / "metrics.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] \
            if f.exists() else []

    def rewind_metrics(self, step: int) -> None:
        """Keep the metrics rows up to ``step`` (a resumed run logs the later ones again)
        and cut a half-written last line."""
        f = self.path / "metrics.jsonl"
        if not is_main() or not f.exists():
            return
        rows = [r for r in read_done_jsonl(f) if r.get("step", 0) <= step]
        tmp = self.path / ".metrics.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, f)

    def latest_checkpoint(self) -> Path | None:
        steps = checkpoint_steps(self.checkpoints)
        return self.checkpoints / f"step-{steps[-1]}" if steps else None


def chunk_seed(seed: int, start: int) -> int:
    """The sampling seed of a resumable stage's chunk that begins at item ``start``: fixed by
    the position, so a resumed run draws what the uninterrupted run would."""
    return seed * 1_000_003 + start


def read_done_jsonl(path: Path) -> list[dict]:
    """The rows a stopped run finished writing to ``path`` (none if it is missing); a
    half-written last line (the run died mid-write) is cut from the file."""
    if not path.exists():
        return []
    good, size = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            break
        size += len(line.encode("utf-8"))
    with open(path, "r+b") as f:
        f.truncate(size)
    return good


def default_output_dir(stage: str, model: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model).name if "/" in model else model)
    return str(Path("runs") / f"{stage}-{name.strip('-') or 'model'}")


def prepare_run(cfg, stage: str, *, resolved: dict | None = None) -> Run:
    """Create (or reopen, when resuming) the run folder and write the resolved config;
    ``resolved`` (what ``auto`` keys became, and why) goes under ``resolved:``.

    A folder that holds another run is refused unless ``resume`` continues it or
    ``overwrite=true`` replaces it; a folder that holds another *stage's* run is always refused
    unless ``overwrite`` is set. Nothing is ever deleted without ``overwrite``.
    """
    from lmlab.train.distributed import barrier

    if not cfg.output_dir:
        cfg.output_dir = default_output_dir(stage, cfg.model)
    path = Path(cfg.output_dir)
    replace = check_run_folder(path, stage, resume=cfg.resume, overwrite=cfg.overwrite)
    # under torchrun every rank checks the folder as it was before the main rank changes it
    # (else a slower rank finds the new config.yaml and refuses its own run), and none goes on
    # before the folder exists
    barrier()
    if is_main():
        if replace is not None:
            print(f"[lmlab] overwrite=true: deleting the existing {replace} run in {path}")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        body = {"stage": stage, **to_dict(cfg), **({"resolved": resolved} if resolved else {})}
        (path / "config.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    barrier()
    return Run(path=path, stage=stage)


def check_run_folder(path: Path, stage: str, *, resume: str, overwrite: bool) -> str | None:
    """The CLI's rule for a run's ``output_dir`` (``prepare_run``; ``lmlab studio``'s launch form
    checks it too): a folder that holds another run is refused unless ``resume`` continues it or
    ``overwrite`` replaces it; another *stage's* run only with ``overwrite``. Returns the stage of
    the run that ``overwrite`` would delete (None: nothing is deleted)."""
    path = Path(path)
    existing = path / "config.yaml"
    replace = None
    if path.exists() and not path.is_dir():
        raise UserError(f"output_dir {path} is a file, not a folder; choose another output_dir")
    if existing.exists():
        old_stage = saved_stage(existing)
        if overwrite:
            replace = old_stage
        elif old_stage != stage:
            raise UserError(f"{path} holds a '{old_stage}' run, not '{stage}': choose another "
                            f"output_dir or pass overwrite=true to replace it")
        elif resume == "no":
            raise UserError(f"{path} already holds a {stage} run: pass resume=auto to continue "
                            f"it or overwrite=true to replace it (or choose another output_dir)")
    elif path.exists() and any(path.iterdir()) and not overwrite:
        raise UserError(f"{path} exists and is not an lmlab run folder; choose another "
                        f"output_dir or pass overwrite=true")
    return replace


def saved_stage(config: Path) -> str:
    """The stage named in a run folder's ``config.yaml``; a user error naming it when it is not
    the YAML mapping lmlab wrote; "?" when it names none."""
    try:
        old = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{config} is damaged ({type(e).__name__}); fix it, or choose another "
                        f"output_dir, or pass overwrite=true to replace the run") from None
    if old is None:
        return "?"
    if not isinstance(old, dict):
        raise UserError(f"{config} is not an lmlab run config (a YAML {type(old).__name__}, not "
                        f"a mapping); choose another output_dir or pass overwrite=true")
    return str(old.get("stage", "?"))


def checkpoint_steps(folder: Path) -> list[int]:
    if not folder.exists():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := STEP_RE.match(p.name))
                  and (p / "state.pt").exists())


def fsync_path(target) -> None:
    """Flush a file (an open file object) or a folder (a path) to disk: a rename is durable
    only after what it names and the folder that holds it are. Best effort where the platform
    cannot sync folders."""
    try:
        if hasattr(target, "fileno"):
            os.fsync(target.fileno())
            return
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def temp_folder(run_path: Path, name: str = ".final.tmp") -> Path:
    """An empty temp folder to write a final folder into before ``commit_folder``: what a killed
    save left there is cleared first, so no stale file of it ends up in the new folder."""
    tmp = Path(run_path) / name
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def commit_folder(tmp: Path, final: Path) -> None:
    """Rename a fully written temp folder into place (replacing an older one). A folder cannot
    replace a non-empty one in one rename: the older one moves to ``.old-<name>`` first, and
    ``tidy_checkpoints`` moves it back if a kill came before the new one was in place."""
    from lmlab.train.killpoints import killpoint

    if final.exists():
        old = final.with_name(f".old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        killpoint("commit.replace")
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_path(final.parent)


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints; each is renamed out of ``step-N`` first,
    so a kill mid-delete leaves no partial ``step-N``."""
    for step in checkpoint_steps(folder)[:-keep]:
        doomed = folder / f".del-step-{step}"
        os.replace(folder / f"step-{step}", doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def tidy_checkpoints(folder: Path) -> None:
    """Clear what a killed save or prune left behind in ``folder``: temp folders (never
    complete as far as anyone knows) and half-deleted ones go; an ``.old-step-N`` whose
    ``step-N`` is missing (killed mid-replace) is moved back."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".old-") and STEP_RE.match(p.name[5:]) \
                and not (folder / p.name[5:]).exists():
            os.replace(p, folder / p.name[5:])
        elif p.name.startswith((".tmp-", ".del-", ".old-")):
            shutil.rmtree(p, ignore_errors=True)
