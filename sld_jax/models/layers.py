"""Building blocks shared by the model zoo: a PyTorch-exact BatchNorm and PyTorch-style initialisers.

Everything here is NHWC (channels last) and keeps parameters in float32 whatever the compute dtype.

* :class:`BatchNorm` follows ``torch.nn.BatchNorm2d``: momentum 0.1 in PyTorch's convention
  (``running = (1 - m) * running + m * batch``), epsilon 1e-5, normalisation by the biased batch
  variance and a running variance updated with the unbiased one. It adds an optional per-example
  ``mask`` (padded examples do not enter the statistics) and an ``axis_name`` for cross-replica
  statistics inside ``jax.shard_map``.
* :func:`conv2d` builds an ``nn.Conv`` with PyTorch's explicit symmetric padding.
* :class:`Linear` is a dense layer with ``torch.nn.Linear``'s default initialisation.
* ``kaiming_normal_fan_out`` / ``torch_default_kernel_init`` / :func:`torch_default_bias_init`
  are the initialisers the reference definitions use.
* :class:`ZooModule` holds the fields every network and block of the zoo takes (``dtype``,
  ``axis_name``, ``fast_kernel_grad``); :func:`conv_bn` and :func:`zoo_fields` pass them on to the
  layers and blocks a module builds. :class:`ZooModel` is the call convention of every network
  (``(x, *, train, mask=None) -> (logits, features)``) and :func:`classifier` its linear head.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.shard_types import varying_axes

Array = jax.Array
Initializer = Callable[..., Array]

__all__ = [
    "BatchNorm",
    "Linear",
    "conv2d",
    "conv_general_dilated",
    "kaiming_normal_fan_out",
    "kaiming_normal_fan_in",
    "torch_default_kernel_init",
    "torch_default_bias_init",
    "check_images",
    "global_mean_pool",
    "ZooModule",
    "ZooModel",
    "zoo_fields",
    "conv_bn",
    "classifier",
]

# ``torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")``: an untruncated normal with
# std sqrt(2 / fan_out), fan_out = out_channels * kh * kw (the same for flax's [kh, kw, in/g, out]).
kaiming_normal_fan_out: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# ``torch.nn.init.kaiming_normal_(w)`` with its defaults (mode="fan_in", a=0): std sqrt(2 / fan_in).
kaiming_normal_fan_in: Initializer = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# PyTorch's default for Conv2d and Linear weights, ``kaiming_uniform_(w, a=sqrt(5))``: uniform in
# +-1/sqrt(fan_in), i.e. variance 1 / (3 fan_in).
torch_default_kernel_init: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int) -> Initializer:
    """PyTorch's default bias initialiser for Conv2d/Linear: uniform in ``+-1/sqrt(fan_in)``.

    Args:
      fan_in: number of inputs to each output unit (``in_features``, or ``in/groups * kh * kw``).

    Returns:
      An initialiser ``(key, shape, dtype) -> Array`` of the given shape (float32 by default).

    >>> b = torch_default_bias_init(4)(jax.random.key(0), (3,))
    >>> bool(jnp.all(jnp.abs(b) <= 0.5))
    True
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv_nhwc(x: Array, w: Array, strides: tuple[int, int], padding: tuple[tuple[int, int], ...]) -> Array:
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _kernel_grad_by_dots(x: Array, g: Array, kernel_hw: tuple[int, int], strides, padding) -> Array:
    """Kernel gradient of an NHWC convolution as one matrix product per kernel offset.

    ``dW[i, j] = sum_{b, h, w} x_pad[b, h * s + i, w * s + j, :]^T g[b, h, w, :]``: a ``[C_in, N] x [N, C_out]``
    product (``N = B * H_out * W_out``) for each of the ``kh * kw`` offsets, accumulated in float32 (float64 for
    float64 operands).
    """
    b, _, _, cin = x.shape
    _, ho, wo, cout = g.shape
    (sh, sw), (kh, kw) = strides, kernel_hw
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    g2 = g.reshape(b * ho * wo, cout)
    acc = jnp.promote_types(jnp.promote_types(x.dtype, g.dtype), jnp.float32)
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            xs = jax.lax.slice(
                xp, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, cin), (1, sh, sw, 1)
            )
            cols.append(
                jax.lax.dot_general(
                    xs.reshape(b * ho * wo, cin), g2, (((0,), (0,)), ((), ())), preferred_element_type=acc
                )
            )
        rows.append(jnp.stack(cols))
    return jnp.stack(rows)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fast_kernel_grad(
    x: Array, w: Array, strides: tuple[int, int], padding: tuple[tuple[int, int], ...]
) -> Array:
    return _conv_nhwc(x, w, strides, padding)


