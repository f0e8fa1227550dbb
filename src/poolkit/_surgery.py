"""Helpers of :mod:`poolkit.convert`: the surgery report, tied phases, and the ``torch.fx`` analysis.

- :class:`Report` is what every surgery returns: the list of :class:`Change` records,
  plus what was left as it was (:class:`Skip`), the groups of layers that share one
  phase, and the parts of the model that ``torch.fx`` could not trace.
- :class:`PhaseLeader` / :class:`PhaseFollower`: branches that subsample the same
  tensor (a residual block's main path and its strided shortcut) keep the samples at
  the one phase the leader's APS/LPS chose, so the sum of the branches lines up.
- :func:`analyse` traces the model with ``torch.fx`` (each part on its own where the
  whole cannot be traced), follows which tensors share one sampling grid, and groups
  the subsampling layers that read the same grid.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from . import nn as pnn

__all__ = ["Change", "DryRun", "FallbackBlurPool1d", "FallbackBlurPool2d", "FallbackBlurPool3d",
           "FallbackMaxBlurPool1d", "FallbackMaxBlurPool2d", "FallbackMaxBlurPool3d", "PhaseFollower", "PhaseLeader",
           "PhaseLink", "ReflectFallback", "Report", "Skip", "analyse", "dry_run", "sample_at", "with_fallback"]


class Change(NamedTuple):
    """One edit: the module's qualified name, its ``repr`` before and after, and what the user must know.

    ``note`` is empty, or says what the edit changes beyond the layer itself: an
    output size that differs from the original layer's (later layers that expect
    the old size, a ``Linear`` after ``Flatten``, must be adapted), a blur that
    replicates the border on maps too small to reflect.
    """

    name: str
    before: str
    after: str
    note: str = ""


class Skip(NamedTuple):
    """Something the surgery left as it was: where (qualified name), what, and why."""

    name: str
    what: str
    reason: str


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines())


class Report(list):  # type: ignore[type-arg]
    """What a surgery did: a list of :class:`Change` records, with what it could not do.

    It is a ``list`` of changes (so ``[c.name for c in report]`` works) with:

    Attributes:
        skipped: :class:`Skip` records: layers left as they were (and why), functional
            pooling calls found in a ``forward``, layers called more than once.
        tied: groups of qualified names whose subsampling shares one phase, the
            leader (whose APS/LPS chooses it) first.
        untraced: :class:`Skip` records of the parts ``torch.fx`` could not trace (data-
            dependent control flow, ...): inside them every layer was converted on its
            own and functional calls could not be looked for.
        failures: :class:`Skip` records of what goes wrong on the ``example_input`` a
            surgery was given: the innermost module whose forward raised (and the
            error), or an output shape that differs from the model's before surgery.

    Example:
        >>> r = Report([Change("0", "a", "b")], skipped=[Skip("1", "Unfold()", "not supported")])
        >>> len(r), r.skipped[0].name
        (1, '1')
    """

    def __init__(self, changes: Any = (), skipped: Any = (), tied: Any = (), untraced: Any = (),
                 failures: Any = ()) -> None:
        super().__init__(changes)
        self.skipped: list[Skip] = list(skipped)
        self.tied: list[tuple[str, ...]] = [tuple(g) for g in tied]
        self.untraced: list[Skip] = list(untraced)
        self.failures: list[Skip] = list(failures)

    @property
    def changes(self) -> list[Change]:
        """The :class:`Change` records (the list itself, as a plain list)."""
        return list(self)

    def text(self, title: str = "surgery") -> str:
        """Every change (with its note), tie, skip, untraced part and failure, one per line."""
        lines = [f"{title}: {len(self)} change(s)"]
        for c in self:
            lines.append(f"  {c.name}: {_one_line(c.before)}  ->  {_one_line(c.after)}")
            if getattr(c, "note", ""):
                lines.append(f"    note: {c.note}")
        if self.failures:
            lines.append(f"FAILS on the example input after surgery ({len(self.failures)}):")
            lines += [f"  {s.name}: {s.what}: {s.reason}" for s in self.failures]
        if self.tied:
            lines.append(f"phases tied across branches ({len(self.tied)} group(s), leader first):")
            lines += [f"  {', '.join(g)}" for g in self.tied]
        if self.skipped:
            lines.append(f"left as they were ({len(self.skipped)}):")
            lines += [f"  {s.name}: {_one_line(s.what)}: {s.reason}" for s in self.skipped]
        if self.untraced:
            lines.append(f"not traced by torch.fx ({len(self.untraced)}):")
            lines += [f"  {s.name}: {s.reason}" for s in self.untraced]
        return "\n".join(lines)


# ---------------------------------------------------------------- small maps, dry runs


class ReflectFallback:
    """Mixin of the blur pools :func:`poolkit.convert.antialias` builds: reflect where the map allows, else replicate.

    Reflection needs ``filt // 2`` below the size of the map the blur sees; a
    CIFAR-sized ResNet's last stage has 2×2 maps and below. On such maps these
    pools run with ``"replicate"`` instead (same output size); on larger maps they
    are exactly the pool they extend (:class:`poolkit.nn.BlurPool2d`,
    :class:`poolkit.nn.MaxBlurPool2d`, ...: same arguments, attributes, no new
    state). For a maxblur the blur sees the dense max's output,
    ``n + 2p - d (k - 1)`` cells per axis.

    Example:
        >>> pool = FallbackBlurPool2d(2, filt=4)
        >>> pool(torch.rand(1, 3, 2, 2)).shape, pool.falls_back((2, 2)), pool.falls_back((3, 3))
        (torch.Size([1, 3, 1, 1]), True, False)
    """

    #: the keyword of the blur's padding mode in ``fn``
    _mode_key = "padding_mode"

    def falls_back(self, size: tuple[int, ...] | torch.Size) -> bool:
        """Whether an input of spatial ``size`` is too small to reflect (the blur then replicates)."""
        limit = int(getattr(self, "filt")) // 2  # noqa: B009
        return any(n <= limit for n in self._blurred(tuple(int(v) for v in size)))

    def _blurred(self, size: tuple[int, ...]) -> tuple[int, ...]:
        return size

    def forward(self, x: Tensor) -> Any:
        kw = self.fn_kwargs()  # type: ignore[attr-defined]
        if kw.get(self._mode_key) == "reflect" and self.falls_back(x.shape[2:]):
            self.check_input(x)  # type: ignore[attr-defined]
            return type(self).fn(x, **{**kw, self._mode_key: "replicate"})  # type: ignore[attr-defined]
        return super().forward(x)  # type: ignore[misc]

    def extra_repr(self) -> str:
        text = super().extra_repr()  # type: ignore[misc]
        limit = int(getattr(self, "filt")) // 2  # noqa: B009
        return f"{text}, replicate on maps of {limit} or fewer cells"


class _MaxFallback(ReflectFallback):
    _mode_key = "blur_padding_mode"

    def _blurred(self, size: tuple[int, ...]) -> tuple[int, ...]:
        d = len(size)
        k = _ntuple(getattr(self, "kernel_size"), d)  # noqa: B009
        dil = _ntuple(getattr(self, "dilation", 1), d)
        pad = getattr(self, "padding", 0)
        if pad == "same":
            return size
        p = (0,) * d if isinstance(pad, str) else _ntuple(pad, d)
        return tuple(n + 2 * pi - di * (ki - 1) for n, pi, di, ki in zip(size, p, dil, k))


def _ntuple(v: Any, d: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * d


class FallbackBlurPool1d(ReflectFallback, pnn.BlurPool1d):
    """:class:`poolkit.nn.BlurPool1d` that replicates on maps too small to reflect (see :class:`ReflectFallback`)."""


class FallbackBlurPool2d(ReflectFallback, pnn.BlurPool2d):
    """:class:`poolkit.nn.BlurPool2d` that replicates on maps too small to reflect (see :class:`ReflectFallback`)."""


class FallbackBlurPool3d(ReflectFallback, pnn.BlurPool3d):
    """:class:`poolkit.nn.BlurPool3d` that replicates on maps too small to reflect (see :class:`ReflectFallback`)."""


class FallbackMaxBlurPool1d(_MaxFallback, pnn.MaxBlurPool1d):
    """:class:`poolkit.nn.MaxBlurPool1d` that replicates on maps too small to reflect (see :class:`ReflectFallback`)."""


class FallbackMaxBlurPool2d(_MaxFallback, pnn.MaxBlurPool2d):
    """:class:`poolkit.nn.MaxBlurPool2d` that replicates on maps too small to reflect (see :class:`ReflectFallback`)."""


class FallbackMaxBlurPool3d(_MaxFallback, pnn.MaxBlurPool3d):
    """:class:`poolkit.nn.MaxBlurPool3d` that replicates on maps too small to reflect (see :class:`ReflectFallback`)."""


_FALLBACKS: dict[type, type] = {
    pnn.BlurPool1d: FallbackBlurPool1d, pnn.BlurPool2d: FallbackBlurPool2d, pnn.BlurPool3d: FallbackBlurPool3d,
    pnn.MaxBlurPool1d: FallbackMaxBlurPool1d, pnn.MaxBlurPool2d: FallbackMaxBlurPool2d,
    pnn.MaxBlurPool3d: FallbackMaxBlurPool3d,
}


def with_fallback(pool: nn.Module) -> nn.Module:
    """``pool`` (a poolkit blur or maxblur pool) made a :class:`ReflectFallback` in place; other modules as they are."""
    cls = _FALLBACKS.get(type(pool))
    if cls is not None:
        pool.__class__ = cls
    return pool


class DryRun(NamedTuple):
    """What :func:`dry_run` saw: output and input shapes of the watched modules, and the failure if any."""

    outputs: dict[str, tuple[int, ...]]
    inputs: dict[str, tuple[int, ...]]
    output: tuple[int, ...] | None
    where: str | None
    error: str | None


def dry_run(model: nn.Module, x: Tensor, names: set[str]) -> DryRun:
    """One forward of ``x`` in eval mode without grad (the model's modes restored), watching ``names``.

    Records the first output and input shape of each watched module, the model's
    output shape, and, where the forward raises, the innermost module that was
    running and the error.
    """
    outputs: dict[str, tuple[int, ...]] = {}
    inputs: dict[str, tuple[int, ...]] = {}
    stack: list[str] = []
    handles = []
    modes = [(m, m.training) for m in model.modules()]

    def pre(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            stack.append(name)
            if name in names and name not in inputs and args and isinstance(args[0], Tensor):
                inputs[name] = tuple(args[0].shape)
        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if stack and stack[-1] == name:
                stack.pop()
            if name in names and name not in outputs and isinstance(out, Tensor):
                outputs[name] = tuple(out.shape)
        return hook

    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_pre_hook(pre(name)))
            handles.append(m.register_forward_hook(post(name)))
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
        shape = tuple(out.shape) if isinstance(out, Tensor) else None
        return DryRun(outputs, inputs, shape, None, None)
    except Exception as err:  # any failure of the user's forward is what we report
        text = str(err).splitlines()[0] if str(err) else ""
        return DryRun(outputs, inputs, None, stack[-1] if stack else "(model)", f"{type(err).__name__}: {text[:300]}")
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode


# ---------------------------------------------------------------- tied phases


def sample_at(x: Tensor, phase: Tensor, factor: tuple[int, ...]) -> Tensor:
    """The samples ``(phase_k + factor_k * j) mod L_k`` of ``x``, per sample of the batch.

    The candidates of :func:`poolkit.functional.aps_pool`: ``phase`` ``(N, d)`` as it
    returns with ``return_phase=True``; output size ``ceil(L / factor)`` per dim.

    Example:
        >>> sample_at(torch.arange(5.0).view(1, 1, 5), torch.tensor([[3]]), (2,))
        tensor([[[3., 0., 2.]]])
    """
    for k, s in enumerate(factor):
        ax = 2 + k
        n = x.shape[ax]
        m = -(-n // s)
        pos = (phase[:, k, None].to(torch.long) + s * torch.arange(m, device=x.device)) % n
        view = [x.shape[0]] + [1] * (x.ndim - 1)
        view[ax] = m
        size = list(x.shape)
        size[ax] = m
        x = x.gather(ax, pos.view(view).expand(size))
    return x


class PhaseLink:
    """Carries the phase a :class:`PhaseLeader` chose to its followers within one forward pass."""

    def __init__(self, leader: str, followers: int) -> None:
        self.leader = leader
        self.followers = followers
        self.phase: Tensor | None = None
        self.size: tuple[int, ...] = ()
        self.left = 0

    def put(self, phase: Tensor, size: tuple[int, ...]) -> None:
        self.phase, self.size, self.left = phase, size, self.followers

    def take(self, x: Tensor, who: str) -> Tensor:
        phase = self.phase
        if phase is None:
            raise RuntimeError(f"{who}: no phase from its leader {self.leader!r}; the leader's branch must run "
                               "before this one in the same forward pass")
        if phase.shape[0] != x.shape[0] or tuple(x.shape[2:]) != self.size:
            raise RuntimeError(f"{who}: input {tuple(x.shape)} does not match its leader {self.leader!r} "
                               f"(batch {phase.shape[0]}, size {self.size}); both must subsample one grid")
        self.left -= 1
        if self.left <= 0:
            self.phase = None
        return phase


class PhaseLeader(nn.Module):
    """Wraps an APS/LPS pool built with ``return_phase=True``: returns its output, hands its phase on.

    Example:
        >>> import poolkit
        >>> link = PhaseLink("a", 1)
        >>> lead = PhaseLeader(poolkit.create_pool("aps", dim=1, kernel_size=2, return_phase=True), link)
        >>> x = torch.rand(2, 3, 9)
        >>> torch.equal(lead(x), poolkit.create_pool("aps", dim=1, kernel_size=2)(x))
        True
        >>> PhaseFollower(link, (2,), "b")(x).shape
        torch.Size([2, 3, 5])
    """

    def __init__(self, pool: nn.Module, link: PhaseLink) -> None:
        super().__init__()
        self.pool = pool
        self.link = link

    def forward(self, x: Tensor) -> Tensor:
        y, phase = self.pool(x)
        self.link.put(phase, tuple(x.shape[2:]))
        return y

    def extra_repr(self) -> str:
        return f"phase shared with {self.link.followers} follower(s)"


class PhaseFollower(nn.Module):
    """Subsamples at the phase its :class:`PhaseLeader` chose for the same grid in this forward pass.

    In training an LPS leader mixes its candidates; the follower then takes the most
    likely one. The phase travels through a :class:`PhaseLink` shared by the two
    modules, set by the leader and used once by each follower in the same forward
    pass: run one forward at a time per model copy (``DistributedDataParallel``
    keeps a copy per process; ``nn.DataParallel``'s threads would share the link).
    A follower called without its leader raises ``RuntimeError``. See
    :class:`PhaseLeader` for an example.
    """

    def __init__(self, link: PhaseLink, factor: tuple[int, ...], name: str = "") -> None:
        super().__init__()
        self.link = link
        self.factor = tuple(factor)
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return sample_at(x, self.link.take(x, self.name or "PhaseFollower"), self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, leader={self.link.leader!r}"


# ---------------------------------------------------------------- torch.fx analysis

#: what a layer does to the sampling grid: ("sub", factor) subsamples it, "keep" keeps it
Kind = Any

_ELEMENTWISE_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    operator.neg, torch.add, torch.sub, torch.mul, torch.relu, torch.sigmoid, torch.tanh,
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.hardswish, F.hardtanh, F.hardsigmoid, F.elu, F.mish,
    F.dropout, torch.sigmoid,
}
_ELEMENTWISE_METHODS = {"add", "add_", "mul", "mul_", "sub", "relu", "relu_", "sigmoid", "tanh", "contiguous",
                        "clone", "__add__", "__mul__"}


_CONTAINERS = (nn.Module, nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _is_leaf(m: nn.Module) -> bool:
    """torch's layers (and subclasses of them) and poolkit's pools are leaves; containers and models are traced."""
    return any(
        c.__module__.startswith(("torch.nn.", "poolkit.nn.", "poolkit._surgery", "poolkit.convert"))
        and c not in _CONTAINERS
        for c in type(m).__mro__ if issubclass(c, nn.Module)
    )


class _Tracer(fx.Tracer):
    def __init__(self, opaque: tuple[nn.Module, ...] = ()) -> None:
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_leaf(m) or any(m is o for o in self.opaque)


def _trace(module: nn.Module, opaque: tuple[nn.Module, ...] = ()) -> fx.Graph:
    return _Tracer(opaque).trace(module)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _why(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "control flow" in text or "iterate" in text or "bool" in text:
        return f"data-dependent control flow in forward ({type(err).__name__}: {text[:160]})"
    return f"{type(err).__name__}: {text[:200]}"


def _pool_call(node: fx.Node) -> str | None:
    """A description of a functional pooling (or strided convolution) call, or None."""
    if node.op not in ("call_function", "call_method"):
        return None
    if str(getattr(node.target, "__module__", "")).startswith("poolkit."):
        return None  # poolkit's own functional pools are the shift-robust ones
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    if "pool" in name:
        if "adaptive" in name:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            if size == 1 or (isinstance(size, (tuple, list)) and all(v == 1 for v in size)):
                return None  # a global pool: no subsampling grid to worry about
        return name
    if name in ("conv1d", "conv2d", "conv3d"):
        stride = node.args[3] if len(node.args) > 3 else node.kwargs.get("stride", 1)
        if isinstance(stride, fx.Node) or any(s != 1 for s in (stride if isinstance(stride, (tuple, list))
                                                               else (stride,))):
            return f"{name} (strided)"
    return None


@dataclass
class Analysis:
    """What :func:`analyse` found."""

    groups: list[list[str]] = field(default_factory=list)
    #: strided layer -> (norm layer or None, activation layer or None for a functional one, the activation is
    #: called once, the activation's class); only where the layer's output goes through them alone
    after: dict[str, tuple[str | None, str | None, bool, type | None]] = field(default_factory=dict)
    skipped: list[Any] = field(default_factory=list)
    untraced: list[Any] = field(default_factory=list)


def analyse(model: nn.Module, kind: Callable[[str], Kind]) -> Analysis:
    """Trace ``model`` with ``torch.fx`` and group the subsampling layers that read one grid.

    Args:
        model: the model (not edited).
        kind: qualified name -> ``("sub", factor)`` for a layer the surgery turns into a
            subsampling, ``"keep"`` for one that keeps the grid (stride-1 "same" convs,
            norms, activations), anything else for the rest.

    Returns:
        groups (names in execution order, two or more), functional pooling calls and
        layers called twice (``skipped``), and the parts that could not be traced.
    """
    out = Analysis()
    _walk(model, "", kind, out)
    return out


def _walk(module: nn.Module, prefix: str, kind: Callable[[str], Kind], out: Analysis) -> None:
    if _is_leaf(module):
        return
    try:
        graph = _trace(module)
    except Exception:  # some part cannot be traced: trace around the parts that fail on their own
        children = [(name, child) for name, child in module.named_children() if not _is_leaf(child)]
        bad = []
        for name, child in children:
            try:
                _trace(child)
            except Exception:  # any tracing failure makes the child opaque here
                bad.append((name, child))
        try:
            graph = _trace(module, tuple(child for _, child in bad))
        except Exception as own:  # the module's own forward cannot be traced
            out.untraced.append(Skip(prefix or "(model)", "forward", _why(own) + "; its layers are converted one "
                                     "at a time (phases not tied across them), its parts traced one by one"))
            for name, child in children:
                _walk(child, _join(prefix, name), kind, out)
            return
        _grids(graph, prefix, kind, out)
        _activations(graph, module, prefix, kind, out)
        for name, child in bad:
            _walk(child, _join(prefix, name), kind, out)
        return
    _grids(graph, prefix, kind, out)
    _activations(graph, module, prefix, kind, out)


_RELU_FUNCS = {F.relu, torch.relu, F.relu6}
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def _activations(graph: fx.Graph, root: nn.Module, prefix: str, kind: Callable[[str], Kind], out: Analysis) -> None:
    """For each subsampling layer: the norm and activation that alone take its output, if any."""
    calls: dict[str, int] = defaultdict(int)
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] += 1
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(kind(_join(prefix, str(node.target))), tuple):
            continue
        cur, norm = node, None
        if len(cur.users) == 1:
            nxt = next(iter(cur.users))
            if nxt.op == "call_module" and isinstance(root.get_submodule(str(nxt.target)), _NORM_TYPES):
                norm, cur = _join(prefix, str(nxt.target)), nxt
        if len(cur.users) != 1:
            continue
        act = next(iter(cur.users))
        if act.op == "call_module":
            mod = root.get_submodule(str(act.target))
            if type(mod).__module__.startswith("torch.nn"):
                out.after[_join(prefix, str(node.target))] = (norm, _join(prefix, str(act.target)),
                                                              calls[str(act.target)] == 1, type(mod))
        elif (act.op == "call_function" and act.target in _RELU_FUNCS) or (act.op == "call_method"
                                                                            and act.target in ("relu", "relu_")):
            relu6 = act.target is F.relu6
            out.after[_join(prefix, str(node.target))] = (norm, None, False, nn.ReLU6 if relu6 else nn.ReLU)


def _grids(graph: fx.Graph, prefix: str, kind: Callable[[str], Kind], out: Analysis) -> None:
    count = iter(range(1 << 62))
    grid: dict[fx.Node, int | None] = {}
    groups: dict[tuple[int, tuple[int, ...]], list[str]] = defaultdict(list)
    group_grid: dict[tuple[int, tuple[int, ...]], int] = {}
    calls: dict[str, int] = defaultdict(int)

    def arg_grids(node: fx.Node) -> list[int | None]:
        return [grid.get(a) for a in node.all_input_nodes]

    for node in graph.nodes:
        if node.op == "placeholder":
            grid[node] = next(count)
        elif node.op == "get_attr" or node.op == "output":
            grid[node] = None
        elif node.op == "call_module":
            name = _join(prefix, str(node.target))
            k = kind(name)
            first = grid.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
            if isinstance(k, tuple) and k[0] == "sub":
                calls[name] += 1
                key = (first if first is not None else next(count), tuple(k[1]))
                groups[key].append(name)
                grid[node] = group_grid.setdefault(key, next(count))
            elif k == "keep" and first is not None:
                grid[node] = first
            else:
                grid[node] = next(count)
        else:
            call = _pool_call(node)
            if call is not None:
                out.skipped.append(Skip(prefix or "(model)", f"{call}() in forward",
                                        "a functional call cannot be replaced by surgery; replace it by a module "
                                        "(e.g. torch.nn.MaxPool2d) to convert it"))
                grid[node] = next(count)
                continue
            target = node.target
            elementwise = (node.op == "call_function" and target in _ELEMENTWISE_FUNCS) or \
                (node.op == "call_method" and target in _ELEMENTWISE_METHODS)
            if node.op == "call_function" and target is torch.cat:
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                elementwise = dim == 1
            given = {g for g in arg_grids(node) if g is not None}
            grid[node] = given.pop() if elementwise and len(given) == 1 else next(count)
    for name, n in calls.items():
        if n > 1:
            out.skipped.append(Skip(name, "called more than once in forward",
                                    f"runs {n} times on different tensors: each call chooses its own phase"))
    for members in groups.values():
        members = [m for m in members if calls[m] == 1]
        if len(members) > 1:
            out.groups.append(members)
