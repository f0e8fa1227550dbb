"""The ``poolkit`` command: run lever studies, report them, list what is available.

Examples::

    poolkit study                                    # mnist1d, max/avg, λ = 0, 0.5, 1, 2 seeds
    poolkit study --dataset digits-where --padding circular --pools max --levers 0,0.25,0.5,0.75,1
    poolkit study --dataset mnist1d --n-trials 20 --sampler tpe   # search λ
    poolkit study --dataset mnist1d --sampler tpe --n-trials 40 --search-space arch,learn   # λ and the network
    poolkit study --dataset mnist1d --pools max --levers learn --seeds 3   # the network learns λ
    poolkit study --model my_models.py:resnet1d --dataset npz:ecg.npz --device cuda   # your model, your GPU
    poolkit study --model my_models.py:small_cnn --dataset folder:images/ --data-option size=32,32
    poolkit report mnist1d-zeros --storage sqlite:///poolkit-out/poolkit.db --out report/
    poolkit list
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["app", "main", "parse_levers", "parse_options"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="poolkit: pooling as the lever between "
                  "equivariance and invariance. Sweep it on data, store every trial, report the optimum.")


def parse_levers(text: str) -> list[float] | str:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; every value must be in [0, 1]; ``"learn..."`` passes as given."""
    from poolkit.lab.lever import check_levers

    try:
        vals = check_levers(text, name="--levers")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if not vals:
        raise typer.BadParameter(f"--levers must hold at least one value in [0, 1], got {text!r}")
    return vals


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["canvas=32", "task=quadrant"]`` -> ``{"canvas": 32, "task": "quadrant"}`` (numbers typed)."""
    from poolkit.registry import _value

    out: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"--data-option must be KEY=VALUE, got {item!r}")
        out[key.strip()] = _value(val)
    return out


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


@app.command()
def study(
    dataset: str = typer.Option("mnist1d", help="mnist1d, digits-shift, digits-where, npz:PATH, folder:PATH, "
                                "ucr:NAME, csv:PATH"),
    pools: str = typer.Option("max,avg", help="comma-separated pool specs (poolkit list)"),
    levers: str = typer.Option("0,0.5,1", help="comma-separated λ values in [0, 1], or 'learn' (the network "
                               "learns λ; 'learn:objective=train' to learn it on the training loss)"),
    seeds: int = typer.Option(2, min=1, help="seeds per grid point"),
    storage: str | None = typer.Option(None, help="Optuna storage URL [default: sqlite:///OUT/poolkit.db]"),
    study_name: str | None = typer.Option(None, help="[default: DATASET-PADDING]"),
    workers: int = typer.Option(1, min=1, help="local worker processes on one storage"),
    out: Path = typer.Option(Path("poolkit-out"), help="folder for the SQLite file and the report"),  # noqa: B008
    padding: str = typer.Option("zeros", help="conv padding: zeros or circular (exact invariance at λ = 1)"),
    train_size: int | None = typer.Option(None, help="training samples [default: the loader's; mnist1d 1000]"),
    steps: int = typer.Option(1000, min=1, help="Adam steps per trial (the training budget)"),
    channels: int = typer.Option(32, min=1, help="conv width"),
    blocks: int = typer.Option(2, min=1, help="conv blocks of the lab's network"),
    kernel_size: int | None = typer.Option(None, help="conv kernel, odd [default: 5 in 1-D, 3 in 2-D/3-D]"),
    batch_size: int = typer.Option(100, min=1),
    lr: float = typer.Option(1e-2),
    weight_decay: float = typer.Option(0.0, min=0.0, help="Adam weight decay"),
    lr_schedule: str = typer.Option("constant", help="constant, or cosine (from --lr down to 0 over the steps)"),
    norm: str = typer.Option("none", help="none, or batch (a BatchNorm after each conv of the lab's network)"),
    data_option: list[str] = typer.Option([], help="KEY=VALUE passed to the dataset loader (repeatable)"),  # noqa: B008
    n_trials: int | None = typer.Option(None, help="with --sampler tpe: number of trials of the λ search"),
    sampler: str = typer.Option("grid", help="grid (sweep the levers) or tpe (search continuous λ)"),
    search_space: str | None = typer.Option(None, help="with --sampler tpe: knobs searched too, e.g. 'arch' "
                                            "(channels, blocks, kernel_size, lr, steps), 'all', "
                                            "'channels=16..64,kernel_size=3|5,learn'; trials are then scored on "
                                            "a held-out 20 % of the training set"),
    folds: int = typer.Option(1, min=1, max=5, help="with --search-space: score each configuration on this many "
                              "of the training set's 5 stratified folds (5: cross-validation, 5x the cost)"),
    retrain_seeds: int = typer.Option(3, min=0, help="with --search-space: retrain the best configuration "
                                      "from scratch on the whole training set with this many seeds (0: skip)"),
    threads: int = typer.Option(1, min=1, help="torch threads per worker"),
    report: bool = typer.Option(True, "--report/--no-report", help="write the report when done"),
    model: str | None = typer.Option(None, help="your model factory FILE.py:FUNC or module.path:FUNC, "
                                     "FUNC(in_channels, num_classes) -> nn.Module ending in a global pool and a "
                                     "linear head (default: the lab's LeverNet)"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu); "
                                      "with several GPUs and --workers, one worker per GPU"),
    amp: bool = typer.Option(False, "--amp/--no-amp", help="mixed precision (float16 on CUDA, bfloat16 on CPU)"),
) -> None:
    """Sweep the lever: train and measure every (statistic, λ, seed), store it, then report.

    With --model, each grid point is your model with its pools set to the statistic and its final
    global pool made a pool to about L ** (1 - λ) positions per axis (L: that map's size), the
    linear head resized to match; --channels and --padding then do not apply.
    """
    from poolkit.lab.study import StudyConfig, run_study
    from poolkit.lab.train import TrainConfig

    if sampler not in ("grid", "tpe"):
        _fail(ValueError(f"--sampler must be 'grid' or 'tpe', got {sampler!r}"))
    if sampler == "tpe" and n_trials is None:
        _fail(ValueError("--sampler tpe needs --n-trials N"))
    if folds != 1 and search_space is None:
        _fail(ValueError("--folds scores the configurations of a search: give --search-space too"))
    if n_trials is not None and sampler != "tpe":
        sampler = "tpe"
    try:
        cfg = StudyConfig(
            dataset=dataset,
            pools=pools,
            levers=levers.strip() if levers.strip().lower().startswith("learn") else parse_levers(levers),
            seeds=seeds,
            train_size=train_size,
            data_options=parse_options(data_option),
            train=TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                              lr_schedule=lr_schedule, norm=norm,
                              channels=channels, blocks=blocks, kernel_size=kernel_size, padding=padding,
                              threads=threads, device=device, amp=amp),
            n_trials=n_trials if sampler == "tpe" else None,
            model=model,
            search_space=search_space,
            search_folds=folds,
        )
        url, name = run_study(cfg, storage=storage, study_name=study_name, out=out, workers=workers)
        best = None
        if cfg.search_space is not None and retrain_seeds:
            from poolkit.lab.search import retrain_best

            typer.echo(f"search done; retraining its best configuration with {retrain_seeds} seed(s)")
            best = retrain_best(url, name, seeds=retrain_seeds, workers=workers, device=device,
                               model=model)
    except (ValueError, TypeError) as err:
        _fail(err)
    typer.echo(f"study {name!r} done; storage {url}")
    if best is not None:
        typer.echo(f"best configuration (trial {best['trial']}, held-out score {best['val_score']:.4f}): "
                   f"{best['params']}")
        spread = f" ± {100 * best['test_acc_std']:.1f}" if best["seeds"] > 1 else ""
        typer.echo(f"retrained: test accuracy {100 * best['test_acc_mean']:.1f}{spread} % "
                   f"over {best['seeds']} seed(s); rerun it with:\n  {best['command']}")
        if report:
            _report(best["study"], url, out / f"report-{best['study']}")
    if report:
        _report(name, url, out / f"report-{name}")


def _report(name: str, storage: str, out: Path) -> None:
    from poolkit.lab.report import write_report

    try:
        path = write_report(name, storage, out)
    except (ValueError, TypeError) as err:
        _fail(err)
    typer.echo(f"report: {path / 'index.html'}")
    summary = path / "summary.md"
    if summary.exists():
        finding = [ln for ln in summary.read_text().splitlines() if ln.startswith("**Finding")]
        for ln in finding:
            typer.echo(ln.replace("**", ""))


@app.command()
def report(
    study_name: str = typer.Argument(..., help="study name (poolkit study prints it)"),
    storage: str = typer.Option("sqlite:///poolkit-out/poolkit.db", help="Optuna storage URL"),
    out: Path | None = typer.Option(None, help="[default: poolkit-out/report-STUDY]"),  # noqa: B008
) -> None:
    """Write the HTML/Markdown/CSV/PNG report of a stored study."""
    _report(study_name, storage, out or Path("poolkit-out") / f"report-{study_name}")


@app.command("list")
def list_cmd() -> None:
    """List the registered pools and the datasets."""
    import poolkit
    from poolkit.lab.data import DATASETS

    typer.echo("pools:")
    for name in poolkit.list_pools():
        typer.echo(f"  {name}")
    typer.echo("datasets:")
    for name, what in DATASETS.items():
        typer.echo(f"  {name:<14} {what}")


def _register_extra_commands() -> None:
    from poolkit.lab.audit import audit_cli
    from poolkit.lab.picture import demo_cli

    app.command("demo")(demo_cli)
    app.command("audit")(audit_cli)


_register_extra_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``poolkit`` console script."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="poolkit")


if __name__ == "__main__":  # pragma: no cover
    main()
