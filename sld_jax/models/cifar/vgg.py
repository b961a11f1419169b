"""VGG with BatchNorm for CIFAR (vgg8, vgg11, vgg13, vgg16, vgg19; mdistiller's ``vgg*_bn``).

Five blocks of 3x3 conv (with bias) - BN - ReLU layers (the last ReLU of each block is applied by the
network, after the block's pre-activation feature), 2x2 max-pools after blocks 0-2 (and after block 3
only for 64x64 inputs, as the reference), a global average pool and a 512 -> classes ``classifier``.

Submodules follow the PyTorch ``nn.Sequential`` indices: block ``b``'s ``j``-th layer has its conv at
``block{b}_{3j}`` and its BatchNorm at ``block{b}_{3j+1}``; the classifier is ``classifier``.
Initialisation as the reference: conv weights normal with std ``sqrt(2 / (k*k*out))``, conv biases 0,
BatchNorm 1 / 0, classifier weight normal(0, 0.01) and bias 0.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax

from sld_jax.models.layers import ZooModel, classifier, conv_bn, global_mean_pool

Array = jax.Array

__all__ = ["VGG", "VGG_CONFIGS", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19"]

# Channels of each conv layer in the five blocks.
VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "S": ((64,), (128,), (256,), (512,), (512,)),
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


class VGG(ZooModel):
    """VGG-BN for CIFAR. Call ``(x, *, train, mask=None) -> (logits, features)``.

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively (any multiple of 8 works; 64x64 adds
      the reference's fourth max-pool).
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (= ``stage0_preact``, block 0 after ReLU),
      ``stage{1..4}`` / ``stage{1..4}_preact`` (each block's output after / before the final ReLU) and
      ``pooled`` ``[B, 512]``.

    Attributes:
      cfg: channels per conv layer of each of the five blocks (see :data:`VGG_CONFIGS`).
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    cfg: Sequence[Sequence[int]]
    num_classes: int = 100

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self)
        if len(self.cfg) != 5:
            raise ValueError(f"VGG needs five blocks of channels, got {len(self.cfg)}.")
        height = x.shape[1]
        for b, channels in enumerate(self.cfg):
            for j, c in enumerate(channels):
                if j > 0:
                    x = nn.relu(x)
                x = conv(c, 3, padding=1, use_bias=True, name=f"block{b}_{3 * j}")(x)
                x = bn(name=f"block{b}_{3 * j + 1}")(x, train=train, mask=mask)
            preact, x = x, nn.relu(x)
            # the reference's preact_feats[0] is block 0 after its ReLU
            feats[f"stage{b}_preact"] = preact if b > 0 else x
            feats[f"stage{b}"] = x
            if b < 3 or (b == 3 and height == 64):
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name="classifier", normal_weight=True, zero_bias=True)


vgg8 = functools.partial(VGG, VGG_CONFIGS["S"])
vgg11 = functools.partial(VGG, VGG_CONFIGS["A"])
vgg13 = functools.partial(VGG, VGG_CONFIGS["B"])
vgg16 = functools.partial(VGG, VGG_CONFIGS["D"])
vgg19 = functools.partial(VGG, VGG_CONFIGS["E"])
