"""PyTorch twins of the zoo's reference architectures, for the tests and the benchmarks.

Each twin follows the reference definition (mdistiller's CIFAR and ImageNet models, torchvision's
MobileNetV2) closely enough that its ``state_dict`` has the reference key names and shapes and its
forward pass (logits, and the BatchNorm calls that update running statistics in train mode) is the
reference's. Twins return logits only. :func:`randomize_` fills every tensor from a seeded numpy
Generator (tests never draw weights from torch's global generator); :func:`build_torch_model`
builds a CIFAR ResNet with the reference's initialisation for the benchmarks.

This module imports torch (a test-only dependency of sld_jax): only the tests and benchmarks that
compare with PyTorch import it, inside the functions that need it; the architectures' sizes it
shares with them (:data:`~sld_jax.models.twin_specs.CIFAR_RESNETS`) and the check whether torch is
installed live in :mod:`sld_jax.models.twin_specs`, which imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sld_jax.models.twin_specs import CIFAR_RESNETS, VGG_CFG

__all__ = ["TWINS", "STUDENT_TWINS", "build_torch_model", "build_twin", "randomize_"]


# -----------------------------------------------------------------------------------------------
# CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4): post-activation basic blocks.


class _CifarBasic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class CifarResNet(nn.Module):
    """mdistiller's ``resnet{depth}`` / ``resnet{depth}x4`` (basic blocks, 3 stages, AvgPool = global mean)."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 100):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for i, (w, s) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
            blocks = []
            for j in range(n):
                stride = s if j == 0 else 1
                down = None
                if stride != 1 or cin != w:
                    down = nn.Sequential(nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
                blocks.append(_CifarBasic(cin, w, stride, down))
                cin = w
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def resnet8(num_classes=100):
    return CifarResNet(8, (16, 16, 32, 64), num_classes)


def resnet56(num_classes=100):
    return CifarResNet(56, (16, 16, 32, 64), num_classes)


def resnet110(num_classes=100):
    return CifarResNet(110, (16, 16, 32, 64), num_classes)


def resnet32x4(num_classes=100):
    return CifarResNet(32, (32, 64, 128, 256), num_classes)


# -----------------------------------------------------------------------------------------------
# CIFAR ResNet18/ResNet50 (mdistiller's resnetv2: 4 stages, 3x3 stem, "shortcut", "linear").


class _V2Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != out:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


class CifarResNet50(nn.Module):
    """mdistiller's CIFAR ``ResNet50`` (bottlenecks [3, 4, 6, 3], 3x3 stride-1 stem, no max-pool)."""

    def __init__(self, num_classes: int = 100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (planes, n, s) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)), start=1):
            blocks = []
            for j in range(n):
                blocks.append(_V2Bottleneck(cin, planes, s if j == 0 else 1))
                cin = planes * 4
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(x.mean(dim=(2, 3)))


# -----------------------------------------------------------------------------------------------
# Wide ResNets (pre-activation; the reference forward re-applies two BNs to expose pre-activations).


class _WrnBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return y + (x if self.equal else self.convShortcut(a))


