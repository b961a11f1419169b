"""MobileNetV2 for CIFAR as in the KD literature (``MobileNetV2`` = mdistiller's ``mobile_half``).

Width multiplier 0.5 and expansion 6: a stride-2 3x3 stem of 16 channels, seven stages of inverted
residual blocks (1x1 expand - 3x3 depthwise - 1x1 project, each with BN, ReLU after the first two;
the expansion conv is present even where the expansion ratio is 1), a 1x1 conv to 1280 channels, a
global average pool and a linear classifier. ReLU, not ReLU6, as the reference.

Submodules follow the PyTorch names: ``conv1_0`` (conv) / ``conv1_1`` (BN), ``blocks_{s}_{i}/conv_{0,1,3,4,6,7}``
(convs at 0, 3, 6 and BatchNorms at 1, 4, 7; the ``"cifar"`` layout of
:class:`~sld_jax.models.mobilenet_blocks.InvertedResidual`), ``conv2_0`` / ``conv2_1``, ``classifier_0``.
Initialisation as the reference: conv weights normal with std ``sqrt(2 / (k*k*out))``, BatchNorm 1 / 0,
classifier weight normal(0, 0.01) and bias 0.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from sld_jax.models.layers import (
    ZooModel,
    classifier,
    conv_bn,
    global_mean_pool,
    zoo_fields,
)
from sld_jax.models.mobilenet_blocks import InvertedResidual

Array = jax.Array

__all__ = ["InvertedResidual", "MobileNetV2Cifar", "mobilenetv2_half"]

# (expansion, channels, blocks, first stride) of each stage at width 1; "T" is the expansion field.
_SETTING = (
    (1, 16, 1, 1),
    ("T", 24, 2, 1),
    ("T", 32, 3, 2),
    ("T", 64, 4, 2),
    ("T", 96, 3, 1),
    ("T", 160, 3, 2),
    ("T", 320, 1, 1),
)


class MobileNetV2Cifar(ZooModel):
    """CIFAR MobileNetV2. Call ``(x, *, train, mask=None) -> (logits, features)``.

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively, any size >= 16 works (the pool is a
      global mean, equal to the reference's ``AvgPool2d(2, ceil_mode=True)`` at 32x32).
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (stem after ReLU), ``stage1`` .. ``stage4`` (after
      stages 1, 2, 4 and 6, as the reference's ``feats``; the reference exposes no pre-activations)
      and ``pooled`` ``[B, 1280]``.

    Attributes:
      expansion: expansion ratio ``T`` of stages 1..6 (6).
      width_mult: channel multiplier (0.5).
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    expansion: int = 6
    width_mult: float = 0.5
    num_classes: int = 100

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self)
        cin = int(32 * self.width_mult)
        x = conv(cin, 3, stride=2, padding=1, name="conv1_0")(x)
        x = nn.relu(bn(name="conv1_1")(x, train=train, mask=mask))
        feats["stage0"] = x
        exposed = {1: "stage1", 2: "stage2", 4: "stage3", 6: "stage4"}
        for s, (t, c, n, stride) in enumerate(_SETTING):
            t = self.expansion if t == "T" else t
            cout = int(c * self.width_mult)
            for i in range(n):
                block = InvertedResidual(
                    cin, cout, stride if i == 0 else 1, t, "cifar", **zoo_fields(self), name=f"blocks_{s}_{i}"
                )
                x = block(x, train=train, mask=mask)
                cin = cout
            if s in exposed:
                feats[exposed[s]] = x
        last = int(1280 * self.width_mult) if self.width_mult > 1.0 else 1280
        x = conv(last, 1, name="conv2_0")(x)
        x = nn.relu(bn(name="conv2_1")(x, train=train, mask=mask))
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name="classifier_0", normal_weight=True, zero_bias=True)


# The KD literature's CIFAR "MobileNetV2": expansion 6, half width.
mobilenetv2_half = functools.partial(MobileNetV2Cifar, 6, 0.5)
