#!/usr/bin/env bash
# Same-machine comparison of our Cpu backend with eager PyTorch on the same Qwen2 config, threads and
# tokens: runs the BenchmarkDotNet ModelBenchmarks (our side) and qwen2_torch.py (PyTorch side), then prints
# our/PyTorch tokens/s ratios. Needs Debian's python3-torch (apt-get install python3-torch).
# GROUPS_ROUNDS=N (default 0) then alternates the rollout engine's Groups case N more times, ours then PyTorch's, each
# round a few minutes apart at most, and prints every round's ratio and their median: on a shared machine whose speed
# drifts by 10-20 % over the quarter hour the main pass takes, the interleaved rounds are the ratio to read.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${THREADS:-2}
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "compare: PyTorch is missing: apt-get install python3-torch libopenblas0-pthread"; exit 2; }
# Debian's torch runs the reference BLAS (about 15x slower) unless OpenBLAS is installed: refuse rather than flatter us.
# (grep reads the whole list: with -q it would stop at the first match and, under pipefail, ldconfig's SIGPIPE would
# fail the check at random.)
ldconfig -p | grep libopenblas >/dev/null || { echo "compare: OpenBLAS is missing (PyTorch would run the reference BLAS): apt-get install libopenblas0-pthread"; exit 2; }
out=$(mktemp -d)
dotnet run -c Release --project bench/OR1.Bench -- --filter '*.ModelBenchmarks.*' '*RolloutEngineBenchmarks.Groups*' --artifacts "$out" >/dev/null
# One CSV per class, or one joined CSV (the harness joins the summaries of a multi-class filter): read them all.
csvs=("$out"/results/*-report.csv)
/usr/bin/python3 bench/compare/qwen2_torch.py "$threads" 5 > "$out/torch.jsonl"
/usr/bin/python3 - "$out/torch.jsonl" "${csvs[@]}" <<'PY'
import csv, json, sys
ours = {}
for path in sys.argv[2:]:
    with open(path) as f:
        for row in csv.DictReader(f, delimiter=','):
            ours[row["Method"]] = float(row["tokens/s"].replace(",", ""))
torch = {json.loads(l)["what"]: json.loads(l)["tokens_per_s"] for l in open(sys.argv[1])}
pairs = [("TrainingStep", "training_step", 1.5), ("Generation", "generation", 3.0), ("GroupsEngine", "generation_groups", 15.0)]
for ours_name, torch_name, target in pairs:
    o, t = ours[ours_name], torch[torch_name]
    print(f"{ours_name:13s} ours {o:10.0f} tok/s   PyTorch eager {t:10.0f} tok/s   ratio {o / t:5.2f}x   (target {target}x)")
PY
rounds=${GROUPS_ROUNDS:-0}
if [ "$rounds" -gt 0 ]; then
    ratios=()
    for r in $(seq 1 "$rounds"); do
        rdir="$out/round$r"
        dotnet run -c Release --no-build --project bench/OR1.Bench -- --filter '*RolloutEngineBenchmarks.GroupsEngine*' --artifacts "$rdir" >/dev/null
        /usr/bin/python3 bench/compare/qwen2_torch.py "$threads" 5 generation_groups > "$rdir/torch.jsonl"
        ratio=$(/usr/bin/python3 - "$rdir/torch.jsonl" "$rdir"/results/*-report.csv <<'PY'
import csv, json, sys
ours = [float(row["tokens/s"].replace(",", "")) for path in sys.argv[2:] for row in csv.DictReader(open(path)) if row["Method"] == "GroupsEngine"][0]
torch = json.loads(open(sys.argv[1]).readline())["tokens_per_s"]
print(f"{ours:.0f} {torch:.0f} {ours / torch:.2f}")
PY
)
        set -- $ratio
        echo "Groups round $r: ours $1 tok/s   PyTorch eager $2 tok/s   ratio $3x"
        ratios+=("$3")
    done
    printf '%s\n' "${ratios[@]}" | sort -g | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "Groups, median of %d interleaved rounds: %.2fx (target 15.0x)\n", NR, m }'
fi
