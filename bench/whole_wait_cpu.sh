#!/bin/sh
# The whole wait of a tiny SFT run on this machine, `python -m lab train ... --wait` timed from the shell: a fresh
# process per run (LAB_WARM_WORKER=0), then forked from the warm worker; each a first launch (empty caches) and a
# repeat. Usage: sh bench/whole_wait_cpu.sh [HOME]
set -e
H=${1:-/tmp/lab-wait-cpu}
rm -rf "$H"
python -m lab --home "$H" data import sample:sft --name s --max-rows 64 >/dev/null 2>&1
train() { python -m lab --home "$H" train recipes/tiny-sft.yaml --set dataset=s --set max_steps=3 \
  --set warmup_ratio=0 --set sample_prompts=0 --set eval_split=none --set report_to=none --wait >/dev/null 2>&1; }
for mode in fresh warm; do
  rm -rf "$H/cache"
  if [ $mode = warm ]; then python -m lab --home "$H" warm --idle 300 >/dev/null 2>&1; fi
  for launch in first repeat; do
    start=$(date +%s.%N)
    if [ $mode = fresh ]; then LAB_WARM_WORKER=0 train; else train; fi
    end=$(date +%s.%N)
    run=$(ls "$H/runs" | tail -1)
    echo "$mode $launch: $(echo "$end - $start" | bc) s wall; $(grep -h 'whole wait' "$H/runs/$run/log.txt" | sed 's/\[lab\] //')"
  done
done
python -m lab --home "$H" warm --stop >/dev/null 2>&1
