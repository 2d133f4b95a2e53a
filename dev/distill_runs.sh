#!/bin/bash
# The measured distillation runs (docs/distill.md, benchmarks/RESULTS.md "## Distillation"),
# both in one hold of the shared heavy lock, 2 torch threads:
#   nohup flock /tmp/lmlab-heavy.lock env OMP_NUM_THREADS=2 bash dev/distill_runs.sh > runs/LOG-distill 2>&1 &
# 1. prune + distil (configs/distill/prune.yaml);
# 2. the same student shape from random blocks, same data, steps and teacher logits
#    (configs/distill/scratch.yaml). The teacher's greedy completions of the 400 prompts and
#    its top-64 cache are copied from run 1 (deterministic, so rebuilding them would give the
#    same files); the stage reuses both when they match.
set -e
export MKL_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "lock acquired $(date +%T)"; s=$(date +%s)
.venv/bin/lmlab distill --config configs/distill/prune.yaml overwrite=true progress=false
echo "prune wall $(( $(date +%s) - s )) s"; s2=$(date +%s)
rm -rf runs/distill-scratch && mkdir -p runs/distill-scratch
cp runs/distill-prune/teacher_completions.jsonl runs/distill-prune/teacher_topk.pt runs/distill-scratch/
.venv/bin/lmlab distill --config configs/distill/scratch.yaml overwrite=true progress=false
echo "scratch wall $(( $(date +%s) - s2 )) s; total $(( $(date +%s) - s )) s"
