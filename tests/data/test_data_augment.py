"""sld_jax.data.augment against NumPy and Pillow references of the reference recipe's views.

The Pillow functions below restate the reference's RandAugment ops (Pillow's ImageOps,
ImageEnhance and Image.transform with its defaults: nearest neighbour, black fill) and its Cutout
(ImageDraw rectangle, inclusive corners, integer-truncated). All images are 32x32 RGB; every
jitted function is compiled once per module (same shapes throughout) to keep the file fast.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from sld_jax.data import augment, augment_ops

SIZE = 32
MEAN = (0.5071, 0.4867, 0.4408)
STD = (0.2675, 0.2565, 0.2761)
FILL = (125, 123, 114)


# ----------------------------------------------------------------------------- references


def pil_op(name: str, im: Image.Image, v: float) -> Image.Image:
    """The reference's op ``name`` at magnitude ``v`` with Pillow."""
    w, h = im.size
    if name == "AutoContrast":
        return ImageOps.autocontrast(im)
    if name == "Brightness":
        return ImageEnhance.Brightness(im).enhance(v)
    if name == "Color":
        return ImageEnhance.Color(im).enhance(v)
    if name == "Contrast":
        return ImageEnhance.Contrast(im).enhance(v)
    if name == "Equalize":
        return ImageOps.equalize(im)
    if name == "Identity":
        return im
    if name == "Posterize":
        return ImageOps.posterize(im, max(1, int(v)))
    if name == "Rotate":
        return im.rotate(v)
    if name == "Sharpness":
        return ImageEnhance.Sharpness(im).enhance(v)
    if name == "ShearX":
        return im.transform(im.size, Image.AFFINE, (1, v, 0, 0, 1, 0))
    if name == "ShearY":
        return im.transform(im.size, Image.AFFINE, (1, 0, 0, v, 1, 0))
    if name == "Solarize":
        return ImageOps.solarize(im, v)
    if name == "TranslateX":
        return im.transform(im.size, Image.AFFINE, (1, 0, v * w, 0, 1, 0))
    if name == "TranslateY":
        return im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, v * h))
    raise KeyError(name)


def pil_cutout(x: np.ndarray, size: float, cy: float, cx: float) -> np.ndarray:
    """The reference's CutoutAbs with a given side and centre."""
    if size <= 0:
        return x
    h, w = x.shape[:2]
    x0 = int(max(0, cx - size / 2.0))
    y0 = int(max(0, cy - size / 2.0))
    x1 = min(w, x0 + size)
    y1 = min(h, y0 + size)
    im = Image.fromarray(x)
    ImageDraw.Draw(im).rectangle((x0, y0, x1, y1), FILL)
    return np.asarray(im)


def np_crop_flip(x: np.ndarray, oy: int, ox: int, flip: bool, padding: int) -> np.ndarray:
    """torchvision RandomCrop(pad) + RandomHorizontalFlip with given draws."""
    h, w = x.shape[:2]
    padded = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
    out = padded[oy : oy + h, ox : ox + w]
    return out[:, ::-1] if flip else out


def pil_strong(x: np.ndarray, p, *, crop: bool = True, padding: int = 4) -> np.ndarray:
    """The reference's strong view (before normalisation) with the parameters drawn in ``p``."""
    if crop:
        x = np_crop_flip(x, int(p.offset_y), int(p.offset_x), bool(p.flip), padding)
    im = Image.fromarray(np.ascontiguousarray(x))
    for i, v in zip(np.asarray(p.op_indices), np.asarray(p.magnitudes)):
        im = pil_op(augment_ops.RAND_AUGMENT_OPS[int(i)].name, im, float(v))
    return pil_cutout(np.asarray(im), float(p.cutout_size), float(p.cutout_y), float(p.cutout_x))


