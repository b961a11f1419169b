"""Run output: TensorBoard events + a JSON-lines file, and progress on the terminal or in logs.

Only process 0 writes; every other process gets no-op writers, so call sites need no checks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.train import seeds as seeds_lib
from sld_jax.train import tb_events

log = logging.getLogger("sld_jax")


def _scalar(v: Any) -> float:
    return float(v.item() if hasattr(v, "item") else v)


class MetricWriter:
    """Writes scalars to TensorBoard event files (:mod:`~sld_jax.train.tb_events`) and to ``metrics.jsonl``."""

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._tb = tb_events.EventWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, scalars: dict[str, Any], *, tag_prefix: str = "", **extra: Any) -> None:
        """Writes ``scalars`` at ``step``; ``extra`` fields (e.g. epoch, seed) go to the JSON line
        only and ``tag_prefix`` (e.g. ``"seed_3/"``) to the TensorBoard tags only."""
        if not self.enabled:
            return
        values = {k: _scalar(v) for k, v in scalars.items()}
        self._tb.add_scalars(int(step), {tag_prefix + k: v for k, v in values.items()})
        self._jsonl.write(json.dumps({"step": int(step), **extra, **values}) + "\n")
        self._jsonl.flush()
        self._tb.flush()

    def write_tensorboard(self, step: int, scalars: dict[str, Any]) -> None:
        """Writes ``scalars`` at ``step`` to TensorBoard only (e.g. summaries over seeds)."""
        if not self.enabled:
            return
        self._tb.add_scalars(int(step), {k: _scalar(v) for k, v in scalars.items()})
        self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class Progress:
    """Per-epoch progress: a tqdm bar on a terminal, a plain log line every N steps otherwise."""

    def __init__(
        self,
        *,
        total_epochs: int,
        steps_per_epoch: int,
        log_every: int = 50,
        enabled: bool | None = None,
        stream=None,
    ):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.log_every = max(1, log_every)
        self.stream = stream or sys.stderr
        self._bar = None
        self._use_bar = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def start_epoch(self, epoch: int, first_step_in_epoch: int = 0) -> None:
        self.epoch = epoch
        self._t0 = time.perf_counter()
        self._images = 0
        self._done = first_step_in_epoch
        if self._use_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.steps_per_epoch,
                initial=first_step_in_epoch,
                desc=f"epoch {epoch}/{self.total_epochs}",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )

    def update(self, images: int, loss: float | None = None, *, steps: int = 1) -> None:
        """Records ``steps`` finished steps of ``images`` examples in all (``loss`` may be None to
        avoid a sync); a dispatch of several steps updates once."""
        if not self.enabled:
            return
        previous = self._done
        self._done += steps
        self._images += images
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = self._images / elapsed
        remaining = (self.steps_per_epoch - self._done) * elapsed / max(self._done, 1)
        if self._bar is not None:
            post = {"img/s": f"{rate:.0f}"}
            if loss is not None:
                post["loss"] = f"{loss:.4f}"
            self._bar.set_postfix(post)
            self._bar.update(steps)
        elif self._done // self.log_every > previous // self.log_every or self._done == self.steps_per_epoch:
            loss_txt = f" loss {loss:.4f}" if loss is not None else ""
            log.info(
                "epoch %d/%d step %d/%d%s %.0f img/s ETA(epoch) %s",
                self.epoch,
                self.total_epochs,
                self._done,
                self.steps_per_epoch,
                loss_txt,
                rate,
                format_seconds(remaining),
            )

    def end_epoch(self) -> float:
        """Closes the bar; returns the epoch's wall time in seconds."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        return time.perf_counter() - self._t0


def format_seconds(seconds: float) -> str:
    """``3725.0 -> '1:02:05'``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def sum_trees(a, b):
    """``a + b`` leaf by leaf (``b`` when ``a`` is None: the first of a running sum)."""
    return b if a is None else jax.tree.map(jnp.add, a, b)


def to_host_lists(tree) -> dict[str, list[float]]:
    """``{name: [K] array}`` -> ``{name: [K floats]}`` (JSON-ready, one value per seed)."""
    return {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in jax.device_get(tree).items()}


def epoch_record(epoch: int, train: dict[str, float], lr: float, ev: dict[str, float]) -> dict[str, float]:
    """One seed's epoch record from its train sums and its evaluation."""
    train = dict(train)
    count = max(train.pop("count"), 1.0)
    record = {
        "epoch": epoch,
        "lr": float(lr),
        "train_loss": train.pop("loss") / count,
        "train_top1": train.pop("correct") / count,
    }
    record.update(
        {
            f"train_{k}" if not k.endswith("fraction") and k != "teacher_student_agreement" else k: v / count
            for k, v in train.items()
        }
    )
    record.update(test_top1=ev["top1"], test_top5=ev["top5"], test_loss=ev["ce"], test_count=ev["count"])
    return record


def write_epoch(writer, step: int, records: list[dict], run_seeds: list[int]) -> None:
    """One ``metrics.jsonl`` line per seed; TensorBoard tags per seed (``seed_<s>/``) and their mean
    and std (``seeds/``) when there are several seeds."""
    several = len(records) > 1
    for seed, record in zip(run_seeds, records):
        scalars = {k: v for k, v in record.items() if k != "epoch"}
        writer.write(
            step, scalars, epoch=record["epoch"], seed=seed, tag_prefix=f"seed_{seed}/" if several else ""
        )
    if several:
        summary = {}
        for key in ("test_top1", "test_top5", "train_loss", "train_top1"):
            stats = seeds_lib.summarize([r[key] for r in records])
            summary[f"seeds/{key}_mean"], summary[f"seeds/{key}_std"] = stats["mean"], stats["std"]
        writer.write_tensorboard(step, summary)


def log_epoch(epoch: int, num_epochs: int, records: list[dict], bests: list[dict]) -> None:
    """The epoch's log line: one seed's record, or the mean ± std of several."""
    if len(records) == 1:
        record, best = records[0], bests[0]
        log.info(
            "epoch %d/%d: train loss %.4f top-1 %.2f%% | test top-1 %.2f%% top-5 %.2f%% (best %.2f%%)",
            epoch,
            num_epochs,
            record["train_loss"],
            100 * record["train_top1"],
            100 * record["test_top1"],
            100 * record["test_top5"],
            100 * best["test_top1"],
        )
        return
    top1 = [r["test_top1"] for r in records]
    log.info(
        "epoch %d/%d, %d seeds: train loss %.4f | test top-1 %s%% (min %.2f, max %.2f) | best %s%%",
        epoch,
        num_epochs,
        len(records),
        float(np.mean([r["train_loss"] for r in records])),
        seeds_lib.format_mean_std(top1),
        100 * min(top1),
        100 * max(top1),
        seeds_lib.format_mean_std([b["test_top1"] for b in bests]),
    )
