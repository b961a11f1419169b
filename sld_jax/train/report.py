"""End-of-run artefacts: a PNG plot of accuracy per epoch and a markdown summary, per seed.

Both are written atomically (a kill leaves the old file or the new one); a failed write (a full
disk) is a :class:`ReportWriteError`, a user error, and the run's checkpoints are already saved.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from sld_jax import atomic
from sld_jax.errors import UserError
from sld_jax.train import seeds as seeds_lib


class ReportWriteError(UserError):
    """A run's plot or summary could not be written (disk full, permissions)."""


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """:func:`sld_jax.atomic.atomic_path` for a run's outputs: a failed write is a user error.

    Raises:
      ReportWriteError: the write failed (the temporary file is removed, ``path`` is untouched).
    """
    try:
        with atomic.atomic_path(path) as tmp:
            yield tmp
    except OSError as e:
        raise ReportWriteError(
            f"could not write {path} ({e.strerror or e}); the run's checkpoints are saved: free disk "
            "space (or fix the permissions) and rerun the same command, which writes it without "
            "training again."
        ) from e


def write_output(path: str, text: str) -> str:
    """Writes a run's or a suite's text output (summary, JSON) with :func:`atomic_output`;
    returns ``path``."""
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return path


def plot_histories(results: Sequence[dict], path: str, title: str = "") -> str:
    """Plots train and test top-1 per epoch of every seed to ``path`` (PNG); returns the path.

    Args:
      results: one ``{"seed", "history", ...}`` per seed (:func:`sld_jax.train.seeds.per_seed`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    several = len(results) > 1
    for i, r in enumerate(results):
        epochs = [h["epoch"] for h in r["history"]]
        suffix = f" (seed {r['seed']})" if several else ""
        color = f"C{i % 10}"
        ax.plot(
            epochs, [100 * h["test_top1"] for h in r["history"]], color=color, label=f"test top-1{suffix}"
        )
        ax.plot(
            epochs,
            [100 * h["train_top1"] for h in r["history"]],
            color=color,
            linestyle="--",
            label=f"train top-1 (weak view){suffix}",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
    """Lays out a matplotlib figure, writes it to ``path`` as a PNG (atomically, see
    :func:`atomic_output`) and closes it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def write_summary(
    path: str,
    *,
    name: str,
    config_text: str,
    results: Sequence[dict],
    wall_seconds: float,
    machine: str,
) -> str:
    """Writes a markdown summary of a run: best and last test top-1 (mean ± std over seeds), and
    each seed's per-epoch table."""
    lines = [f"# {name}", ""]
    done = [r for r in results if r["last"] is not None]
    if len(done) > 1:
        lines += [
            f"- {len(done)} seeds ({', '.join(str(r['seed']) for r in done)}); mean ± sample std (min–max):",
            _stat_line("best test top-1", [r["best"]["test_top1"] for r in done]),
            _stat_line("last test top-1", [r["last"]["test_top1"] for r in done]),
        ]
    lines += [f"- wall time {wall_seconds / 60:.1f} min on {machine}", ""]
    for r in results:
        history, best, last = r["history"], r["best"], r["last"]
        if len(results) > 1:
            lines += [f"## Seed {r['seed']}", ""]
        if last is not None:
            lines.append(
                f"- last epoch {last['epoch']}: test top-1 {100 * last['test_top1']:.2f}%, "
                f"top-5 {100 * last['test_top5']:.2f}%"
            )
        if best is not None:
            lines.append(
                f"- best test top-1 {100 * best['test_top1']:.2f}% at epoch {best['epoch']} "
                "(the maximum over epochs on the test split, as the reference reports)"
            )
        lines += [
            "",
            "| epoch | lr | train loss | train top-1 | test top-1 | test top-5 | teacher swap | student swap |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for h in history:
            lines.append(
                f"| {h['epoch']} | {h['lr']:.4g} | {h['train_loss']:.4f} | {100 * h['train_top1']:.2f} | "
                f"{100 * h['test_top1']:.2f} | {100 * h['test_top5']:.2f} | "
                f"{h.get('teacher_swap_fraction', float('nan')):.3f} | "
                f"{h.get('student_swap_fraction', float('nan')):.3f} |"
            )
        lines.append("")
    lines += ["## Config", "", "```", config_text.strip(), "```", ""]
    return write_output(path, "\n".join(lines))


def _stat_line(what: str, values: Sequence[float]) -> str:
    return (
        f"  - {what}: {seeds_lib.format_mean_std(values)}% ({100 * min(values):.2f}–{100 * max(values):.2f})"
    )
