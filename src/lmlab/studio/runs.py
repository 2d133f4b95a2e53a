"""The runs table: every run folder under the root (and the steps of a pipeline, and runs one
folder further down) as a row, without ever failing on a damaged folder.

A row is cheap to keep fresh: each folder's row is cached under the sizes and mtimes of the
files it is made from, and ``metrics.jsonl`` is read incrementally (only the bytes added since
the last scan), so a page that polls 200 runs stats a few files per run and reads nothing new.

Status, from what the folder holds (a studio job's own state wins while it has one):
finished (``summary.json``), running (``metrics.jsonl`` written in the last ``STALE_S``
seconds), interrupted (a checkpoint to resume from), failed (none of these).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lmlab.errors import UserError
from lmlab.studio.paths import resolve_run

STALE_S = 120.0  # a run whose metrics.jsonl is older than this is not running (one slow step)
MARKERS = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints", "final")
# the headline metric: the first of these in the last metrics row, else its first number
HEADLINE = ("eval/loss", "train/loss", "loss", "train/reward", "train/return")
_STEP = re.compile(r"^step-(\d+)$")
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster


def resolve_name(root: Path, name: str) -> Path:
    """A table name (``run`` or ``folder/step``) -> its folder; each part through
    ``paths.resolve_run``, so nothing outside the root is reachable."""
    parts = name.split("/") if isinstance(name, str) else [name]
    if not 1 <= len(parts) <= 2:
        raise UserError(f"run: {name!r} is not a run folder name under {Path(root).resolve()}")
    path = resolve_run(root, parts[0])
    return resolve_run(path, parts[1]) if len(parts) == 2 else path


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in MARKERS)


# ----------------------------------------------------------------------------- metrics


@dataclass
class Tail:
    """What a scan keeps of one metrics.jsonl: where it stopped, rows seen, the last row."""

    inode: int = -1
    offset: int = 0
    rows: int = 0
    last: dict = field(default_factory=dict)
    problem: str = ""


def finite(v):
    """``v`` with nan/inf numbers (at any depth) as None: JSON has no spelling for them, and a
    diverged run's loss is one."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite(x) for x in v]
    return v


def _bad_row(line: bytes) -> bool:
    """A cheap test of a complete line (a full parse of every row of 200 runs is too slow for
    the first page load; the line whose row is shown is parsed in full)."""
    s = line.strip()
    return bool(s) and not (s.startswith(b"{") and s.endswith(b"}"))


