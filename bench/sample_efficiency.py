"""Sample efficiency (issue 13, item 5): held-out accuracy after 0, 128, 512, 2,048 and 8,192 training examples,
for a random vs a label-word head, with no prompt template, a plain one, or `chat`, on IMDb and AG News.

    python bench/sample_efficiency.py --plan                        # the points and their estimated time only
    python bench/sample_efficiency.py --sizes 0,128,512 --time-budget-min 45
    python bench/sample_efficiency.py --datasets imdb --variants plain/label-words,none/random --sizes 0,32 \\
        --n-eval 32 --results-dir /tmp                                # a short real check
    python bench/sample_efficiency.py --smoke --results-dir /tmp    # tiny random model, made-up texts: the script only
    python bench/sample_efficiency.py --resume bench/results/sample_efficiency-<date>.json --sizes 2048
                                                                    # add points to an earlier file (same settings)

Data. IMDb: ../shared/data/imdb/train.parquet split 80/20 with seed 42 as `llmclf train` splits it (labels 0/1,
named negative/positive); AG News: ../shared/data/ag_news/sample.parquet (6,000 rows) split the same way (labels
0-3, named World/Sports/Business/Sci/Tech). Held-out accuracy is on the first --n-eval rows of each held-out
part; the next --n-validation rows are the runs' --validation-data (temperature, the binary threshold, the
per-epoch evaluation), so no training run sees an evaluation row and train's own split takes no examples. A
point with N examples trains on the first N rows of the training part: the same rows for every variant, so two
runs at one size differ only in the variant. AG News has 4,800 training rows, so its 8,192 point is not run (it
is listed under `not_run`).

Variants: template none (the bare text), plain ("Review: {text}\\nSentiment:" / "Article: {text}\\nTopic:") or
chat, times head_init random or label-words. The label words are the label names (negative/positive;
World/Sports/Business/Sci/Tech): in bench/results/zero_shot-2026-11-30.json the AG News names beat the words
world/sports/business/technology (0.430 vs 0.360 calibrated); --ag-news-words words switches to those.

Size 0 is the untrained classifier. label-words: the zero-shot classifier, `Classifier.from_pretrained(backbone,
labels=..., label_words=..., prompt_template=...)`, reported raw and with its contextual calibration (`accuracy`
is the calibrated one, what that call gives); with template none it is built the same way by hand (load_backbone,
init_label_word_head with the bare text's tail, contextual_bias), since from_pretrained substitutes `chat` for a
missing template. random: the backbone with the seed-42 random head a training run starts from, measured (it is
chance by construction, not assumed to be). Size N > 0: `llmclf.train.train(TrainArgs(...))` into a temporary
directory, the shipped model's recipe (src/llmclf/configs/imdb-sentiment.yaml: SmolLM2-135M, LoRA r16/alpha 32
on the top 12 layers, bf16 where the CPU has it, grouped by length) with batch 8, learning rate 2e-4, one epoch,
truncation head, --max-length tokens; then the saved model is loaded with `Classifier.from_pretrained(output)`
and scored on the held-out rows. `accuracy` is its decisions as shipped (with the binary threshold train tuned
on the validation rows), `accuracy_argmax` the plain argmax; IMDb rows also give ROC-AUC.

The order is size by size (every data set and variant at one size before the next size), so a run cut short by
--time-budget-min (no point starts that would end past it, by the planning estimate scaled to the pace of the
points done so far) or by a kill still holds whole sizes; --resume FILE then runs only the missing points. The JSON
(bench/results/sample_efficiency-<date>.json) and the learning-curve plot (the same name, .png) are rewritten
after every point; with --smoke they are sample_efficiency-smoke-<date>.*.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from common import RESULTS, machine
from sample_efficiency_points import RECIPE, Task, real_tasks, smoke_tasks, template_of, trained_point, untrained_point
from sample_efficiency_report import save

TEMPLATES = ("none", "plain", "chat")
HEADS = ("random", "label-words")
VARIANTS = [f"{t}/{h}" for t in TEMPLATES for h in HEADS]
# Planning figures for the estimate (2-core development CPU with AMX, SmolLM2-135M, measured by bench/train_cpu.py
# and bench/predict_cpu.py): useful training tokens/s of LoRA top-12, scoring tokens/s, and a trained point's fixed
# cost (two backbone loads, trainer set-up, validation twice, behaviour checks, report, save).
RATES = {"train_tokens_per_s": 1000.0, "score_tokens_per_s": 2300.0, "point_overhead_s": 35.0,
         "zero_shot_overhead_s": 8.0}
# Settings that must agree for --resume to add to an earlier file.
SAME_FOR_RESUME = ("model", "n_eval", "n_validation", "max_length", "truncation", "batch_size", "learning_rate",
                   "lora_layers", "epochs", "seed", "recipe", "ag_news_words")


# ----------------------------------------------------------------------------------------------------- estimate

def token_lengths(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    if not texts:
        return np.zeros(0, dtype=np.int64)
    cut = max_length * 8  # a huge text is not tokenized whole (as Classifier and training_windows cut it)
    ids = tokenizer([t[:cut] for t in texts], add_special_tokens=False)["input_ids"]
    return np.asarray([len(x) for x in ids])


def estimate(points: list[tuple], tasks: dict[str, Task], settings: dict) -> list[float]:
    """Seconds per point from the planning rates (settings["rates"]) and the real token counts of the rows each
    point reads."""
    from llmclf.models import load_tokenizer, resolve_backbone
    from llmclf.prompts import PromptEncoding

    if settings["model"] == "tiny-random-llama":
        from llmclf.models import default_tokenizer_dir

        tokenizer = load_tokenizer(str(default_tokenizer_dir()))
    else:
        tokenizer = load_tokenizer(resolve_backbone(settings["model"]))
    length, rates = settings["max_length"], settings["rates"]
    biggest = max([p[2] for p in points] or [0])
    cache = {}
    for name, task in tasks.items():
        train = token_lengths(tokenizer, task.train.texts[:biggest], length)
        cache[name] = (np.concatenate([[0], np.cumsum(train)]), token_lengths(tokenizer, task.evaluation.texts, length),
                       token_lengths(tokenizer, task.validation.texts, length))
    out = []
    for name, variant, size in points:
        template = variant.split("/")[0]
        task = tasks[name]
        prompt = PromptEncoding.build(tokenizer, template_of(task, template), task.labels)
        extra = len(prompt.prefix) + len(prompt.suffix)
        cumulative, evaluation, validation = cache[name]
        score_tokens = np.minimum(evaluation + extra, length).sum()
        if size == 0:
            out.append(rates["zero_shot_overhead_s"] + score_tokens / rates["score_tokens_per_s"])
            continue
        n = min(size, len(cumulative) - 1)
        train_tokens = min(cumulative[n] + extra * n, length * n)  # a bound: texts are cut to max_length
        score_tokens += 2 * np.minimum(validation + extra, length).sum()  # per-epoch and final validation
        out.append(rates["point_overhead_s"] + train_tokens / rates["train_tokens_per_s"]
                   + score_tokens / rates["score_tokens_per_s"])
    return [float(x) for x in out]


class Pace:
    """The estimate corrected as points finish: each kind of point (untrained, trained) scaled by the ratio of
    its measured to its estimated seconds so far, so the time budget holds on a slower or busier machine."""

    def __init__(self):
        self.done = {True: [0.0, 0.0], False: [0.0, 0.0]}  # trained? -> [estimated, measured]

    def factor(self, size: int) -> float:
        estimated, measured = self.done[size > 0]
        if not estimated:  # nothing of this kind yet: borrow the other kind's ratio, else trust the plan
            estimated, measured = self.done[size == 0]
        return measured / estimated if estimated else 1.0

    def add(self, size: int, estimated: float, measured: float) -> None:
        self.done[size > 0][0] += estimated
        self.done[size > 0][1] += measured


# --------------------------------------------------------------------------------------------------------- main

def parse_list(value: str, known: list[str], what: str) -> list[str]:
    chosen = []
    for token in (t.strip() for t in value.split(",") if t.strip()):
        matches = [k for k in known if token in (k, *k.split("/"))]
        if not matches:
            raise SystemExit(f"{what} {token}: unknown; choose from {', '.join(known)}")
        chosen += [m for m in matches if m not in chosen]
    return [k for k in known if k in chosen]  # in the canonical order


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--datasets", default="imdb,ag_news", help="comma-separated: imdb, ag_news")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated TEMPLATE/HEAD ids, or a template (none, plain, chat) or head "
                             "(random, label-words) for all of its variants")
    parser.add_argument("--sizes", default=None, help="training examples per point (default 0,128,512,2048,8192)")
    parser.add_argument("--n-eval", type=int, default=300, help="held-out texts scored per point")
    parser.add_argument("--n-validation", type=int, default=64, help="validation rows of each training run")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--lora-layers", type=int, default=12, help="LoRA on the top N layers (the recipe's 12)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ag-news-words", choices=("names", "words"), default="names",
                        help="AG News label words: the label names, or world,sports,business,technology")
    parser.add_argument("--time-budget-min", type=float, default=None,
                        help="start no point whose estimate (corrected by the points done) would end past this "
                             "many minutes; finish cleanly")
    for key, value in RATES.items():
        parser.add_argument("--" + key.replace("_", "-"), type=float, default=value,
                            help=f"planning figure for the estimate (default {value:g})")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--resume", default=None, metavar="JSON",
                        help="add to an earlier result file (same settings): its finished points are kept and not "
                             "run again, and it is rewritten in place")
    parser.add_argument("--plan", action="store_true", help="print the points and the time estimate, run nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny-random-llama, made-up texts, sizes 0,8, n-eval 8: checks the script only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.n_eval, args.n_validation, args.max_length = "tiny-random-llama", 8, 4, 64
        args.lora_layers = 1  # the tiny model has 2 layers
    args.sizes = args.sizes or ("0,8" if args.smoke else "0,128,512,2048,8192")
    return args


def merge_list(old: list, new: list, order: list | None = None) -> list:
    union = list(old) + [x for x in new if x not in old]
    return sorted(union, key=order.index) if order else sorted(union)


def start_result(args, settings: dict, tasks: dict[str, Task], not_run: list[dict]) -> tuple[dict, Path, Path]:
    """A fresh result, or with --resume the earlier one (checked to have the same settings) with this run's
    data sets, variants and sizes added."""
    info = machine()
    fresh = {"bench": "sample_efficiency", **info, "smoke": args.smoke, "model": args.model, "settings": settings,
             "data": {name: t.source for name, t in tasks.items()},
             "labels": {name: t.labels for name, t in tasks.items()},
             "label_words": {name: t.words for name, t in tasks.items()},
             "eval_labels": {name: t.evaluation.labels for name, t in tasks.items()},
             "rows": [], "not_run": list(not_run), "stopped": None, "runs": []}
    if args.resume is None:
        directory = Path(args.results_dir)
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"sample_efficiency{'-smoke' if args.smoke else ''}-{info['date']}"
        return fresh, directory / f"{stem}.json", directory / f"{stem}.png"
    json_path = Path(args.resume)
    if not json_path.is_file():
        raise SystemExit(f"--resume {json_path}: no such file")
    old = json.loads(json_path.read_text())
    differ = [k for k in SAME_FOR_RESUME if old["settings"].get(k) != settings[k]]
    if differ or old.get("smoke") != args.smoke:
        raise SystemExit(f"--resume {json_path}: settings differ ({', '.join(differ) or 'smoke'}: "
                         + ", ".join(f"{k} {old['settings'].get(k)!r} there, {settings[k]!r} here" for k in differ)
                         + "); pass the same settings, or start a new file")
    for name in tasks:
        if name in old["eval_labels"] and old["eval_labels"][name] != fresh["eval_labels"][name]:
            raise SystemExit(f"--resume {json_path}: the {name} evaluation rows differ; start a new file")
    s = old["settings"]
    s["datasets"] = merge_list(s["datasets"], settings["datasets"], ["imdb", "ag_news"])
    s["variants"] = merge_list(s["variants"], settings["variants"], VARIANTS)
    s["sizes"] = merge_list(s["sizes"], settings["sizes"])
    s["templates"].update(settings["templates"])
    s["rates"], s["time_budget_min"] = settings["rates"], settings["time_budget_min"]
    for key in ("data", "labels", "label_words", "eval_labels"):
        old[key].update(fresh[key])
    old["rows"] = [r for r in old["rows"] if "error" not in r]  # failed points are run again
    done = {(r["dataset"], r["variant"], r["train_examples"]) for r in old["rows"]}
    seen, old_not_run = set(done), []
    for r in old.get("not_run", []) + not_run:  # earlier reasons first; a point done since is dropped
        key = (r["dataset"], r["variant"], r["train_examples"])
        if key not in seen:
            seen.add(key)
            old_not_run.append(r)
    old["not_run"] = old_not_run
    old["stopped"] = None
    old.setdefault("runs", [])
    return old, json_path, json_path.with_suffix(".png")


def settings_of(args, datasets: list[str], variants: list[str], sizes: list[int], tasks: dict[str, Task]) -> dict:
    return {"model": args.model, "datasets": datasets, "variants": variants, "sizes": sizes,
            "n_eval": args.n_eval, "n_validation": args.n_validation, "max_length": args.max_length,
            "truncation": "head", "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "eval_batch_size": args.eval_batch_size, "lora_layers": args.lora_layers, "epochs": 1, "seed": 42,
            "recipe": RECIPE,
            "recipe_overrides": "batch_size, learning_rate, lora_layers, epochs 1, max_length, truncation head, "
                                "prompt_template, head_init, label_words, validation_data, max_eval_samples = "
                                "n_validation",
            "time_budget_min": args.time_budget_min, "ag_news_words": args.ag_news_words,
            "rates": {key: getattr(args, key) for key in RATES},
            "templates": {name: {"none": None, "plain": t.plain, "chat": "chat"} for name, t in tasks.items()}}


def plan_points(tasks: dict[str, Task], datasets: list[str], variants: list[str],
                sizes: list[int]) -> tuple[list[tuple], list[dict]]:
    """(dataset, variant, size) in run order, size by size so that a run cut short still holds whole sizes; and
    the points a data set is too small for."""
    points, not_run = [], []
    for size in sizes:
        for name in datasets:
            for variant in variants:
                if size > len(tasks[name].train.texts):
                    not_run.append({"dataset": name, "variant": variant, "train_examples": size,
                                    "reason": f"the training part holds {len(tasks[name].train.texts)} rows"})
                else:
                    points.append((name, variant, size))
    return points, not_run


def drop_done(result: dict, points: list[tuple], json_path: Path) -> list[tuple]:
    """With --resume: the points not yet in the earlier file."""
    done = {(r["dataset"], r["variant"], r["train_examples"]) for r in result["rows"]}
    todo = [p for p in points if p not in done]
    result["not_run"] = [r for r in result["not_run"]  # to be run now (an earlier run's budget left them)
                         if (r["dataset"], r["variant"], r["train_examples"]) not in set(todo)]
    if len(todo) != len(points):
        print(f"--resume: {len(points) - len(todo)} of these points are already in {json_path}; not run again")
    return todo


def print_plan(points: list[tuple], seconds: list[float], not_run: list[dict], rates: dict, smoke: bool) -> float:
    print(f"{len(points)} points to run ({len(not_run)} not possible); estimated at the planning rates "
          f"({rates['train_tokens_per_s']:g} train tokens/s, {rates['score_tokens_per_s']:g} scoring tokens/s, "
          f"{rates['point_overhead_s']:g} s per trained point: an idle 2-core AMX CPU):")
    total = 0.0
    for (name, variant, size), s in zip(points, seconds):
        total += s
        print(f"  {name:<8} {variant:<18} {size:>6,}  ~{s / 60:5.1f} min  (cumulative {total / 60:6.1f} min)")
    print(f"estimated total: {total / 60:.1f} min" + (" (tiny model: the rates do not apply)" if smoke else ""),
          flush=True)
    return total


def run_point(task: Task, variant: str, size: int, planned: float, settings: dict, work: Path) -> dict:
    """One point's row; a failure is recorded in the row, never raised, so that it costs no other point."""
    template, head = variant.split("/")
    row = {"dataset": task.name, "variant": variant, "template": template,
           "prompt_template": template_of(task, template), "head_init": head,
           "label_words": task.words if head == "label-words" else None, "train_examples": size,
           "train_label_counts": np.bincount(task.train.labels[:size], minlength=len(task.labels)).tolist(),
           "n_eval": len(task.evaluation.texts), "estimated_seconds": round(planned, 1)}
    started = time.perf_counter()
    try:
        row.update(untrained_point(task, template, head, settings) if size == 0
                   else trained_point(task, template, head, size, settings, work))
    except Exception as exc:  # noqa: BLE001 - one failed point must not cost the others
        traceback.print_exc()
        row["error"] = f"{type(exc).__name__}: {exc}"[:1000]
    row["point_seconds"] = round(time.perf_counter() - started, 2)
    gc.collect()  # the point's models, before the next one loads its own
    return row


