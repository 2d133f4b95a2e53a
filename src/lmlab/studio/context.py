"""What every studio route shares: the runs root, the access token and the job queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StudioContext:
    root: Path  # the folder whose run folders the studio lists and serves; nothing outside it
    token: str | None = None  # required in an ``Authorization: Bearer`` header when set
    queue: Any = None  # lmlab.studio.jobs.JobQueue: heavy jobs (launch, quantize, export)
    extra: dict = field(default_factory=dict)  # per-router state (running servers, ...)
