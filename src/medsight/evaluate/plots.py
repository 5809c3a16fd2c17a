"""Report figures (ROC, PR, confusion matrix, reliability, curves, image grids) as PNG bytes.

Each function returns PNG bytes so the HTML report can embed them and the run folder can keep
them as files; matplotlib runs on the Agg backend, never a screen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import auc, precision_recall_curve, roc_curve  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _one_vs_rest(y_true: np.ndarray, proba: np.ndarray, task: str, positive_class: int | None,
                 class_names: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, binary truth, score) per curve: the positive class for binary, every class else."""
    if task == "binary":
        pos = int(positive_class if positive_class is not None else 1)
        return [(class_names[pos], (y_true == pos).astype(int), proba[:, pos])]
    if task == "multilabel":
        return [(n, y_true[:, j], proba[:, j]) for j, n in enumerate(class_names)]
    return [(n, (y_true == j).astype(int), proba[:, j]) for j, n in enumerate(class_names)]


def roc_plot(y_true, proba, task, positive_class, class_names) -> bytes:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, yt, score in _one_vs_rest(np.asarray(y_true), np.asarray(proba), task,
                                        positive_class, class_names):
        if yt.min() == yt.max():
            continue
        fpr, tpr, _ = roc_curve(yt, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def pr_plot(y_true, proba, task, positive_class, class_names) -> bytes:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, yt, score in _one_vs_rest(np.asarray(y_true), np.asarray(proba), task,
                                        positive_class, class_names):
        if yt.min() == yt.max():
            continue
        prec, rec, _ = precision_recall_curve(yt, score)
        ax.plot(rec, prec, label=f"{name} (prevalence {yt.mean():.2f})")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def confusion_plot(matrix, class_names) -> bytes:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(class_names), 1.0 + 0.7 * len(class_names)))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(int(v)), ha="center", va="center",
                color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _png(fig)


def reliability_plot(y_true, proba, task, positive_class, n_bins: int = 10) -> bytes:
    """Observed frequency against mean predicted probability (positive class or top label)."""
    from medsight.evaluate.calibration import reliability_curve, top_label

    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if task == "binary":
        pos = int(positive_class if positive_class is not None else 1)
        conf, hit = proba[:, pos], (y_true == pos).astype(int)
        xlabel = "predicted P(positive)"
    else:
        hit, conf = top_label(y_true, proba)
        xlabel = "confidence (top class)"
    curve = reliability_curve(hit, conf, n_bins=n_bins)
    used = curve.counts > 0
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfect")
    xs, ys, ns = curve.mean_predicted[used], curve.observed[used], curve.counts[used]
    ax.plot(xs, ys, marker="o", label="model")
    for x, y, n in zip(xs, ys, ns, strict=True):
        ax.annotate(str(int(n)), (x, y), fontsize=7, xytext=(3, -8), textcoords="offset points")
    ax.set(xlabel=xlabel, ylabel="observed frequency", title="Reliability", xlim=(0, 1),
           ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def curves_plot(history: Sequence[dict]) -> bytes:
    """Training loss and validation metric per epoch."""
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(epochs, [h.get("loss") for h in history], label="train loss", c="tab:blue")
    ax.set(xlabel="epoch", ylabel="loss", title="Training curves")
    vals = [h.get("val_metric") for h in history]
    if any(v is not None for v in vals):
        ax2 = ax.twinx()
        ax2.plot(epochs, vals, label="validation metric", c="tab:orange")
        ax2.set_ylabel("validation metric")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], ncols: int = 6) -> bytes:
    """A grid of (C,H,W) or (C,D,H,W) images (middle slice), min-max scaled, with titles."""
    n = max(len(images), 1)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(to_display(img), cmap="gray")
        ax.set_title(title, fontsize=7)
    return _png(fig)


def to_display(img: np.ndarray) -> np.ndarray:
    """(H,W) grey or (H,W,3) RGB in [0,1] from a channels-first image or volume."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 4:
        a = a[:, a.shape[1] // 2]
    if a.ndim == 3:
        a = a[0] if a.shape[0] != 3 else np.moveaxis(a, 0, -1)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
