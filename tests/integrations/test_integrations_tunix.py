"""sld_jax.integrations.tunix against a stand-in for tunix (runs without tunix installed).

The stand-in has tunix 0.1.7's ``BaseStrategy`` interface (the same methods, with ``jax.jit`` in
place of ``nnx.jit``) and a trainer loop that calls the strategy as ``DistillationTrainer`` does:
``get_teacher_outputs`` on the host once per batch, then one jitted ``value_and_grad`` of
``get_train_loss``. The models are dicts of parameters. The test with the real trainer is
test_integrations_tunix_trainer.py.
"""

import abc
import importlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax.losses import fused_linear_cross_entropy, fused_linear_distill_loss

MODULE = "sld_jax.integrations.tunix"
V, HS, HT, B, T = 12, 6, 10, 2, 7
SLD = dict(teacher_transform="swap", temperatures=(1.0, 2.0), ce_weight=0.1, kd_weight=0.9, token_chunk=4)


class FakeBaseStrategy(abc.ABC):
    """tunix 0.1.7's ``tunix.distillation.strategies.BaseStrategy``, with ``jax.jit`` for ``nnx.jit``."""

    def __init__(self, student_forward_fn, teacher_forward_fn, labels_fn):
        self._student_forward_fn = jax.jit(student_forward_fn)
        self._teacher_forward_fn = jax.jit(teacher_forward_fn)
        self._labels_fn = jax.jit(labels_fn)

    @abc.abstractmethod
    def compute_loss(self, student_output, teacher_output, labels): ...

    @abc.abstractmethod
    def compute_eval_loss(self, student_output, labels): ...

    def pre_process_models(self, student_model, teacher_model):
        return student_model, teacher_model

    def post_process_models(self, student_model, teacher_model):
        return student_model, teacher_model

    def get_teacher_outputs(self, teacher_model, inputs):
        return jax.lax.stop_gradient(self._teacher_forward_fn(teacher_model, **inputs))

    def get_student_outputs(self, student_model, inputs):
        return self._student_forward_fn(student_model, **inputs)

    def get_train_loss(self, student_model, teacher_output, inputs):
        student_output = self.get_student_outputs(student_model, inputs)
        labels = self._labels_fn(**inputs)
        return self.compute_loss(student_output=student_output, teacher_output=teacher_output, labels=labels)

    def get_eval_loss(self, student_model, inputs):
        student_output = jax.lax.stop_gradient(self.get_student_outputs(student_model, inputs))
        labels = self._labels_fn(**inputs)
        return self.compute_eval_loss(student_output=student_output, labels=labels)


def _fresh_import(monkeypatch):
    """Imports the integration anew (``sys.modules`` and the package attribute restored afterwards)."""
    import sld_jax.integrations as package

    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.delattr(package, "tunix", raising=False)
    return importlib.import_module(MODULE)


@pytest.fixture
def integration(monkeypatch):
    """The integration module, imported against the stand-in tunix."""
    names = ("tunix", "tunix.distillation", "tunix.distillation.strategies")
    modules = {name: types.ModuleType(name) for name in names}
    modules["tunix"].distillation = modules["tunix.distillation"]
    modules["tunix.distillation"].strategies = modules["tunix.distillation.strategies"]
    modules["tunix.distillation.strategies"].BaseStrategy = FakeBaseStrategy
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return _fresh_import(monkeypatch)


def _model(key, hidden, *, bias):
    k = jax.random.split(key, 4)
    params = {
        "embed": jax.random.normal(k[0], (V, hidden)),
        "w": jax.random.normal(k[1], (hidden, hidden)) / np.sqrt(hidden),
        "head": jax.random.normal(k[2], (hidden, V)),
    }
    if bias:
        params["bias"] = jax.random.normal(k[3], (V,))
    return params


def forward_fn(params, input_tokens, input_mask):
    del input_mask
    hidden = jnp.tanh(params["embed"][input_tokens] @ params["w"])[:, :-1]
    output = {"hidden": hidden, "kernel": params["head"]}
    if "bias" in params:
        output["bias"] = params["bias"]
    return output


def labels_fn(input_tokens, input_mask):
    return input_tokens[:, 1:], input_mask[:, 1:]


def batches(n):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        mask = np.ones((B, T), np.int32)
        mask[1, -2:] = 0
        out.append({"input_tokens": jnp.asarray(rng.integers(0, V, (B, T)), jnp.int32), "input_mask": mask})
    return out


