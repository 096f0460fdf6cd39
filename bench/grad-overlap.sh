#!/usr/bin/env bash
# The gradients' sum during the backward against after it: `mpirun -np N or1 step` of one model and rollouts file with
# --overlap-grad-reduce true and false, alternated REPEATS times in one invocation, sharded (ZeRO-1, the default) and
# not. Prints the update's seconds (rank 0's metrics.json: forward, backward, the sum over the ranks and AdamW) of every
# run, each pair's ratio and their median. The model is random, shaped so that the gradients' sum is a visible share of a
# step on one machine: 8 layers of hidden 512 (GQA 8:2, intermediate 1536), a vocabulary of 8,192, untied: 32.5M
# parameters, 130 MB of fp32 gradients, against 64 responses of 4 tokens after 4-token prompts. Needs Open MPI (apt-get install openmpi-bin
# libopenmpi-dev). Usage: bench/grad-overlap.sh [RANKS=2] [REPEATS=5] [BUCKET_ELEMENTS=4194304]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-2}
repeats=${2:-5}
bucket=${3:-4194304}
command -v mpirun >/dev/null || { echo "grad-overlap: mpirun is missing: apt-get install openmpi-bin libopenmpi-dev"; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet build samples/OR1.Runner -c Release -nologo -v q >/dev/null
or1=samples/OR1.Runner/bin/Release/net10.0/or1.dll
python3 - "$work" <<'PY'
import array, json, os, random, struct, sys
work = sys.argv[1]
h, inter, layers, heads, kv, vocab = 512, 1536, 8, 8, 2, 8192
d = h // heads
os.makedirs(f"{work}/model")
json.dump({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "hidden_size": h,
           "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
           "max_position_embeddings": 4096, "max_window_layers": layers, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "rope_scaling": None, "sliding_window": None, "use_sliding_window": False, "tie_word_embeddings": False,
           "torch_dtype": "float32", "vocab_size": vocab, "bos_token_id": 1, "eos_token_id": 2}, open(f"{work}/model/config.json", "w"))
shapes = [("model.embed_tokens.weight", [vocab, h])]
for l in range(layers):
    p = f"model.layers.{l}."
    shapes += [(p + "input_layernorm.weight", [h]), (p + "self_attn.q_proj.weight", [heads * d, h]), (p + "self_attn.q_proj.bias", [heads * d]),
               (p + "self_attn.k_proj.weight", [kv * d, h]), (p + "self_attn.k_proj.bias", [kv * d]),
               (p + "self_attn.v_proj.weight", [kv * d, h]), (p + "self_attn.v_proj.bias", [kv * d]),
               (p + "self_attn.o_proj.weight", [h, heads * d]), (p + "post_attention_layernorm.weight", [h]),
               (p + "mlp.gate_proj.weight", [inter, h]), (p + "mlp.up_proj.weight", [inter, h]), (p + "mlp.down_proj.weight", [h, inter])]
shapes += [("model.norm.weight", [h]), ("lm_head.weight", [vocab, h])]
# One block of N(0, 0.02^2) values, repeated: the values do not matter to the timing, and Python draws a million a second.
rng = random.Random(3)
block = array.array("f", (rng.gauss(0, 0.02) for _ in range(1 << 20))).tobytes()
header, offset = {}, 0
for name, shape in shapes:
    n = 1
    for s in shape: n *= s
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}
    offset += 4 * n
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(f"{work}/model/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for name, shape in shapes:
        n = 4
        for s in shape: n *= s
        if name.endswith("norm.weight"):
            f.write(struct.pack("<f", 1.0) * (n // 4))
            continue
        while n > 0:
            f.write(block[:n])
            n -= min(n, len(block))
with open(f"{work}/rollouts.jsonl", "w") as f:
    for g in range(16):
        prompt = [rng.randrange(3, vocab) for _ in range(4)]
        for i in range(4):
            f.write(json.dumps({"group": f"g{g}", "prompt_tokens": prompt, "response_tokens": [rng.randrange(3, vocab) for _ in range(4)],
                                "reward": (i + g) % 2, "truncated": False}) + "\n")
print(f"grad-overlap: model of {offset // 4:,} parameters ({offset / 1e6:.0f} MB of fp32 gradients), 64 responses of 4 tokens after 4-token prompts, {sys.argv[1]}")
PY
step() { # label, overlap, shard
    local out="$work/$1"
    rm -rf "$out"
    TERM=dumb mpirun --allow-run-as-root --mca btl self,vader ${MPIRUN_OPTIONS:-} -np "$ranks" dotnet "$or1" step --model "$work/model" --rollouts "$work/rollouts.jsonl" \
        --out "$out" --lr 1e-5 --overlap-grad-reduce "$2" --shard-optimizer "$3" --grad-bucket-elements "$bucket" > "$work/$1.log" 2>&1 \
        || { cat "$work/$1.log"; exit 1; }
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["update_seconds"])' "$out/metrics.json" >> "$work/$1.seconds"
}
# A first run, untimed (the page cache, the JIT's disk cache): it says how the ranks sum.
step probe true true
grep -m1 "weights agree" "$work/probe.log"
for r in $(seq "$repeats"); do
    for shard in true false; do
        step "during-$shard" true "$shard"
        step "after-$shard" false "$shard"
    done
done
python3 - "$work" "$ranks" <<'PY'
import statistics, sys
work, ranks = sys.argv[1], sys.argv[2]
for shard in ("true", "false"):
    during = [float(x) for x in open(f"{work}/during-{shard}.seconds")]
    after = [float(x) for x in open(f"{work}/after-{shard}.seconds")]
    ratios = [a / d for d, a in zip(during, after)]
    print(f"{ranks} ranks, sharded {shard:5s}: update s during the backward {', '.join(f'{x:.3f}' for x in during)}")
    print(f"{'':22s}after the backward  {', '.join(f'{x:.3f}' for x in after)}")
    print(f"{'':22s}after / during, per pair: {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
PY
