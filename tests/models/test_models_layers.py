"""BatchNorm and the initialisers of sld_jax.models.layers against PyTorch semantics."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax.models import layers


def _torch():
    return pytest.importorskip("torch")


def _apply_train(x, mask=None, variables=None, **kw):
    bn = layers.BatchNorm(**kw)
    if variables is None:
        variables = bn.init(jax.random.key(0), x, train=False)
    y, upd = bn.apply(variables, x, train=True, mask=mask, mutable=["batch_stats"])
    return y, upd["batch_stats"], variables


def test_batchnorm_matches_torch_train_step_and_eval(rng):
    torch = _torch()
    x = (rng.normal(size=(4, 5, 5, 3)) * 3.0 + 2.0).astype(np.float32)
    scale = rng.normal(size=3).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)

    tbn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        tbn.weight.copy_(torch.from_numpy(scale))
        tbn.bias.copy_(torch.from_numpy(bias))
    tbn.train()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    y_t = tbn(xt).detach().numpy().transpose(0, 2, 3, 1)
    tbn.eval()
    y_t_eval = tbn(xt).detach().numpy().transpose(0, 2, 3, 1)

    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), x, train=True)
    # init in train mode must not touch the running statistics
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(3))
    np.testing.assert_array_equal(variables["batch_stats"]["var"], np.ones(3))
    variables = {
        "params": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)},
        "batch_stats": variables["batch_stats"],
    }
    y, upd = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y), y_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], tbn.running_mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(upd["batch_stats"]["var"], tbn.running_var.numpy(), rtol=1e-6, atol=1e-6)

    y_eval = bn.apply({"params": variables["params"], "batch_stats": upd["batch_stats"]}, x, train=False)
    np.testing.assert_allclose(np.asarray(y_eval), y_t_eval, rtol=1e-5, atol=1e-5)


def test_batchnorm_gradient_matches_torch(rng):
    torch = _torch()
    x = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    tbn = torch.nn.BatchNorm2d(4).train()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    (tbn(xt) * torch.from_numpy(g.transpose(0, 3, 1, 2).copy())).sum().backward()

    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), x, train=False)

    def f(x):
        y, _ = bn.apply(variables, x, train=True, mutable=["batch_stats"])
        return jnp.sum(y * g)

    dx = jax.grad(f)(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(dx), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)


def test_masked_statistics_equal_statistics_of_the_valid_slice(rng):
    x = rng.normal(size=(6, 3, 3, 2)).astype(np.float32)
    x[4:] = 1e3  # garbage in padded rows must not matter
    mask = np.array([True, True, True, True, False, False])
    y_m, stats_m, _ = _apply_train(x, mask=jnp.asarray(mask))
    y_s, stats_s, _ = _apply_train(x[:4])
    np.testing.assert_allclose(np.asarray(y_m)[:4], np.asarray(y_s), rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(stats_m[k], stats_s[k], rtol=1e-6, atol=1e-6)


def test_all_masked_is_finite_and_leaves_running_stats_unchanged(rng):
    x = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), x, train=False)
    variables = {
        "params": variables["params"],
        "batch_stats": {"mean": jnp.array([0.5, -1.0]), "var": jnp.array([2.0, 3.0])},
    }
    y, upd = bn.apply(variables, x, train=True, mask=jnp.zeros(2, bool), mutable=["batch_stats"])
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_array_equal(upd["batch_stats"]["mean"], variables["batch_stats"]["mean"])
    np.testing.assert_array_equal(upd["batch_stats"]["var"], variables["batch_stats"]["var"])


def test_bf16_input_gives_bf16_output_with_float32_stats(rng):
    x = jnp.asarray(rng.normal(size=(4, 2, 2, 3)), jnp.bfloat16)
    y, stats, variables = _apply_train(x)
    assert y.dtype == jnp.bfloat16
    assert variables["params"]["scale"].dtype == jnp.float32
    assert stats["mean"].dtype == jnp.float32 and stats["var"].dtype == jnp.float32


def test_bad_mask_shape_and_missing_train_flag_are_reported(rng):
    x = jnp.asarray(rng.normal(size=(4, 2, 2, 3)), jnp.float32)
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="mask"):
        bn.apply(variables, x, train=True, mask=jnp.ones(3, bool), mutable=["batch_stats"])
    with pytest.raises(ValueError, match="train"):
        bn.apply(variables, x)


def test_axis_name_under_shard_map_gives_global_statistics(rng):
    if len(jax.devices()) < 2:
        pytest.skip("needs 2 (simulated) devices")
    x = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    mask = np.array([True, True, True, False])  # second shard is half padding
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
    P = jax.sharding.PartitionSpec
    bn = layers.BatchNorm(axis_name="data")
    variables = bn.init(jax.random.key(0), x, train=False)

    @partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=(P("data"), P()))
    def step(v, xs, ms):
        y, upd = bn.apply(v, xs, train=True, mask=ms, mutable=["batch_stats"])
        return y, upd["batch_stats"]

    y, stats = jax.jit(step)(variables, jnp.asarray(x), jnp.asarray(mask))
    y_ref, stats_ref, _ = _apply_train(x[:3])
    np.testing.assert_allclose(np.asarray(y)[:3], np.asarray(y_ref), rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(stats[k], stats_ref[k], rtol=1e-6, atol=1e-6)


def test_initialisers_follow_pytorch_scales():
    key = jax.random.key(0, impl="rbg")  # quick to compile; the scales do not depend on the generator
    k = layers.kaiming_normal_fan_out(key, (3, 3, 64, 128), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(k)), np.sqrt(2.0 / (128 * 9)), rtol=0.03)
    w = layers.torch_default_kernel_init(key, (256, 100), jnp.float32)
    bound = 1.0 / np.sqrt(256)
    assert float(jnp.max(jnp.abs(w))) <= bound and float(jnp.max(jnp.abs(w))) > 0.95 * bound
    lin = layers.Linear(10)
    v = lin.init(key, jnp.ones((2, 256)))
    assert v["params"]["kernel"].shape == (256, 10) and v["params"]["bias"].shape == (10,)
    assert float(jnp.max(jnp.abs(v["params"]["bias"]))) <= bound


@pytest.mark.parametrize(
    "kernel, stride, padding, groups",
    [(3, 1, 1, 1), (3, 2, 1, 1), (1, 2, 0, 1), (3, 1, 1, 4)],
)
def test_conv_gradients_equal_lax(kernel, stride, padding, groups, rng):
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 4 // groups, 8)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")
    pads = ((padding, padding), (padding, padding))

    def loss(conv):
        return lambda x, w: jnp.sum(
            jnp.sin(conv(x, w, (stride, stride), pads, dimension_numbers=dn, feature_group_count=groups))
        )

    both = jax.jit(
        lambda x, w: (
            jax.value_and_grad(loss(layers.conv_general_dilated), (0, 1))(x, w),
            jax.value_and_grad(loss(jax.lax.conv_general_dilated), (0, 1))(x, w),
        )
    )
    (v1, (dx1, dw1)), (v2, (dx2, dw2)) = both(x, w)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw1, dw2, rtol=1e-5, atol=1e-5)


def test_conv_kernel_gradient_under_shard_map_equals_lax(rng):
    """A kernel replicated over a shard_map axis gets the same (summed) gradient as with lax's conv."""
    if len(jax.devices()) < 2:
        pytest.skip("needs 2 (simulated) devices")
    x = jnp.asarray(rng.normal(size=(4, 6, 6, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
    P = jax.sharding.PartitionSpec
    dn = ("NHWC", "HWIO", "NHWC")

    def grads(conv):
        @partial(jax.shard_map, mesh=mesh, in_specs=(P("data"), P()), out_specs=P())
        def per_device(xs, w):
            g = jax.grad(
                lambda w: jnp.sum(jnp.sin(conv(xs, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)))
            )(w)
            return g

        return per_device

    both = jax.jit(
        lambda x, w: (grads(layers.conv_general_dilated)(x, w), grads(jax.lax.conv_general_dilated)(x, w))
    )
    g_fast, g_lax = both(x, w)
    np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_lax), rtol=1e-5, atol=1e-5)


def test_conv_kernel_gradient_keeps_float64(rng):
    """In float64 the CPU kernel-gradient path accumulates in float64 (it equals lax's to rounding)."""
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 9, 9, 4)))
        w = jnp.asarray(rng.normal(size=(3, 3, 4, 8)))
        dn = ("NHWC", "HWIO", "NHWC")

        def kernel_grad(conv):
            return jax.grad(
                lambda w: jnp.sum(jnp.sin(conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)))
            )(w)

        fast, native = jax.jit(
            lambda: (kernel_grad(layers.conv_general_dilated), kernel_grad(jax.lax.conv_general_dilated))
        )()
        assert fast.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(fast), np.asarray(native), rtol=1e-12, atol=1e-12)
