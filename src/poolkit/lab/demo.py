"""``make demo``: every registered pool on a pattern and on its shifted copy.

Prints, per pool, the output shape and how much the pooled output changed when
the input pattern moved by one and by four cells (relative L2 distance; 0 means
the pool's output ignores the shift).
"""

from __future__ import annotations

import torch

import poolkit


def shift_table(size: int = 16, kernel_size: int = 4) -> list[tuple[str, tuple[int, ...], float, float]]:
    """(name, output shape, change after a 1-cell shift, change after a 4-cell shift) per pool."""
    x = torch.zeros(1, 4, size, size)
    x[:, :, 2:6, 3:7] = torch.rand(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    rows = []
    for name in poolkit.list_pools():
        torch.manual_seed(0)
        pool = poolkit.create_pool(name, dim=2, kernel_size=kernel_size, channels=4).eval()
        with torch.no_grad():
            y = pool(x)
            y = y[0] if isinstance(y, tuple) else y
            changes = []
            for s in (1, 4):
                ys = pool(torch.roll(x, (s, s), dims=(2, 3)))
                ys = ys[0] if isinstance(ys, tuple) else ys
                changes.append(float((ys - y).norm() / y.norm().clamp_min(1e-12)))
        rows.append((name, tuple(y.shape), changes[0], changes[1]))
    return rows


def main() -> None:
    print(f"poolkit {poolkit.__version__}: a 4x4 pattern on a 16x16 canvas, pooled with kernel 4\n")
    print(f"{'pool':<16}{'output shape':<20}{'change, shift 1':>16}{'change, shift 4':>16}")
    for name, shape, c1, c4 in shift_table():
        print(f"{name:<16}{str(shape):<20}{c1:>16.3f}{c4:>16.3f}")
    print("\nA shift by the stride (4) moves the output instead of changing it; a shift by 1 does not.")


if __name__ == "__main__":
    main()
