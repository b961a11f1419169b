"""Evaluation: a run's seeds on the full test split (after each epoch), and ``sld-eval``'s
evaluation of a saved run."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import models
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import metrics as metrics_lib
from sld_jax.train import saved_runs, setup, validation
from sld_jax.train import seeds as seeds_lib
from sld_jax.train.mesh import mesh_for


def evaluate_variables(eval_step, variables, data) -> dict[str, list[float]]:
    """Top-1, top-5, mean CE and count of each seed over the full (padded, masked) test split.

    Args:
      eval_step: the compiled eval step of K seeds (:func:`sld_jax.train.dispatch.compile_seeds_eval_step`).
      variables: the seeds' replicated ``{"params", "batch_stats"}`` (a leading axis K).
      data: the run's datasets (:class:`~sld_jax.train.data_io.RunData`).

    Returns:
      ``{"top1", "top5", "ce", "count"}``, each a list of K values: fractions, the mean loss, and
      the number of examples.
    """
    sums = None
    for batch in data.eval_batches():
        sums = metrics_lib.sum_trees(sums, eval_step(variables, batch))
    sums = metrics_lib.to_host_lists(sums)
    n = [max(c, 1.0) for c in sums["count"]]
    return {
        "top1": [t / c for t, c in zip(sums["top1"], n)],
        "top5": [t / c for t, c in zip(sums["top5"], n)],
        "ce": [t / c for t, c in zip(sums["ce"], n)],
        "count": sums["count"],
    }


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, which: str = "best") -> dict:
    """Evaluates a saved run (``sld-eval``): top-1/top-5 of its best or last checkpoint.

    Returns:
      ``top1``, ``top5``, ``loss`` (means over the run's seeds), ``count``, ``which``, ``epoch``;
      with several seeds also ``seeds`` (one ``{"seed", "top1", "top5", "loss"}`` each) and
      ``top1_summary`` (:func:`sld_jax.train.seeds.summarize`: mean, std, min, max).
    """
    validation.validate(config)
    mesh = mesh_for(config)
    variables, meta = saved_runs.load_run_variables(workdir, which=which, fallback=False, seed_index=None)
    built = setup.build(config, mesh, train=False)
    first = jax.tree.map(lambda x: x[0], variables)
    mismatch = models.variables_mismatch(first, built.student, image_size=built.data.spec.image_size)
    if mismatch:
        raise ckpt_lib.CheckpointError(
            f"the checkpoint in {workdir} does not fit its config.json (model {config.model!r}, "
            f"{built.data.spec.num_classes} classes: {mismatch}); was config.json overwritten by "
            "another run?"
        )
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    ev = evaluate_variables(built.eval_step, variables, built.data)
    results = seeds_lib.per_seed(meta)
    result = {
        "top1": float(np.mean(ev["top1"])),
        "top5": float(np.mean(ev["top5"])),
        "loss": float(np.mean(ev["ce"])),
        "count": int(ev["count"][0]),
        "which": which,
        "epoch": (results[0]["last"] or {}).get("epoch"),
    }
    if len(ev["top1"]) > 1:
        result["seeds"] = [
            {"seed": r["seed"], "top1": t1, "top5": t5, "loss": ce}
            for r, t1, t5, ce in zip(results, ev["top1"], ev["top5"], ev["ce"])
        ]
        result["top1_summary"] = {k: v for k, v in seeds_lib.summarize(ev["top1"]).items() if k != "values"}
    return result
