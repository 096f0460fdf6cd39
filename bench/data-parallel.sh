#!/usr/bin/env bash
# Data parallel on one machine: the same `or1 train` run of the bundled sample's task (its warm-up checkpoint, the two
# easiest levels) as one process with every core, and as `mpirun -np N` ranks sharing the cores, alternated, in one
# invocation. Prints each run's wall time per step and generated + trained tokens per second, and the ratio: on one
# machine the ranks share the cores, so the ratio says what the rollout exchange, the collectives and the ranks'
# smaller batches cost (1.0 is free); across machines each rank brings its own cores. Needs Open MPI
# (apt-get install openmpi-bin libopenmpi-dev). Usage: bench/data-parallel.sh [RANKS=2] [STEPS=20] [REPEATS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-2}
steps=${2:-20}
repeats=${3:-3}
command -v mpirun >/dev/null || { echo "data-parallel: mpirun is missing: apt-get install openmpi-bin libopenmpi-dev"; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet build samples/OR1.Runner -c Release -nologo -v q >/dev/null
or1=samples/OR1.Runner/bin/Release/net10.0/or1.dll
echo '{"warmup_steps": 1500, "stages": [{"steps": 1, "max_response_length": 40, "prompts_per_step": 4, "prompts_per_mini_batch": 4, "group_size": 2}]}' > "$work/schedule.json"
echo "data-parallel: warming up the sample's policy (about 20 s)"
dotnet "$or1" sample --quick --seed 7 --out "$work/sample" --config "$work/schedule.json" >/dev/null
grep -E '"arith-level[12]"' "$work/sample/data/train.jsonl" > "$work/train.jsonl"
config() {
    cat > "$work/$1.json" <<JSON
{"model": "$work/sample/warmup", "train_files": ["$work/train.jsonl"], "output_dir": "$work/$1", "seed": 11,
 "learning_rate": 4e-4, "entropy_target": 0.05, "entropy_delta": 2e-4, "entropy_coef_max": 5e-3,
 "stages": [{"steps": $steps, "max_response_length": 64, "prompts_per_step": 64, "prompts_per_mini_batch": 32, "group_size": 16}],
 "rollout_batch": 256, "checkpoint_every": 1000, "validate_every": 1000, "micro_batch_tokens": 8192}
JSON
}
run() { # label, command...
    local label=$1; shift
    rm -rf "$work/$label"
    local start end
    start=$(date +%s.%N)
    "$@" > "$work/$label.log" 2>&1 || { cat "$work/$label.log"; exit 1; }
    end=$(date +%s.%N)
    python3 - "$work/$label/metrics.jsonl" "$label" "$start" "$end" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
wall = float(sys.argv[4]) - float(sys.argv[3])
tokens = sum(m["generated_tokens"] + m.get("kept_sequence_tokens", 0) for m in lines)
step = sum(m["generate_seconds"] + m["update_seconds"] + m.get("old_log_prob_seconds", 0) + m.get("reward_seconds", 0) for m in lines) / len(lines)
print(f"{sys.argv[2]:10s} {len(lines)} steps  {step:6.2f} s/step (generate + score + update)  {tokens / (step * len(lines)):8.0f} tok/s  (wall {wall:.1f} s with start-up)")
with open(sys.argv[1] + ".rate", "w") as f: f.write(str(tokens / (step * len(lines))))
PY
}
config single
config ranks
for r in $(seq "$repeats"); do
    run single env TERM=dumb dotnet "$or1" train --config "$work/single.json"
    cp "$work/single/metrics.jsonl.rate" "$work/single.$r.rate"
    run ranks env TERM=dumb mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -np "$ranks" dotnet "$or1" train --config "$work/ranks.json"
    cp "$work/ranks/metrics.jsonl.rate" "$work/ranks.$r.rate"
done
python3 - "$work" "$repeats" "$ranks" <<'PY'
import sys
work, repeats, ranks = sys.argv[1], int(sys.argv[2]), sys.argv[3]
single = [float(open(f"{work}/single.{r}.rate").read()) for r in range(1, repeats + 1)]
ranked = [float(open(f"{work}/ranks.{r}.rate").read()) for r in range(1, repeats + 1)]
print(f"{ranks} ranks / 1 process, tokens per second of the step, per run: " + ", ".join(f"{b / a:.3f}" for a, b in zip(single, ranked)))
PY
