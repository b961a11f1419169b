"""FusedDistillStrategy in tunix's own DistillationTrainer (skipped where tunix is not installed).

A tiny flax nnx language model is distilled for a few steps: the student's parameters move, the
teacher's do not, the loss is finite, and the γ gate switches on after ``gamma_steps`` steps.
"""

import numpy as np
import pytest

pytest.importorskip("tunix")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from tunix.distillation import DistillationTrainer, TrainingConfig, TrainingInput  # noqa: E402

from sld_jax.integrations.tunix import FusedDistillStrategy  # noqa: E402

V, D, B, T = 32, 16, 4, 8
STEPS, GAMMA = 6, 3


class TinyLM(nnx.Module):
    def __init__(self, hidden, rngs):
        self.embed = nnx.Embed(V, D, rngs=rngs)
        self.mlp = nnx.Linear(D, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, V, rngs=rngs)

    def hidden(self, tokens):
        return jax.nn.relu(self.mlp(self.embed(tokens)))


def forward_fn(model, input_tokens, input_mask):
    del input_mask
    return {
        "hidden": model.hidden(input_tokens)[:, :-1],
        "kernel": model.head.kernel[...],
        "bias": model.head.bias[...],
    }


def labels_fn(input_tokens, input_mask):
    return input_tokens[:, 1:], input_mask[:, 1:]


def data(n, seed):
    rng = np.random.default_rng(seed)
    return [
        TrainingInput(
            input_tokens=rng.integers(0, V, (B, T)).astype(np.int32), input_mask=np.ones((B, T), np.int32)
        )
        for _ in range(n)
    ]


class RecordingStrategy(FusedDistillStrategy):
    """Records the metrics of every train step (the trainer drops them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def compute_loss(self, student_output, teacher_output, labels):
        loss, metrics = super().compute_loss(student_output, teacher_output, labels)
        keep = {name: metrics[name] for name in ("step", "pseudo_teacher", "loss")}
        jax.debug.callback(lambda m: self.seen.append({k: float(v) for k, v in m.items()}), keep)
        return loss, metrics


def test_distillation_trainer_trains_the_student_with_the_fused_loss():
    student, teacher = TinyLM(8, nnx.Rngs(0)), TinyLM(64, nnx.Rngs(1))
    student_before = jax.tree.map(jnp.copy, nnx.state(student, nnx.Param))
    teacher_before = jax.tree.map(jnp.copy, nnx.state(teacher, nnx.Param))
    strategy = RecordingStrategy.sld(forward_fn, forward_fn, labels_fn, gamma_steps=GAMMA, token_chunk=8)
    config = TrainingConfig(eval_every_n_steps=GAMMA, max_steps=STEPS)
    trainer = DistillationTrainer(student, teacher, strategy, optax.adam(1e-2), config)
    trainer.train(data(STEPS, 0), data(2, 1))

    assert trainer.train_steps == STEPS and strategy.step == STEPS
    seen = sorted(strategy.seen, key=lambda m: m["step"])
    assert [m["step"] for m in seen] == list(range(STEPS))
    assert [m["pseudo_teacher"] for m in seen] == [float(k >= GAMMA) for k in range(STEPS)]
    assert all(np.isfinite(m["loss"]) for m in seen)
    losses = trainer.metrics_logger.get_metric_history("", "loss", "train")
    assert len(losses) == STEPS and np.all(np.isfinite(losses))
    assert np.all(np.isfinite(trainer.metrics_logger.get_metric_history("", "loss", "eval")))

    after = nnx.state(student, nnx.Param)
    for name in ("head", "mlp"):
        for before_leaf, after_leaf in zip(
            jax.tree.leaves(student_before[name]), jax.tree.leaves(after[name])
        ):
            assert not np.array_equal(before_leaf, after_leaf), name
    for before_leaf, after_leaf in zip(
        jax.tree.leaves(teacher_before), jax.tree.leaves(nnx.state(teacher, nnx.Param))
    ):
        np.testing.assert_array_equal(before_leaf, after_leaf)
