"""``make demo``: the default lever study on built-in data (mnist1d), then its report.

Equivalent to ``poolkit study`` with its defaults: mnist1d with 1000 training
samples, statistics max and avg, λ = 0, 0.5, 1, two seeds, 1000 Adam steps per
trial. Re-running resumes from the SQLite file in ``poolkit-out/``; finished
trials are not run again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .report import write_report
from .study import StudyConfig, run_study

__all__ = ["main"]


def main(out: str | Path = "poolkit-out") -> Path:
    """Run (or resume) the default study and write its report; return the report folder."""
    out = Path(out)
    cfg = StudyConfig()
    print(
        f"poolkit demo: {cfg.dataset}, statistics {', '.join(cfg.pools)}, "
        f"λ = {', '.join(f'{v:g}' for v in cfg.levers)}, "
        f"{cfg.seeds} seeds, {cfg.train.steps} steps per trial (a few minutes on 2 cores)",
        flush=True,
    )
    url, name = run_study(cfg, out=out)
    path = write_report(name, url, out / f"report-{name}")
    finding = [ln for ln in (path / "summary.md").read_text().splitlines() if ln.startswith("**Finding")]
    print("\n".join(ln.replace("**", "") for ln in finding))
    print(f"report: {(path / 'index.html').resolve()}")
    print(f"storage: {url} (study {name!r}); rerun to resume, `poolkit report {name} --storage {url}` to re-report")
    return path


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "poolkit-out")
