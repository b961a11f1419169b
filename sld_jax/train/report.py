"""End-of-run artefacts: a PNG plot of accuracy per epoch and a markdown summary."""

from __future__ import annotations

import os
from typing import Sequence


def plot_history(history: Sequence[dict], path: str, title: str = "") -> str:
    """Plots train and test top-1 accuracy per epoch to ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [100 * h["train_top1"] for h in history], label="train top-1 (weak view)")
    ax.plot(epochs, [100 * h["test_top1"] for h in history], label="test top-1")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_summary(
    path: str,
    *,
    name: str,
    config_text: str,
    history: Sequence[dict],
    best: dict | None,
    wall_seconds: float,
    machine: str,
) -> str:
    """Writes a markdown summary of a run (best and last accuracy, per-epoch table)."""
    last = history[-1] if history else None
    lines = [f"# {name}", ""]
    if last is not None:
        lines += [
            f"- last epoch {last['epoch']}: test top-1 {100 * last['test_top1']:.2f}%, "
            f"top-5 {100 * last['test_top5']:.2f}%",
        ]
    if best is not None:
        lines += [
            f"- best test top-1 {100 * best['test_top1']:.2f}% at epoch {best['epoch']} "
            "(the maximum over epochs on the test split, as the reference reports)"
        ]
    lines += [
        f"- wall time {wall_seconds / 60:.1f} min on {machine}",
        "",
        "| epoch | lr | train loss | train top-1 | test top-1 | test top-5 | teacher swap | student swap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in history:
        lines.append(
            f"| {h['epoch']} | {h['lr']:.4g} | {h['train_loss']:.4f} | {100 * h['train_top1']:.2f} | "
            f"{100 * h['test_top1']:.2f} | {100 * h['test_top5']:.2f} | "
            f"{h.get('teacher_swap_fraction', float('nan')):.3f} | {h.get('student_swap_fraction', float('nan')):.3f} |"
        )
    lines += ["", "## Config", "", "```", config_text.strip(), "```", ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