def make_images() -> np.ndarray:
    """Three 32x32 images: full-range noise, a low-contrast gradient, flat blocks with a constant channel."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (SIZE, SIZE, 3))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    ramp = (yy + 2 * xx) / (3 * (SIZE - 1))
    lows, highs = np.array([30, 60, 90]), np.array([200, 140, 250])
    gradient = lows + ramp[..., None] * (highs - lows) + rng.normal(0, 4, (SIZE, SIZE, 3))
    blocks = np.zeros((SIZE, SIZE, 3))
    blocks[..., 0] = 40 + 60 * ((yy // 8 + xx // 8) % 3)
    blocks[..., 1] = np.where(xx < 20, 10, 220)
    blocks[..., 2] = 77
    images = np.stack([noise, gradient, blocks])
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    return make_images()


# ----------------------------------------------------------------------------- RandAugment ops

#: Per-op tolerance against Pillow: (max |diff| in levels, fraction of values allowed to differ).
#: Blend, table and arithmetic ops are exact. AutoContrast is exact arithmetic, where Pillow's
#: float64 ``int(i * scale + offset)`` lands one level low at some exact integers (e.g. the top
#: level maps to 254 for ~15% of (lo, hi) pairs), so a whole level of a channel may be off by one.
#: Geometric ops use float32 coordinates (Pillow float64), which could flip a nearest-neighbour
#: choice only for a coordinate within ~1e-5 of a pixel boundary.
TOLERANCE = {
    "AutoContrast": (1, 0.5),
    "Brightness": (0, 0.0),
    "Color": (0, 0.0),
    "Contrast": (0, 0.0),
    "Equalize": (0, 0.0),
    "Identity": (0, 0.0),
    "Posterize": (0, 0.0),
    "Rotate": (255, 0.01),
    "Sharpness": (0, 0.0),
    "ShearX": (255, 0.01),
    "ShearY": (255, 0.01),
    "Solarize": (0, 0.0),
    "TranslateX": (255, 0.01),
    "TranslateY": (255, 0.01),
}

FRACTIONS = (0.0, 0.37, 0.93)  # where in [low, high) each op's magnitude is tested


def _assert_close(name, got, want, context):
    max_diff, max_frac = TOLERANCE[name]
    diff = np.abs(np.asarray(got).astype(int) - np.asarray(want).astype(int))
    frac = np.mean(diff > 0)
    assert diff.max() <= max_diff and frac <= max_frac, (
        f"{name} {context}: max diff {diff.max()}, fraction differing {frac:.4f}"
    )


def test_table_is_the_reference_table():
    names = [op.name for op in augment_ops.RAND_AUGMENT_OPS]
    assert names == [
        "AutoContrast",
        "Brightness",
        "Color",
        "Contrast",
        "Equalize",
        "Identity",
        "Posterize",
        "Rotate",
        "Sharpness",
        "ShearX",
        "ShearY",
        "Solarize",
        "TranslateX",
        "TranslateY",
    ]
    ranges = {op.name: (op.low, op.high) for op in augment_ops.RAND_AUGMENT_OPS}
    assert ranges["Posterize"] == (4, 8) and ranges["Rotate"] == (-30, 30) and ranges["Solarize"] == (0, 256)
    assert ranges["ShearX"] == ranges["TranslateY"] == (-0.3, 0.3) and ranges["Sharpness"] == (0.05, 0.95)


def test_every_op_matches_pillow_under_jit(images):
    ops = augment_ops.RAND_AUGMENT_OPS
    cases = [(i, f, k) for i in range(len(ops)) for f in FRACTIONS for k in range(len(images))]
    idx = jnp.asarray([c[0] for c in cases], jnp.int32)
    mags = augment_ops.op_magnitude(idx, jnp.asarray([c[1] for c in cases], jnp.float32))
    x = jnp.asarray(images[[c[2] for c in cases]], jnp.float32)
    out = np.asarray(jax.jit(jax.vmap(augment_ops.apply_op))(x, idx, mags))
    mags = np.asarray(mags)
    assert out.dtype == np.float32 and np.all(out == np.round(out)) and out.min() >= 0 and out.max() <= 255
    for n, (i, f, k) in enumerate(cases):
        v = float(mags[n])
        want = np.asarray(pil_op(ops[i].name, Image.fromarray(images[k]), v))
        _assert_close(ops[i].name, out[n], want, f"magnitude {v:.4f}, image {k}")


#: Ops whose float arithmetic XLA could fuse differently under jit (blend, division, affine coordinates).
EAGER_OPS = ("Brightness", "Sharpness", "AutoContrast", "Rotate")


def test_ops_match_pillow_eagerly(images):
    x = jnp.asarray(images[1], jnp.float32)
    for op in augment_ops.RAND_AUGMENT_OPS:
        if op.name not in EAGER_OPS:
            continue
        v = np.float32(op.low + 0.61 * (op.high - op.low))
        got = op.fn(x, jnp.float32(v))
        want = np.asarray(pil_op(op.name, Image.fromarray(images[1]), float(v)))
        _assert_close(op.name, got, want, f"eager, magnitude {v:.4f}")


def test_draw_rand_augment_covers_table_and_ranges():
    keys = jax.random.split(jax.random.PRNGKey(0), 1000)
    idx, mags = jax.jit(jax.vmap(augment.draw_rand_augment))(keys)
    idx, mags = np.asarray(idx).ravel(), np.asarray(mags).ravel()
    counts = np.bincount(idx, minlength=augment_ops.NUM_OPS)
    assert counts.shape == (14,) and counts.min() > 100  # 2000 draws, ~143 each
    for i, op in enumerate(augment_ops.RAND_AUGMENT_OPS):
        m = mags[idx == i]
        assert m.min() >= op.low and m.max() < op.high, op.name
        assert m.max() - m.min() > 0.8 * (op.high - op.low), op.name  # spread over the range


# ----------------------------------------------------------------------------- crop, flip, cutout


def test_crop_and_flip_exact_against_numpy(images):
    keys = jax.random.split(jax.random.PRNGKey(1), 12)
    x = jnp.asarray(np.concatenate([images] * 4))
    draws = jax.jit(jax.vmap(functools.partial(augment.draw_crop_and_flip, padding=4)))(keys)
    got = jax.jit(jax.vmap(functools.partial(augment.crop_and_flip, padding=4)))(x, *draws)
    weak = jax.jit(jax.vmap(augment.weak_view))(keys, x)
    np.testing.assert_array_equal(np.asarray(weak), np.asarray(got))
    for n in range(len(keys)):
        oy, ox, flip = (np.asarray(d[n]) for d in draws)
        want = np_crop_flip(np.asarray(x[n]), int(oy), int(ox), bool(flip), 4)
        np.testing.assert_array_equal(np.asarray(got[n]), want)
    # The eager path agrees with the jitted one.
    eager = augment.crop_and_flip(x[0], draws[0][0], draws[1][0], draws[2][0], padding=4)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(got[0]))


def test_crop_offsets_and_flips_cover_their_ranges():
    keys = jax.random.split(jax.random.PRNGKey(2), 500)
    oy, ox, flip = jax.jit(jax.vmap(functools.partial(augment.draw_crop_and_flip, padding=4)))(keys)
    assert set(np.asarray(oy).tolist()) == set(range(9)) == set(np.asarray(ox).tolist())
    assert 0.4 < float(np.mean(np.asarray(flip))) < 0.6


def test_every_draw_is_the_same_with_64_bit_jax():
    """``jax_enable_x64`` (a user's setting, or the trainer's float64 mode) changes no draw: a
    probability or a range given as a Python number would draw in float64 there, other views."""
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    draws = {
        "crop_and_flip": functools.partial(augment.draw_crop_and_flip, padding=4),
        "rand_augment": augment.draw_rand_augment,
        "strong_view": lambda key: augment.draw_strong_view(key, (32, 32, 3), padding=4),
    }
    for name, draw in draws.items():
        with jax.enable_x64(False):
            want = jax.vmap(draw)(keys)
        with jax.enable_x64(True):
            got = jax.vmap(draw)(keys)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)


CUTOUT_CASES = [  # (size, centre_y, centre_x)
    (10.7, 15.2, 16.9),  # inside
    (15.99, 0.3, 1.0),  # top-left: the square is shifted inside, not cut
    (12.5, 31.9, 30.2),  # bottom-right: cut at the border
    (0.4, 7.5, 9.9),  # smaller than a pixel: still one pixel
    (0.0, 10.0, 10.0),  # zero: unchanged
    (8.0, 4.0, 28.0),  # integer corner coordinates
]


def test_cutout_exact_against_pillow(images):
    x = images[0]
    size, cy, cx = (jnp.asarray(c, jnp.float32) for c in zip(*CUTOUT_CASES))
    xs = jnp.asarray(np.stack([x] * len(CUTOUT_CASES)))
    got = np.asarray(jax.jit(jax.vmap(augment.paint_cutout))(xs, size, cy, cx))
    for n, case in enumerate(CUTOUT_CASES):
        np.testing.assert_array_equal(got[n], pil_cutout(x, *case), err_msg=f"case {case}")
    # The eager path agrees with the jitted one.
    eager = augment.paint_cutout(jnp.asarray(x), *CUTOUT_CASES[1])
    np.testing.assert_array_equal(np.asarray(eager), got[1])


def test_cutout_draws_and_always_fills():
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    sizes, cys, cxs = jax.jit(jax.vmap(lambda k: augment.draw_cutout(k, (SIZE, SIZE, 3))))(keys)
    assert float(jnp.min(sizes)) >= 0 and float(jnp.max(sizes)) < 16 and float(jnp.max(sizes)) > 12
    assert float(jnp.max(cys)) < SIZE and float(jnp.max(cxs)) < SIZE
    x = jnp.zeros((64, SIZE, SIZE, 3), jnp.uint8)
    out = np.asarray(jax.jit(jax.vmap(augment.cutout))(keys, x))
    filled = np.all(out == np.asarray(FILL, np.uint8), axis=-1).sum(axis=(1, 2))
    assert filled.min() >= 1 and filled.max() <= 16 * 16


# ----------------------------------------------------------------------------- views


@pytest.fixture(scope="module")
def views_fn():
    return jax.jit(functools.partial(augment.make_views, mean=MEAN, std=STD, padding=4))


@pytest.fixture(scope="module")
def batch(images):
    x = np.concatenate([images, images[:1]])  # B = 4; examples 0 and 3 share pixels
    return jnp.asarray(x), jnp.asarray([10, 11, 12, 13], jnp.int32)


def _denormalise(v):
    return np.asarray(v, np.float64) * np.asarray(STD) + np.asarray(MEAN)


def test_make_views_shapes_dtypes_and_levels(views_fn, batch):
    weak, strong = views_fn(jax.random.PRNGKey(0), *batch)
    for v in (weak, strong):
        assert v.shape == (4, SIZE, SIZE, 3) and v.dtype == jnp.float32
        levels = _denormalise(v) * 255.0
        assert np.all(np.abs(levels - np.round(levels)) < 1e-3)
        assert levels.min() > -1e-3 and levels.max() < 255 + 1e-3


def test_make_views_match_references(views_fn, batch, images):
    """Weak: numpy crop/flip; strong: the Pillow chain, with the parameters the documented keys draw."""
    rng = jax.random.PRNGKey(7)
    weak, strong = views_fn(rng, *batch)
    x, ids = batch
    for n in range(4):
        k_weak, k_strong = jax.random.split(jax.random.fold_in(rng, int(ids[n])))
        oy, ox, flip = augment.draw_crop_and_flip(k_weak, padding=4)
        want_weak = np_crop_flip(np.asarray(x[n]), int(oy), int(ox), bool(flip), 4)
        expected = (want_weak.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
        np.testing.assert_allclose(np.asarray(weak[n]), expected, rtol=0, atol=1e-6)
        params = augment.draw_strong_view(k_strong, (SIZE, SIZE, 3), padding=4)
        want_strong = pil_strong(np.asarray(x[n]), params)
        got_strong = np.round(_denormalise(strong[n]) * 255.0)
        frac = np.mean(got_strong != want_strong)
        assert frac <= 0.01, f"example {n}: {frac:.4f} of values differ from the Pillow chain"


def test_make_views_deterministic_and_per_example(views_fn, batch):
    x, ids = batch
    rng = jax.random.PRNGKey(0)
    w1, s1 = views_fn(rng, x, ids)
    w2, s2 = views_fn(rng, x, ids)
    np.testing.assert_array_equal(np.asarray(w1), np.asarray(w2))
    np.testing.assert_array_equal(np.asarray(s1), np.asarray(s2))
    # A view depends on (rng, example id) only: permuting the batch permutes the views.
    perm = jnp.asarray([2, 0, 3, 1])
    w3, s3 = views_fn(rng, x[perm], ids[perm])
    np.testing.assert_array_equal(np.asarray(w3), np.asarray(w1)[perm])
    np.testing.assert_array_equal(np.asarray(s3), np.asarray(s1)[perm])
    # Examples 0 and 3 have the same pixels but different ids: different views.
    assert not np.array_equal(np.asarray(s1[0]), np.asarray(s1[3]))
    # The weak and strong views are not aligned; another rng gives other views.
    assert not np.array_equal(np.asarray(w1), np.asarray(s1))
    w4, s4 = views_fn(jax.random.PRNGKey(1), x, ids)
    assert not np.array_equal(np.asarray(s4), np.asarray(s1))


def test_strong_from_cropped_skips_the_crop(batch):
    x, ids = batch
    rng = jax.random.PRNGKey(5)
    fn = jax.jit(functools.partial(augment.strong_from_cropped, mean=MEAN, std=STD))
    out = fn(rng, x, ids)
    assert out.shape == (4, SIZE, SIZE, 3) and out.dtype == jnp.float32
    for n in range(2):
        _, k_strong = jax.random.split(jax.random.fold_in(rng, int(ids[n])))
        params = augment.draw_strong_view(k_strong, (SIZE, SIZE, 3))
        want = pil_strong(np.asarray(x[n]), params, crop=False)
        got = np.round(_denormalise(out[n]) * 255.0)
        assert np.mean(got != want) <= 0.01


def test_normalize_matches_torchvision_formula():
    x = np.arange(0, 256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
    got = np.asarray(augment.normalize(jnp.asarray(x), MEAN, STD))
    want = (x.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- validation


def test_errors_name_the_problem():
    x = jnp.zeros((2, SIZE, SIZE, 3), jnp.uint8)
    ids = jnp.arange(2)
    rng = jax.random.PRNGKey(0)
    with pytest.raises(TypeError, match="uint8"):
        augment.make_views(rng, x.astype(jnp.float32), ids, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        augment.make_views(rng, x[..., :1], ids, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="one id per image"):
        augment.make_views(rng, x, jnp.arange(3), mean=MEAN, std=STD)
    with pytest.raises(TypeError, match="integer"):
        augment.make_views(rng, x, jnp.zeros(2), mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="std must be positive"):
        augment.make_views(rng, x, ids, mean=MEAN, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="one value per RGB channel"):
        augment.make_views(rng, x, ids, mean=(0.5,), std=STD)
    with pytest.raises(ValueError, match="padding"):
        augment.make_views(rng, x, ids, mean=MEAN, std=STD, padding=-1)
    with pytest.raises(ValueError, match="at least 3x3"):
        augment.rand_augment(rng, jnp.zeros((2, 2, 3), jnp.uint8))
