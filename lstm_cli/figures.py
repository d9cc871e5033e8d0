"""Figures logged with runs (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: Sequence[dict[str, float]]) -> Figure:
    """Accuracy and val accuracy per epoch (as the article's plot), and the two losses."""
    epochs = np.arange(1, len(history) + 1)
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    acc_ax.plot(epochs, [h["train_accuracy"] for h in history], label="acc")
    acc_ax.plot(epochs, [h["val_accuracy"] for h in history], label="val_acc")
    acc_ax.set(ylim=(0.0, 1.0), xlabel="epoch", ylabel="accuracy", title="Accuracy")
    acc_ax.legend()
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="loss")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="val_loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(
    matrix: np.ndarray, title: str = "Confusion matrix (held-out split)"
) -> Figure:
    """A counts heatmap, true classes down, predicted classes across."""
    n = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    threshold = matrix.max() / 2
    for true in range(n):
        for pred in range(n):
            colour = "white" if matrix[true, pred] > threshold else "black"
            ax.text(pred, true, int(matrix[true, pred]), ha="center", va="center", color=colour)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
