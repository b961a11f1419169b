"""On-device weak and strong views of the reference recipe, jittable and vmappable.

The reference (CIFAR-100) trains on two views of each image:

* **weak**: random crop with ``padding`` zero padding, horizontal flip (p = 0.5), normalisation;
* **strong**: its *own* random crop and flip, RandAugment (2 of the 14 ops of
  :data:`sld_jax.data.augment_ops.RAND_AUGMENT_OPS`, drawn with replacement, each magnitude uniform
  in its range), Cutout (always; a square of up to half the side filled with (125, 123, 114)),
  normalisation.

Each random step is split into a ``draw_*`` function (key -> parameters) and a deterministic
function (parameters -> image), so every step can be checked against a NumPy/Pillow reference
with the same parameters. Single-image functions take uint8 ``[H, W, 3]``; :func:`make_views` and
:func:`strong_from_cropped` take a batch and derive one key per example from its global id, so a
view depends only on ``(rng, example_id)``, never on the batch layout or device count.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.data import augment_ops

CUTOUT_FILL = (125, 123, 114)


# ----------------------------------------------------------------------------- validation


def _check_image(name: str, image: jax.Array, rank: int) -> None:
    """Raises unless ``image`` is a uint8 array of the given rank with 3 channels last."""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        raise TypeError(f"{name} must be a uint8 array, got {type(image).__name__}.")
    layout = "[H, W, 3]" if rank == 3 else "[B, H, W, 3]"
    if image.ndim != rank or image.shape[-1] != 3:
        raise ValueError(f"{name} must have shape {layout} (RGB, channels last), got {image.shape}.")
    if image.dtype != jnp.uint8:
        raise TypeError(
            f"{name} must be uint8 levels in [0, 255], got {image.dtype}; "
            "pass the raw images, not normalised ones."
        )


def _check_min_size(name: str, image: jax.Array) -> None:
    if image.shape[-3] < 3 or image.shape[-2] < 3:
        raise ValueError(f"{name} must be at least 3x3 pixels for RandAugment, got {image.shape[-3:-1]}.")


def _check_padding(padding: int) -> int:
    if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"padding must be a non-negative Python int (e.g. 4 for CIFAR), got {padding!r}.")
    return int(padding)


def _as_channel_stats(name: str, values: Sequence[float] | jax.Array) -> jax.Array:
    """Converts mean/std to float32 ``[3]``, checking the shape (and that a concrete std is positive)."""
    arr = jnp.asarray(values, jnp.float32)
    if arr.shape != (3,):
        raise ValueError(f"{name} must hold one value per RGB channel (shape (3,)), got shape {arr.shape}.")
    if name == "std" and not isinstance(arr, jax.core.Tracer) and np.any(np.asarray(arr) <= 0):
        raise ValueError(f"std must be positive in every channel, got {np.asarray(arr).tolist()}.")
    return arr


def _check_example_ids(example_ids: jax.Array, batch: int) -> None:
    if not hasattr(example_ids, "dtype") or not jnp.issubdtype(example_ids.dtype, jnp.integer):
        raise TypeError("example_ids must be an integer array of global example indices (batch['index']).")
    if example_ids.shape != (batch,):
        raise ValueError(
            f"example_ids must have shape ({batch},), one id per image, got {example_ids.shape}."
        )


def _check_batch(images_u8: jax.Array, example_ids: jax.Array) -> None:
    """Raises unless ``images_u8`` is a uint8 ``[B, H, W, 3]`` batch of images of at least 3x3
    pixels and ``example_ids`` holds one integer id per image."""
    _check_image("images_u8", images_u8, 4)
    _check_min_size("images_u8", images_u8)
    _check_example_ids(example_ids, images_u8.shape[0])


# ----------------------------------------------------------------------------- crop and flip


def draw_crop_and_flip(key: jax.Array, *, padding: int = 4) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draws torchvision's ``RandomCrop(pad=padding)`` + ``RandomHorizontalFlip()`` parameters.

    Args:
      key: a PRNG key.
      padding: zero padding on each side (static).

    Returns:
      ``(offset_y, offset_x, flip)``: int32 scalars uniform in ``[0, 2 * padding]`` (row and column
      of the crop's corner in the padded image) and a bool scalar, True with probability 0.5.
    """
    padding = _check_padding(padding)
    k_offsets, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_offsets, (2,), 0, 2 * padding + 1, dtype=jnp.int32)
    # A float32 probability: a Python float would draw a float64 under jax_enable_x64, another flip.
    flip = jax.random.bernoulli(k_flip, jnp.float32(0.5))
    return offsets[0], offsets[1], flip


