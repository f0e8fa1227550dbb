"""Pooling modules mirroring :mod:`poolkit.functional`, torch-style names (``MaxPool2d``).

The classes with a torch namesake (``MaxPool``, ``AvgPool``, ``LPPool``, ``FractionalMaxPool``,
``AdaptiveMaxPool``, ``AdaptiveAvgPool``, 1-D to 3-D) are drop-ins: torch's arguments in torch's
order, torch's values, gradients and output strides; poolkit's extras are keyword-only.

>>> import torch, poolkit.nn as pnn
>>> x = torch.randn(2, 3, 9, 9)
>>> torch.allclose(pnn.LPPool2d(2, 3)(x), torch.nn.LPPool2d(2, 3)(x))
True
>>> pnn.AdaptiveAvgPool2d((2, None))(x).shape
torch.Size([2, 3, 2, 9])
"""

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
