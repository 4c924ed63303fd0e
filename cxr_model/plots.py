"""Figures people would rather look at than read: curves, confusion matrix, ROC, PR, counts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(history: pd.DataFrame, path: Path, best_epochs: list[int] | tuple[int, ...] = ()) -> Path:
    """Loss, accuracy and AUC per epoch, training against validation (ensemble members one
    after another, each with its kept epoch marked)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    members = history.groupby("member") if "member" in history else [(None, history)]
    for ax, metric in zip(axes, ("loss", "accuracy", "auc")):
        for i, (_, part) in enumerate(members):
            first = i == 0
            ax.plot(part["epoch"], part[metric], marker="o", color="tab:blue", label="train" if first else None)
            ax.plot(part["epoch"], part[f"val_{metric}"], marker="o", color="tab:orange",
                    label="validation" if first else None)
        for i, epoch in enumerate(best_epochs):
            ax.axvline(epoch, color="grey", linestyle=":", label="kept epoch" if i == 0 else None)
        ax.set_title(metric)
        ax.set_xlabel("epoch (members one after another)" if "member" in history else "epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(fig, path)


def confusion_matrix(counts: dict[str, int], path: Path, title: str) -> Path:
    """2x2 matrix with counts and row percentages, NORMAL first."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(matrix, cmap="Blues")
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    for i in range(2):
        for j in range(2):
            color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, f"{matrix[i, j]}\n{matrix[i, j] / rows[i, 0]:.1%}", ha="center", va="center", color=color)
    ax.set_xticks([0, 1], ["NORMAL", "PNEUMONIA"])
    ax.set_yticks([0, 1], ["NORMAL", "PNEUMONIA"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def roc(y: np.ndarray, p: np.ndarray, threshold: float, path: Path, auc: float, cohort: str = "test") -> Path:
    """ROC curve with the operating point of the chosen threshold marked."""
    return roc_curves(y, [(cohort, p, threshold, auc)], path)


def roc_curves(y: np.ndarray, curves: list[tuple[str, np.ndarray, float, float]], path: Path,
               title: str | None = None) -> Path:
    """Several models' ROC curves on the same films (label, scores, threshold, AUC each), each
    with its operating point: where one model's gain sits (which false-positive rates) is seen,
    not read."""
    fig, ax = plt.subplots(figsize=(5.2, 4.8) if len(curves) > 1 else (4.6, 4.2))
    for i, (label, p, threshold, auc) in enumerate(curves):
        fpr, tpr, _ = roc_curve(y, p)
        pred = p >= threshold
        ax.plot(fpr, tpr, color=f"C{i}", label=f"{label} AUC {auc:.3f}")
        ax.scatter([np.mean(pred[y == 0])], [np.mean(pred[y == 1])], zorder=3, edgecolors="black",
                   color="red" if len(curves) == 1 else f"C{i}", label=f"threshold {threshold:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right", fontsize=8 if len(curves) > 1 else None)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def precision_recall(y: np.ndarray, p: np.ndarray, path: Path, average_precision: float) -> Path:
    """Precision-recall curve, pneumonia as the positive class."""
    precision, recall, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot(recall, precision, label=f"AP {average_precision:.3f}")
    ax.axhline(np.mean(y), color="grey", linestyle="--", linewidth=0.8, label="prevalence")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def reliability(calibration: dict[str, dict], path: Path) -> Path:
    """Observed share of pneumonia against the mean score per bin, one line per split, with how
    many films each bin holds: where a score of 0.8 does not mean 80 %."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True, height_ratios=(3, 1.2))
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="calibrated")
    width = 1.0 / max(len(cal["bins"]) for cal in calibration.values()) if calibration else 0.1
    for i, (split, cal) in enumerate(calibration.items()):
        rows = cal["bins"]
        if not rows:
            continue
        top.plot([r["mean_predicted"] for r in rows], [r["observed"] for r in rows], marker="o",
                 label=f"{split} (Brier {cal['brier']:.3f}, ECE {cal['ece']:.3f})")
        offset = (i - (len(calibration) - 1) / 2) * width / (len(calibration) + 1)
        bottom.bar([(r["low"] + r["high"]) / 2 + offset for r in rows], [r["count"] for r in rows],
                   width=width / (len(calibration) + 1), label=split)
    top.set_ylabel("observed share of PNEUMONIA")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_xlabel("model score (not a calibrated probability)")
    bottom.set_ylabel("films")
    bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def class_distribution(counts: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: images per class in each split, with the pneumonia:normal ratio."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    splits = list(counts.index)
    x = np.arange(len(splits))
    for k, label in enumerate(counts.columns):
        bars = ax.bar(x + (k - 0.5) * 0.38, counts[label], width=0.38, label=label)
        ax.bar_label(bars, fontsize=8)
    for i, split in enumerate(splits):
        normal = counts.loc[split].iloc[0]
        ratio = counts.loc[split].iloc[1] / normal if normal else float("nan")
        ax.text(i, counts.values.max() * 1.08, f"{ratio:.2f}:1", ha="center", fontsize=8)
    ax.set_xticks(x, splits)
    ax.set_ylabel("images")
    ax.set_ylim(0, counts.values.max() * 1.18 + 1)
    ax.set_title("images per class (pneumonia:normal)", fontsize=10)
    ax.legend()
    return _save(fig, path)


def _split_label_groups(frame: pd.DataFrame):
    for split in ("train", "val", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            part = frame[(frame["split"] == split) & (frame["label"] == label)]
            if len(part):
                yield split, label, part


def size_histograms(manifest: pd.DataFrame, path: Path) -> Path:
    """Width, height and aspect ratio of the original files, per split and class."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ok = manifest[manifest["width"] > 0]
    aspect = ok["width"] / ok["height"]
    for split, label, part in _split_label_groups(ok):
        kw = {"histtype": "step", "bins": 30, "label": f"{split}/{label}"}
        axes[0].hist(part["width"], **kw)
        axes[1].hist(part["height"], **kw)
        axes[2].hist(aspect[part.index], **kw)
    for ax, title in zip(axes, ("width (px)", "height (px)", "aspect ratio (w/h)")):
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def film_statistics(stats: pd.DataFrame, path: Path) -> Path:
    """Each film's brightness, contrast and fine detail (film_stats), per split and class: a
    split whose films sit apart from training's is read with that in mind."""
    from cxr_model.film_stats import STATISTICS

    fig, axes = plt.subplots(1, len(STATISTICS), figsize=(5 * len(STATISTICS), 3.6))
    for split, label, part in _split_label_groups(stats):
        for ax, name in zip(axes, STATISTICS):
            ax.hist(part[name], histtype="step", bins=40, density=True, label=f"{split}/{label}")
    for ax, name in zip(axes, STATISTICS):
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def film_shift(shift: pd.DataFrame, ref: dict, stats: pd.DataFrame, y: np.ndarray | None, path: Path,
               cohort: str = "cohort") -> Path:
    """The cohort's cumulative share of films against the training films', per statistic and class
    (a whole unlabelled batch against the training classes mixed as it was called): the
    Kolmogorov-Smirnov distance is the largest vertical gap between a pair of lines."""
    from cxr_model.film_stats import STATISTICS, reference_curve

    fig, axes = plt.subplots(1, len(STATISTICS), figsize=(5 * len(STATISTICS), 3.8))
    colours = {"NORMAL": "tab:blue", "PNEUMONIA": "tab:red", "all": "black"}
    groups = [g for g in ("NORMAL", "PNEUMONIA") if g in set(shift["group"])] or ["all"]
    for ax, name in zip(axes, STATISTICS):
        spans = []
        for group in groups:
            rows = shift[(shift["statistic"] == name) & (shift["group"] == group)]
            share = rows["training_pneumonia_share"].iloc[0] if len(rows) else None
            curve = None if share is None else reference_curve(ref, name, group, share)
            if curve is None:
                continue
            mask = np.ones(len(stats), dtype=bool) if group == "all" else y == ("NORMAL", "PNEUMONIA").index(group)
            values = np.sort(stats[name].to_numpy(float)[mask])
            values = values[np.isfinite(values)]
            mixed = f" ({share:.0%} PNEUMONIA)" if group == "all" and np.isfinite(share) else ""
            ax.plot(*curve, color=colours[group], label=f"training {group}{mixed}")
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", linestyle="--",
                    color=colours[group], label=f"{cohort} {group} (KS {rows['ks'].iloc[0]:.2f})")
            x, cdf = curve
            spans.append((min(np.interp(0.01, cdf, x), values[0]), max(np.interp(0.99, cdf, x), values[-1])))
        if spans:  # the tails of a few odd films would squeeze the curves
            ax.set_xlim(min(a for a, _ in spans), max(b for _, b in spans))
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("share of films at or below")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{cohort} against the model's training films", fontsize=11)
    return _save(fig, path)


def sample_grid(manifest: pd.DataFrame, pixels: np.ndarray, path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """A row of random training images per class, as the model sees them."""
    labels = ("NORMAL", "PNEUMONIA")
    fig, axes = plt.subplots(len(labels), per_class, figsize=(per_class * 1.4, len(labels) * 1.6))
    rng = np.random.default_rng(seed)
    for r, label in enumerate(labels):
        rows = np.flatnonzero(((manifest["split"] == "train") & (manifest["label"] == label)).to_numpy())
        chosen = rng.choice(rows, size=min(per_class, len(rows)), replace=False) if len(rows) else []
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(chosen):
                ax.imshow(pixels[chosen[c]].squeeze(), cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_title(label, fontsize=9, loc="left")
    return _save(fig, path)


def closest_pairs(pairs: pd.DataFrame, films: dict[str, np.ndarray], limit: float, path: Path) -> Path:
    """The most alike films of different splits side by side, so a person can judge whether the
    near-copy rule's line sits right (a copy looks identical; distinct films merely similar)."""
    n = max(1, len(pairs))
    fig, axes = plt.subplots(n, 2, figsize=(4.4, 2.3 * n), squeeze=False)
    for r, row in enumerate(pairs.itertuples()):
        flagged = " — NEAR COPY" if row.correlation >= limit else ""
        for c, (rel, split) in enumerate(((row.path, row.split), (row.other_path, row.other_split))):
            axes[r, c].imshow(films[rel].squeeze(), cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_title(f"{split}: {Path(rel).name}", fontsize=7)
        axes[r, 0].text(0, -0.1, f"correlation {row.correlation:.3f} (a near copy from {limit}){flagged}",
                        fontsize=7, transform=axes[r, 0].transAxes, color="red" if flagged else "black")
    for ax in axes.ravel():
        ax.axis("off")
    return _save(fig, path)


def hardest_indices(y: np.ndarray, p: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the highest-scored NORMAL and the lowest-scored PNEUMONIA images, worst first."""
    normal, pneumonia = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    return (normal[np.argsort(-p[normal], kind="stable")][:per_class],
            pneumonia[np.argsort(p[pneumonia], kind="stable")][:per_class])


def hardest_cases(x: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float, path: Path,
                  per_class: int = 8) -> Path:
    """The validation images the model is most wrong about, per class: where shortcuts
    (framing, markers, exposure) show up before they cost specificity on another cohort."""
    fig, axes = plt.subplots(2, per_class, figsize=(per_class * 1.5, 2 * 1.9), squeeze=False)
    for label, chosen in enumerate(hardest_indices(y, p, per_class)):
        for c in range(per_class):
            ax = axes[label, c]
            ax.axis("off")
            if c < len(chosen):
                i = chosen[c]
                wrong = (p[i] >= threshold) != bool(label)
                ax.imshow(x[i].squeeze(), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"p={p[i]:.3f}", fontsize=8, color="tab:red" if wrong else "black")
    fig.suptitle(f"validation, top row: NORMAL scored most like pneumonia; bottom row: PNEUMONIA "
                 f"scored most like normal (red: wrong at threshold {threshold:.3f})", fontsize=9)
    return _save(fig, path)


def probe_scores(probes: dict[str, dict[str, float]], labels: dict[str, str], path: Path) -> Path:
    """Mean pneumonia probability of the validation NORMAL films under each shortcut probe,
    against the unchanged films: a bar far right of the line is a shortcut."""
    names = [n for n in probes if n != "as_is"]
    base = probes["as_is"]["normal_mean_p"]
    values = [probes[n]["normal_mean_p"] for n in names]
    fig, ax = plt.subplots(figsize=(7.2, 0.42 * len(names) + 1.4))
    colours = ["tab:red" if v > 2 * base else "tab:blue" for v in values]
    ax.barh([labels.get(n, n) for n in names], values, color=colours)
    ax.axvline(base, color="black", linestyle="--", label=f"unchanged films ({base:.3f})")
    for i, (v, n) in enumerate(zip(values, names)):
        ax.text(v, i, f" {v:.3f} (x{probes[n]['normal_ratio']:.1f}), AUC {probes[n]['auc']:.3f}",
                va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values + [base]) * 1.9 + 1e-3)
    ax.set_xlabel("mean P(pneumonia) of validation NORMAL films")
    ax.set_title("shortcut probes on validation: the same films, one thing changed\n"
                 "(red: NORMAL score more than doubled)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def sweep_trials(results: pd.DataFrame, path: Path) -> Path:
    """Best validation AUC of each sweep trial; the chosen trial highlighted."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(results) + 2), 4.6))
    colours = ["tab:green" if best else "tab:blue" for best in results["best"]]
    ax.bar(results["trial"].astype(str), results["best_val_auc"].fillna(0), color=colours)
    low = results["best_val_auc"].min(skipna=True)
    bottom = max(0.0, (low if pd.notna(low) else 0.0) - 0.05)
    ax.set_ylim(bottom, 1.0)
    for x, auc in enumerate(results["best_val_auc"]):
        ax.text(x, bottom if pd.isna(auc) else auc, "failed" if pd.isna(auc) else f"{auc:.4f}",
                ha="center", va="bottom", fontsize=8)
    names = [f"trial {t}\n" + lbl.replace(" ", "\n") for t, lbl in zip(results["trial"], results["label"])]
    ax.set_xticks(range(len(results)), names, fontsize=7)
    ax.set_ylabel("best validation AUC")
    ax.set_title("sweep trials (green: chosen on validation AUC)")
    return _save(fig, path)


def subgroups(by_subgroup: dict[str, dict[str, dict]], path: Path, cohort: str = "cohort") -> Path:
    """Sensitivity and specificity per subgroup value with their 95 % intervals, one row each (a
    forest plot): the subgroup a total hides stands out at a glance."""
    rows = [(f"{column} {value} ({g['films']})", g) for column, groups in by_subgroup.items()
            for value, g in groups.items()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.9 + 0.4 * max(len(rows), 1)), sharey=True)
    for ax, figure in zip(axes, ("sensitivity", "specificity")):
        for i, (_, g) in enumerate(rows):
            if figure in g:
                ci = g[f"{figure}_ci95"]
                ax.errorbar(g[figure], i, xerr=[[g[figure] - ci["low"]], [ci["high"] - g[figure]]],
                            fmt="o", color="tab:blue", capsize=3)
        ax.set_title(figure)
        ax.set_xlim(0, 1.02)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(rows)), [label for label, _ in rows])
    axes[0].invert_yaxis()
    fig.suptitle(f"{cohort}: figures per subgroup (films), 95 % intervals")
    return _save(fig, path)
