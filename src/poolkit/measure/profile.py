"""Layer-by-layer invariance and equivariance of a network, in one batched forward pass."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .metrics import (
    ShiftResult,
    _shifted_batch,
    evaluating,
    first_tensor,
    infer_stride,
    shift_distances,
)
from .shifts import ShiftSpec

__all__ = ["LayerProfile", "Profile", "profile"]

LayerSpec = str | nn.Module | type


@dataclass
class LayerProfile:
    """Measurements of one layer's output (one entry per call of a module called more than once).

    Attributes:
        name: module path (``"features.3"``; a repeated call gets ``"name[1]"``), or ``"input"``/``"output"``.
        depth: position in execution order (the input is 0).
        type: the module's class name.
        shape: output shape of one sample, ``(C, *spatial)``.
        stride: total stride from the model's input per shifted axis; ``None`` without spatial axes.
        invariance: :class:`ShiftResult` of ``||f_l(T x) - f_l(x)|| / ||f_l(x)||``.
        equivariance: :class:`ShiftResult` of ``||f_l(T x) - T' f_l(x)|| / ||f_l(x)||``; ``None``
            when the output has no spatial axes matching the input's.
    """

    name: str
    depth: int
    type: str
    shape: tuple[int, ...]
    stride: tuple[float, ...] | None
    invariance: ShiftResult
    equivariance: ShiftResult | None


def _fmt_stride(stride: tuple[float, ...] | None) -> str | None:
    if stride is None:
        return None
    return "x".join(str(int(s)) if float(s).is_integer() else f"{s:.3g}" for s in stride)


@dataclass
class Profile:
    """Per-layer invariance and equivariance; see :func:`profile`."""

    layers: list[LayerProfile]
    shifts: list[tuple[float, ...]]
    mode: str
    dims: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerProfile]:
        return iter(self.layers)

    def __getitem__(self, key: int | str) -> LayerProfile:
        if isinstance(key, int):
            return self.layers[key]
        for lp in self.layers:
            if lp.name == key:
                return lp
        raise KeyError(f"no layer {key!r}; measured: {[lp.name for lp in self.layers]}")

    def to_frame(self, per_shift: bool = False) -> Any:
        """A pandas DataFrame, one row per layer (per layer and shift with ``per_shift``).

        Columns: ``layer``, ``depth``, ``type``, ``shape``, ``stride``, ``invariance``,
        ``equivariance`` (mean over all shifts), ``equivariance_commensurate`` (mean over the
        shifts that are multiples of the layer's stride), ``commensurate`` (how many are);
        with ``per_shift``: ``shift``, ``invariance``, ``equivariance``, ``commensurate`` per row.
        """
        import pandas as pd

        rows = []
        for lp in self.layers:
            base = {
                "layer": lp.name,
                "depth": lp.depth,
                "type": lp.type,
                "shape": tuple(lp.shape),
                "stride": _fmt_stride(lp.stride),
            }
            eq = lp.equivariance
            if per_shift:
                for i, s in enumerate(self.shifts):
                    rows.append({
                        **base,
                        "shift": tuple(s),
                        "invariance": float(lp.invariance.per_shift[i]),
                        "equivariance": float(eq.per_shift[i]) if eq is not None else math.nan,
                        "commensurate": bool(eq.commensurate[i]) if eq is not None and eq.commensurate else None,
                    })
            else:
                rows.append({
                    **base,
                    "invariance": lp.invariance.mean,
                    "equivariance": eq.mean if eq is not None else math.nan,
                    "equivariance_commensurate": eq.commensurate_mean if eq is not None else math.nan,
                    "commensurate": sum(eq.commensurate or []) if eq is not None else 0,
                })
        return pd.DataFrame(rows)

    def plot(self, ax: Any = None, commensurate: bool = True) -> Any:
        """Curves of invariance and equivariance over depth, layer names and types on the x axis.

        Args:
            ax: a matplotlib Axes to draw on (default: a new figure).
            commensurate: also draw equivariance over the stride-commensurate shifts
                (when it differs from the mean over all shifts).

        Returns:
            The matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(self.layers) + 2), 4.0), layout="constrained")
        depth = [lp.depth for lp in self.layers]
        inv = [lp.invariance.mean for lp in self.layers]
        eq = [lp.equivariance.mean if lp.equivariance is not None else math.nan for lp in self.layers]
        eqc = [lp.equivariance.commensurate_mean if lp.equivariance is not None else math.nan for lp in self.layers]
        ax.plot(depth, inv, marker="o", label="invariance  ‖f(Tx) − f(x)‖ / ‖f(x)‖")
        ax.plot(depth, eq, marker="s", label="equivariance  ‖f(Tx) − T′f(x)‖ / ‖f(x)‖")
        if commensurate and any(
            not (math.isnan(a) and math.isnan(b)) and a != b for a, b in zip(eq, eqc)
        ):
            ax.plot(depth, eqc, marker="^", linestyle="--", label="equivariance, stride-commensurate shifts")
        ax.set_xticks(depth)
        ax.set_xticklabels([lp.name if lp.type in (lp.name, "input") else f"{lp.name} {lp.type}" for lp in self.layers],
                           rotation=60, ha="right", fontsize=8)
        ax.set_xlabel("layer (execution order)")
        ax.set_ylabel("normalized distance (0 = exact)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.set_title(f"Shift profile: {len(self.shifts)} {self.mode} shifts")
        ax.legend(fontsize=8)
        return ax.figure

    def __repr__(self) -> str:
        return f"Profile({len(self.layers)} layers, {len(self.shifts)} shifts, mode={self.mode!r})"


def _select(model: nn.Module, layers: LayerSpec | Sequence[LayerSpec] | None) -> list[tuple[str, nn.Module]]:
    named = list(model.named_modules())
    if layers is None:
        leaves = [(n, m) for n, m in named if next(m.children(), None) is None]
        return leaves
    items = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    chosen: dict[int, tuple[str, nn.Module]] = {}
    for item in items:
        if isinstance(item, str):
            hits = [(n, m) for n, m in named if n == item or fnmatch.fnmatchcase(n, item)]
        elif isinstance(item, nn.Module):
            hits = [(n, m) for n, m in named if m is item]
        elif isinstance(item, type) and issubclass(item, nn.Module):
            hits = [(n, m) for n, m in named if isinstance(m, item)]
        else:
            raise TypeError(f"layers entries must be module names (glob patterns allowed), modules or module types, "
                            f"got {item!r}")
        if not hits:
            raise ValueError(f"layers entry {item!r} matches no module of the model; names: "
                             f"{[n for n, _ in named if n][:20]}")
        for n, m in hits:
            chosen.setdefault(id(m), (n or type(m).__name__, m))
    return list(chosen.values())


def profile(
    model: nn.Module,
    x: Tensor,
    shifts: ShiftSpec,
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    mode: str = "circular",
    *,
    dims: int | Sequence[int] | None = None,
    crop_size: int | Sequence[int] | None = None,
    include_input: bool = True,
    subpixel: bool = True,
    chunk: int | None = None,
    eval_mode: bool = True,
) -> Profile:
    """Invariance and equivariance of every chosen layer's output, in one forward pass.

    ``x`` and all its shifted copies form one batch; forward hooks measure each
    chosen layer's output as it is computed (nothing is kept but the distances).
    Each layer's equivariance uses its total stride from the input, inferred
    from the shapes, so a stride-2 layer is exact only for even shifts. The
    input itself is row 0; the model's output gets its own row when it is not
    the last measured layer's output.

    Args:
        model: an ``nn.Module`` (eval mode during the call, restored after).
        x: input ``(N, C, *spatial)``.
        shifts: as :func:`poolkit.measure.shift`.
        layers: ``None`` = every leaf module; else a name, module, module type, or a list of
            them. Names are paths from ``model.named_modules()`` and may be glob patterns
            (``"features.*"``); a type selects every instance (``nn.MaxPool2d``).
        mode: ``"circular"``, ``"zeros"``, ``"reflect"`` or ``"crop"``.
        dims: spatial axes to shift (default all).
        crop_size: window size for ``"crop"``.
        include_input: add the input as row 0.
        subpixel: measure shifts not commensurate with a layer's stride against a sub-pixel
            ``T'`` (a Fourier shift per distinct fractional part and layer); ``False`` leaves them
            ``nan`` and keeps ``equivariance`` to the commensurate shifts.
        chunk: ``None`` (default) runs x and all shifted copies as one batch; an int runs x
            first (its layer outputs kept), then ``chunk`` shifts per pass: less memory, and
            faster where one large batch falls out of cache. Needs a model that calls its
            layers in the same order on every pass.
        eval_mode: put the model in eval mode during the call.

    Returns:
        :class:`Profile` with ``.to_frame()`` and ``.plot()``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"),
        ...                           torch.nn.MaxPool2d(2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        >>> p = profile(net, torch.rand(2, 1, 8, 8), [(1, 0), (2, 2)])
        >>> [(lp.name, lp.stride) for lp in p]
        [('input', (1.0, 1.0)), ('0', (1.0, 1.0)), ('1', (2.0, 2.0)), ('2', (8.0, 8.0)), ('3', None)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (hooks need modules), got {type(model).__name__}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be None or an int >= 1 (shifts per forward pass), got {chunk!r}")
    xb, sh, axes, size = _shifted_batch(x, shifts, mode, dims, crop_size)
    n = x.shape[0]
    s_count = len(sh)
    chosen = _select(model, layers)
    entries: list[dict[str, Any]] = []
    refs: list[Tensor] = []
    state: dict[str, Any] = {}

    def measure(name: str, kind: str, y: Tensor) -> None:
        idx = state["idx"]
        state["idx"] += 1
        lo, hi, with_ref = state["lo"], state["hi"], state["with_ref"]
        expected = (hi - lo + int(with_ref)) * n
        if y.shape[0] != expected:
            raise ValueError(f"layer {name!r} changed the batch dim ({expected} -> {y.shape[0]}); "
                             f"profile needs per-sample outputs, exclude it with layers=")
        if state["first"]:
            stride = infer_stride(size, [y.shape[2 + a] for a in axes]) if y.ndim == xb.ndim else None
            entries.append({"name": name, "type": kind, "shape": tuple(y.shape[1:]), "stride": stride,
                            "inv": [], "eq": [], "comm": [], "cache": {}})
        elif idx >= len(entries) or entries[idx]["name"] != name:
            raise ValueError("the model called its layers in a different order between chunks; use chunk=None")
        entry = entries[idx]
        y0 = y[:n] if with_ref else refs[idx]
        if state["keep_refs"]:
            refs.append(y0.clone())  # later layers may modify it in place
        if hi > lo:
            ys = y[n:] if with_ref else y
            inv_d, eq_d, comm = shift_distances(y0, ys.reshape(hi - lo, n, *y.shape[1:]), sh[lo:hi], mode, axes,
                                                entry["stride"], subpixel, entry["cache"])
            entry["inv"].append(inv_d)
            if eq_d is not None and comm is not None:
                entry["eq"].append(eq_d)
                entry["comm"] += comm

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            try:
                y = first_tensor(out)
            except TypeError:
                return
            k = state["calls"].get(name, 0)
            state["calls"][name] = k + 1
            measure(name if k == 0 else f"{name}[{k}]", type(module).__name__, y.detach())
            state["last"] = out if isinstance(out, Tensor) else y

        return hook

    # one pass over x and every shifted copy; with ``chunk``, x first, then ``chunk`` shifts per pass
    if chunk is None:
        passes = [(True, 0, s_count, xb)]
    else:
        passes = [(True, 0, 0, xb[:n])] + [
            (False, lo, min(lo + chunk, s_count), xb[n * (1 + lo):n * (1 + min(lo + chunk, s_count))])
            for lo in range(0, s_count, chunk)
        ]
    handles = [m.register_forward_hook(make_hook(name)) for name, m in chosen]
    try:
        with evaluating(model, eval_mode), torch.no_grad():
            for p, (with_ref, lo, hi, batch) in enumerate(passes):
                state.update(idx=0, lo=lo, hi=hi, with_ref=with_ref, first=p == 0, calls={}, last=None,
                             keep_refs=chunk is not None and p == 0)
                if include_input:
                    measure("input", "input", batch)
                out = model(batch)
                try:
                    y = first_tensor(out, "model output")
                except TypeError:
                    continue
                if y is not state["last"] and y.shape[0] == batch.shape[0]:
                    measure("output", type(model).__name__, y.detach())
    finally:
        for h in handles:
            h.remove()
    results = []
    for depth, e in enumerate(entries):
        inv = ShiftResult("invariance", torch.cat(e["inv"]), sh, mode, axes)
        eq = ShiftResult("equivariance", torch.cat(e["eq"]), sh, mode, axes, e["stride"], e["comm"]) if e[
            "eq"] else None
        results.append(LayerProfile(e["name"], depth + int(not include_input), e["type"], e["shape"], e["stride"],
                                    inv, eq))
    return Profile(results, sh, mode, axes)