def crop_and_flip(
    image_u8: jax.Array, offset_y: jax.Array, offset_x: jax.Array, flip: jax.Array, *, padding: int = 4
) -> jax.Array:
    """Pads with zeros, crops back to ``[H, W]`` at ``(offset_y, offset_x)``, then flips if ``flip``.

    Args:
      image_u8: uint8 ``[H, W, 3]``.
      offset_y, offset_x: int scalars in ``[0, 2 * padding]``.
      flip: bool scalar; True mirrors left-right (after the crop, as torchvision's order).
      padding: zero padding on each side (static).

    Returns:
      uint8 ``[H, W, 3]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(1, 10, dtype=jnp.uint8).reshape(3, 3, 1).repeat(3, -1)
      >>> crop_and_flip(x, 0, 2, False, padding=1)[..., 0]
      Array([[0, 0, 0],
             [2, 3, 0],
             [5, 6, 0]], dtype=uint8)
    """
    _check_image("image_u8", image_u8, 3)
    padding = _check_padding(padding)
    h, w, c = image_u8.shape
    padded = jnp.pad(image_u8, ((padding, padding), (padding, padding), (0, 0)))
    start = (jnp.asarray(offset_y, jnp.int32), jnp.asarray(offset_x, jnp.int32), jnp.int32(0))
    cropped = jax.lax.dynamic_slice(padded, start, (h, w, c))
    return jnp.where(flip, pix.flip_left_right(cropped), cropped)


def weak_view(key: jax.Array, image_u8: jax.Array, *, padding: int = 4) -> jax.Array:
    """The weak view without normalisation: random crop with ``padding`` zero padding + flip.

    Args:
      key: a PRNG key.
      image_u8: uint8 ``[H, W, 3]``.
      padding: zero padding on each side (static; 4 for CIFAR).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    return crop_and_flip(image_u8, *draw_crop_and_flip(key, padding=padding), padding=padding)


# ----------------------------------------------------------------------------- RandAugment


def draw_rand_augment(key: jax.Array, *, num_ops: int = 2) -> tuple[jax.Array, jax.Array]:
    """Draws ``num_ops`` ops with replacement and a magnitude for each, uniform in the op's range.

    Args:
      key: a PRNG key.
      num_ops: number of ops applied in sequence (static; 2 in the reference).

    Returns:
      ``(op_indices, magnitudes)``: int32 ``[num_ops]`` indices into
      :data:`~sld_jax.data.augment_ops.RAND_AUGMENT_OPS` and float32 ``[num_ops]`` magnitudes.
    """
    if not isinstance(num_ops, (int, np.integer)) or num_ops < 0:
        raise ValueError(f"num_ops must be a non-negative Python int (2 in the reference), got {num_ops!r}.")
    k_ops, k_mag = jax.random.split(key)
    op_indices = jax.random.randint(k_ops, (num_ops,), 0, augment_ops.NUM_OPS, dtype=jnp.int32)
    u = jax.random.uniform(k_mag, (num_ops,), jnp.float32)
    return op_indices, augment_ops.op_magnitude(op_indices, u)


def apply_rand_augment(image_u8: jax.Array, op_indices: jax.Array, magnitudes: jax.Array) -> jax.Array:
    """Applies the ops ``op_indices`` with ``magnitudes`` in order, rounding to uint8 levels between ops.

    Args:
      image_u8: uint8 ``[H, W, 3]``, ``H, W >= 3``.
      op_indices: int32 ``[n]`` indices into :data:`~sld_jax.data.augment_ops.RAND_AUGMENT_OPS`.
      magnitudes: float32 ``[n]`` magnitudes in each op's units.

    Returns:
      uint8 ``[H, W, 3]``.
    """
    _check_image("image_u8", image_u8, 3)
    _check_min_size("image_u8", image_u8)
    if op_indices.ndim != 1 or magnitudes.shape != op_indices.shape:
        raise ValueError(
            "op_indices and magnitudes must both have shape [num_ops], "
            f"got {op_indices.shape} and {magnitudes.shape}."
        )

    def body(x, op):
        return augment_ops.apply_op(x, op[0], op[1]), None

    # A scan traces (and compiles) the op table once, whatever num_ops is.
    x, _ = jax.lax.scan(body, image_u8.astype(jnp.float32), (op_indices, magnitudes.astype(jnp.float32)))
    return x.astype(jnp.uint8)


def rand_augment(key: jax.Array, image_u8: jax.Array, *, num_ops: int = 2) -> jax.Array:
    """The reference's RandAugment (without its trailing Cutout, see :func:`cutout`).

    Args:
      key: a PRNG key.
      image_u8: uint8 ``[H, W, 3]``, ``H, W >= 3``, any size (translations are fractions of the side).
      num_ops: ops per image, drawn with replacement from the 14 (static).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    return apply_rand_augment(image_u8, *draw_rand_augment(key, num_ops=num_ops))


