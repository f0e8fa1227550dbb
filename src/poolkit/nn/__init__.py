"""Pooling modules mirroring :mod:`poolkit.functional`, torch-style names (``MaxPool2d``)."""

from . import antialias, order, polyphase, power, random, spectral, stats
from .antialias import *  # noqa: F403
from .order import *  # noqa: F403
from .polyphase import *  # noqa: F403
from .power import *  # noqa: F403
from .random import *  # noqa: F403
from .spectral import *  # noqa: F403
from .stats import *  # noqa: F403

FAMILIES = (order, power, random, antialias, polyphase, stats, spectral)

__all__ = [name for fam in FAMILIES for name in fam.__all__]
