"""`lmlab report`: run folders -> one self-contained ``report.html`` and ``report.md``.

Reads what the stages wrote (nothing is recomputed) and writes ``<output_dir>/report.html``
(plots embedded, opens from disk with no network), ``report.md`` with ``plots/*.png``, and a
``summary.json`` with the findings and comparison tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt

HELP = "report: curves, model comparison, samples, speed and environment from run folders"
POSITIONAL = "runs"  # `lmlab report runs/demo` == `lmlab report runs=runs/demo`


@dataclass
class Config:
    runs: list[str] = opt(["runs"], "run folders, folders of runs (e.g. a pipeline's folder), "
                                    "or benchmark .json files")
    output_dir: str = opt("", "where report.html, report.md and plots/ go (default: "
                              "<folder>/report when runs is one folder of runs, else "
                              "runs/report)")
    title: str = opt("lmlab report", "the page's title")
    samples: int = opt(6, "prompts shown side by side", min=0)

    def validate(self) -> list[str]:
        return [] if self.runs else ["runs: give at least one run folder"]


def run(cfg: Config) -> dict:
    from pathlib import Path

    import yaml

    from lmlab.config import to_dict
    from lmlab.report import build_report
    from lmlab.runs import Run

    if not cfg.output_dir:
        one = Path(cfg.runs[0])
        folder_of_runs = len(cfg.runs) == 1 and one.is_dir() and not (one / "config.yaml").exists()
        cfg.output_dir = str(one / "report") if folder_of_runs else "runs/report"
    result = build_report(cfg.runs, cfg.output_dir, title=cfg.title, samples=cfg.samples)
    run_ = Run(path=Path(cfg.output_dir), stage="report")
    (run_.path / "config.yaml").write_text(yaml.safe_dump({"stage": "report", **to_dict(cfg)},
                                                          sort_keys=False))
    run_.write_json("summary.json", {"stage": "report", **result})
    print(f"[lmlab] report of {len(result['runs'])} runs: {result['html']} (and report.md)")
    return result
