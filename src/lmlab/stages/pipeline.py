"""`lmlab pipeline`: run a list of stages from one YAML, in order, then the report.

Every step's config is checked first (all problems at once); then each step runs into
``<output_dir>/<step>/``, done steps are skipped, an interrupted one resumes (see
``lmlab.pipeline``). Unless a step already is a report, ``<output_dir>/report/`` is built over
every step's run folder at the end, and the headline numbers are printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmlab.config import opt

HELP = "run a list of stages from one YAML (skips finished steps, resumes), then the report"


@dataclass
class Config:
    steps: list[dict] = opt([], "the steps: each {name, stage, config (file), overrides "
                                "(mapping; ${name} = that step's run folder)}")
    output_dir: str = opt("runs/pipeline", "folder holding one run folder per step")
    name: str = opt("", "a title for the pipeline and its report")
    profiles: dict = opt({}, "named sets of per-step overrides: {profile: {step: {key: value}}}")
    profile: str = opt("", "which of profiles to apply (empty = none)")
    report: bool = opt(True, "end with lmlab report over every step's run folder")
    dry_run: bool = opt(False, "check every step and print the plan; run nothing")

    def validate(self) -> list[str]:
        return self.plan()[1]

    def plan(self):
        from lmlab.pipeline import plan

        problems = []
        if self.profile and self.profile not in self.profiles:
            known = ", ".join(self.profiles) or "none defined"
            problems.append(f"profile: '{self.profile}' is not in profiles ({known})")
        chosen = self.profiles.get(self.profile) if self.profile else None
        if chosen is not None and not isinstance(chosen, dict):
            problems.append(f"profiles.{self.profile}: expected {{step: {{key: value}}}}")
            chosen = None
        steps, more = plan(self.steps, self.output_dir, chosen)
        return steps, problems + more


def run(cfg: Config, *, loader=None) -> dict:
    from lmlab.errors import ConfigError
    from lmlab.pipeline import plan, run_steps

    chosen = cfg.profiles.get(cfg.profile) if cfg.profile else None
    steps, problems = plan(cfg.steps, cfg.output_dir, chosen, loader=loader)
    if problems:
        raise ConfigError(problems, "pipeline")
    title = cfg.name or Path(cfg.output_dir).name
    print(f"[pipeline] {title}: {len(steps)} steps -> {cfg.output_dir}/"
          + (f" (profile {cfg.profile})" if cfg.profile else ""))
    for s in steps:
        print(f"  {s.index}. {s.name:<12} {s.stage:<10} {s.run_dir}")
    if cfg.report and not any(s.stage == "report" for s in steps):
        print(f"  then: report -> {Path(cfg.output_dir) / 'report'}")
    if cfg.dry_run:
        return {"steps": [s.name for s in steps], "dry_run": True}
    record = run_steps(steps, cfg.output_dir, name=title, profile=cfg.profile)
    if cfg.report and not any(s.stage == "report" for s in steps):
        _report(cfg, steps, title)
    return record


def _report(cfg: Config, steps, title: str) -> None:
    from lmlab.report import build_report, headline_lines
    from lmlab.runs import Run

    out = Path(cfg.output_dir) / "report"
    result = build_report([s.run_dir for s in steps], out, title=title,
                          pipeline=Path(cfg.output_dir) / "pipeline.json")
    Run(path=out, stage="report").write_json("summary.json", {"stage": "report", **result})
    print("[pipeline] headline numbers:")
    for line in headline_lines(result):
        print(f"  {line}")
    print(f"[pipeline] report: {out / 'report.html'} (and report.md)")