def print_row(row: dict, left_seconds: float) -> None:
    if "error" in row:
        print(f"    error: {row['error']}", flush=True)
        return
    extra = (f"raw {row['accuracy_raw']:.3f}, calibrated {row['accuracy_calibrated']:.3f}" if row["train_examples"] == 0
             else f"argmax {row['accuracy_argmax']:.3f}, train {row['train_seconds']} s")
    auc = f", ROC-AUC {row['roc_auc']:.3f}" if row.get("roc_auc") is not None else ""
    print(f"    accuracy {row['accuracy']:.3f} ±{row['accuracy_ci95']:.3f}{auc} ({extra}); point "
          f"{row['point_seconds']:.0f} s (planned {row['estimated_seconds']:.0f} s); ~{left_seconds / 60:.1f} min "
          "left at this pace", flush=True)


def run_points(args, result: dict, tasks: dict[str, Task], points: list[tuple], seconds: list[float],
               settings: dict, json_path: Path, png_path: Path, started: float, run: dict) -> None:
    """Every point in order, the files rewritten after each; stops before a point the time budget cannot hold."""
    pace = Pace()
    with tempfile.TemporaryDirectory(prefix="sample-efficiency-") as scratch:
        for i, ((name, variant, size), planned) in enumerate(zip(points, seconds)):
            elapsed = time.perf_counter() - started
            guess = planned * pace.factor(size)
            if args.time_budget_min is not None and elapsed + guess > args.time_budget_min * 60:
                result["stopped"] = (f"time budget: {elapsed / 60:.1f} min spent, the next point "
                                     f"({name} {variant} {size}) estimated {guess / 60:.1f} min at the pace so far, "
                                     f"budget {args.time_budget_min} min")
                result["not_run"] += [{"dataset": n, "variant": v, "train_examples": s, "reason": "time budget"}
                                      for n, v, s in points[i:]]
                print(f"stopping: {result['stopped']}", flush=True)
                return
            print(f"[{i + 1}/{len(points)}] {name} {variant} {size} examples (~{guess / 60:.1f} min)", flush=True)
            row = run_point(tasks[name], variant, size, planned, settings, Path(scratch))
            pace.add(size, planned, row["point_seconds"])
            result["rows"].append(row)
            run["elapsed_min"] = round((time.perf_counter() - started) / 60, 2)
            save(result, json_path, png_path)
            print_row(row, sum(p * pace.factor(z) for (_, _, z), p in zip(points[i + 1:], seconds[i + 1:])))


