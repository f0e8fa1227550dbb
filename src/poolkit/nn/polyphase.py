"""Modules for the `polyphase` family, thin shells over :mod:`poolkit.functional.polyphase`."""

from __future__ import annotations

__all__: list[str] = []

# registry name -> (1-d, 2-d, 3-d) module classes
POOLS: dict[str, tuple[type, type, type]] = {}
