"""ImageNet MobileNets: the reference's MobileNetV1 and torchvision's MobileNetV2.

Careful with the names. The reference code (mdistiller's ``imagenet/mobilenetv2.py``, used by the SLD
authors for the ResNet-50 -> "MobileNetV2" ImageNet pair) defines a class called ``MobileNetV2`` that
is the MobileNetV1 architecture: a 3x3 stem and 13 depthwise-separable blocks up to a 1024-channel
head, 4,231,976 parameters at 1000 classes. The paper's table calls that student MobileNet-V1, which
is what ran. Here it is :class:`MobileNetV1` (registry name ``imagenet_mobilenet_v1``).
:class:`MobileNetV2` is torchvision's inverted-residual network (``imagenet_mobilenet_v2``,
3,504,872 parameters), provided for completeness; no reference configuration uses it.

Submodules are named after the PyTorch attribute paths, integer indices joined with "_":
MobileNetV1 ``model.1.3.weight`` -> ``model_1_3/kernel``; torchvision MobileNetV2
``features.2.conv.1.0.weight`` -> ``features_2/conv_1_0/kernel``, ``classifier.1.weight`` ->
``classifier_1/kernel``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from sld_jax.models.layers import (
    ZooModel,
    classifier,
    conv_bn,
    global_mean_pool,
    torch_default_kernel_init,
    zoo_fields,
)
from sld_jax.models.mobilenet_blocks import InvertedResidual

Array = jax.Array

__all__ = ["MobileNetV1", "MobileNetV2", "InvertedResidual"]

# (input channels, output channels, stride) of the 13 depthwise-separable blocks ``model.1`` ... ``model.13``.
_V1_BLOCKS = (
    (32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
    (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1),
    (512, 1024, 2), (1024, 1024, 1),
)  # fmt: skip
# Blocks whose output (before its last ReLU) the reference exposes as feat1..feat4.
_V1_STAGE_ENDS = {3: 1, 5: 2, 11: 3, 13: 4}


class MobileNetV1(ZooModel):
    """MobileNetV1 (the reference code's ImageNet "MobileNetV2" class; 4,231,976 params at 1000 classes).

    ``model.0``: 3x3/2 conv (32) + BN + ReLU; ``model.1..13``: depthwise 3x3 conv + BN + ReLU then
    pointwise 1x1 conv + BN + ReLU; global mean (the reference's ``AvgPool2d(7)`` at 224x224); ``fc``.
    About 0.57 G multiply-adds per 224x224 image. Initialisation as the reference: PyTorch's default
    ``Conv2d``/``Linear`` initialisation, BatchNorm scale 1 / bias 0.

    Call ``(x, *, train, mask=None) -> (logits, features)``:

    * ``x``: ``[B, H, W, 3]`` float, normalised; 224x224 natively, any size >= 32 works.
    * ``mask``: optional ``[B]`` bool; False rows are left out of BatchNorm batch statistics.
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features``: ``pooled`` ``[B, 1024]``; ``stage{1..4}_preact`` = the outputs of blocks 3, 5,
      11 and 13 before their last ReLU (128, 256, 512, 1024 channels; strides 4, 8, 16, 32) and
      ``stage{1..4}`` their ReLUs, as the reference's ``preact_feats``/``feats``.

    Attributes:
      num_classes: classifier outputs (the reference hard-codes 1000).
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    num_classes: int = 1000

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self, torch_default_kernel_init)
        x = conv(32, 3, stride=2, padding=1, name="model_0_0")(x)
        x = nn.relu(bn(name="model_0_1")(x, train=train, mask=mask))
        for k, (cin, cout, stride) in enumerate(_V1_BLOCKS, start=1):
            x = conv(cin, 3, stride=stride, padding=1, groups=cin, name=f"model_{k}_0")(x)
            x = nn.relu(bn(name=f"model_{k}_1")(x, train=train, mask=mask))
            x = conv(cout, 1, name=f"model_{k}_3")(x)
            x = bn(name=f"model_{k}_4")(x, train=train, mask=mask)
            if k in _V1_STAGE_ENDS:
                feats[f"stage{_V1_STAGE_ENDS[k]}_preact"] = x
            x = nn.relu(x)
            if k in _V1_STAGE_ENDS:
                feats[f"stage{_V1_STAGE_ENDS[k]}"] = x
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name="fc")


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` not more than 10% below it (torchvision's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


# (expansion t, channels c, repeats n, first stride s), torchvision's inverted_residual_setting.
_V2_SETTING = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip
# Indices of ``features`` whose outputs are exposed as stage1..stage4 (strides 4, 8, 16, 32).
_V2_STAGE_ENDS = {3: 1, 6: 2, 13: 3, 17: 4}


class MobileNetV2(ZooModel):
    """torchvision's MobileNetV2 (width 1.0; 3,504,872 params at 1000 classes; 0.30 G multiply-adds).

    ``features.0``: 3x3/2 conv (32) + BN + ReLU6; ``features.1..17``: inverted residuals;
    ``features.18``: 1x1 conv (1280) + BN + ReLU6; global mean; ``classifier``: Dropout(0.2) + Linear.
    Initialisation as torchvision: convolutions kaiming-normal (fan_out), BN scale 1 / bias 0, linear
    normal(0, 0.01) with zero bias.

    Call ``(x, *, train, mask=None) -> (logits, features)``; in train mode with ``dropout_rate > 0``
    the call needs a ``"dropout"`` rng (``apply(..., rngs={"dropout": key})``).

    * ``x``: ``[B, H, W, 3]`` float, normalised; 224x224 natively, any size >= 32 works.
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features``: ``pooled`` ``[B, 1280]``; ``stage{1..4}`` = outputs of ``features.3``, ``.6``,
      ``.13`` and ``.17`` (24, 32, 96, 320 channels; strides 4, 8, 16, 32; linear bottlenecks, so no
      separate pre-activation).

    Attributes:
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
      dropout_rate: dropout before the classifier in train mode (torchvision: 0.2).
    """

    num_classes: int = 1000
    dropout_rate: float = 0.2

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self)
        cin = _make_divisible(32)
        x = conv(cin, 3, stride=2, padding=1, name="features_0_0")(x)
        x = nn.relu6(bn(name="features_0_1")(x, train=train, mask=mask))
        idx = 1
        for t, c, n, s in _V2_SETTING:
            cout = _make_divisible(c)
            for i in range(n):
                block = InvertedResidual(
                    cin,
                    cout,
                    s if i == 0 else 1,
                    t,
                    "torchvision",
                    **zoo_fields(self),
                    name=f"features_{idx}",
                )
                x = block(x, train=train, mask=mask)
                if idx in _V2_STAGE_ENDS:
                    feats[f"stage{_V2_STAGE_ENDS[idx]}"] = x
                cin = cout
                idx += 1
        x = conv(1280, 1, name=f"features_{idx}_0")(x)
        x = nn.relu6(bn(name=f"features_{idx}_1")(x, train=train, mask=mask))
        feats["pooled"] = global_mean_pool(x)
        deterministic = not train or self.dropout_rate == 0.0
        y = nn.Dropout(self.dropout_rate, deterministic=deterministic, name="classifier_0")(feats["pooled"])
        return classifier(self, y, name="classifier_1", normal_weight=True, zero_bias=True)
