"""The paper models that torchvision lacks, written in plain PyTorch (test and benchmark code).

Each mirrors its jaxvision module's structure and submodule names (``conv1``, ``layer1.0``,
``fc``...) so that ``jaxvision.weights.convert_state_dict`` maps its ``state_dict`` onto the
Flax variables, and the two can be compared number for number. They are written from the
papers, independently of the Flax code.
"""

from __future__ import annotations

import torch
from torch import nn


def lenet5() -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) as jaxvision builds it: ReLU, max pooling, 44,426 params."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class CifarBasicBlock(nn.Module):
    """He et al. 2016's CIFAR block; option A pads the subsampled identity with zeros."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin
        self.downsample = None
        if shortcut == "B" and (stride != 1 or cin != cout):
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.downsample is not None:
            s = self.downsample(x)
        else:
            s = x[:, :, ::self.stride, ::self.stride]
            if self.pad:
                s = nn.functional.pad(s, (0, 0, 0, 0, 0, self.pad))
        return torch.relu(y + s)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR: 16/32/64 filters, n blocks a stage, global pool, fc."""

    def __init__(self, n: int, num_classes: int = 10, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for stage, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for i in range(n):
                blocks.append(CifarBasicBlock(cin, cout, stride if i == 0 else 1, shortcut))
                cin = cout
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


class PreActBlock(nn.Module):
    """Zagoruyko & Komodakis 2016's pre-activation B(3,3) block."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        y = self.conv2(torch.relu(self.bn2(self.conv1(a))))
        return y + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    """WRN-depth-k: conv 16, three groups of (depth-4)/6 blocks of 16k/32k/64k, BN-ReLU, fc."""

    def __init__(self, depth: int, k: int, num_classes: int = 10) -> None:
        super().__init__()
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        cin = 16
        for g, width in enumerate((16 * k, 32 * k, 64 * k), start=1):
            blocks = []
            for i in range(n):
                blocks.append(PreActBlock(cin, width, 2 if g > 1 and i == 0 else 1))
                cin = width
            setattr(self, f"layer{g}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(torch.relu(self.bn(x)).mean(dim=(2, 3)))