STUDENT = _model(jax.random.key(0), HS, bias=False)
TEACHER = _model(jax.random.key(1), HT, bias=True)


def direct(student, teacher, inputs, *, student_swap, options=SLD):
    """The loss called directly on the models' hidden states and kernels."""
    s, t = forward_fn(student, **inputs), forward_fn(teacher, **inputs)
    labels, where = labels_fn(**inputs)
    return fused_linear_distill_loss(
        s["hidden"],
        s["kernel"],
        t["hidden"],
        t["kernel"],
        labels,
        where=where,
        teacher_bias=t["bias"],
        student_swap=student_swap,
        **options,
    )


def train(strategy, student, teacher, data, *, lr=0.5):
    """The trainer's loop: teacher outputs on the host, one jitted value_and_grad per batch, SGD."""
    traces = []

    def loss_fn(params, teacher_output, inputs):
        traces.append(1)
        return strategy.get_train_loss(params, teacher_output, inputs)

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    history = []
    for inputs in data:
        teacher_output = strategy.get_teacher_outputs(teacher, inputs)
        (loss, metrics), grads = step(student, teacher_output, inputs)
        history.append((student, loss, metrics, grads))
        student = jax.tree.map(lambda p, g: p - lr * g, student, grads)
    return history, len(traces)