def update_tail(path: Path, tail: Tail) -> Tail:
    """Read what was appended to ``path`` since ``tail`` (from the start when the file was
    replaced or shrank: a resumed run rewinds it). A half-written last line waits."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return Tail()
    if st.st_ino != tail.inode or st.st_size < tail.offset:
        tail = Tail(inode=st.st_ino)
    if st.st_size == tail.offset:
        return tail
    with open(path, "rb") as f:
        f.seek(tail.offset)
        data = f.read(st.st_size - tail.offset)
    end = data.rfind(b"\n")
    if end < 0:
        return tail
    lines = data[:end].split(b"\n")
    for i, line in enumerate(lines):
        if not tail.problem and _bad_row(line):
            tail.problem = f"metrics.jsonl:{tail.rows + i + 1}: not a JSON row: " \
                           f"{line[:40].decode('utf-8', 'replace')!r}"
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            tail.last = finite(row)
            break
    tail.rows += len(lines)
    tail.offset += end + 1
    return tail


def read_rows(path: Path, after: int = 0, limit_bytes: int = 8 << 20) -> dict:
    """The complete rows of ``path`` from byte ``after``: ``{rows, offset, reset, problems}``.
    ``reset``: the file is shorter than ``after`` (rewound by a resume), read from 0."""
    out = {"rows": [], "offset": after, "reset": False, "problems": []}
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return out
    if size < after:
        after, out["reset"] = 0, True
    with open(path, "rb") as f:
        f.seek(after)
        data = f.read(min(size - after, limit_bytes))
    end = data.rfind(b"\n")
    if end < 0:
        out["offset"] = after
        return out
    pos = after
    for line in data[:end].split(b"\n"):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict):
                out["rows"].append(finite(row))
            else:
                out["problems"].append(f"metrics.jsonl: the line at byte {pos} is not a JSON "
                                       f"row: {line[:40].decode('utf-8', 'replace')!r}")
        pos += len(line) + 1
    out["offset"] = after + end + 1
    return out


# ----------------------------------------------------------------------------- one folder


def _stamp(path: Path) -> tuple:
    """What a row depends on: (size, mtime) of each marker file and of checkpoints/."""
    out = []
    for m in ("config.yaml", "summary.json", "checkpoints", "final", "report/report.html"):
        try:
            st = (path / m).stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _read_yaml(path: Path) -> tuple[dict, str]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except FileNotFoundError:
        return {}, "config.yaml is missing"
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        return {}, f"config.yaml is damaged ({type(e).__name__})"
    if data is None:
        return {}, ""
    if not isinstance(data, dict):
        return {}, f"config.yaml is not a mapping (a YAML {type(data).__name__})"
    return finite(data), ""


def _read_json(path: Path) -> tuple[dict | None, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as e:
        return None, f"summary.json is damaged ({type(e).__name__})"
    return (finite(data), "") if isinstance(data, dict) else (None, "summary.json is not an object")


def _checkpoints(path: Path) -> int:
    """The newest complete checkpoint's step (as ``lmlab.runs.checkpoint_steps`` counts them;
    that module imports torch, which the table does not need)."""
    try:
        names = os.listdir(path / "checkpoints")
    except OSError:
        return 0
    steps = [int(m.group(1)) for n in names if (m := _STEP.match(n))
             and os.path.exists(path / "checkpoints" / n / "state.pt")]
    return max(steps, default=0)


def headline(row: dict) -> tuple[str, float] | None:
    for k in HEADLINE:
        if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool):
            return k, row[k]
    for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
            return k, v
    return None


def _static_part(path: Path) -> dict:
    """The parts of a row that change only with config.yaml / summary.json / checkpoints."""
    cfg, problem = _read_yaml(path / "config.yaml")
    summary, bad_summary = _read_json(path / "summary.json")
    return {"stage": str(cfg.get("stage", "?")), "model": str(cfg.get("model", "")),
            "max_steps": cfg.get("max_steps") if isinstance(cfg.get("max_steps"), int) else None,
            "summary": summary is not None, "checkpoint": _checkpoints(path),
            "final": (path / "final").is_dir(),
            "report": (path / "report" / "report.html").is_file(),
            "problems": [p for p in (problem, bad_summary) if p]}


# ----------------------------------------------------------------------------- the index


class RunIndex:
    """Scans a root for run folders; thread-safe; rows cached per folder (see the module doc)."""

    def __init__(self, root: Path, stale_s: float = STALE_S):
        self.root = Path(root).resolve()
        self.stale_s = stale_s
        self._static: dict[Path, tuple[tuple, dict]] = {}
        self._tails: dict[Path, Tail] = {}
        self._lock = threading.Lock()

    def folders(self) -> list[tuple[str, Path]]:
        """(name, folder) of every run: the root's run folders; inside a pipeline's folder, or
        a plain folder of runs, its run folders as ``folder/step``."""
        out = []
        for top in _subdirs(self.root):
            top_is_run = is_run(top)
            if top_is_run:
                out.append((top.name, top))
            if not top_is_run or self._static_of(top)["stage"] == "pipeline":
                out += [(f"{top.name}/{sub.name}", sub) for sub in _subdirs(top) if is_run(sub)]
        return out

    def _static_of(self, path: Path) -> dict:
        with self._lock:
            stamp = _stamp(path)
            cached = self._static.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, _static_part(path))
                self._static[path] = cached
            return cached[1]

    def row(self, name: str, path: Path, job: dict | None = None) -> dict:
        static = self._static_of(path)
        with self._lock:
            tail = update_tail(path / "metrics.jsonl", self._tails.get(path, Tail()))
            self._tails[path] = tail
        problems = list(static["problems"]) + ([tail.problem] if tail.problem else [])
        age = _age(path)
        metric = headline(tail.last)
        return {"name": name, "stage": static["stage"], "model": static["model"],
                "status": _status(static, age, self.stale_s, job),
                "steps": tail.last.get("step", static["checkpoint"] or None),
                "max_steps": static["max_steps"],
                "metric": {"key": metric[0], "value": metric[1]} if metric else None,
                "age_s": round(age, 1), "checkpoint": static["checkpoint"],
                "final": static["final"], "report": static["report"],
                "job": job, "problem": "; ".join(problems)}

    def scan(self, jobs: dict[Path, dict] | None = None) -> list[dict]:
        """Every run's row, newest first. ``jobs``: the studio's job state per run folder."""
        jobs = jobs or {}
        rows = []
        for name, path in self.folders():
            try:
                rows.append(self.row(name, path, jobs.get(path)))
            except OSError as e:  # deleted mid-scan, unreadable: listed, with why
                rows.append({"name": name, "stage": "?", "model": "", "status": "failed",
                             "steps": None, "max_steps": None, "metric": None, "age_s": None,
                             "checkpoint": 0, "final": False, "report": False, "job": None,
                             "problem": f"cannot read the folder ({type(e).__name__}: {e})"})
        rows.sort(key=lambda r: (r["age_s"] is None, r["age_s"] or 0))
        return rows


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir()
                      if not p.name.startswith((".", "_")) and p.is_dir())
    except OSError:
        return []


def _age(path: Path) -> float:
    """Seconds since the folder last changed (its newest marker file)."""
    newest = 0.0
    for m in ("metrics.jsonl", "summary.json", "config.yaml", "checkpoints", ""):
        try:
            newest = max(newest, os.stat(path / m).st_mtime)
        except OSError:
            pass
        if newest and m == "checkpoints":
            break  # the folder's own mtime only when none of its files is there
    return max(0.0, time.time() - newest)


def _status(static: dict, age: float, stale_s: float, job: dict | None) -> str:
    if job and job.get("status") in ("queued", "running", "stopping"):
        return "running" if job["status"] == "stopping" else job["status"]
    if static["summary"]:
        return "finished"
    if job and job.get("status") in ("stopped", "failed", "interrupted"):
        return "interrupted" if job["status"] == "stopped" else job["status"]
    if age < stale_s:
        return "running"
    return "interrupted" if static["checkpoint"] else "failed"


def run_details(path: Path) -> dict:
    """The run page's parts: its resolved config and its summary (each with its problem)."""
    cfg, problem = _read_yaml(path / "config.yaml")
    summary, bad = _read_json(path / "summary.json")
    return {"config": cfg, "summary": summary, "problems": [p for p in (problem, bad) if p]}
