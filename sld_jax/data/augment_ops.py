"""The 14 RandAugment operations of the reference, as jittable JAX functions with PIL semantics.

Every operation maps one image to one image: ``f(image, magnitude) -> image`` where ``image`` is a
float32 ``[H, W, 3]`` array holding integer levels in [0, 255] (a uint8 image cast to float32) and
``magnitude`` is a float32 scalar in the reference's units (see :data:`RAND_AUGMENT_OPS`). The
result again holds integer levels in [0, 255], rounded the way Pillow rounds, so chaining two
operations reproduces Pillow's uint8 round trip between them.

Semantics follow Pillow (``ImageOps``, ``ImageEnhance``, ``Image.transform``):

* Brightness, Color, Contrast, Sharpness blend the image with a *degenerate* image (black, the
  luma image, the rounded mean luma, a 3x3 smoothing) by ``factor`` and truncate, as
  ``Image.blend`` does in float32.
* AutoContrast stretches each channel's [min, max] to [0, 255]; Equalize maps each channel through
  Pillow's cumulative-histogram table; Posterize keeps the top ``int(v)`` bits; Solarize inverts
  levels ``>= v``.
* Rotate (degrees, counter-clockwise, about the image centre), ShearX/Y and TranslateX/Y (fractions
  of the side) are affine maps from output to input pixel centres sampled nearest-neighbour with
  black fill, as ``Image.transform(..., Image.AFFINE, ...)`` and ``Image.rotate``.

dm-pix supplies the affine resampling (:func:`dm_pix.affine_transform`, order 0, constant mode)
and the solarize curve. Its ``adjust_brightness``/``adjust_contrast``/``adjust_saturation`` are
not used: they are additive, per-channel-mean and HSV based respectively, whereas the reference
follows Pillow's blend semantics, which are written here. AutoContrast, Equalize, Posterize,
Sharpness (and Cutout in :mod:`sld_jax.data.augment`) are not in dm-pix and are written here.

Known differences from Pillow: AutoContrast computes ``floor(255 (x - lo) / (hi - lo))`` exactly,
while Pillow evaluates ``int(x * scale + offset)`` in float64 and lands one level lower on 0.4% of
(lo, hi, x) triples, all where the exact value is an integer (for 15% of (lo, hi) pairs, the top
level maps to 254 instead of 255). Affine coordinates are float32 (Pillow: float64), which changes
the sampled pixel only where a coordinate falls within ~1e-5 of a pixel boundary.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import dm_pix as pix
import jax
import jax.numpy as jnp

Op = Callable[[jax.Array, jax.Array], jax.Array]


def _levels_to_int(image: jax.Array) -> jax.Array:
    return image.astype(jnp.int32)


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
    """Pillow's ``Image.blend(degenerate, image, factor)`` on uint8 levels: float32, truncated, clipped."""
    factor = jnp.asarray(factor, jnp.float32)
    out = degenerate + factor * (image - degenerate)
    return jnp.clip(jnp.floor(out), 0.0, 255.0)