class _WrnStage(nn.Module):
    def __init__(self, n: int, cin: int, cout: int, stride: int):
        super().__init__()
        blocks = [_WrnBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)]
        self.layer = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """mdistiller's ``wrn_{depth}_{widen}``, including the extra BN applications of its forward."""

    def __init__(self, depth: int, widen: int, num_classes: int = 100):
        super().__init__()
        n = (depth - 4) // 6
        ch = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = _WrnStage(n, ch[0], ch[1], 1)
        self.block2 = _WrnStage(n, ch[1], ch[2], 2)
        self.block3 = _WrnStage(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        f1 = self.block1(self.conv1(x))
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        out = self.fc(F.relu(self.bn1(f3)).mean(dim=(2, 3)))
        # The reference computes these pre-activation features in every forward; in train mode they
        # update the running statistics of these three BatchNorms a second time.
        self.block2.layer[0].bn1(f1)
        self.block3.layer[0].bn1(f2)
        self.bn1(f3)
        return out


def wrn_40_2(num_classes=100):
    return WideResNet(40, 2, num_classes)


# -----------------------------------------------------------------------------------------------
# VGG with BatchNorm (mdistiller's vgg*_bn: five blocks, last ReLU of each block applied outside).


class VGG(nn.Module):
    """mdistiller's ``vgg13_bn`` layout for a config such as [[64, 64], [128, 128], ...]."""

    def __init__(self, cfg, num_classes: int = 100):
        super().__init__()
        cin = 3
        for b, widths in enumerate(cfg):
            layers = []
            for w in widths:
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            setattr(self, f"block{b}", nn.Sequential(*layers[:-1]))
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        h = x.shape[2]
        x = F.max_pool2d(F.relu(self.block0(x)), 2)
        x = F.max_pool2d(F.relu(self.block1(x)), 2)
        x = F.max_pool2d(F.relu(self.block2(x)), 2)
        x = F.relu(self.block3(x))
        if h == 64:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.block4(x))
        return self.classifier(x.mean(dim=(2, 3)))


def vgg13(num_classes=100):
    return VGG([[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]], num_classes)


# -----------------------------------------------------------------------------------------------
# ImageNet ResNets (torchvision names; mdistiller's forward, which equals torchvision's logits).


class _INBasic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        x = F.relu(x)
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return y + (x if self.downsample is None else self.downsample(x))


