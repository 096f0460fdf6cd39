#!/usr/bin/env python3
"""The same Qwen2 training step and KV-cache generation as bench/OR1.Bench/Model/ModelBenchmarks.cs, in
plain eager PyTorch (Debian's python3-torch, CPU, no torch.compile), for a same-machine comparison.

Config: 4 layers, hidden 256, 8 query / 2 kv heads (head dim 32), intermediate 704, vocabulary 8192, tied
embeddings, rms eps 1e-6, rope theta 10000. Training step: forward + per-token log-prob loss + backward +
AdamW over 2048 tokens (8 sequences of 256; the sequences are batched, which on equal lengths is the same
work as our packing). Generation: 16 samples x 128 new tokens after 16-token prompts with a KV cache,
temperature-1 sampling; and the rollout engine's case, 16 prompts x 4 samples of 224 new tokens after 32-token
prompts. Prints one JSON line per measurement.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
# Which measurements to run (comma-separated names; all by default): run.sh's interleaved rounds time one case at a time.
ONLY = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else None
torch.set_num_threads(THREADS)
torch.manual_seed(1)

H, I, L, HQ, HKV, V = 256, 704, 4, 8, 2, 8192
D = H // HQ
EPS, THETA = 1e-6, 10000.0


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1 = torch.nn.Parameter(torch.ones(H))
        self.q = torch.nn.Linear(H, HQ * D)
        self.k = torch.nn.Linear(H, HKV * D)
        self.v = torch.nn.Linear(H, HKV * D)
        self.o = torch.nn.Linear(HQ * D, H, bias=False)
        self.n2 = torch.nn.Parameter(torch.ones(H))
        self.gate = torch.nn.Linear(H, I, bias=False)
        self.up = torch.nn.Linear(H, I, bias=False)
        self.down = torch.nn.Linear(I, H, bias=False)


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope_tables(positions):
    inv = 1.0 / (THETA ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    freqs = positions[:, None].float() * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate(x, cos, sin):  # x [B, heads, T, D]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, H)
        torch.nn.init.normal_(self.embed.weight, std=0.02)
        self.layers = torch.nn.ModuleList([Layer() for _ in range(L)])
        self.norm = torch.nn.Parameter(torch.ones(H))

    def forward(self, tokens, start=0, cache=None):
        b, t = tokens.shape
        x = self.embed(tokens)
        cos, sin = rope_tables(torch.arange(start, start + t))
        new_cache = []
        for i, layer in enumerate(self.layers):
            h = rms(x, layer.n1)
            q = layer.q(h).view(b, t, HQ, D).transpose(1, 2)
            k = layer.k(h).view(b, t, HKV, D).transpose(1, 2)
            v = layer.v(h).view(b, t, HKV, D).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            if cache is not None:
                k = torch.cat([cache[i][0], k], dim=2)
                v = torch.cat([cache[i][1], v], dim=2)
            new_cache.append((k, v))
            kk = k.repeat_interleave(HQ // HKV, dim=1)
            vv = v.repeat_interleave(HQ // HKV, dim=1)
            # PyTorch 1.13 (Debian's) has no scaled_dot_product_attention: the eager formulation.
            scores = (q @ kk.transpose(-1, -2)) / math.sqrt(D)
            if cache is None:
                scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            a = torch.softmax(scores, dim=-1) @ vv
            x = x + layer.o(a.transpose(1, 2).reshape(b, t, HQ * D))
            h = rms(x, layer.n2)
            x = x + layer.down(F.silu(layer.gate(h)) * layer.up(h))
        return rms(x, self.norm), new_cache


model = Model()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
tokens = torch.randint(0, V, (8, 256))


def train_step():
    hidden, _ = model(tokens)
    logits = hidden @ model.embed.weight.T
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    loss = -logp.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def generate(prompt_count=16, samples=1, prompt_length=16, new_tokens=128):
    """Batched KV-cache sampling: each prompt repeated `samples` times and prefilled with its copies (as HF's
    generate does with num_return_sequences), then one decode step per new token for the whole batch."""
    prompts = torch.randint(0, V, (prompt_count, prompt_length)).repeat_interleave(samples, dim=0)
    hidden, cache = model(prompts)
    last = hidden[:, -1]
    length = prompts.shape[1]
    for _ in range(new_tokens):
        logits = last @ model.embed.weight.T
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1)
        hidden, cache = model(token, start=length, cache=cache)
        last = hidden[:, -1]
        length += 1


def measure(name, fn, tokens_per_call):
    if ONLY is not None and name not in ONLY:
        return
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    best, mean = min(times), sum(times) / len(times)
    print(json.dumps({"what": name, "threads": THREADS, "mean_s": mean, "best_s": best, "tokens_per_s": tokens_per_call / mean}))


measure("training_step", train_step, 8 * 256)
measure("generation", generate, 16 * 128)
# The rollout engine's case (bench/OR1.Bench RolloutEngineBenchmarks.Groups): 16 prompts x 4 samples, 32-token
# prompts, 224 new tokens, all 64 sequences in one batch.
measure("generation_groups", lambda: generate(16, 4, 32, 224), 16 * 4 * 224)
