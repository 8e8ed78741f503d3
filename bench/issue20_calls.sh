#!/usr/bin/env bash
# Issue 20's measurements that wait for a GPU, as device calls (one H200 or H100; carry [".whl", ".whl-unsloth"]):
#
#   bash bench/issue20_calls.sh 1   # ~400 s: GPU tests of the new attention paths and the merge; attention kernels;
#                                   # the packed 0.5B step with the direct flash call, bucketed, and call 1's wrapper
#   bash bench/issue20_calls.sh 2   # ~350 s: LoRA 8B against plain TRL (goal 6)
#   bash bench/issue20_calls.sh 3   # ~300 s: unpacked 0.5B SFT against plain TRL, the merge on and off (goal 3b),
#                                   # the early head off (the 0.002 loss gap); the RMSNorm kernel sweep
#
# Everything printed goes to $OUT/callN.log and each bench's JSON into $OUT/callN.tgz (the device returns at most
# 8 files). Each step has its own timeout, so one that hangs leaves the others their time.
set -u
CALL=${1:?which call: 1, 2 or 3}
OUT=${OUT:-/tmp/issue20-out}
mkdir -p "$OUT" /tmp/results
LOG="$OUT/call$CALL.log"
export PYTHONUNBUFFERED=1
step() { local limit=$1; shift; echo "=== $* (limit ${limit}s) ===" >>"$LOG"; timeout "$limit" "$@" >>"$LOG" 2>&1; echo "=== exit $?" >>"$LOG"; }

python3 -m pip install -q --no-index --no-deps --no-compile --root-user-action=ignore .whl/*.whl \
    .whl-unsloth/bnb/*.whl >>"$LOG" 2>&1
nvidia-smi --query-gpu=name,clocks.sm,power.draw,memory.used --format=csv -lms 2000 >"$OUT/smi$CALL.csv" 2>&1 &
SMI=$!

case "$CALL" in
1)
    step 150 python -m pytest -m gpu -q -p no:warnings tests/test_speed_gpu.py tests/test_throughput_gpu.py \
        -k "varlen or equal_rows or bucketed or early_head or merged"
    step 60 python bench/attention_kernels.py --out /tmp/results/attention.json
    step 100 python bench/step_anatomy.py --arch qwen2.5-0.5b --batches 32 --home /tmp/h05 \
        --out /tmp/results/anatomy-direct.json
    step 100 python bench/step_anatomy.py --arch qwen2.5-0.5b --batches 32 --home /tmp/h05 \
        --lab-set attention=bucketed --out /tmp/results/anatomy-bucketed.json
    # The same machine's baseline: call 1's wrapper swapped in by bench/baselines/varlen_wrapper/sitecustomize.py.
    PYTHONPATH="$PWD/bench/baselines/varlen_wrapper${PYTHONPATH:+:$PYTHONPATH}" \
        step 100 python bench/step_anatomy.py --arch qwen2.5-0.5b --batches 32 --home /tmp/h05 \
        --out /tmp/results/anatomy-call1-wrapper.json
    ;;
2)
    step 560 python bench/train_throughput.py --arch llama-3.1-8b --task lora --full-length 2048 --rows 128 \
        --plain-batch 2 --plain-accum 4 --max-steps 16 --home /tmp/h8 \
        --variants lab+batch_size=4+grad_accum=2+max_steps=2+warmup_ratio=0,plain,lab+batch_size=8+grad_accum=1 \
        --out /tmp/results/lora8b.json
    ;;
3)
    step 420 python bench/train_throughput.py --arch qwen2.5-0.5b --task sft --home /tmp/h05 \
        --variants plain,lab,lab+batch_size=8+grad_accum=2,lab+batch_size=8+grad_accum=2+merge_micro_batches=off,lab+early_head=off \
        --out /tmp/results/sft-unpacked.json
    step 90 python bench/rms_norm.py --sweep
    ;;
*)
    echo "no call $CALL: 1, 2 or 3" >&2; exit 2
    ;;
esac
kill "$SMI" 2>/dev/null
tar -czf "$OUT/call$CALL.tgz" -C /tmp results
