"""PyTorch twins of zoo models for side-by-side benchmarks (torch is imported lazily and is optional).

Only what the benchmarks need: the CIFAR ResNets (``resnet8`` ... ``resnet110``, ``resnet8x4``,
``resnet32x4``) with the reference layout (mdistiller's ``models/cifar/resnet.py``). Nothing in the
package imports torch at module level.
"""

from __future__ import annotations

from typing import Any

# name -> (depth, (stem, stage1, stage2, stage3) widths)
CIFAR_RESNETS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "resnet8": (8, (16, 16, 32, 64)),
    "resnet14": (14, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet44": (44, (16, 16, 32, 64)),
    "resnet56": (56, (16, 16, 32, 64)),
    "resnet110": (110, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}


def torch_available() -> bool:
    """Whether ``import torch`` works (without importing it when it does not)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def build_torch_model(name: str, num_classes: int) -> Any:
    """A ``torch.nn.Module`` twin of the zoo model ``name`` (NCHW input, returns logits).

    Args:
      name: a key of :data:`CIFAR_RESNETS`.
      num_classes: classifier outputs.

    Returns:
      The torch module (train mode, float32, on the CPU).

    Raises:
      ValueError: ``name`` has no twin here.
      ImportError: torch is not installed.
    """
    if name not in CIFAR_RESNETS:
        raise ValueError(f"no PyTorch twin for {name!r}; benchmarks have twins for {', '.join(CIFAR_RESNETS)}.")
    import torch.nn as tnn
    import torch.nn.functional as F

    class Block(tnn.Module):
        def __init__(self, cin: int, planes: int, stride: int):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or cin != planes:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes)
                )

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(y + (x if self.downsample is None else self.downsample(x)))

    class CifarResNet(tnn.Module):
        def __init__(self, depth: int, widths: tuple[int, int, int, int]):
            super().__init__()
            n = (depth - 2) // 6
            self.conv1 = tnn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(widths[0])
            cin = widths[0]
            for s, (planes, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
                blocks = []
                for i in range(n):
                    blocks.append(Block(cin, planes, stride if i == 0 else 1))
                    cin = planes
                setattr(self, f"layer{s}", tnn.Sequential(*blocks))
            self.fc = tnn.Linear(cin, num_classes)
            for m in self.modules():
                if isinstance(m, tnn.Conv2d):
                    tnn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    depth, widths = CIFAR_RESNETS[name]
    return CifarResNet(depth, widths).train()
