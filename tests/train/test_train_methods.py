"""A new method is one place: an objective and one ``methods.register`` call, in this file only.

The toy method below (label-smoothed cross-entropy, no teacher) is defined here, registered, and
trained one step through ``setup.build`` with the trainer's own compiled dispatch: no other file
of sld_jax knows it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import configs_lib, losses
from sld_jax.train import methods, setup, validation
from sld_jax.train.mesh import mesh_for


def smoothed_ce_objective(
    student_weak, student_strong, teacher_weak, teacher_strong, labels, *, smoothing, where=None
):
    """Label-smoothed CE on the weak view (the shared objective call; no teacher)."""
    del student_strong, teacher_weak, teacher_strong
    logp = jax.nn.log_softmax(student_weak.astype(jnp.float32))
    target = (1 - smoothing) * jax.nn.one_hot(labels, logp.shape[-1]) + smoothing / logp.shape[-1]
    loss = losses.masked_mean(-jnp.sum(target * logp, -1), where)
    return loss, {"ce": loss, "loss": loss}


@pytest.fixture
def toy_method():
    # config.loss.ce_weight stands in for the smoothing (any config.loss field can feed a keyword).
    row = methods.register(
        "toy_smoothed_ce",
        methods.Method(smoothed_ce_objective, uses_teacher=False, hparams=(("smoothing", "ce_weight"),)),
    )
    yield row
    del methods.METHODS["toy_smoothed_ce"]


def test_a_registered_method_trains_one_step_through_setup_build(toy_method, digits_data_dir):
    config = configs_lib.digits_config("vanilla", None, "resnet_tiny", num_epochs=1)
    config.method = "toy_smoothed_ce"
    config.loss.ce_weight = 0.1
    config.dataset.data_dir = digits_data_dir
    config.dataset.limit_train, config.batch_size, config.num_devices = 64, 32, 2
    validation.validate(config)
    built = setup.build(config, mesh_for(config))
    assert built.method is toy_method
    dispatch = built.dispatch(student_swap=False)
    feed, n = next(iter(built.feeds(epoch=1, start_step=0, stop_step=1)))
    before = jax.device_get(built.state.params)
    state, metrics = dispatch(
        built.state, built.teacher_variables, feed, built.split, built.rngs, built.active(n)
    )
    assert int(np.asarray(state.step)[0]) == 1
    assert np.isfinite(float(np.asarray(metrics["ce"]).sum())) and float(np.asarray(metrics["ce"]).sum()) > 0
    moved = jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), state.params, before
    )
    assert max(jax.tree.leaves(moved)) > 0


def test_register_refuses_a_taken_name():
    with pytest.raises(ValueError, match="exists already"):
        methods.register("sld", methods.METHODS["sld"])
    with pytest.raises(TypeError, match="Method row"):
        methods.register("toy", smoothed_ce_objective)


def test_every_method_row_points_at_a_library_objective():
    """No method composes anything: each row's objective is a public name of sld_jax.losses."""
    public = {id(getattr(losses, name)) for name in losses.__all__}
    assert all(id(row.objective) in public for row in methods.METHODS.values())
