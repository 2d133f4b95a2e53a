"""Read run folders for the report: what every stage wrote, nothing recomputed.

``discover`` turns the paths a user gives (run folders, a pipeline folder, a parent of runs,
benchmark JSON files or folders of them) into ``RunData`` and ``BenchFile`` objects.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lmlab.errors import UserError

MAX_DEPTH = 3


@dataclass
class RunData:
    path: Path
    stage: str
    config: dict
    summary: dict | None = None  # None: the run has not finished (or crashed)
    metrics: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    evals: dict[str, dict] = field(default_factory=dict)  # evaluate: label -> eval.json
    eval_samples: dict[str, list[dict]] = field(default_factory=dict)  # label -> samples
    comparison: dict | None = None  # evaluate: comparison.json
    bench: dict | None = None  # bench: bench.json
    label: str = ""
    wall_s: float | None = None
    wall_source: str = ""  # "pipeline" (measured) or "files" (summary.json - config.yaml times)
    started: str = ""

    @property
    def model(self) -> str:
        return str(self.config.get("model", ""))

    @property
    def finished(self) -> bool:
        return self.summary is not None


@dataclass
class BenchFile:
    path: Path
    data: dict
    label: str = ""


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a killed run: keep the rest
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_run(path: Path) -> RunData:
    path = Path(path)
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read config.yaml ({e})") from None
    summary = _json(path / "summary.json")
    run = RunData(path=path, stage=str(config.get("stage", "?")), config=config,
                  summary=summary if isinstance(summary, dict) else None,
                  metrics=_jsonl(path / "metrics.jsonl"), samples=_jsonl(path / "samples.jsonl"))
    for eval_file in sorted(path.glob("models/*/eval.json")):
        data = _json(eval_file)
        if isinstance(data, dict):
            label = str(data.get("label") or eval_file.parent.name)
            run.evals[label] = data
            run.eval_samples[label] = _jsonl(eval_file.parent / "samples.jsonl")
    comparison, bench = _json(path / "comparison.json"), _json(path / "bench.json")
    run.comparison = comparison if isinstance(comparison, dict) else None
    run.bench = bench if isinstance(bench, dict) else None
    started = path / "config.yaml"
    run.started = time.strftime("%Y-%m-%d %H:%M", time.localtime(started.stat().st_mtime))
    if run.summary is not None:
        run.wall_s = (path / "summary.json").stat().st_mtime - started.stat().st_mtime
        run.wall_source = "files"
    return run


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def _bench_jsons(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("*.json") if p.name != "pipeline.json")


def _expand(path: Path, depth: int, runs: list[Path], benches: list[Path],
            pipelines: list[Path]) -> None:
    if (path / "pipeline.json").is_file():
        pipelines.append(path / "pipeline.json")
    children = sorted((c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")),
                      key=lambda c: ((c / "config.yaml").stat().st_mtime if _is_run(c) else 0,
                                     c.name))
    child_runs = [c for c in children if _is_run(c)]
    runs += child_runs
    if not child_runs and not (path / "pipeline.json").is_file():
        benches += _bench_jsons(path)
    if depth < MAX_DEPTH:
        for c in children:
            if not _is_run(c):
                _expand(c, depth + 1, runs, benches, pipelines)


def discover(paths: list[str | Path], *, exclude: Path | None = None):
    """(runs, bench files, pipeline.json files) found under ``paths``, in order."""
    runs: list[Path] = []
    benches: list[Path] = []
    pipelines: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"runs: {p} does not exist")
        if p.is_file():
            if p.suffix != ".json":
                raise UserError(f"runs: {p} is neither a run folder nor a benchmark .json file")
            (pipelines if p.name == "pipeline.json" else benches).append(p)
        elif _is_run(p):
            runs.append(p)
            if (p.parent / "pipeline.json").is_file():
                pipelines.append(p.parent / "pipeline.json")
        else:
            _expand(p, 1, runs, benches, pipelines)
    ex = exclude.resolve() if exclude else None
    seen, loaded = set(), []
    for r in runs:
        key = r.resolve()
        if key in seen or key == ex:
            continue
        seen.add(key)
        run = load_run(r)
        if run.stage in ("report", "pipeline"):
            continue
        loaded.append(run)
    bench_files = []
    for b in dict.fromkeys(x.resolve() for x in benches):
        data = _json(b)
        if isinstance(data, dict):
            bench_files.append(BenchFile(path=b, data=data))
    pipes = [d for d in (_json(p) for p in dict.fromkeys(x.resolve() for x in pipelines))
             if isinstance(d, dict)]
    _label(loaded, bench_files)
    _apply_pipeline_walls(loaded, pipes)
    return loaded, bench_files, pipes


def _label(runs: list[RunData], benches: list[BenchFile]) -> None:
    """Short unique names: the folder name, or parent/name when two folders share a name."""
    for items in (runs, benches):
        names = [i.path.stem if isinstance(i, BenchFile) else i.path.name for i in items]
        for item, name in zip(items, names):
            item.label = f"{item.path.parent.name}/{name}" if names.count(name) > 1 else name


def _apply_pipeline_walls(runs: list[RunData], pipelines: list[dict]) -> None:
    walls = {}
    for p in pipelines:
        for s in p.get("steps", []):
            if isinstance(s, dict) and s.get("wall_s") is not None and s.get("run_dir"):
                walls[Path(s["run_dir"]).resolve()] = s
    for run in runs:
        s = walls.get(run.path.resolve())
        if s is not None:
            run.wall_s, run.wall_source = float(s["wall_s"]), "pipeline"
            run.started = str(s.get("started", run.started))[:16]


# --- the machine ----------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    """The machine and the versions that matter, as strings and numbers (JSON-ready)."""
    env = {"time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
           "os": platform.platform(), "python": platform.python_version(), "cpu": _cpu_name(),
           "cores": os.cpu_count(), "memory_gb": _memory_gb(),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset")}
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = ", ".join(torch.cuda.get_device_name(i)
                                   for i in range(torch.cuda.device_count()))
        else:
            env["gpu"] = "none"
    except ImportError:
        env["torch"] = "not installed"
    for pkg in ("transformers", "peft", "trl", "lmlab"):
        env[pkg] = _version(pkg)
    env["lmlab_commit"] = _git_commit()
    return env
