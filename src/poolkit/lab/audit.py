"""``poolkit audit``: how shift-equivariant and shift-invariant is *your* model, layer by layer.

Load a model (a TorchScript file, or ``module:factory`` with an optional state-dict
file), run :func:`poolkit.measure.profile` (invariance and equivariance of every
layer's output) and :func:`poolkit.measure.consistency` (does the predicted class
survive a shift?) on your data or on random inputs, print a table and draw the
profile. With ``fix="blur"`` or ``fix="aps"`` a copy of the model also goes through
:mod:`poolkit.convert` surgery (anti-aliasing, or adaptive polyphase sampling with
circular padding) and both profiles are shown side by side. Surgery keeps the weights
but changes the function: fine-tune the fixed model before you trust its accuracy.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> result = audit(net, (1, 16, 16), n_samples=8, fix="aps")
    >>> result.fixed_profile[-1].invariance.mean < 1e-5  # the fixed model's output ignores circular shifts
    True
"""

from __future__ import annotations

import copy
import importlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import typer
from torch import Tensor, nn

from poolkit.measure import Consistency, Profile, consistency, profile

__all__ = ["FIXES", "AuditResult", "audit", "audit_cli", "load_inputs", "load_model", "parse_shape",
           "parse_shift_list"]

#: accepted values of ``fix``
FIXES = ("blur", "aps")


@dataclass
class AuditResult:
    """What :func:`audit` measured.

    Attributes:
        profile: per-layer invariance/equivariance of the model as given.
        consistency: classification consistency, or ``None`` (see ``notes``).
        fix: ``"blur"``, ``"aps"`` or ``None``.
        changes: the surgery's :class:`poolkit.convert.Report`: its :class:`~poolkit.convert.Change`
            records, with what it left as it was (``.skipped``), the layers sharing one phase
            (``.tied``) and the parts ``torch.fx`` could not trace (``.untraced``).
        fixed_model: the converted copy (``None`` without ``fix``).
        fixed_profile: its profile.
        fixed_consistency: its consistency.
        n_samples: inputs measured; ``data``: ``"random"`` or where they came from.
        notes: anything the reader should know (a metric skipped and why).
    """

    profile: Profile
    consistency: Consistency | None
    n_samples: int
    data: str
    fix: str | None = None
    changes: list[Any] = field(default_factory=list)
    fixed_model: nn.Module | None = None
    fixed_profile: Profile | None = None
    fixed_consistency: Consistency | None = None
    notes: list[str] = field(default_factory=list)

    def frames(self) -> dict[str, Any]:
        """``{"before": DataFrame, "after": DataFrame}`` (``"after"`` only with a fix); see ``Profile.to_frame``."""
        out = {"before": self.profile.to_frame()}
        if self.fixed_profile is not None:
            out["after"] = self.fixed_profile.to_frame()
        return out

    def summary(self) -> dict[str, float]:
        """Headline numbers: the output's invariance and the consistency metrics, before and after."""
        out: dict[str, float] = {"output_invariance": self.profile[-1].invariance.mean}
        for key, c in (("", self.consistency), ("fixed_", self.fixed_consistency)):
            if c is not None:
                out.update({f"{key}consistency": c.consistency, f"{key}flip_rate": c.flip_rate,
                            f"{key}prob_change": c.prob_change})
        if self.fixed_profile is not None:
            out["fixed_output_invariance"] = self.fixed_profile[-1].invariance.mean
        return out

    def table(self) -> str:
        """The report printed by ``poolkit audit``."""
        cols = ["layer", "type", "shape", "stride", "invariance", "equivariance"]
        parts = []
        for title, prof, cons in (("model as given", self.profile, self.consistency),
                                  (f"after --fix {self.fix}", self.fixed_profile, self.fixed_consistency)):
            if prof is None:
                continue
            frame = prof.to_frame()[cols]
            frame["shape"] = frame["shape"].map(lambda s: "x".join(str(v) for v in s))
            text = frame.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
            parts.append(f"== {title}: {len(prof.shifts)} {prof.mode} shifts, {self.n_samples} samples "
                         f"({self.data}) ==\n{text}")
            if cons is not None:
                parts.append(f"consistency {cons.consistency:.3f}   flip rate {cons.flip_rate:.3f}   "
                             f"top-class prob change {cons.prob_change:.4f}   "
                             f"({cons.mode} shifts up to {'x'.join(map(str, cons.max_shift))} px)")
        if self.fix is not None:
            from poolkit.convert import Report

            report = self.changes if isinstance(self.changes, Report) else Report(self.changes)
            text = report.text(f"surgery (--fix {self.fix})")
            if not report:
                text += " (no strided layer found)"
            parts.append(text)
        parts.extend(f"note: {n}" for n in self.notes)
        return "\n\n".join(parts)

    def plot(self) -> Any:
        """The profile, and with a fix the fixed model's profile beside it (shared y axis)."""
        from matplotlib.figure import Figure

        profiles = [("model as given", self.profile)]
        if self.fixed_profile is not None:
            profiles.append((f"after --fix {self.fix}", self.fixed_profile))
        widths = [max(4.5, 0.45 * len(p) + 2.0) for _, p in profiles]
        fig = Figure(figsize=(sum(widths), 4.8), layout="constrained")
        axes = fig.subplots(1, len(profiles), sharey=True, width_ratios=widths, squeeze=False)[0]
        for ax, (title, prof) in zip(axes, profiles):
            prof.plot(ax=ax)
            ax.set_title(f"{title}: {len(prof.shifts)} {prof.mode} shifts", fontsize=10)
        top = max(ax.get_ylim()[1] for ax in axes)
        axes[0].set_ylim(0, top)
        return fig