def test_gate_switches_after_gamma_steps_without_retrace_and_loss_matches(integration):
    gamma = 2
    strategy = integration.FusedDistillStrategy(forward_fn, forward_fn, labels_fn, gamma_steps=gamma, **SLD)
    data = batches(4)
    history, traces = train(strategy, STUDENT, TEACHER, data)
    assert traces == 1
    assert strategy.step == 4
    assert [float(m["pseudo_teacher"]) for _, _, m, _ in history] == [0.0, 0.0, 1.0, 1.0]
    assert [int(m["step"]) for _, _, m, _ in history] == [0, 1, 2, 3]
    for k, (params, loss, metrics, _) in enumerate(history):
        want, want_metrics = direct(params, TEACHER, data[k], student_swap=k >= gamma)
        other, _ = direct(params, TEACHER, data[k], student_swap=k < gamma)
        np.testing.assert_allclose(loss, want, rtol=1e-6)
        assert abs(float(other) - float(want)) > 1e-3  # the two variants differ: the gate matters
        for name, value in want_metrics.items():
            np.testing.assert_allclose(metrics[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_gradients_reach_the_student_not_the_teacher(integration):
    strategy = integration.FusedDistillStrategy(forward_fn, forward_fn, labels_fn, **SLD)
    inputs = batches(1)[0]
    teacher_output = strategy.get_teacher_outputs(TEACHER, inputs)
    assert set(teacher_output) == {"hidden", "kernel", "bias", "step"}
    (_, _), grads = jax.value_and_grad(strategy.get_train_loss, has_aux=True)(STUDENT, teacher_output, inputs)
    for name in ("embed", "w", "head"):  # head: the kernel; embed and w: behind the hidden states
        assert float(jnp.abs(grads[name]).max()) > 0, name
    student_output = strategy.get_student_outputs(STUDENT, inputs)
    labels = labels_fn(**inputs)

    def loss(student_hidden, teacher_hidden, teacher_kernel):
        s = dict(student_output, hidden=student_hidden)
        t = dict(teacher_output, hidden=teacher_hidden, kernel=teacher_kernel)
        return strategy.compute_loss(s, t, labels)[0]

    g_student, g_hidden, g_kernel = jax.grad(loss, argnums=(0, 1, 2))(
        student_output["hidden"], teacher_output["hidden"], teacher_output["kernel"]
    )
    assert float(jnp.abs(g_student).max()) > 0
    assert float(jnp.abs(g_hidden).max()) == 0 and float(jnp.abs(g_kernel).max()) == 0


def test_eval_loss_is_the_fused_cross_entropy(integration):
    strategy = integration.FusedDistillStrategy(forward_fn, forward_fn, labels_fn, token_chunk=4)
    inputs = batches(1)[0]
    teacher = _model(jax.random.key(2), HS, bias=True)
    loss, metrics = strategy.get_eval_loss(teacher, inputs)
    s = forward_fn(teacher, **inputs)
    labels, where = labels_fn(**inputs)
    want, want_metrics = fused_linear_cross_entropy(
        s["hidden"], s["kernel"], labels, where=where, bias=s["bias"], token_chunk=4
    )
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert set(metrics) == set(want_metrics) and float(metrics["valid_tokens"]) == B * (T - 1) - 2


def test_static_gates_start_step_and_teacher_logits(integration):
    inputs = batches(1)[0]
    t = forward_fn(TEACHER, **inputs)
    logits = t["hidden"] @ t["kernel"] + t["bias"]

    def teacher_logits_fn(params, input_tokens, input_mask):
        return {"logits": logits}

    on = integration.FusedDistillStrategy(forward_fn, teacher_logits_fn, labels_fn, gamma_steps=0, **SLD)
    late = integration.FusedDistillStrategy(
        forward_fn, forward_fn, labels_fn, gamma_steps=3, start_step=3, **SLD
    )
    want, _ = direct(STUDENT, TEACHER, inputs, student_swap=True)
    for strategy in (on, late):
        loss, metrics = strategy.get_train_loss(
            STUDENT, strategy.get_teacher_outputs(TEACHER, inputs), inputs
        )
        np.testing.assert_allclose(loss, want, rtol=1e-5)
        assert float(metrics["pseudo_teacher"]) == 1.0
    assert late.step == 4
    late.step = 0
    _, metrics = late.get_train_loss(STUDENT, late.get_teacher_outputs(TEACHER, inputs), inputs)
    assert float(metrics["pseudo_teacher"]) == 0.0


def test_sld_settings(integration):
    strategy = integration.FusedDistillStrategy.sld(forward_fn, forward_fn, labels_fn, gamma_steps=5)
    assert strategy.gamma_steps == 5
    assert strategy._options["teacher_transform"] == "swap"
    assert strategy._options["temperatures"] == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert (strategy._options["ce_weight"], strategy._options["kd_weight"]) == (0.1, 0.9)


@pytest.mark.parametrize(
    "options, error, match",
    [
        (dict(gamma_steps=-1, teacher_transform="swap"), ValueError, "gamma_steps must be >= 0"),
        (dict(gamma_steps=2.0, teacher_transform="swap"), TypeError, "gamma_steps must be a Python int"),
        (dict(gamma_steps=2), ValueError, "teacher_transform='swap'"),
        (dict(start_step=-1), ValueError, "start_step must be >= 0"),
        (dict(divergence="kl"), ValueError, "divergence must be one of"),
        (dict(beta=0.3), ValueError, "beta is JSD's mixing weight"),
    ],
)
def test_misuse_raises_when_built(integration, options, error, match):
    with pytest.raises(error, match=match):
        integration.FusedDistillStrategy(forward_fn, forward_fn, labels_fn, **options)


def test_misused_outputs_raise(integration):
    strategy = integration.FusedDistillStrategy(forward_fn, forward_fn, labels_fn)
    inputs = batches(1)[0]
    s, t = forward_fn(STUDENT, **inputs), forward_fn(TEACHER, **inputs)
    labels = labels_fn(**inputs)
    with pytest.raises(TypeError, match="must return a dict with 'hidden'"):
        strategy.compute_loss(s["hidden"], t, labels)
    with pytest.raises(ValueError, match=r"unexpected \['kernal'\]"):
        strategy.compute_loss({"hidden": s["hidden"], "kernal": s["kernel"]}, t, labels)
    with pytest.raises(TypeError, match="not one-hot targets"):
        strategy.compute_loss(s, t, jax.nn.one_hot(labels[0], V))

    def teacher_with_step(params, input_tokens, input_mask):
        return dict(forward_fn(params, input_tokens, input_mask), step=jnp.int32(0))

    clash = integration.FusedDistillStrategy(forward_fn, teacher_with_step, labels_fn)
    with pytest.raises(ValueError, match="may not have a 'step' key"):
        clash.get_teacher_outputs(TEACHER, inputs)
    gated = integration.FusedDistillStrategy(forward_fn, forward_fn, labels_fn, gamma_steps=1, **SLD)
    with pytest.raises(ValueError, match="teacher_output has no 'step'"):
        gated.compute_loss(s, t, labels)


def test_without_tunix_the_strategy_raises_the_install_hint(monkeypatch):
    for name in ["tunix"] + [name for name in sys.modules if name.startswith("tunix.")]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import tunix...` fail, even if installed
    module = _fresh_import(monkeypatch)  # the module itself imports (doctest collection does)
    with pytest.raises(ImportError, match=r"pip install 'sld_jax\[tunix\]'"):
        from sld_jax.integrations.tunix import FusedDistillStrategy  # noqa: F401
    with pytest.raises(AttributeError):
        module.something_else