class _INBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        x = F.relu(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return y + (x if self.downsample is None else self.downsample(x))


class ImageNetResNet(nn.Module):
    """torchvision/mdistiller ImageNet ResNet with a global-mean pool (== AvgPool2d(7) at 224x224)."""

    def __init__(self, block, layers, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (planes, n, s) in enumerate(zip((64, 128, 256, 512), layers, (1, 2, 2, 2)), start=1):
            out = planes * block.expansion
            down = None
            if s != 1 or cin != out:
                down = nn.Sequential(nn.Conv2d(cin, out, 1, s, bias=False), nn.BatchNorm2d(out))
            blocks = [block(cin, planes, s, down)] + [block(out, planes) for _ in range(1, n)]
            cin = out
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(F.relu(x).mean(dim=(2, 3)))


def imagenet_resnet18(num_classes=1000):
    return ImageNetResNet(_INBasic, (2, 2, 2, 2), num_classes)


def imagenet_resnet34(num_classes=1000):
    return ImageNetResNet(_INBasic, (3, 4, 6, 3), num_classes)


def imagenet_resnet50(num_classes=1000):
    return ImageNetResNet(_INBottleneck, (3, 4, 6, 3), num_classes)


def imagenet_resnet101(num_classes=1000):
    return ImageNetResNet(_INBottleneck, (3, 4, 23, 3), num_classes)


# -----------------------------------------------------------------------------------------------
# MobileNetV1 (the reference's ImageNet "MobileNetV2") and torchvision's MobileNetV2.


class MobileNetV1(nn.Module):
    """mdistiller's ImageNet "MobileNetV2" class, which is the MobileNetV1 architecture."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()

        def conv_bn(cin, cout, stride):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
            )

        def conv_dw(cin, cout, stride):
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU(),
                nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            )

        spec = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
        spec += [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
        self.model = nn.Sequential(conv_bn(3, 32, 2), *[conv_dw(*s) for s in spec])
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.fc(self.model(x).mean(dim=(2, 3)))


def _divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class _ConvBNReLU6(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_ConvBNReLU6(cin, hidden, kernel=1)]
        layers += [
            _ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (width 1.0): same state_dict keys and forward (eval mode)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        settings = [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]
        cin = _divisible(32)
        feats = [_ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in settings:
            cout = _divisible(c)
            for i in range(n):
                feats.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(_ConvBNReLU6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


TWINS = {
    "resnet8": resnet8,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet32x4": resnet32x4,
    "ResNet50": CifarResNet50,
    "wrn_40_2": wrn_40_2,
    "vgg13": vgg13,
    "imagenet_resnet18": imagenet_resnet18,
    "imagenet_resnet34": imagenet_resnet34,
    "imagenet_resnet50": imagenet_resnet50,
    "imagenet_resnet101": imagenet_resnet101,
    "imagenet_mobilenet_v1": MobileNetV1,
    "imagenet_mobilenet_v2": TorchvisionMobileNetV2,
}

# -----------------------------------------------------------------------------------------------
# Random weights and realistic, randomised BatchNorm running statistics.


def randomize_(model: nn.Module, rng: np.random.Generator, calib: np.ndarray) -> nn.Module:
    """Fill ``model`` with seeded random weights and randomised BatchNorm running statistics, in place.

    Conv/linear weights are normal with std sqrt(2 / fan_in) (1 / sqrt(fan_in) for the last linear
    layer); biases and BN affine parameters are perturbed around their identity values. Running
    statistics are first set to the batch statistics of one train-mode pass over ``calib``
    ([N, 3, H, W] float32, so eval-mode activations stay of order one), then perturbed.

    Args:
      model: a twin (modified in place).
      rng: seeded numpy Generator.
      calib: calibration images [N, 3, H, W] float32.

    Returns:
      ``model``, in eval mode.
    """

    def t(a):
        return torch.from_numpy(np.asarray(a, np.float32))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                std = np.sqrt(1.0 / fan_in) if isinstance(m, nn.Linear) else np.sqrt(2.0 / fan_in)
                m.weight.copy_(t(rng.normal(0.0, std, m.weight.shape)))
                if m.bias is not None:
                    m.bias.copy_(t(rng.normal(0.0, 0.1, m.bias.shape)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(t(rng.uniform(0.6, 1.4, m.weight.shape)))
                m.bias.copy_(t(rng.normal(0.0, 0.1, m.bias.shape)))
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.momentum = 1.0
        model.train()
        model(t(calib))
        for m in bns:
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean.add_(t(rng.normal(0.0, 0.2, m.running_mean.shape)) * std)
            m.running_var.mul_(t(rng.uniform(0.7, 1.4, m.running_var.shape)))
            m.num_batches_tracked.fill_(int(rng.integers(1, 10_000)))
    return model.eval()


# -----------------------------------------------------------------------------------------------
# The CIFAR students that the sections above do not cover (ResNet18, MobileNetV2, ShuffleV1/V2).


def _shuffle(x, groups):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _V2Basic(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (planes, s) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(_V2Basic(cin, planes, s), _V2Basic(planes, planes, 1)))
            cin = planes
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(x.mean(dim=(2, 3)))


class _InvRes(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hid = inp * t
        self.res = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hid, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU(),
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU(),
            nn.Conv2d(hid, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2Half(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        setting = [
            (1, 16, 1, 1),
            (6, 24, 2, 1),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]
        cin = 16
        self.conv1 = nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU())
        self.blocks = nn.ModuleList()
        for t, c, n, s in setting:
            cout = c // 2
            layers = []
            for i in range(n):
                layers.append(_InvRes(cin, cout, s if i == 0 else 1, t))
                cin = cout
            self.blocks.append(nn.Sequential(*layers))
        self.conv2 = nn.Sequential(nn.Conv2d(cin, 1280, 1, 1, 0, bias=False), nn.BatchNorm2d(1280), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.conv1(x)
        for b in self.blocks:
            x = b(x)
        return self.classifier(self.conv2(x).mean(dim=(2, 3)))


class _V1Unit(nn.Module):
    def __init__(self, cin, cout, stride, groups):
        super().__init__()
        mid = cout // 4
        self.g = 1 if cin == 24 else groups
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=self.g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = _shuffle(F.relu(self.bn1(self.conv1(x))), self.g)
        y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))
        if self.stride == 2:
            return F.relu(torch.cat([y, F.avg_pool2d(x, 3, 2, 1)], 1))
        return F.relu(y + x)


class ShuffleV1(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for s, (planes, n) in enumerate(zip((240, 480, 960), (4, 8, 4)), start=1):
            units = []
            for i in range(n):
                units.append(_V1Unit(cin, planes - cin if i == 0 else planes, 2 if i == 0 else 1, 3))
                cin = planes
            setattr(self, f"layer{s}", nn.Sequential(*units))
        self.linear = nn.Linear(960, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean(dim=(2, 3)))


class _V2Split(nn.Module):
    def __init__(self, c):
        super().__init__()
        c //= 2
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x):
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        y = F.relu(self.bn1(self.conv1(x2)))
        y = F.relu(self.bn3(self.conv3(self.bn2(self.conv2(y)))))
        return _shuffle(torch.cat([x1, y], 1), 2)


class _V2Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.conv1 = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return _shuffle(torch.cat([left, right], 1), 2)


class ShuffleV2(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for s, (c, n) in enumerate(zip((116, 232, 464), (3, 7, 3)), start=1):
            setattr(self, f"layer{s}", nn.Sequential(_V2Down(cin, c), *[_V2Split(c) for _ in range(n)]))
            cin = c
        self.conv2 = nn.Conv2d(464, 1024, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1024)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.linear(x.mean(dim=(2, 3)))


STUDENT_TWINS = {
    "ResNet18": ResNet18,
    "MobileNetV2": MobileNetV2Half,
    "ShuffleV1": ShuffleV1,
    "ShuffleV2": ShuffleV2,
}


def build_twin(name: str, num_classes: int) -> Any:
    """The twin of the zoo model ``name`` (PyTorch's default initialisation; see :func:`randomize_`).

    Args:
      name: a name of :data:`sld_jax.models.MODELS` with a twin: the CIFAR ResNets, ``resnet_tiny``,
        ``ResNet18``/``ResNet50``, the WRNs, the VGGs, ``MobileNetV2``, ``ShuffleV1``/``ShuffleV2`` and
        the ImageNet models.
      num_classes: classifier outputs.

    Returns:
      The ``torch.nn.Module`` (float32, on the CPU).

    Raises:
      ValueError: ``name`` has no twin.
    """
    if name in CIFAR_RESNETS:
        return CifarResNet(*CIFAR_RESNETS[name], num_classes)
    if name == "resnet_tiny":
        return CifarResNet(8, (4, 8, 8, 16), num_classes)
    if name.startswith("wrn_"):
        depth, widen = map(int, name.split("_")[1:])
        return WideResNet(depth, widen, num_classes)
    if name in VGG_CFG:
        return VGG(VGG_CFG[name], num_classes)
    if name == "ResNet50":
        return CifarResNet50(num_classes)
    if name in STUDENT_TWINS:
        return STUDENT_TWINS[name](num_classes)
    if name in TWINS:
        return TWINS[name](num_classes=num_classes)
    raise ValueError(f"no PyTorch twin for {name!r}.")


def build_torch_model(name: str, num_classes: int) -> Any:
    """A ``torch.nn.Module`` twin of the CIFAR ResNet ``name`` with the reference's initialisation.

    Convolutions kaiming-normal (fan_out, ReLU gain), as mdistiller's ``resnet.py``; BatchNorm and the
    classifier keep PyTorch's defaults. NCHW input, returns logits.

    Args:
      name: a key of :data:`CIFAR_RESNETS`.
      num_classes: classifier outputs.

    Returns:
      The torch module (train mode, float32, on the CPU).

    Raises:
      ValueError: ``name`` is not a CIFAR ResNet.
      ImportError: torch is not installed.
    """
    if name not in CIFAR_RESNETS:
        raise ValueError(
            f"no PyTorch twin for {name!r}; benchmarks have twins for {', '.join(CIFAR_RESNETS)}."
        )
    model = build_twin(name, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model.train()
