#!/usr/bin/env bash
# The `full` benchmark on a GPU machine that has no internet and no `datasets` package
# (e.g. an image with torch 2.11 / transformers 5.17), from a repository checkout.
#
# What to carry into the checkout (about 50 MB in all; `.gpu/` is git-ignored locally):
#   .gpu/course-bert/  course-bert as float16 safetensors (45 MB; loaded as float32):
#                      python -m ftlib bench export-weights .gpu/course-bert --model course-bert \
#                          --task base --dtype float16 --max-shard-size 200MB
#   .gpu/data/sst2/    the SST-2 mirror (train.tsv, dev.tsv; 3.8 MB), copied from FTLIB_DATA_DIR
#   .gpu/whl/          wheels of what the image lacks, for its Python (3.12):
#                      pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                          --implementation cp --platform manylinux2014_x86_64 -d .gpu/whl \
#                          datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# course-gpt's weights do not fit: its throughput and MFU are measured on a randomly initialised
# model of the same configuration (`--random-init`; speed does not depend on the weights).
#
# Usage: tools/gpu_bench.sh OUT_DIR [SECONDS]      (SECONDS: the whole run's budget, default 570)
#        REHEARSE=1 tools/gpu_bench.sh OUT_DIR     (tiny sizes, to check the script on a CPU)
# Three runs, the most important first, each under its own time limit so one slow part cannot
# take the others' results: (1) BERT, engine vs default and tuned Trainer, 3 epochs of all of
# SST-2; (2) course-gpt throughput and MFU at 16 x 1024 tokens; (3) the ablation, 1 epoch.
set -u
out=${1:?usage: tools/gpu_bench.sh OUT_DIR [SECONDS]}
budget=${2:-570}
mkdir -p "$out/results"
start=$(date +%s)
here=$(pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FTLIB_DATA_DIR="$here/.gpu/data"
PY=${PY:-python3}
if [ -d .gpu/whl ] && ! $PY -c "import datasets" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ftlib-site .gpu/whl/*.whl
    export PYTHONPATH="/tmp/ftlib-site:$here${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
fi
left() { echo $(( budget - ($(date +%s) - start) )); }
part() {   # part NAME SECONDS ARGS...: one bench run under its own limit, logged
    local name=$1 limit=$2; shift 2
    local l; l=$(left); [ "$limit" -gt $((l - 10)) ] && limit=$((l - 10))
    if [ "$limit" -lt 30 ]; then echo "== $name: skipped, ${l} s left"; return; fi
    echo "== $name (limit ${limit} s): python -m ftlib bench $*"
    local t0; t0=$(date +%s)
    timeout --signal=INT --kill-after=10 "$limit" $PY -m ftlib bench --budget full --out "$out/results" "$@"
    echo "== $name: exit $?, $(( $(date +%s) - t0 )) s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
$PY -c "import sys, torch, transformers, datasets; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| transformers', transformers.__version__, '| datasets', datasets.__version__, '| cuda', torch.version.cuda)"

if [ -n "${REHEARSE:-}" ]; then
    small=(--train-size 256 --seq-len 32 --batch-size 32 --steps 2 --epochs 1)
    part "bert: engine vs Trainer" 600 --only bert --bert-model .gpu/course-bert --no-ablation "${small[@]}" --compile no
    part "gpt: throughput" 600 --only gpt --random-init "${small[@]}" --compile no
    part "bert: ablation" 900 --only bert --bert-model .gpu/course-bert --no-trainer "${small[@]}" --compile no
else
    part "bert: engine vs Trainer, 3 epochs" 300 --only bert --bert-model .gpu/course-bert --no-ablation
    part "gpt: throughput and MFU" 160 --only gpt --random-init
    part "bert: ablation, 1 epoch" 600 --only bert --bert-model .gpu/course-bert --no-trainer --epochs 1
fi
cat "$out/results/latest.md" 2>/dev/null
echo "== total $(( $(date +%s) - start )) s"