def parse_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3,32,32"`` or ``"3x32x32"`` -> ``(3, 32, 32)``: channels then 1 to 3 spatial sizes, no batch dim."""
    items: list[Any]
    if isinstance(text, str):
        items = [t for t in text.replace("x", ",").replace(" ", ",").split(",") if t]
    else:
        items = list(text)
    try:
        shape = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(
            f"input shape must be integers C,H[,W[,D]] (no batch dim), e.g. 3,32,32; got {text!r}"
        ) from None
    if not 2 <= len(shape) <= 4 or any(v < 1 for v in shape):
        raise ValueError(f"input shape must be C then 1 to 3 spatial sizes, all >= 1 (no batch dim), got {text!r}")
    return shape


def parse_shift_list(text: str | None, k: int) -> list[tuple[int, ...]]:
    """``"1,2,3"`` (each shift along every axis) or ``"1x0,0x1,2x2"`` (per axis) -> list of ``k``-tuples.

    ``None`` gives the default: 1 to 4 pixels along each axis alone and along all axes together.
    """
    if text is None or not str(text).strip():
        out: list[tuple[int, ...]] = []
        for s in (1, 2, 3, 4):
            out.extend(tuple(s if a == i else 0 for a in range(k)) for i in range(k))
            if k > 1:
                out.append((s,) * k)
        return out
    shifts = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            vals = tuple(int(v) for v in item.split("x"))
        except ValueError:
            raise ValueError(f"shifts must be ints like 1,2,3 or per-axis like 1x0,0x2; got {item!r}") from None
        if len(vals) == 1:
            vals = vals * k
        if len(vals) != k:
            raise ValueError(f"shift {item!r} has {len(vals)} entries, the input has {k} spatial axes")
        shifts.append(vals)
    if not shifts:
        raise ValueError(f"shifts must not be empty, got {text!r}")
    return shifts


def _import_factory(spec: str) -> Any:
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ValueError(f"model must be a TorchScript file or 'module:factory' (or 'path/to/file.py:factory'), "
                         f"got {spec!r}")
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise ValueError(f"model file {mod_name!r} does not exist")
        from .custom import _import_file  # the lab's one importer of a user's file

        module = _import_file(path, spec)
    else:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as err:
            raise ValueError(f"cannot import module {mod_name!r} for model {spec!r}: {err}") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"{mod_name!r} has no callable {attr!r} (model must be 'module:factory')")
    return factory


