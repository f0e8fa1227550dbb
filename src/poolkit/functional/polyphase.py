"""Pooling family `polyphase` (see DESIGN.md)."""

from __future__ import annotations

__all__: list[str] = []