# ----------------------------------------------------------------------------- Cutout


def draw_cutout(
    key: jax.Array, image_shape: tuple[int, ...], *, max_fraction: float = 0.5
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draws the reference's Cutout: side ``u * max_fraction * W`` and a centre uniform over the image.

    Args:
      key: a PRNG key.
      image_shape: ``(H, W, 3)`` (static).
      max_fraction: largest side as a fraction of the width (0.5 in the reference).

    Returns:
      ``(size, centre_y, centre_x)``: float32 scalars, ``size`` in ``[0, max_fraction * W)`` pixels,
      ``centre_y`` in ``[0, H)`` and ``centre_x`` in ``[0, W)``.
    """
    h, w = image_shape[0], image_shape[1]
    u = jax.random.uniform(key, (3,), jnp.float32)
    return u[0] * max_fraction * w, u[1] * h, u[2] * w


def paint_cutout(
    image_u8: jax.Array,
    size: jax.Array,
    centre_y: jax.Array,
    centre_x: jax.Array,
    *,
    fill: Sequence[int] = CUTOUT_FILL,
) -> jax.Array:
    """Fills the reference's Cutout rectangle with ``fill``.

    As the reference: ``x0 = int(max(0, cx - size/2))``, ``x1 = min(W, x0 + size)`` (same for y), and
    Pillow's ``rectangle`` fills columns ``x0 .. int(x1)`` inclusive, clipped to the image. So a
    square near the top/left border is shifted inside, one near the bottom/right border is cut,
    and ``0 < size < 1`` still fills one pixel. ``size == 0`` leaves the image unchanged.

    Args:
      image_u8: uint8 ``[H, W, 3]``.
      size: float scalar, side in pixels.
      centre_y, centre_x: float scalars, the drawn centre in pixels.
      fill: three uint8 levels.

    Returns:
      uint8 ``[H, W, 3]``.
    """
    _check_image("image_u8", image_u8, 3)
    h, w = image_u8.shape[0], image_u8.shape[1]
    size = jnp.asarray(size, jnp.float32)
    y0 = jnp.floor(jnp.maximum(0.0, jnp.asarray(centre_y, jnp.float32) - size / 2))
    x0 = jnp.floor(jnp.maximum(0.0, jnp.asarray(centre_x, jnp.float32) - size / 2))
    y1 = jnp.floor(jnp.minimum(float(h), y0 + size))
    x1 = jnp.floor(jnp.minimum(float(w), x0 + size))
    rows = jnp.arange(h, dtype=jnp.float32)[:, None]
    cols = jnp.arange(w, dtype=jnp.float32)[None, :]
    inside = (rows >= y0) & (rows <= y1) & (cols >= x0) & (cols <= x1) & (size > 0)
    fill_arr = jnp.asarray(fill, jnp.uint8)
    return jnp.where(inside[..., None], fill_arr, image_u8)


def cutout(
    key: jax.Array,
    image_u8: jax.Array,
    *,
    max_fraction: float = 0.5,
    fill: Sequence[int] = CUTOUT_FILL,
) -> jax.Array:
    """The reference's Cutout (always applied): a random square of side up to ``max_fraction * W``.

    Args:
      key: a PRNG key.
      image_u8: uint8 ``[H, W, 3]``.
      max_fraction: largest side as a fraction of the width.
      fill: three uint8 levels (the reference's (125, 123, 114)).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    _check_image("image_u8", image_u8, 3)
    size, cy, cx = draw_cutout(key, image_u8.shape, max_fraction=max_fraction)
    return paint_cutout(image_u8, size, cy, cx, fill=fill)


# ----------------------------------------------------------------------------- views


class StrongViewParams(NamedTuple):
    """Everything a strong view draws (all scalars except the ``[num_ops]`` op arrays)."""

    offset_y: jax.Array  #: int32, crop row in the padded image
    offset_x: jax.Array  #: int32, crop column in the padded image
    flip: jax.Array  #: bool, mirror left-right after the crop
    op_indices: jax.Array  #: int32 [num_ops], indices into RAND_AUGMENT_OPS
    magnitudes: jax.Array  #: float32 [num_ops]
    cutout_size: jax.Array  #: float32, side in pixels
    cutout_y: jax.Array  #: float32, centre row
    cutout_x: jax.Array  #: float32, centre column


def draw_strong_view(
    key: jax.Array, image_shape: tuple[int, ...], *, padding: int = 4, num_ops: int = 2
) -> StrongViewParams:
    """Draws the strong view's crop/flip, RandAugment ops and Cutout from three independent keys.

    Args:
      key: a PRNG key.
      image_shape: ``(H, W, 3)`` (static).
      padding: crop zero padding (static).
      num_ops: RandAugment ops (static; 2 in the reference).

    Returns:
      a :class:`StrongViewParams`.
    """
    k_crop, k_ops, k_cut = jax.random.split(key, 3)
    offset_y, offset_x, flip = draw_crop_and_flip(k_crop, padding=padding)
    op_indices, magnitudes = draw_rand_augment(k_ops, num_ops=num_ops)
    size, cy, cx = draw_cutout(k_cut, image_shape)
    return StrongViewParams(offset_y, offset_x, flip, op_indices, magnitudes, size, cy, cx)


def apply_strong_view(
    image_u8: jax.Array, params: StrongViewParams, *, padding: int = 4, crop: bool = True
) -> jax.Array:
    """Crop + flip (if ``crop``), the RandAugment ops, then Cutout, as given by ``params``.

    Args:
      image_u8: uint8 ``[H, W, 3]``, ``H, W >= 3``.
      params: drawn by :func:`draw_strong_view`.
      padding: crop zero padding (static).
      crop: False skips the crop and flip (images the host already cropped; static).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    _check_image("image_u8", image_u8, 3)
    _check_min_size("image_u8", image_u8)
    x = image_u8
    if crop:
        x = crop_and_flip(x, params.offset_y, params.offset_x, params.flip, padding=padding)
    x = apply_rand_augment(x, params.op_indices, params.magnitudes)
    return paint_cutout(x, params.cutout_size, params.cutout_y, params.cutout_x)


def strong_view(key: jax.Array, image_u8: jax.Array, *, padding: int = 4) -> jax.Array:
    """The strong view without normalisation: own crop + flip, RandAugment(2), Cutout.

    Equals ``apply_strong_view(image_u8, draw_strong_view(key, image_u8.shape))``.

    Args:
      key: a PRNG key (use a different one from the weak view's: the views are not aligned).
      image_u8: uint8 ``[H, W, 3]``, ``H, W >= 3``.
      padding: zero padding on each side for the crop (static).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    _check_image("image_u8", image_u8, 3)
    params = draw_strong_view(key, image_u8.shape, padding=padding)
    return apply_strong_view(image_u8, params, padding=padding)


def normalize(
    images_u8: jax.Array, mean: Sequence[float] | jax.Array, std: Sequence[float] | jax.Array
) -> jax.Array:
    """torchvision's ``ToTensor`` + ``Normalize``: ``(x / 255 - mean) / std`` per channel, float32.

    Args:
      images_u8: uint8 ``[..., 3]``.
      mean: three floats (fractions of 255, e.g. CIFAR-100's (0.5071, 0.4867, 0.4408)).
      std: three positive floats.

    Returns:
      float32 array of the same shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> normalize(jnp.array([[0, 255, 51]], jnp.uint8), (0.5, 0.5, 0.2), (0.5, 0.25, 0.1))
      Array([[-1.,  2.,  0.]], dtype=float32)
    """
    if not hasattr(images_u8, "dtype") or images_u8.dtype != jnp.uint8 or images_u8.shape[-1:] != (3,):
        raise TypeError(
            f"images_u8 must be uint8 [..., 3] levels, got {getattr(images_u8, 'dtype', type(images_u8))} "
            f"{getattr(images_u8, 'shape', '')}; normalise raw images only once."
        )
    mean_arr = _as_channel_stats("mean", mean)
    std_arr = _as_channel_stats("std", std)
    return (images_u8.astype(jnp.float32) / 255.0 - mean_arr) / std_arr


def _example_keys(rng: jax.Array, example_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example ``fold_in(rng, id)`` split into (weak key, strong key), each batched ``[B]``."""

    def one(example_id):
        weak_key, strong_key = jax.random.split(jax.random.fold_in(rng, example_id))
        return weak_key, strong_key

    return jax.vmap(one)(example_ids.astype(jnp.uint32))


def make_views(
    rng: jax.Array,
    images_u8: jax.Array,
    example_ids: jax.Array,
    *,
    mean: Sequence[float] | jax.Array,
    std: Sequence[float] | jax.Array,
    padding: int = 4,
) -> tuple[jax.Array, jax.Array]:
    """The normalised weak and strong views of a batch (the reference's two training views).

    Example ``i`` uses the key ``fold_in(rng, example_ids[i])`` split into a weak and a strong key,
    so its views depend only on ``(rng, example_ids[i])``. The caller owns ``rng``; the trainer
    passes ``fold_in(fold_in(PRNGKey(seed), step))``-style keys so every step differs.

    Args:
      rng: a PRNG key (raw ``uint32[2]`` or typed).
      images_u8: uint8 ``[B, H, W, 3]``.
      example_ids: int ``[B]`` global example indices (``batch["index"]``).
      mean: three floats, per-channel mean of ``x / 255``.
      std: three positive floats.
      padding: crop zero padding (static; 4 for CIFAR, 2 for the 16x16 digits).

    Returns:
      ``(weak, strong)``: float32 ``[B, H, W, 3]`` each.
    """
    _check_batch(images_u8, example_ids)
    padding = _check_padding(padding)
    mean_arr = _as_channel_stats("mean", mean)
    std_arr = _as_channel_stats("std", std)
    weak_keys, strong_keys = _example_keys(rng, example_ids)
    weak = jax.vmap(lambda k, x: weak_view(k, x, padding=padding))(weak_keys, images_u8)
    strong = jax.vmap(lambda k, x: strong_view(k, x, padding=padding))(strong_keys, images_u8)
    return normalize(weak, mean_arr, std_arr), normalize(strong, mean_arr, std_arr)


def strong_from_cropped(
    rng: jax.Array,
    images_u8: jax.Array,
    example_ids: jax.Array,
    *,
    mean: Sequence[float] | jax.Array,
    std: Sequence[float] | jax.Array,
) -> jax.Array:
    """RandAugment(2) + Cutout + normalisation of images the host already cropped and flipped.

    For ImageNet, where the host's random-resized-crop + flip replaces the padded crop. The key of
    example ``i`` is derived as in :func:`make_views` (its strong half); the drawn crop is unused.

    Args:
      rng: a PRNG key.
      images_u8: uint8 ``[B, H, W, 3]``.
      example_ids: int ``[B]`` global example indices.
      mean: three floats.
      std: three positive floats.

    Returns:
      float32 ``[B, H, W, 3]``.
    """
    _check_batch(images_u8, example_ids)
    mean_arr = _as_channel_stats("mean", mean)
    std_arr = _as_channel_stats("std", std)
    _, strong_keys = _example_keys(rng, example_ids)

    def one(key, image):
        return apply_strong_view(image, draw_strong_view(key, image.shape), crop=False)

    strong = jax.vmap(one)(strong_keys, images_u8)
    return normalize(strong, mean_arr, std_arr)
