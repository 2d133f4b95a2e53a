#!/bin/bash
# Quality vs size with a fine-tuned teacher (docs/distill.md "With a fine-tuned teacher: quality
# vs size", benchmarks/RESULTS.md "## Distillation"). One run per hold of the shared heavy lock,
# 2 torch threads, the same budget for every size (configs/distill/sft_teacher.yaml: 150 steps
# of 8 on the teacher's greedy completions of 400 convert/compare prompts, top-64 cache):
#   nohup flock /tmp/lmlab-heavy.lock env OMP_NUM_THREADS=2 bash dev/distill_curve.sh NAME \
#       > runs/distill8-NAME.log 2>&1 &
# NAME: l15m768 (15 of 30 blocks, MLP 768, 3.2x; run it first: it writes the teacher's
# completions and top-k cache), l20 (20 blocks, full MLP, 1.5x), l9 (9 blocks, full MLP, 3.3x),
# l7 (7 blocks, full MLP, 4.3x), scratch (the l15m768 shape with random blocks), or any other
# name for a variant of l15m768 given by extra key=value arguments (passed on to every run).
# The later runs copy the teacher's completions and cache from runs/distill8-l15m768 (greedy,
# deterministic: rebuilding them gives the same files); the stage reuses both when they match.
# Longer budget at the 9-block shape (folders runs/distill8b-NAME, logs runs/distill8b-NAME.log):
# l9-s300 (l9 with 300 steps instead of 150) and scratch9-s300 (the l9 shape with random
# blocks, student=fresh, 300 steps: the from-scratch baseline where pruning works).
set -e
export MKL_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
name=${1:?usage: dev/distill_curve.sh l15m768|l20|l7|scratch|VARIANT [key=value ...]}; shift
base=runs/distill8-l15m768
out=runs/distill8-$name
case $name in l9-s300|scratch9-s300) out=runs/distill8b-$name ;; esac
case $name in
  l15m768) args=() ;;
  l20) args=(prune_layers=20 prune_mlp=0) ;;
  l9) args=(prune_layers=9 prune_mlp=0) ;;
  l7) args=(prune_layers=7 prune_mlp=0) ;;
  scratch) args=(student=fresh) ;;
  l9-s300) args=(prune_layers=9 prune_mlp=0 max_steps=300) ;;
  scratch9-s300) args=(student=fresh prune_layers=9 prune_mlp=0 max_steps=300) ;;
  *) args=() ;;  # a variant of l15m768 given by the extra arguments
esac
echo "lock acquired $(date -u +%FT%TZ), OMP_NUM_THREADS=$OMP_NUM_THREADS"; s=$(date +%s)
if [ "$name" != l15m768 ]; then
  rm -rf "$out" && mkdir -p "$out"
  cp $base/teacher_completions.jsonl $base/teacher_topk.pt "$out"/
fi
.venv/bin/lmlab distill --config configs/distill/sft_teacher.yaml output_dir="$out" \
  overwrite=true progress=false "${args[@]}" "$@"
echo "$name wall $(( $(date +%s) - s )) s, done $(date -u +%FT%TZ)"
