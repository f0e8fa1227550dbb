"""Optional fast kernels, beside the reference formulas and never inside them.

Every public pooling function computes its statistic with a reference formula of
plain, device-generic torch ops. A fast kernel may replace that formula for one
call only when :func:`enabled` is true and the kernel's own ``applies`` test
says so; it must then give the reference's values, gradients, dtype, device and
memory layout. ``POOLKIT_FAST=0`` in the environment, or ``with
poolkit.fast_paths(False):``, turns every fast kernel off.

>>> import poolkit
>>> with poolkit.fast_paths(False):
...     poolkit.fast_paths_enabled()
False
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor

__all__ = ["Kernel", "custom_backward", "dispatch", "enabled", "fast_paths", "kernels", "needs_grad", "register",
           "transformed"]


def _from_env() -> bool:
    value = os.environ.get("POOLKIT_FAST", "1").strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value in ("", "1", "true", "on", "yes"):
        return True
    raise ValueError(f"POOLKIT_FAST must be 0/1 (or false/true, off/on, no/yes), got {value!r}")


_DEFAULT = _from_env()
_local = threading.local()


def enabled() -> bool:
    """Whether fast kernels may run (``POOLKIT_FAST``, overridden by :func:`fast_paths` in this thread)."""
    return getattr(_local, "on", _DEFAULT)


@contextlib.contextmanager
def fast_paths(on: bool = True) -> Iterator[None]:
    """Turn every fast kernel on or off inside a ``with`` block (this thread only).

    Args:
        on: ``False`` runs every pool through its reference formula.
    """
    if not isinstance(on, bool):
        raise TypeError(f"fast_paths expects a bool, got {type(on).__name__}")
    old = enabled()
    _local.on = on
    try:
        yield
    finally:
        _local.on = old


def needs_grad(*ts: object) -> bool:
    """Whether autograd will record an op on any of ``ts`` (else in-place ops on intermediates are safe).

    Tensors under a ``torch.func`` transform or carrying a forward-mode tangent count too (see :func:`transformed`).
    """
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in ts):
        return True
    return transformed(*ts)


def custom_backward(*ts: object) -> bool:
    """Whether autograd records an op on ``ts`` and a custom ``autograd.Function`` may serve it: a gradient is
    wanted and no ``torch.func`` transform or forward-mode tangent is involved (see :func:`transformed`)."""
    grad = torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in ts)
    return grad and not transformed(*ts)


def transformed(*ts: object) -> bool:
    """Whether any of ``ts`` is traced by a ``torch.func`` transform (grad, jvp, vmap) or carries a forward-mode
    tangent. The fast kernels (custom autograd functions, ``out=`` into buffers) do not support those; the
    reference formulas do (``poolkit.measure.lie_derivative`` runs a forward-mode JVP)."""
    for t in ts:
        if isinstance(t, Tensor):
            if torch._C._functorch.is_functorch_wrapped_tensor(t):
                return True
            if forward_ad._current_level >= 0 and forward_ad.unpack_dual(t).tangent is not None:
                return True
    return False


@dataclass(frozen=True)
class Kernel:
    """A fast kernel for one statistic.

    ``applies(*args, **kwargs)`` states in one place when the kernel may serve a call (device, dtype, grad
    mode, layout, sizes); ``run(*args, **kwargs)`` computes it. Both take the arguments the statistic's
    function hands to :func:`dispatch`.
    """

    stat: str
    name: str
    when: str
    applies: Callable[..., bool]
    run: Callable[..., Tensor]


_KERNELS: dict[str, list[Kernel]] = {}


def register(stat: str, name: str, when: str, applies: Callable[..., bool]) -> Callable[[Callable], Callable]:
    """Decorator: register ``run`` as a fast kernel for ``stat`` (tried in registration order)."""

    def wrap(run: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _KERNELS.setdefault(stat, []).append(Kernel(stat, name, when, applies, run))
        return run

    return wrap


def kernels(stat: str | None = None) -> list[Kernel]:
    """The registered fast kernels (of one statistic, or all), for documentation and tests."""
    if stat is None:
        return [k for ks in _KERNELS.values() for k in ks]
    return list(_KERNELS.get(stat, ()))


def dispatch(stat: str, x: Tensor, *args: object, **kwargs: object) -> Tensor | None:
    """The one dispatch point: the first fast kernel for ``stat`` that applies, run; else ``None`` (the caller
    then runs its reference formula).

    Never under the switch's "off", ``torch.compile``, ``torch.jit`` tracing or a ``torch.func`` transform:
    the reference formulas serve those.
    """
    ks = _KERNELS.get(stat)
    if not ks or not enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing() or transformed(x):
        return None
    for k in ks:
        if k.applies(x, *args, **kwargs):
            return k.run(x, *args, **kwargs)
    return None
