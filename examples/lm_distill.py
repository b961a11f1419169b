"""Distil a small byte-level decoder-only LM with SLD through ``fused_linear_sld_loss`` (plain optax).

    python examples/lm_distill.py            # offline; 7 CPU-minutes (11 min wall on a shared 2-core box)

The corpus is the Python standard library's own source files (on every machine with Python),
read as bytes (vocabulary 256) and split *by file* into train and validation. A teacher is
trained with cross-entropy, then three smaller students from the same initialisation:

* ``CE``: cross-entropy only;
* ``KD``: 0.1 CE + 0.9 Hinton KD (T = 2) on materialised logits (:func:`sld_jax.losses.kd_loss`);
* ``SLD``: :func:`sld_jax.losses.fused_linear_sld_loss` from the final hidden states and the
  output kernels (0.1 CE + 0.9 SLD over T = 1..6), with the pseudo-teacher term switched on after
  ``--gamma`` of the steps (the paper's loss schedule, 150/240).

Each line reports validation bits per byte. Measured (2-core EPYC, shared, load 4–6; 11 min wall,
7.2 CPU-minutes): teacher 2.900, students CE 3.486, KD 3.453, SLD 3.632 bits/byte — with this
small, briefly trained byte-level pair the six-temperature SLD term at the reference weights
(CE 0.1, SLD 0.9) hurts where single-temperature KD helps. This is an example of calling the loss from someone
else's training loop, not a trainer: one ``train_step`` per objective, plain ``optax.adamw``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sld_jax import losses

VOCAB = 256


def stdlib_corpus(max_train_bytes: int, max_val_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of the standard library's top-level ``*.py`` files; one file in ten is validation."""
    root = os.path.dirname(os.__file__)
    train, val = [], []
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        # A stable split by file name (not by position), so no file straddles the two sets.
        (val if zlib.crc32(name.encode()) % 10 == 0 else train).append(data)
    join = lambda parts, cap: np.frombuffer(b"".join(parts)[:cap], np.uint8).astype(np.int32)  # noqa: E731
    return join(train, max_train_bytes), join(val, max_val_bytes)


class Block(nn.Module):
    dim: int
    heads: int

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm()(x)
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(y, y, mask=mask)
        y = nn.LayerNorm()(x)
        return x + nn.Dense(self.dim)(nn.gelu(nn.Dense(4 * self.dim)(y)))


class ByteLM(nn.Module):
    """A decoder-only byte LM. ``hidden(tokens) -> [B, T, D]``; the logits are ``hidden @ head``."""

    dim: int
    layers: int
    heads: int
    context: int

    def setup(self):
        self.embed = nn.Embed(VOCAB, self.dim)
        self.pos = self.param("pos", nn.initializers.normal(0.02), (self.context, self.dim))
        self.blocks = [Block(self.dim, self.heads) for _ in range(self.layers)]
        self.norm = nn.LayerNorm()
        self.head = self.param("head", nn.initializers.normal(self.dim**-0.5), (self.dim, VOCAB))

    def hidden(self, tokens):
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def __call__(self, tokens):
        return self.hidden(tokens) @ self.head