def load_model(spec: str | Path, weights: str | Path | None = None) -> nn.Module:
    """Load a model: a TorchScript file, or ``"module:factory"`` called with no arguments.

    ``module`` is an importable module name or a ``.py`` file path. ``weights`` is a
    state-dict file (``torch.save(model.state_dict(), path)``; a checkpoint dict with a
    ``"state_dict"`` key works too), loaded with ``weights_only=True`` and strict key
    matching. The model is returned in eval mode on the CPU.

    Raises:
        ValueError: missing file, import failure, a factory that returns no module, or
            weights that do not match the model.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file() and not text.endswith(".py"):
        if weights is not None:
            raise ValueError("weights apply to 'module:factory' models; a TorchScript file carries its own")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream, yet users still ship it
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # torch raises RuntimeError and others for non-TorchScript files
            raise ValueError(f"{text!r} is not a TorchScript file (torch.jit.save): {err}") from None
        return model.eval()
    if ":" not in text:
        raise ValueError(f"model {text!r} is neither an existing TorchScript file nor 'module:factory'")
    model = _import_factory(text)()
    if not isinstance(model, nn.Module):
        raise ValueError(f"factory {text!r} must return a torch.nn.Module, got {type(model).__name__}")
    if weights is not None:
        wpath = Path(weights)
        if not wpath.is_file():
            raise ValueError(f"weights file {str(weights)!r} does not exist")
        try:
            state = torch.load(str(wpath), map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors come in many types
            raise ValueError(f"cannot read weights {str(weights)!r} as a state dict: {err}") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"weights {str(weights)!r} must hold a state dict, got {type(state).__name__}")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"weights {str(weights)!r} do not match the model: {err}") from None
    return model.eval()


def load_inputs(spec: str | None, input_shape: Sequence[int], n_samples: int, seed: int = 0) -> tuple[Tensor, str]:
    """The inputs to measure on: ``None`` -> uniform random; ``"npz:PATH"`` -> its ``X_test`` (else ``X``).

    Returns:
        ``(x, description)`` with ``x`` float32 ``(n, *input_shape)``, ``n <= n_samples``.
    """
    shape = tuple(input_shape)
    if spec is None:
        gen = torch.Generator().manual_seed(seed)
        return torch.rand((n_samples, *shape), generator=gen), "random uniform inputs"
    kind, _, arg = str(spec).partition(":")
    if kind != "npz" or not arg:
        raise ValueError(f"data must be 'npz:PATH' (arrays X or X_test of shape (N, C, *spatial)), got {spec!r}")
    import numpy as np

    path = Path(arg)
    if not path.is_file():
        raise ValueError(f"data file {arg!r} does not exist")
    with np.load(path, allow_pickle=False) as f:
        key = "X_test" if "X_test" in f.files else "X" if "X" in f.files else None
        if key is None:
            raise ValueError(f"data file {arg!r} must hold an array 'X' or 'X_test'; it has {sorted(f.files)}")
        arr = f[key]
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{key} in {arg!r} must be numeric, got dtype {arr.dtype}")
    if tuple(arr.shape[1:]) != shape:
        raise ValueError(f"{key} in {arg!r} has samples of shape {tuple(arr.shape[1:])}, but --input-shape is {shape}")
    x = torch.as_tensor(np.asarray(arr[:n_samples], dtype=np.float32))
    return x, f"{key} from {path.name}"


def _measure(model: nn.Module, x: Tensor, shifts: list[tuple[int, ...]], mode: str, n_profile: int, seed: int,
             notes: list[str], label: str) -> tuple[Profile, Consistency | None]:
    scripted = isinstance(model, torch.jit.ScriptModule)
    if scripted:
        notes.append(f"{label}: TorchScript modules take no forward hooks, so only the input and the output "
                     "are profiled (pass 'module:factory' for every layer)")
    prof = profile(model, x[:n_profile], shifts, layers=[] if scripted else None, mode=mode)
    try:
        cons = consistency(model, x, mode=mode, seed=seed)
    except ValueError as err:
        if "logits" not in str(err):
            raise
        notes.append(f"{label}: consistency skipped, it needs a classifier's logits (N, classes): {err}")
        cons = None
    return prof, cons


def audit(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    data: Tensor | None = None,
    shifts: Sequence[Sequence[int]] | None = None,
    mode: str = "circular",
    fix: str | None = None,
    n_samples: int = 64,
    n_profile: int = 16,
    seed: int = 0,
    data_name: str | None = None,
    device: str | torch.device | None = None,
) -> AuditResult:
    """Profile a model's shift behaviour layer by layer, and optionally fix it.

    Args:
        model: the model (put in eval mode for the measurements; not edited).
        input_shape: one sample's shape ``(C, *spatial)``, 1 to 3 spatial dims.
        data: inputs ``(N, *input_shape)``; default ``n_samples`` uniform random inputs.
        shifts: shifts for the profile (a list of per-axis tuples); default
            :func:`parse_shift_list` ``(None, k)``.
        mode: shift mode: ``"circular"``, ``"zeros"``, ``"reflect"`` (or ``"crop"``, see
            :func:`poolkit.measure.profile`).
        fix: ``None``, ``"blur"`` (:func:`poolkit.convert.antialias`) or ``"aps"``
            (:func:`poolkit.convert.make_shift_invariant`), applied to a deep copy.
        n_samples: inputs for the consistency metrics (at most this many of ``data``).
        n_profile: inputs for the profile (each is run once per shift, in one batch).
        seed: seed of the random inputs and of the consistency metrics' random shifts.
        data_name: how to describe ``data`` in the report.
        device: where to measure: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default CUDA when available, else
            the CPU. A model elsewhere is measured as a copy moved there (the model itself stays put).

    Returns:
        :class:`AuditResult` (``.table()``, ``.plot()``, ``.frames()``, ``.summary()``).

    Raises:
        ValueError: a bad shape, data that does not match it, an unknown ``fix``, or a fix
            asked for a TorchScript model (surgery needs the Python modules).
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = parse_shape(input_shape)
    if fix is not None and fix not in FIXES:
        raise ValueError(f"fix must be one of {', '.join(FIXES)} or None, got {fix!r}")
    for name, v in (("n_samples", n_samples), ("n_profile", n_profile)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if fix is not None and isinstance(model, torch.jit.ScriptModule):
        raise ValueError("fix needs the model's Python modules; a TorchScript model cannot be converted "
                         "(load it as 'module:factory' with its weights instead)")
    if data is None:
        x, described = load_inputs(None, shape, n_samples, seed)
    else:
        if not isinstance(data, Tensor):
            raise TypeError(f"data must be a Tensor (N, *input_shape), got {type(data).__name__}")
        if tuple(data.shape[1:]) != shape or len(data) == 0:
            raise ValueError(f"data must have shape (N >= 1, {', '.join(map(str, shape))}), got {tuple(data.shape)}")
        x, described = data[:n_samples].float(), data_name or "given data"
    from .train import _device_of, resolve_device

    dev = resolve_device(device)  # ValueError naming the device when it is malformed or absent
    if _device_of(model) != dev:
        model = copy.deepcopy(model).to(dev)
    x = x.to(dev)
    k = len(shape) - 1
    shift_list = parse_shift_list(None, k) if shifts is None else [tuple(int(v) for v in s) for s in shifts]
    for s in shift_list:
        if len(s) != k:
            raise ValueError(f"each shift needs {k} entries (one per spatial axis), got {s}")
    # The model must accept the input at all: say so plainly rather than deep inside a hook.
    try:
        with torch.no_grad():
            model.eval()(x[:1])
    except Exception as err:  # any failure of the user's forward
        raise ValueError(f"the model cannot run on inputs of shape (N, {', '.join(map(str, shape))}): "
                         f"{type(err).__name__}: {err}") from None

    notes: list[str] = []
    prof, cons = _measure(model, x, shift_list, mode, n_profile, seed, notes, "model")
    result = AuditResult(prof, cons, len(x), described, fix=fix, notes=notes)
    if fix is not None:
        from poolkit import convert

        fixed = copy.deepcopy(model)
        example = x[:1]  # a dry run: the report's notes give the sizes at this input, .failures what breaks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the failure is raised below, with the whole report
            changes = (convert.antialias(fixed, example_input=example) if fix == "blur"
                       else convert.make_shift_invariant(fixed, method="aps", example_input=example))
        if any(not f.reason.startswith("output shape") for f in changes.failures):  # a forward that raises
            raise ValueError(f"--fix {fix}: the converted model does not run on these inputs as the model did; "
                             f"adapt the layers named below:\n{changes.text(f'surgery (--fix {fix})')}")
        fixed.eval()
        result.changes = changes
        result.fixed_model = fixed
        result.fixed_profile, result.fixed_consistency = _measure(
            fixed, x, shift_list, mode, n_profile, seed, notes, "fixed model"
        )
        if changes:
            notes.append("surgery keeps the weights but changes the function: fine-tune before trusting accuracy")
    return result


def audit_cli(
    model: str = typer.Argument(..., help="TorchScript file, or module:factory (module name or path/to/file.py)"),
    input_shape: str = typer.Option(..., "--input-shape", help="one sample's shape C,H[,W[,D]], e.g. 3,32,32"),
    data: str | None = typer.Option(None, "--data", help="npz:PATH with X or X_test (N, C, *spatial); "
                                    "default random inputs"),
    shifts: str | None = typer.Option(None, "--shifts", help="e.g. 1,2,3 (all axes) or 1x0,0x1 (per axis); "
                                      "default 1-4 px along each axis and diagonally"),
    weights: Path | None = typer.Option(None, "--weights", help="state_dict file for a module:factory model"),  # noqa: B008
    fix: str | None = typer.Option(None, "--fix", help="also apply surgery and compare: blur or aps"),
    mode: str = typer.Option("circular", "--mode", help="shift mode: circular, zeros, reflect"),
    samples: int = typer.Option(64, "--samples", min=1, help="inputs for the consistency metrics"),
    profile_samples: int = typer.Option(16, "--profile-samples", min=1, help="inputs for the layer profile"),
    out: Path = typer.Option(Path("poolkit-audit.png"), "--out", help="profile plot (PNG)"),  # noqa: B008
    seed: int = typer.Option(0, "--seed"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N [default: cuda when available]"),
) -> None:
    """Audit a model's shift equivariance and invariance layer by layer; --fix shows surgery's effect."""
    try:
        shape = parse_shape(input_shape)
        net = load_model(model, weights)
        x, described = load_inputs(data, shape, samples, seed)
        result = audit(net, shape, data=x, shifts=parse_shift_list(shifts, len(shape) - 1), mode=mode, fix=fix,
                       n_samples=samples, n_profile=profile_samples, seed=seed, data_name=described, device=device)
    except (ValueError, TypeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(result.table())
    s = result.summary()
    if result.fixed_profile is not None:
        line = f"\noutput invariance {s['output_invariance']:.4f} -> {s['fixed_output_invariance']:.4f}"
        if "consistency" in s and "fixed_consistency" in s:
            line += f"; consistency {s['consistency']:.3f} -> {s['fixed_consistency']:.3f}"
        typer.echo(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.plot().savefig(out, dpi=110)
    typer.echo(f"\nwrote {out}")
    if any(math.isnan(v) for v in s.values()):
        typer.echo("note: some numbers are nan (a layer with an all-zero output on these inputs)")
