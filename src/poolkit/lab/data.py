"""Datasets for the lab, all offline. Every loader returns a :class:`Dataset`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Dataset:
    """Train/test arrays for one study.

    ``X_*`` are float32 ``(N, C, *spatial)`` with 1 or 2 spatial dims, ``y_*``
    int64 class labels in ``[0, num_classes)``. ``info`` holds loader details
    (e.g. the canvas size, a CSV's column names) for reports.
    """

    name: str
    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.X_train.ndim - 2

    @property
    def channels(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.X_train.shape[2:])