def _conv_fast_fwd(x, w, strides, padding):
    return _conv_nhwc(x, w, strides, padding), (x, w)


def _conv_fast_bwd(strides, padding, residuals, g):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x_: _conv_nhwc(x_, w, strides, padding), x)
    (dx,) = input_vjp(g)

    def by_dots(x, g):
        dw = _kernel_grad_by_dots(x, g, w.shape[:2], strides, padding).astype(w.dtype)
        # Inside shard_map a kernel replicated over an axis gets the sum of the per-device
        # gradients, as autodiff's transpose of the implicit broadcast would give it.
        extra = tuple(sorted(varying_axes(dw) - varying_axes(w)))
        return jax.lax.psum(dw, extra) if extra else dw

    def native(x, g):
        return jax.vjp(lambda w_: _conv_nhwc(x, w_, strides, padding), w)[1](g)[0]

    dw = jax.lax.platform_dependent(x, g, cpu=by_dots, default=native)
    return dx, dw


_conv_fast_kernel_grad.defvjp(_conv_fast_fwd, _conv_fast_bwd)


def conv_general_dilated(
    lhs: Array,
    rhs: Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs: Any,
) -> Array:
    """``jax.lax.conv_general_dilated`` whose kernel gradient on CPU is computed by matrix products.

    Same signature and result as ``lax.conv_general_dilated``. For the common case (NHWC input, HWIO
    kernel, 2-D, explicit padding, no dilation, one feature group, default precision) the gradient
    with respect to the kernel is, on CPU only, a sum of ``kh * kw`` matrix products
    (:func:`_kernel_grad_by_dots`) instead of XLA's CPU kernel-gradient convolution, which is several
    times slower than the forward convolution; GPU and TPU keep their native gradients
    (``lax.platform_dependent``). Every other case is ``lax.conv_general_dilated`` unchanged.
    """
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    simple = (
        lhs.ndim == 4
        and dn == nhwc
        and feature_group_count == 1
        and precision is None
        and not kwargs
        and not isinstance(padding, str)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
    )
    if not simple:
        return jax.lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            precision=precision,
            **kwargs,
        )
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_fast_kernel_grad(lhs, rhs, tuple(int(s) for s in window_strides), pads)


