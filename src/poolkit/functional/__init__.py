"""Pure pooling functions, one per statistic, dimension-generic (1-D, 2-D, 3-D).

>>> import torch, poolkit.functional as PF
>>> PF.max_pool(torch.rand(2, 3, 8, 8), 2).shape
torch.Size([2, 3, 4, 4])
"""

from . import antialias, order, polyphase, power, random, spectral, stats
from .antialias import *  # noqa: F403
from .order import *  # noqa: F403
from .polyphase import *  # noqa: F403
from .power import *  # noqa: F403
from .random import *  # noqa: F403
from .spectral import *  # noqa: F403
from .stats import *  # noqa: F403

__all__ = (
    order.__all__ + power.__all__ + random.__all__ + antialias.__all__ + polyphase.__all__ + stats.__all__
    + spectral.__all__
)
