#!/bin/bash
# The measured distillation runs (docs/distill.md, benchmarks/RESULTS.md "## Distillation").
# Each is one hold of the shared heavy lock, 2 torch threads:
#   nohup flock /tmp/lmlab-heavy.lock env OMP_NUM_THREADS=2 bash dev/distill_runs.sh prune > runs/LOG-distill-prune 2>&1 &
#   nohup flock /tmp/lmlab-heavy.lock env OMP_NUM_THREADS=2 bash -c 'bash dev/distill_runs.sh scratch; bash dev/distill_runs.sh nocache' > runs/LOG-distill-scratch 2>&1 &
set -e
export MKL_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "lock acquired $(date +%T)"; s=$(date +%s)
case "$1" in
  prune) .venv/bin/lmlab distill --config configs/distill/prune.yaml overwrite=true progress=false ;;
  # same shape and budget, random blocks; the teacher's completions of the same 400 prompts are
  # copied from the prune run (greedy, so regenerating them would give the same file)
  scratch) rm -rf runs/distill-scratch && mkdir -p runs/distill-scratch &&
           cp runs/distill-prune/teacher_completions.jsonl runs/distill-scratch/ &&
           .venv/bin/lmlab distill --config configs/distill/scratch.yaml overwrite=true progress=false ;;
  # the cache trade-off: the prune run's student and data, teacher forward every step, 12 steps
  nocache) rm -rf runs/distill-nocache && mkdir -p runs/distill-nocache &&
           cp runs/distill-prune/teacher_completions.jsonl runs/distill-nocache/ &&
           .venv/bin/lmlab distill --config configs/distill/prune.yaml overwrite=true progress=false \
             teacher_cache=none max_steps=12 save_every=0 eval_n=0 bench_prompts=0 \
             output_dir=runs/distill-nocache ;;
  *) echo "usage: $0 prune|scratch|nocache"; exit 2 ;;
esac
echo "wall $(( $(date +%s) - s )) s"
