"""bench/sample_efficiency.py's output: the JSON (with a paired summary of the best variant against llmclf's
default) and the learning-curve PNG, both rewritten after every point."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# The baseline: the card's set-up and llmclf's defaults before this bench (no template, random head).
DEFAULT_VARIANT = "none/random"


COLOURS = {"none": "tab:gray", "plain": "tab:blue", "chat": "tab:orange"}
STYLES = {"label-words": ("-", "o"), "random": ("--", "s")}


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["settings"]["datasets"]
    positive = sorted({s for s in result["settings"]["sizes"] if s > 0}) or [1]
    fig, axes = plt.subplots(1, len(names), figsize=(6.4 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in result["rows"] if r["dataset"] == name and "accuracy" in r]
        for variant in result["settings"]["variants"]:
            points = sorted((r["train_examples"], r["accuracy"]) for r in rows if r["variant"] == variant)
            if not points:
                continue
            template, head = variant.split("/")
            line, marker = STYLES[head]
            ax.plot(*zip(*points), line, marker=marker, color=COLOURS[template], label=variant, markersize=5)
            zero = [r for r in rows if r["variant"] == variant and r["train_examples"] == 0 and head == "label-words"]
            if zero:  # the zero-shot point without calibration, hollow
                ax.plot([0], [zero[0]["accuracy_raw"]], marker=marker, color=COLOURS[template], fillstyle="none",
                        linestyle="none", markersize=7)
        labels = result["labels"].get(name) or []
        if labels:
            ax.axhline(1 / len(labels), color="black", linewidth=0.8, linestyle=":", label="chance")
        ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlim(left=0)
        ticks = [0] + positive
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:,}" for t in ticks])
        lowest = min([r["accuracy"] for r in rows] + [r["accuracy_raw"] for r in rows if "accuracy_raw" in r] + [1.0])
        ax.set_ylim(max(0.0, min((1 / len(labels) if labels else 0.5) - 0.1, lowest - 0.05)), 1.0)
        ax.set_xlabel("training examples (symlog; 0 = untrained, hollow = zero-shot uncalibrated)")
        ax.set_ylabel(f"accuracy on {result['settings']['n_eval']} held-out texts")
        ax.set_title(f"{name} ({result['model']})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def summarise(result: dict) -> list[dict]:
    """Per data set and size: the best variant against llmclf's default (none/random), paired on the same rows."""
    from scipy.stats import binomtest

    out = []
    for name in result["settings"]["datasets"]:
        for size in result["settings"]["sizes"]:
            rows = {r["variant"]: r for r in result["rows"]
                    if r["dataset"] == name and r["train_examples"] == size and "accuracy" in r}
            if not rows:
                continue
            best = max(rows.values(), key=lambda r: (r["accuracy"], r["variant"] == DEFAULT_VARIANT))
            entry = {"dataset": name, "train_examples": size, "best": best["variant"],
                     "best_accuracy": best["accuracy"],
                     "accuracies": {v: r["accuracy"] for v, r in rows.items()}}
            default = rows.get(DEFAULT_VARIANT)
            if default is not None and best is not default:
                truth = result["eval_labels"][name]
                a = [int(c) for c in best["predicted_ids"]]
                b = [int(c) for c in default["predicted_ids"]]
                only_best = sum(x == t != y for x, y, t in zip(a, b, truth))
                only_default = sum(y == t != x for x, y, t in zip(a, b, truth))
                entry.update(default_accuracy=default["accuracy"],
                             gain=round(best["accuracy"] - default["accuracy"], 4),
                             right_only_best=only_best, right_only_default=only_default,
                             sign_test_p=round(float(binomtest(only_best, only_best + only_default).pvalue), 4)
                             if only_best + only_default else 1.0)
            out.append(entry)
    return out


def save(result: dict, json_path: Path, png_path: Path) -> None:
    result["summary"] = summarise(result)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)  # a kill mid-write never leaves half a file
    try:
        draw(result, png_path)
    except Exception as exc:  # noqa: BLE001 - a plot that fails must not cost the numbers
        print(f"warning: the plot failed: {exc!r}", file=sys.stderr)
