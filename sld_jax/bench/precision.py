"""float32 gradient error of sld_jax and of the PyTorch twin, against a float64 reference.

``python -m sld_jax.bench precision --model MobileNetV2 --batch 64 --seeds 0,1,2``

For each seed the twin (:mod:`sld_jax.models.torch_twins`) gets seeded random weights and running
statistics (float32 values), and one batch of 32x32 normal images with random labels is drawn. The
gradient of the mean cross-entropy with respect to every parameter, in train mode, is computed by
the twin in float64 (the reference: sld_jax's float64 gradients equal it to 1e-12, see
``tests/models/test_models_grad_float64.py``), by the twin in float32 and by sld_jax in float32 with
each kernel-gradient path (``fast_kernel_grad`` True and False). The table gives each float32
gradient's relative L2 distance from the reference, over all parameters together and for the named
``--tensor``. Needs torch; runs on the CPU.
"""

from __future__ import annotations

import argparse

import numpy as np

from sld_jax.bench.common import machine_description

_SIDE = 32


def _flat(tree) -> dict:
    import jax

    return {
        jax.tree_util.keystr(k): np.asarray(v, np.float64)
        for k, v in jax.tree_util.tree_leaves_with_path(tree)
    }


def gradients(name: str, batch: int, seed: int, num_classes: int) -> dict[str, dict[str, np.ndarray]]:
    """``{label: {flax parameter path: gradient (float64 numpy)}}`` of one seeded batch; label ``"reference"``
    is the twin in float64, the others are float32 computations."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    from sld_jax.models import get_model, torch_import, torch_twins

    rng = np.random.default_rng(seed)
    calib = rng.normal(size=(8, 3, _SIDE, _SIDE)).astype(np.float32)
    twin = torch_twins.randomize_(torch_twins.build_twin(name, num_classes), rng, calib)
    start = {k: v.clone() for k, v in twin.state_dict().items()}
    x = rng.normal(size=(batch, 3, _SIDE, _SIDE)).astype(np.float32)
    y = rng.integers(0, num_classes, size=batch)

    def torch_grads(dtype):
        twin.load_state_dict(start)
        model = twin.to(dtype).train()
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x).to(dtype)), torch.from_numpy(y))
        loss.backward()
        grads = {**model.state_dict(), **{k: p.grad for k, p in model.named_parameters()}}
        return torch_import.convert_state_dict(grads, name, num_classes=num_classes, dtype=np.float64)[
            "params"
        ]

    with jax.enable_x64(True):
        out = {"reference": _flat(torch_grads(torch.float64))}
    out["torch float32"] = _flat(torch_grads(torch.float32))
    variables = torch_import.convert_state_dict(start, name, num_classes=num_classes)
    images, labels = jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y)
    for fast in (True, False):
        model = get_model(name, num_classes=num_classes).clone(fast_kernel_grad=fast)

        def loss_fn(params, model=model):
            (logits, _), _ = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                images,
                train=True,
                mutable=["batch_stats"],
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        label = f"sld_jax float32 ({'dot' if fast else 'XLA'} kernel gradients)"
        out[label] = _flat(jax.jit(jax.grad(loss_fn))(variables["params"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sld_jax.bench precision", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", default="MobileNetV2", help="a CIFAR student with a twin, e.g. MobileNetV2"
    )
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (weights and batch)")
    parser.add_argument("--num-classes", type=int, default=100, help="classifier outputs")
    parser.add_argument(
        "--tensor", default="['blocks_1_0']['conv_3']['kernel']", help="a parameter to report"
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]

    import torch

    torch.set_num_threads(1)
    print(
        f"{args.model}, batch {args.batch} at {_SIDE}x{_SIDE}, train mode, mean cross-entropy; "
        f"relative L2 distance from the float64 twin; {machine_description()}"
    )
    print(f"{'seed':>4}  {'gradient':<42} {'all parameters':>14}  {args.tensor}")
    for seed in seeds:
        grads = gradients(args.model, args.batch, seed, args.num_classes)
        ref = grads.pop("reference")
        den = np.sqrt(sum(np.sum(v**2) for v in ref.values()))
        for label, g in grads.items():
            total = np.sqrt(sum(np.sum((g[k] - ref[k]) ** 2) for k in ref)) / den
            one = ""
            if args.tensor in ref:
                one = f"{np.linalg.norm(g[args.tensor] - ref[args.tensor]) / np.linalg.norm(ref[args.tensor]):.2e}"
            print(f"{seed:>4}  {label:<42} {total:>14.2e}  {one}")
    return 0
