"""The inverted residual block of both MobileNetV2s in the zoo (CIFAR's and torchvision's ImageNet one).

Expand (1x1) - depthwise (3x3, strided) - project (1x1), each convolution followed by a BatchNorm and the
first two by a ReLU; an identity shortcut when the shape does not change. The two references differ in
three details, set by ``layout``:

* ``"cifar"`` (mdistiller's CIFAR MobileNetV2): the expansion convolution is present even at expansion
  ratio 1, the activation is ReLU, and the layers are one flat ``nn.Sequential``: ``conv_0`` (conv),
  ``conv_1`` (BN), ``conv_3``, ``conv_4``, ``conv_6``, ``conv_7``.
* ``"torchvision"``: no expansion convolution at ratio 1, ReLU6, and torchvision's nesting: ``conv_0_0`` /
  ``conv_0_1`` (expansion conv / BN), ``conv_{k}_0`` / ``conv_{k}_1`` (depthwise), ``conv_{k + 1}`` (project
  conv), ``conv_{k + 2}`` (BN), with ``k`` 1, or 0 without the expansion.

Convolutions are bias-free with kaiming-normal (fan_out) initialisation (both references' init, the
CIFAR one written as normal with std ``sqrt(2 / (k*k*out))``); BatchNorm scale 1, bias 0.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from sld_jax.models.layers import ZooModule, conv_bn

Array = jax.Array

__all__ = ["InvertedResidual"]


class InvertedResidual(ZooModule):
    """Expand (1x1) - depthwise (3x3, stride) - project (1x1) with BN; residual when shapes match.

    ``[B, H, W, cin]`` -> ``[B, H/stride, W/stride, cout]`` in ``dtype``; identity shortcut when
    ``stride == 1 and cin == cout``.

    Attributes:
      cin: input channels.
      cout: output channels.
      stride: stride of the depthwise convolution.
      expand_ratio: hidden channels ``round(cin * expand_ratio)``.
      layout: ``"cifar"`` or ``"torchvision"`` (see the module docstring).
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: see :func:`sld_jax.models.layers.conv2d`.
    """

    cin: int
    cout: int
    stride: int
    expand_ratio: int
    layout: str

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> Array:
        """Apply the block; see the class docstring for shapes."""
        conv, bn = conv_bn(self)
        if self.layout == "cifar":
            expand, act = True, nn.relu
            names = ("conv_0", "conv_1", "conv_3", "conv_4", "conv_6", "conv_7")
        elif self.layout == "torchvision":
            expand, act = self.expand_ratio != 1, nn.relu6
            k = int(expand)
            names = ("conv_0_0", "conv_0_1", f"conv_{k}_0", f"conv_{k}_1", f"conv_{k + 1}", f"conv_{k + 2}")
        else:
            raise ValueError(f"layout must be 'cifar' or 'torchvision', got {self.layout!r}.")
        hidden = int(round(self.cin * self.expand_ratio))
        y = x
        if expand:
            y = conv(hidden, 1, name=names[0])(y)
            y = act(bn(name=names[1])(y, train=train, mask=mask))
        y = conv(hidden, 3, stride=self.stride, padding=1, groups=hidden, name=names[2])(y)
        y = act(bn(name=names[3])(y, train=train, mask=mask))
        y = conv(self.cout, 1, name=names[4])(y)
        y = bn(name=names[5])(y, train=train, mask=mask)
        if self.stride == 1 and self.cin == self.cout:
            return x + y
        return y