def luma(image: jax.Array) -> jax.Array:
    """Pillow's RGB -> "L" conversion (ITU-R 601-2 luma, fixed point, rounded).

    Args:
      image: float32 ``[H, W, 3]`` integer levels in [0, 255].

    Returns:
      int32 ``[H, W]`` luma levels in [0, 255].
    """
    x = _levels_to_int(image)
    return (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16


# ----------------------------------------------------------------------------- colour / tone ops


def identity(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Returns ``image`` unchanged (the reference's Identity; ``magnitude`` is ignored)."""
    del magnitude
    return image


def auto_contrast(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageOps.autocontrast``: each channel's [lo, hi] is stretched to [0, 255].

    A channel with ``hi <= lo`` is left unchanged. ``magnitude`` is ignored.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: ignored scalar.

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    del magnitude
    lo = jnp.min(image, axis=(0, 1))
    hi = jnp.max(image, axis=(0, 1))
    span = jnp.maximum(hi - lo, 1.0)
    # floor(255 (x - lo) / span) in exact arithmetic: a non-integer ratio lies >= 1/255 below the
    # next integer, so a 1e-3 nudge absorbs division rounding without changing any result.
    stretched = jnp.clip(jnp.floor(255.0 * (image - lo) / span + 1e-3), 0.0, 255.0)
    return jnp.where(hi > lo, stretched, image)


def equalize(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageOps.equalize``, per channel; ``magnitude`` is ignored.

    Pillow's table is ``lut[i] = (step // 2 + #{pixels < i}) // step`` with
    ``step = (N - #{pixels at the channel's top level}) // 255``; a channel with ``step == 0``
    (e.g. a single level) is left unchanged.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: ignored scalar.

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    del magnitude
    h, w, channels = image.shape
    x = _levels_to_int(image).reshape(h * w, channels)
    hist = jnp.zeros((channels, 256), jnp.int32).at[jnp.arange(channels)[None, :], x].add(1)
    top_count = jnp.sum(x == jnp.max(x, axis=0), axis=0)
    step = (h * w - top_count) // 255
    safe_step = jnp.maximum(step, 1)[:, None]
    cum_before = jnp.cumsum(hist, axis=1) - hist
    table = jnp.minimum((safe_step // 2 + cum_before) // safe_step, 255)  # [C, 256]
    mapped = jnp.take_along_axis(table, x.T, axis=1).T  # table[c][x[:, c]]
    out = jnp.where(step[None, :] > 0, mapped, x)
    return out.reshape(h, w, channels).astype(jnp.float32)


def posterize(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageOps.posterize`` keeping ``bits = max(1, int(magnitude))`` bits per level.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: scalar in [4, 8) in the reference (``int`` truncates it to 4..7).

    Returns:
      float32 ``[H, W, 3]`` integer levels.

    Examples:
      >>> import jax.numpy as jnp
      >>> posterize(jnp.full((1, 1, 3), 255.0), jnp.float32(4.7))[0, 0]
      Array([240., 240., 240.], dtype=float32)
    """
    bits = jnp.clip(jnp.floor(jnp.asarray(magnitude, jnp.float32)), 1, 8).astype(jnp.int32)
    shift = 8 - bits
    x = _levels_to_int(image)
    return ((x >> shift) << shift).astype(jnp.float32)


def solarize(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageOps.solarize``: levels ``>= magnitude`` become ``255 - level``.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: threshold in [0, 256].

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    threshold = jnp.asarray(magnitude, jnp.float32)
    # dm-pix's curve works on [0, 1] images: x if x < t else 1 - x.
    out = pix.solarize(image / 255.0, threshold / 255.0) * 255.0
    return jnp.clip(jnp.round(out), 0.0, 255.0)


def brightness(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageEnhance.Brightness(image).enhance(magnitude)``: blend with black.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: enhancement factor (reference range [0.05, 0.95)).

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    return _blend(jnp.zeros_like(image), image, magnitude)


def color(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageEnhance.Color``: blend with the image's luma (grey) version.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: enhancement factor (reference range [0.05, 0.95)).

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    grey = luma(image).astype(jnp.float32)[..., None]
    return _blend(jnp.broadcast_to(grey, image.shape), image, magnitude)


def contrast(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageEnhance.Contrast``: blend with a flat image at the rounded mean luma.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: enhancement factor (reference range [0.05, 0.95)).

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    grey = luma(image)
    n = grey.size
    # int(mean + 0.5) in exact integer arithmetic.
    mean = (2 * jnp.sum(grey) + n) // (2 * n)
    degenerate = jnp.full(image.shape, mean, jnp.float32)
    return _blend(degenerate, image, magnitude)


def smooth(image: jax.Array) -> jax.Array:
    """Pillow's ``ImageFilter.SMOOTH`` (3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded).

    Pillow leaves the one-pixel border unfiltered; so does this function.

    Args:
      image: float32 ``[H, W, 3]`` integer levels, ``H, W >= 3``.

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    h, w = image.shape[0], image.shape[1]
    total = 4.0 * image[1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total = total + image[dy : dy + h - 2, dx : dx + w - 2]
    # round(total / 13), halves up; exact in float32 since total / 13 is never within 1/26 of a half.
    inner = jnp.floor(total / 13.0 + 0.5)
    border = jnp.ones((h, w, 1), jnp.bool_).at[1:-1, 1:-1].set(False)
    return jnp.where(border, image, jnp.pad(inner, ((1, 1), (1, 1), (0, 0))))


def sharpness(image: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Pillow's ``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      magnitude: enhancement factor (reference range [0.05, 0.95)).

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    return _blend(smooth(image), image, magnitude)


# ----------------------------------------------------------------------------- geometric ops


def pil_affine(image: jax.Array, coefficients: tuple[jax.Array, ...]) -> jax.Array:
    """``Image.transform(size, Image.AFFINE, coefficients)``: nearest neighbour, black fill.

    Pillow's ``(a, b, c, d, e, f)`` maps an output point ``(x, y)`` (pixel centres at ``+0.5``) to
    the input point ``(a x + b y + c, d x + e y + f)`` and takes the pixel containing it. In pixel
    index coordinates (centres at integers, rows first) that is the dm-pix pull map
    ``[[e, d], [b, a]]`` with offset ``(f + (d + e)/2 - 1/2, c + (a + b)/2 - 1/2)``, sampled with
    ``order=0`` (round half away from zero) and ``mode="constant"``, ``cval=0``.

    Args:
      image: float32 ``[H, W, 3]`` integer levels.
      coefficients: six float32 scalars ``(a, b, c, d, e, f)``.

    Returns:
      float32 ``[H, W, 3]`` integer levels.
    """
    a, b, c, d, e, f = (jnp.asarray(v, jnp.float32) for v in coefficients)
    zero, one = jnp.float32(0.0), jnp.float32(1.0)
    matrix = jnp.stack([jnp.stack([e, d, zero]), jnp.stack([b, a, zero]), jnp.stack([zero, zero, one])])
    offset = jnp.stack([f + 0.5 * (d + e) - 0.5, c + 0.5 * (a + b) - 0.5, zero])
    # Exact float32 coordinates even where the backend would otherwise use reduced-precision matmuls.
    with jax.default_matmul_precision("float32"):
        return pix.affine_transform(image, matrix, offset=offset, order=0, mode="constant", cval=0.0)


Coefficients = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


def rotate_coefficients(magnitude: jax.Array, height: int, width: int) -> Coefficients:
    """Pillow's ``Image.rotate(magnitude)`` as affine coefficients (rotation about the image centre)."""
    cx, cy = width / 2.0, height / 2.0
    theta = -jnp.asarray(magnitude, jnp.float32) * (math.pi / 180.0)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    c = cos * (-cx) + sin * (-cy) + cx
    f = -sin * (-cx) + cos * (-cy) + cy
    return cos, sin, c, -sin, cos, f


def shear_x_coefficients(magnitude: jax.Array, height: int, width: int) -> Coefficients:
    """The reference's ShearX: Pillow affine ``(1, v, 0, 0, 1, 0)``."""
    del height, width
    one, zero, v = jnp.float32(1.0), jnp.float32(0.0), jnp.asarray(magnitude, jnp.float32)
    return one, v, zero, zero, one, zero


def shear_y_coefficients(magnitude: jax.Array, height: int, width: int) -> Coefficients:
    """The reference's ShearY: Pillow affine ``(1, 0, 0, v, 1, 0)``."""
    del height, width
    one, zero, v = jnp.float32(1.0), jnp.float32(0.0), jnp.asarray(magnitude, jnp.float32)
    return one, zero, zero, v, one, zero


def translate_x_coefficients(magnitude: jax.Array, height: int, width: int) -> Coefficients:
    """The reference's TranslateX: Pillow affine ``(1, 0, v * W, 0, 1, 0)``."""
    del height
    one, zero = jnp.float32(1.0), jnp.float32(0.0)
    return one, zero, jnp.asarray(magnitude, jnp.float32) * width, zero, one, zero


def translate_y_coefficients(magnitude: jax.Array, height: int, width: int) -> Coefficients:
    """The reference's TranslateY: Pillow affine ``(1, 0, 0, 0, 1, v * H)``."""
    del width
    one, zero = jnp.float32(1.0), jnp.float32(0.0)
    return one, zero, zero, zero, one, jnp.asarray(magnitude, jnp.float32) * height


def _affine_op(coefficients_fn: Callable[[jax.Array, int, int], Coefficients]) -> Op:
    def op(image: jax.Array, magnitude: jax.Array) -> jax.Array:
        return pil_affine(image, coefficients_fn(magnitude, image.shape[0], image.shape[1]))

    return op


rotate = _affine_op(rotate_coefficients)
rotate.__doc__ = """Pillow's ``image.rotate(v)``: ``v`` degrees counter-clockwise about the centre.

Args:
  image: float32 ``[H, W, 3]`` integer levels.
  magnitude: angle in degrees (reference range [-30, 30)).

Returns:
  float32 ``[H, W, 3]`` integer levels.
"""
shear_x = _affine_op(shear_x_coefficients)
shear_x.__doc__ = """Pillow's affine ``(1, v, 0, 0, 1, 0)``: input x = x + v·y (reference range [-0.3, 0.3)).

Args:
  image: float32 ``[H, W, 3]`` integer levels.
  magnitude: shear factor ``v``.

Returns:
  float32 ``[H, W, 3]`` integer levels.
"""
shear_y = _affine_op(shear_y_coefficients)
shear_y.__doc__ = """Pillow's affine ``(1, 0, 0, v, 1, 0)``: input y = y + v·x (reference range [-0.3, 0.3)).

Args:
  image: float32 ``[H, W, 3]`` integer levels.
  magnitude: shear factor ``v``.

Returns:
  float32 ``[H, W, 3]`` integer levels.
"""
translate_x = _affine_op(translate_x_coefficients)
translate_x.__doc__ = """Pillow's affine ``(1, 0, v·W, 0, 1, 0)``: content moves left by ``v·W`` pixels.

Args:
  image: float32 ``[H, W, 3]`` integer levels.
  magnitude: fraction ``v`` of the width (reference range [-0.3, 0.3)).

Returns:
  float32 ``[H, W, 3]`` integer levels.
"""
translate_y = _affine_op(translate_y_coefficients)
translate_y.__doc__ = """Pillow's affine ``(1, 0, 0, 0, 1, v·H)``: content moves up by ``v·H`` pixels.

Args:
  image: float32 ``[H, W, 3]`` integer levels.
  magnitude: fraction ``v`` of the height (reference range [-0.3, 0.3)).

Returns:
  float32 ``[H, W, 3]`` integer levels.
"""


# ----------------------------------------------------------------------------- the op table


class RandAugmentOp(NamedTuple):
    """One entry of the RandAugment table.

    ``fn(image, magnitude)`` applies the op; ``low``/``high`` bound its magnitude (uniform in
    ``[low, high)``); ``affine`` is the op's Pillow affine coefficients as a function of
    ``(magnitude, H, W)`` for geometric ops, None for the others.
    """

    name: str
    fn: Op
    low: float
    high: float
    affine: Callable[[jax.Array, int, int], Coefficients] | None = None


#: The reference's 14 operations, in its order, with its magnitude ranges (uniform in [low, high)).
RAND_AUGMENT_OPS: tuple[RandAugmentOp, ...] = (
    RandAugmentOp("AutoContrast", auto_contrast, 0.0, 1.0),
    RandAugmentOp("Brightness", brightness, 0.05, 0.95),
    RandAugmentOp("Color", color, 0.05, 0.95),
    RandAugmentOp("Contrast", contrast, 0.05, 0.95),
    RandAugmentOp("Equalize", equalize, 0.0, 1.0),
    RandAugmentOp("Identity", identity, 0.0, 1.0),
    RandAugmentOp("Posterize", posterize, 4.0, 8.0),
    RandAugmentOp("Rotate", rotate, -30.0, 30.0, rotate_coefficients),
    RandAugmentOp("Sharpness", sharpness, 0.05, 0.95),
    RandAugmentOp("ShearX", shear_x, -0.3, 0.3, shear_x_coefficients),
    RandAugmentOp("ShearY", shear_y, -0.3, 0.3, shear_y_coefficients),
    RandAugmentOp("Solarize", solarize, 0.0, 256.0),
    RandAugmentOp("TranslateX", translate_x, -0.3, 0.3, translate_x_coefficients),
    RandAugmentOp("TranslateY", translate_y, -0.3, 0.3, translate_y_coefficients),
)

NUM_OPS = len(RAND_AUGMENT_OPS)


def op_magnitude(op_index: jax.Array, u: jax.Array) -> jax.Array:
    """Maps ``u`` in [0, 1) to op ``op_index``'s magnitude ``low + (high - low) * u`` (float32)."""
    lows = jnp.asarray([op.low for op in RAND_AUGMENT_OPS], jnp.float32)
    highs = jnp.asarray([op.high for op in RAND_AUGMENT_OPS], jnp.float32)
    return lows[op_index] + (highs[op_index] - lows[op_index]) * u


def apply_op(image: jax.Array, op_index: jax.Array, magnitude: jax.Array) -> jax.Array:
    """Applies RandAugment op number ``op_index`` (an int32 scalar, traced or not) to one image.

    The five geometric ops share a single resampling: their coefficients are selected by
    ``op_index`` and the image is warped once. The other ops are dispatched with ``lax.switch``
    (under ``vmap`` with a batched index every branch runs and the results are selected).

    Args:
      image: float32 ``[H, W, 3]`` integer levels in [0, 255].
      op_index: int32 scalar in ``[0, NUM_OPS)`` (an index into :data:`RAND_AUGMENT_OPS`).
      magnitude: float32 scalar in that op's units.

    Returns:
      float32 ``[H, W, 3]`` integer levels in [0, 255].
    """
    h, w = image.shape[0], image.shape[1]
    index = jnp.clip(jnp.asarray(op_index, jnp.int32), 0, NUM_OPS - 1)
    magnitude = jnp.asarray(magnitude, jnp.float32)
    identity_coefficients = jnp.asarray([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], jnp.float32)
    table = jnp.stack(
        [
            jnp.stack(op.affine(magnitude, h, w)) if op.affine is not None else identity_coefficients
            for op in RAND_AUGMENT_OPS
        ]
    )
    warped = pil_affine(image, tuple(table[index]))

    def branch(op: RandAugmentOp) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
        if op.affine is not None:
            return lambda x, m, warped_x: warped_x
        return lambda x, m, warped_x: op.fn(x, m)

    return jax.lax.switch(index, [branch(op) for op in RAND_AUGMENT_OPS], image, magnitude, warped)
