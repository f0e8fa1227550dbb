"""Model factories written the way a user would: ``FUNC(in_channels, num_classes) -> nn.Module``.

``poolkit study --model tests/lab/user_models.py:resnet1d`` and friends; the tests import this file
both by path and as a module.
"""

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock1d(nn.Module):
    """A ResNet basic block in 1-D (two 3-tap convs, batch norm, identity or 1x1 shortcut)."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv1d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(planes)
        self.conv2 = nn.Conv1d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv1d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm1d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet1d(nn.Module):
    """A small residual 1-D CNN in torchvision's ResNet style (stem, max pool, blocks, avgpool, fc)."""

    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, width, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool1d(kernel_size=2, stride=2)
        self.layer1 = BasicBlock1d(width, width)
        self.layer2 = BasicBlock1d(width, 2 * width)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet1d(in_channels, num_classes):
    return ResNet1d(in_channels, num_classes)


def cnn2d(in_channels, num_classes):
    """A VGG-like 2-D CNN: conv blocks with max pools, a global average pool, a linear classifier."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def cnn3d(in_channels, num_classes):
    """A small 3-D CNN (volumes)."""
    return nn.Sequential(
        nn.Conv3d(in_channels, 4, 3, padding=1), nn.ReLU(),
        nn.MaxPool3d(2),
        nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool3d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


def lever_cnn1d(in_channels, num_classes, pool="max", lever=1.0):
    """A factory that builds each grid point itself: λ = fraction of its two blocks that pool."""
    import poolkit

    blocks = []
    c = in_channels
    for b in range(2):
        blocks += [nn.Conv1d(c, 8, 3, padding=1), nn.ReLU()]
        if lever > 0 and b < round(2 * lever):
            blocks.append(poolkit.create_pool(pool, dim=1, kernel_size=2, channels=8))
        c = 8
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, num_classes))


# ---- factories with mistakes, for the error messages ----

def no_global_pool(in_channels, num_classes):
    return nn.Sequential(nn.Conv1d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
                         nn.LazyLinear(num_classes))


def not_a_module(in_channels, num_classes):
    return {"conv": nn.Conv1d(in_channels, 4, 3)}


def broken(in_channels, num_classes):
    raise RuntimeError("out of coffee")


def wants_2d(in_channels, num_classes):
    return cnn2d(in_channels, num_classes)


class _Squeezer(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).squeeze(-1))


def squeezes_the_map(in_channels, num_classes):
    return _Squeezer(in_channels, num_classes)