def windows(data: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``[len(starts), length + 1]`` byte windows (inputs and next-byte labels)."""
    return np.stack([data[s : s + length + 1] for s in starts])


def validation_windows(val_data: np.ndarray, context: int, count: int) -> jax.Array:
    """``count`` evenly spaced validation windows ``[count, context + 1]`` (the same on every run)."""
    starts = np.linspace(0, len(val_data) - context - 2, count, dtype=np.int64)
    return jnp.asarray(windows(val_data, starts, context))


def objective(params, teacher_params, batch, *, model, teacher, method, student_swap):
    """The loss of one batch ``[B, T + 1]`` for ``method`` in {"ce", "kd", "sld"}."""
    x, y = batch[:, :-1], batch[:, 1:]
    h = model.apply(params, x, method=ByteLM.hidden)
    head = params["params"]["head"]
    if method == "ce":
        return optax.softmax_cross_entropy_with_integer_labels(h @ head, y).mean()
    th = teacher.apply(teacher_params, x, method=ByteLM.hidden)
    t_head = teacher_params["params"]["head"]
    if method == "kd":
        s_logits, t_logits = h @ head, th @ t_head
        ce = optax.softmax_cross_entropy_with_integer_labels(s_logits, y).mean()
        return 0.1 * ce + 0.9 * losses.kd_loss(s_logits, t_logits, temperature=2.0).mean()
    loss, _ = losses.fused_linear_sld_loss(
        h, head, th, t_head, y, student_swap=student_swap, ce_weight=0.1, kd_weight=0.9, token_chunk=1024
    )
    return loss


@functools.partial(jax.jit, static_argnames=("model", "teacher", "method", "student_swap", "tx"))
def train_step(params, opt_state, teacher_params, batch, *, model, teacher, method, student_swap, tx):
    loss, grads = jax.value_and_grad(objective)(
        params, teacher_params, batch, model=model, teacher=teacher, method=method, student_swap=student_swap
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames=("model",))
def eval_bits(params, batch, *, model):
    logits = model.apply(params, batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean() / math.log(2)


def train(model, params, data, steps, *, method, args, teacher=None, teacher_params=None, seed=0):
    tx = optax.adamw(optax.cosine_decay_schedule(args.lr, steps), weight_decay=0.01)
    opt_state = tx.init(params)
    rng = np.random.default_rng(seed)
    switch = int(args.gamma * steps)
    for step in range(steps):
        starts = rng.integers(0, len(data) - args.context - 1, args.batch)
        params, opt_state, loss = train_step(
            params,
            opt_state,
            teacher_params,
            jnp.asarray(windows(data, starts, args.context)),
            model=model,
            teacher=teacher,
            method=method,
            student_swap=step >= switch,
            tx=tx,
        )
    return params, float(loss)


def add_training_flags(parser: argparse.ArgumentParser, *, context: int, eval_windows: int) -> None:
    """The flags of a teacher-then-students run (this script's and ``lm_study.py``'s)."""
    parser.add_argument("--teacher-steps", type=int, default=800)
    parser.add_argument("--student-steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=context)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--gamma", type=float, default=150 / 240, help="fraction of steps before SLD's student swap"
    )
    parser.add_argument("--eval-windows", type=int, default=eval_windows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_flags(parser, context=128, eval_windows=128)
    args = parser.parse_args(argv)

    start = time.time()
    train_data, val_data = stdlib_corpus(4_000_000, 400_000)
    val = validation_windows(val_data, args.context, args.eval_windows)
    print(
        f"corpus: {len(train_data):,} train bytes, {len(val_data):,} validation bytes (stdlib of Python "
        f"{sys.version.split()[0]}, split by file); {jax.devices()[0].device_kind}"
    )
    teacher = ByteLM(dim=128, layers=4, heads=4, context=args.context)
    student = ByteLM(dim=64, layers=2, heads=4, context=args.context)
    x0 = jnp.zeros((1, args.context), jnp.int32)
    t_params = teacher.init(jax.random.key(0), x0)
    t_params, _ = train(teacher, t_params, train_data, args.teacher_steps, method="ce", args=args)
    print(
        f"teacher  ({args.teacher_steps} steps): {float(eval_bits(t_params, val, model=teacher)):.3f} bits/byte"
        f"  [{time.time() - start:.0f} s]"
    )
    s_init = student.init(jax.random.key(1), x0)
    for method in ("ce", "kd", "sld"):
        params, _ = train(
            student,
            s_init,
            train_data,
            args.student_steps,
            method=method,
            args=args,
            teacher=teacher,
            teacher_params=t_params,
            seed=1,
        )
        bits = float(eval_bits(params, val, model=student))
        print(
            f"student {method.upper():>3} ({args.student_steps} steps): {bits:.3f} bits/byte  [{time.time() - start:.0f} s]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