def print_summary(result: dict, run: dict) -> int:
    """The best variant per data set and size; returns the number of failed points."""
    print("best variant per data set and size (against the default none/random, paired on the same rows):")
    for entry in result["summary"]:
        against = (f"; default {entry['default_accuracy']:.3f}, gain {entry['gain']:+.3f}, sign test "
                   f"p={entry['sign_test_p']:.3g}" if "default_accuracy" in entry else "")
        print(f"  {entry['dataset']:<8} {entry['train_examples']:>6,}: {entry['best']} {entry['best_accuracy']:.3f}"
              f"{against}")
    errors = sum("error" in r for r in result["rows"])
    print(f"sample_efficiency: {len(result['rows'])} points, {errors} errors, {len(result['not_run'])} not run, "
          f"{run['elapsed_min']} min")
    return errors


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    datasets = parse_list(args.datasets, ["imdb", "ag_news"], "--datasets")
    variants = parse_list(args.variants, VARIANTS, "--variants")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not datasets or not variants or not sizes or min(sizes) < 0:
        raise SystemExit("--datasets, --variants and --sizes each need at least one valid entry")
    tasks = {t.name: t for t in (smoke_tasks(datasets, args.n_eval, args.n_validation, max(sizes)) if args.smoke
                                 else real_tasks(datasets, args.n_eval, args.n_validation, args.ag_news_words))}
    settings = settings_of(args, datasets, variants, sizes, tasks)
    points, not_run = plan_points(tasks, datasets, variants, sizes)
    result, json_path, png_path = (None, None, None) if args.plan else start_result(args, settings, tasks, not_run)
    if result is not None:
        points = drop_done(result, points, json_path)
    seconds = estimate(points, tasks, settings) if points else []
    total = print_plan(points, seconds, not_run, settings["rates"], args.smoke)
    if args.plan:
        return
    run = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "points": len(points),
           "estimated_total_min": round(total / 60, 1), "time_budget_min": args.time_budget_min}
    result["runs"].append(run)
    run_points(args, result, tasks, points, seconds, settings, json_path, png_path, started, run)
    run["elapsed_min"] = round((time.perf_counter() - started) / 60, 2)
    save(result, json_path, png_path)
    print(f"wrote {json_path} and {png_path}")
    if print_summary(result, run):
        sys.exit(1)


if __name__ == "__main__":
    main()
