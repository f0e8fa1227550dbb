"""The lab: sweep the equivariance-invariance lever on real data and report.

- :mod:`~poolkit.lab.lever`: λ ∈ [0, 1] -> where and how much the reference CNN pools.
- :mod:`~poolkit.lab.models`: :class:`LeverNet`, the reference CNN (1-D to 3-D).
- :mod:`~poolkit.lab.custom`: the user's model factory turned into each grid point (the λ rule).
- :mod:`~poolkit.lab.data`: offline datasets (image folders included) and their validation.
- :mod:`~poolkit.lab.train`: one trial (train on a device, or with the user's ``train_fn``, then measure).
- :mod:`~poolkit.lab.compute`: FLOPs, pooling's share of them, forward time per sample.
- :mod:`~poolkit.lab.study`: Optuna studies on a SQLite/PostgreSQL storage, resumable.
- :mod:`~poolkit.lab.report`: HTML/Markdown/CSV/PNG report read back from the storage.

Heavy dependencies (optuna, pandas, matplotlib) are imported only when used.
"""

from .custom import build_model_for
from .data import Dataset, load_dataset, load_image_folder, validate_dataset
from .lever import Schedule, pool_schedule
from .models import LeverNet
from .train import TrainConfig, resolve_device, run_trial

__all__ = [
    "Dataset",
    "LeverNet",
    "Schedule",
    "StudyConfig",
    "TrainConfig",
    "build_model_for",
    "load_dataset",
    "load_image_folder",
    "pool_schedule",
    "resolve_device",
    "run_study",
    "run_trial",
    "validate_dataset",
    "write_report",
]


def __getattr__(name: str):  # lazy: optuna/pandas/matplotlib only when a study or report is asked for
    if name in ("StudyConfig", "run_study"):
        from . import study

        return getattr(study, name)
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(f"module 'poolkit.lab' has no attribute {name!r}")