def conv2d(
    features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    use_bias: bool = False,
    dtype: Any = jnp.float32,
    kernel_init: Initializer = kaiming_normal_fan_out,
    bias_init: Initializer = nn.initializers.zeros,
    fast_kernel_grad: bool = True,
    name: str | None = None,
) -> nn.Conv:
    """An ``nn.Conv`` equivalent to ``torch.nn.Conv2d(in, features, kernel_size, stride, padding, groups)``.

    Input ``[B, H, W, C_in]`` of any float dtype, output ``[B, H', W', features]`` in ``dtype``, with
    PyTorch's output size ``H' = (H + 2 * padding - kernel_size) // stride + 1``. The kernel is
    ``[kh, kw, C_in / groups, features]`` float32.

    Args:
      features: output channels.
      kernel_size: square kernel side.
      stride: square stride.
      padding: symmetric zero padding on each spatial side (PyTorch's integer ``padding``).
      groups: feature groups (``C_in`` for a depthwise convolution).
      use_bias: whether the convolution has a bias.
      dtype: compute dtype; parameters are float32.
      kernel_init: kernel initialiser (default: kaiming normal, fan_out, relu gain).
      bias_init: bias initialiser (used only when ``use_bias``).
      fast_kernel_grad: use :func:`conv_general_dilated` (on CPU, the kernel gradient of an ungrouped
        convolution by matrix products); False: ``jax.lax.conv_general_dilated`` and XLA's own gradient.
        The values are the same up to rounding; the switch exists to test one path against the other.
      name: submodule name (the PyTorch attribute path, see ``MODELS_CONTRACT``).

    Returns:
      The configured (unbound) ``nn.Conv``.
    """
    return nn.Conv(
        features=features,
        kernel_size=(kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init,
        conv_general_dilated=conv_general_dilated if fast_kernel_grad else jax.lax.conv_general_dilated,
        name=name,
    )


class Linear(nn.Module):
    """``torch.nn.Linear`` with its default initialisation (kernel and bias uniform in ``+-1/sqrt(in)``).

    Input ``[..., in_features]``; output ``[..., features]`` in ``dtype``. Params ``kernel``
    ``[in_features, features]`` and ``bias`` ``[features]``, float32.
    """

    features: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    kernel_init: Initializer | None = None
    bias_init: Initializer | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Apply ``x @ kernel + bias`` to ``x`` ``[..., in_features]``; returns ``[..., features]``."""
        fan_in = x.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init or torch_default_kernel_init, (fan_in, self.features), jnp.float32
        )
        y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            bias_init = self.bias_init or torch_default_bias_init(fan_in)
            y = y + self.param("bias", bias_init, (self.features,), jnp.float32).astype(self.dtype)
        return y


class BatchNorm(nn.Module):
    """Batch normalisation over the last (channel) axis with ``torch.nn.BatchNorm{1,2}d`` semantics.

    In training (``use_running_average=False``) the input is normalised with the batch mean and the
    biased batch variance over all axes but the last, and the running statistics become
    ``(1 - momentum) * running + momentum * batch`` with the *unbiased* batch variance
    (``var * n / (n - 1)``). In evaluation the running statistics are used. Statistics are computed in
    float32 for any input dtype of 32 bits or fewer (float64 for float64 input, with ``jax_enable_x64``)
    and the running statistics keep their dtype; the output has dtype ``dtype`` (``None``: the input's
    dtype).
    Running statistics are not updated while the module is being initialised.

    ``mask`` ([B] bool, optional) excludes the rows marked False from the statistics (they are still
    normalised). If no row is valid the count is clamped to 1 (the output stays finite) and the
    running statistics are left unchanged. With ``axis_name`` set, sums and counts are ``psum``-ed
    over that mapped axis, so every replica uses the global statistics (call it inside
    ``jax.shard_map``/``pmap`` binding that axis).

    Attributes:
      use_running_average: if not None, overrides ``not train``.
      momentum: PyTorch-convention momentum of the running statistics (0.1).
      epsilon: added to the variance (1e-5).
      axis_name: mapped axis over which statistics are summed, or None for per-device statistics.
      dtype: output dtype (None: the input's dtype).
      param_dtype: dtype of ``scale``/``bias`` (float32).

    Variables: params ``scale`` (ones) and ``bias`` (zeros); batch_stats ``mean`` (zeros) and
    ``var`` (ones), each ``[C]`` float32.

    >>> bn = BatchNorm()
    >>> x = jnp.arange(12.0).reshape(2, 3, 2)
    >>> v = bn.init(jax.random.key(0), x, train=False)
    >>> y, upd = bn.apply(v, x, train=True, mutable=["batch_stats"])
    >>> y.shape, [round(float(m), 4) for m in upd["batch_stats"]["mean"]]
    ((2, 3, 2), [0.5, 0.6])
    """

    use_running_average: bool | None = None
    momentum: float = 0.1
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool | None = None, mask: Array | None = None) -> Array:
        """Normalise ``x`` ``[..., C]`` (first axis = batch); returns ``[..., C]``.

        Args:
          x: input ``[B, ..., C]``, any float dtype.
          train: True for batch statistics (and running-statistic updates), False for running ones.
            Ignored when the ``use_running_average`` field is set.
          mask: optional ``[B]`` bool; False rows do not enter the batch statistics.

        Returns:
          The normalised, scaled and shifted input, shape of ``x``, dtype ``dtype or x.dtype``.
        """
        if self.use_running_average is not None:
            use_running_average = self.use_running_average
        elif train is not None:
            use_running_average = not train
        else:
            raise ValueError(
                "BatchNorm needs train=True/False (or the use_running_average field); pass train=..."
            )
        if x.ndim < 2:
            raise ValueError(f"BatchNorm expects an input [B, ..., C] of rank >= 2, got shape {x.shape}.")
        features = x.shape[-1]
        out_dtype = self.dtype or x.dtype
        scale = self.param("scale", nn.initializers.ones, (features,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))

        acc = jnp.promote_types(x.dtype, jnp.float32)
        xs = x.astype(acc)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            per_row = math.prod(x.shape[1:-1])
            if mask is None:
                count = jnp.asarray(x.shape[0] * per_row, acc)
                weight = None
            else:
                if mask.shape != x.shape[:1]:
                    raise ValueError(
                        f"BatchNorm mask must have shape [B]={x.shape[:1]} matching the input batch, got {mask.shape}."
                    )
                weight = mask.astype(acc).reshape((-1,) + (1,) * (x.ndim - 1))
                count = jnp.sum(mask.astype(acc)) * per_row
            total = jnp.sum(xs if weight is None else xs * weight, axis=axes)
            if self.axis_name is not None:
                total, count = jax.lax.psum((total, count), self.axis_name)
            safe_count = jnp.maximum(count, 1.0)
            mean = total / safe_count
            centred = xs - mean
            sq = jnp.sum(jnp.square(centred) if weight is None else jnp.square(centred) * weight, axis=axes)
            if self.axis_name is not None:
                sq = jax.lax.psum(sq, self.axis_name)
            var = sq / safe_count
            if not self.is_initializing():
                unbiased = var * (count / jnp.maximum(count - 1.0, 1.0))
                m = self.momentum
                has_data = count > 0
                new_mean = ((1.0 - m) * ra_mean.value + m * mean).astype(ra_mean.value.dtype)
                new_var = ((1.0 - m) * ra_var.value + m * unbiased).astype(ra_var.value.dtype)
                ra_mean.value = jnp.where(has_data, new_mean, ra_mean.value)
                ra_var.value = jnp.where(has_data, new_var, ra_var.value)

        mul = scale.astype(acc) * jax.lax.rsqrt(var + self.epsilon)
        y = (xs - mean) * mul + bias.astype(acc)
        return y.astype(out_dtype)


def check_images(x: Array, model: str) -> None:
    """Raise a ``ValueError`` unless ``x`` is an NHWC image batch ``[B, H, W, 3]`` of a float dtype.

    Args:
      x: the model input.
      model: the model's name, used in the message.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"{model} expects NHWC images [B, H, W, 3], got shape {tuple(x.shape)}; "
            "transpose NCHW input with x.transpose(0, 2, 3, 1)."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{model} expects float (normalised) images, got dtype {x.dtype}; convert and normalise first."
        )


def global_mean_pool(x: Array) -> Array:
    """Mean over the spatial axes: ``[B, H, W, C]`` -> ``[B, C]``, accumulated in float32 (float64 for float64
    input), in ``x.dtype``.

    Equal to the reference's ``AvgPool2d(k)`` / ``avg_pool2d(x, k)`` whenever ``k`` is the whole final
    map (e.g. ``k = 8`` at 32x32 input for the CIFAR ResNets), and to ``AdaptiveAvgPool2d(1)``.
    """
    return jnp.mean(x, axis=(1, 2), dtype=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype)


class ZooModule(nn.Module, kw_only=True):
    """Base of every network and block of the zoo: the keyword-only fields they all take.

    Subclasses add their own fields, which come first (positionally) in the constructor.

    Attributes:
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`conv_general_dilated`); False: XLA's native gradient.
    """

    dtype: Any = jnp.float32
    axis_name: str | None = None
    fast_kernel_grad: bool = True


def zoo_fields(module: ZooModule) -> dict[str, Any]:
    """``module``'s ``dtype``, ``axis_name`` and ``fast_kernel_grad`` as keyword arguments of a submodule."""
    return {"dtype": module.dtype, "axis_name": module.axis_name, "fast_kernel_grad": module.fast_kernel_grad}


def conv_bn(
    module: ZooModule, kernel_init: Initializer = kaiming_normal_fan_out
) -> tuple[Callable[..., nn.Conv], Callable[..., BatchNorm]]:
    """The convolution and BatchNorm constructors of ``module``'s layers.

    Args:
      module: the module that builds the layers (inside its ``nn.compact`` method).
      kernel_init: the convolutions' kernel initialiser.

    Returns:
      ``(conv, bn)``: :func:`conv2d` with ``module``'s ``dtype`` and ``fast_kernel_grad`` and ``kernel_init``
      (called as ``conv(features, kernel_size, stride=..., padding=..., name=...)``), and :class:`BatchNorm`
      with its ``dtype`` and ``axis_name`` (called as ``bn(name=...)``).
    """
    conv = functools.partial(
        conv2d, dtype=module.dtype, fast_kernel_grad=module.fast_kernel_grad, kernel_init=kernel_init
    )
    bn = functools.partial(BatchNorm, dtype=module.dtype, axis_name=module.axis_name)
    return conv, bn


class ZooModel(ZooModule, kw_only=True):
    """Base of the zoo's networks, called as ``(x, *, train, mask=None) -> (logits, features)``.

    ``__call__`` checks the input (:func:`check_images`), casts it to ``dtype`` and passes it to
    :meth:`forward`, which builds the network, fills the ``features`` dict and returns the logits.
    Subclasses declare a ``num_classes`` field (the classifier's outputs) and implement :meth:`forward`.
    """

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, dict[str, Array]]:
        """Forward pass.

        Args:
          x: ``[B, H, W, 3]`` float images, normalised.
          train: True for batch statistics (and running-statistic updates), False for running ones.
          mask: optional ``[B]`` bool; False rows are left out of BatchNorm batch statistics.

        Returns:
          ``(logits, features)``: ``logits`` ``[B, num_classes]`` float32, ``features`` a dict of arrays in
          the compute dtype (see the subclass).
        """
        check_images(x, type(self).__name__)
        feats: dict[str, Array] = {}
        logits = self.forward(x.astype(self.dtype), feats, train=train, mask=mask)
        return logits.astype(jnp.float32), feats

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]`` in ``dtype``: adds its features to ``feats`` and returns the
        logits ``[B, num_classes]`` in ``dtype``. Implemented by each network."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward.")


def classifier(
    module: ZooModel, x: Array, *, name: str, normal_weight: bool = False, zero_bias: bool = False
) -> Array:
    """The linear classifier of ``module``: :class:`Linear` ``[B, D]`` -> ``[B, module.num_classes]`` in
    ``module.dtype``, named ``name``.

    Initialised as ``torch.nn.Linear`` (weight and bias uniform in ``+-1/sqrt(D)``), but with the weight
    normal(0, 0.01) if ``normal_weight`` and the bias zero if ``zero_bias``.
    """
    return Linear(
        module.num_classes,
        dtype=module.dtype,
        kernel_init=nn.initializers.normal(0.01) if normal_weight else None,
        bias_init=nn.initializers.zeros if zero_bias else None,
        name=name,
    )(x)
