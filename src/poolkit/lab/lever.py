"""The lever: one number λ ∈ [0, 1] that sets how much a network pools.

λ = 0 means no pooling: the head sees the full-resolution, shift-equivariant
maps. λ = 1 means global pooling after the last block: the head sees one
position, and with circular conv padding it is exactly invariant to circular
shifts. In between, the head sees about ``L ** (1 - λ)`` positions per axis of
length ``L`` (a geometric interpolation), and the downsampling that takes the
maps there is spread over the conv blocks as non-overlapping pools
(kernel = stride).

>>> s = pool_schedule((40,), 0.5, blocks=2)
>>> s.kernels, s.global_pool, s.head_size
([(3,), (2,)], False, (6,))
>>> pool_schedule((24, 24), 1.0, blocks=2).head_size
(1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Schedule", "head_positions", "pool_schedule", "check_lever", "check_levers", "LEVERS_ACCEPTED"]


@dataclass(frozen=True)
class Schedule:
    """Where and how much a network pools for one λ.

    Attributes:
        lever: the λ it was made for.
        kernels: per conv block, the pooling kernel (= stride) per spatial axis; all ones = no pool.
        global_pool: True when the last block ends in a global pool (one position; λ = 1 or close).
        head_size: spatial size of the maps the head sees.
        input_size: spatial size of the input.
    """

    lever: float
    kernels: list[tuple[int, ...]]
    global_pool: bool
    head_size: tuple[int, ...]
    input_size: tuple[int, ...]

    @property
    def downsampling(self) -> float:
        """Total downsampling factor (product over axes of input size / head size)."""
        return float(math.prod(self.input_size)) / float(math.prod(self.head_size))


def check_lever(lever: object) -> float:
    """Return ``lever`` as a float, or raise ValueError unless it is a number in [0, 1]."""
    if isinstance(lever, bool) or not isinstance(lever, (int, float)):
        raise TypeError(f"lever must be a number in [0, 1], got {type(lever).__name__}")
    value = float(lever)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"lever must be in [0, 1] (0: no pooling, 1: global pooling), got {lever!r}")
    return value


#: The forms a study's ``levers`` argument takes (quoted in every error about it).
LEVERS_ACCEPTED = (
    "a list of numbers in [0, 1] (e.g. [0, 0.5, 1]), one number, a comma-separated string of numbers "
    "('0,0.5,1'), or 'learn' / 'learn:key=value,...' (learned λ)"
)


def check_levers(levers: object, name: str = "levers") -> list[float] | str:
    """A study's grid of λ values: sorted unique floats in [0, 1], or a ``"learn..."`` string untouched.

    Accepted: a sequence of numbers, one number, or a comma-separated string of numbers. A string
    starting with ``"learn"`` (learned-λ mode) is returned as given, not parsed here.

    Args:
        levers: the value to check.
        name: the argument's name in error messages (``"--levers"`` on the command line).

    Returns:
        The sorted distinct λ values as floats, or ``levers`` itself when it is a ``"learn..."`` string.

    Raises:
        ValueError: anything else, with a message naming ``name`` and the accepted forms.

    Example:
        >>> check_levers("1, 0,0.5")
        [0.0, 0.5, 1.0]
        >>> check_levers(0.25)
        [0.25]
        >>> check_levers("learn")
        'learn'
    """
    if isinstance(levers, str):
        if levers.startswith("learn"):
            return levers
        items: list[object] = [v.strip() for v in levers.split(",") if v.strip()]
        try:
            items = [float(v) for v in items]  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"{name} must be {LEVERS_ACCEPTED}; got {levers!r}") from None
    elif isinstance(levers, (int, float)) and not isinstance(levers, bool):
        items = [levers]
    else:
        try:
            items = list(levers)  # type: ignore[call-overload]
        except TypeError:
            raise ValueError(f"{name} must be {LEVERS_ACCEPTED}; got {type(levers).__name__} {levers!r}") from None
    out = set()
    for v in items:
        try:
            out.add(check_lever(v))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {LEVERS_ACCEPTED}; got {levers!r} (bad value {v!r})") from None
    return sorted(out)


def head_positions(size: int, lever: float) -> int:
    """Positions per axis the head sees: ``round(size ** (1 - lever))``, at least 1."""
    return max(1, round(size ** (1.0 - check_lever(lever))))


def pool_schedule(spatial: Sequence[int], lever: float, blocks: int = 2) -> Schedule:
    """Spread the downsampling for ``lever`` over ``blocks`` conv blocks.

    Args:
        spatial: input size per spatial axis.
        lever: λ in [0, 1].
        blocks: number of conv blocks (each may end in a pool).

    Returns:
        A :class:`Schedule`. When the target is one position on every axis the
        schedule is a single global pool after the last block and no strided
        pools before it, so circular padding gives exact invariance.

    Raises:
        ValueError: lever outside [0, 1], blocks < 1, or a spatial size < 1.
    """
    lever = check_lever(lever)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be a positive int, got {blocks!r}")
    sizes = tuple(int(s) for s in spatial)
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"spatial must be positive sizes, got {tuple(spatial)!r}")
    targets = tuple(head_positions(s, lever) for s in sizes)
    ones = tuple(1 for _ in sizes)
    if all(t == 1 for t in targets):
        return Schedule(lever, [ones] * blocks, True, ones, sizes)
    per_axis: list[list[int]] = []
    head = []
    for n0, target in zip(sizes, targets):
        factor = n0 / target
        n, ks = n0, []
        for b in range(1, blocks + 1):
            if b == blocks:
                k = max(1, n // target)
            else:
                want = n0 / factor ** (b / blocks)
                k = max(1, min(n // target, round(n / want)))
            ks.append(k)
            n //= k
        per_axis.append(ks)
        head.append(n)
    kernels = [tuple(per_axis[a][b] for a in range(len(sizes))) for b in range(blocks)]
    return Schedule(lever, kernels, False, tuple(head), sizes)
