#!/usr/bin/env python3
"""The whole-model reference: what Hugging Face transformers on PyTorch does with a Qwen2.5-1.5B-shaped model
(hidden 1536, 28 layers, 12/2 heads of 128, intermediate 8960, vocabulary 151,936, untied LM head, random
weights) in the two phases of a GRPO step, so our training step and rollout have a number to beat.

  magic_loss      the MAGIC/GRPO token-level policy loss of docs/RECIPE.md (clipped ratio with eps_low and
                  eps_high, token mean over the batch, entropy bonus), forward + backward over 16K tokens'
                  log-probs and entropies; needs only torch, so CI exercises it.
  train_step      Qwen2ForCausalLM (attn_implementation="sdpa") with fp32 master weights under bf16 autocast,
                  the log-probs and entropies of 16K tokens (fp32 log_softmax), the MAGIC loss, backward,
                  gradient clipping to norm 1 and fp32 AdamW (fused on CUDA); micro-batches of one sequence
                  accumulate into one step, as a trainer does. tokens/s and peak memory.
  generation      the same weights in bf16, `generate` with do_sample, top_p: 64 prompts x 1024 new tokens
                  (EOS suppressed, so every row is 1024 long); tokens/s and peak memory.

Without transformers the two model records say "skipped": "transformers not installed".

    python3 bench/compare/gpu_model.py --out $OUT/torch-model.json            # on the GPU machine
    python3 bench/compare/gpu_model.py --device cpu --tiny --out /tmp/m.json    # what CI runs
"""
import resource
import sys
import time

import torch

import refbench

QWEN25_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)


def add_arguments(parser):
    """This script's own options; the defaults are the issue's shapes (the --tiny ones in brackets)."""
    parser.add_argument("--tokens", type=int, default=None, help="tokens per training step (16384) [256]")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="sequence length; one sequence per micro-batch (4096) [64]")
    parser.add_argument("--gen-batch", type=int, default=None, help="prompts generated together (64) [2]")
    parser.add_argument("--gen-tokens", type=int, default=None, help="new tokens per prompt (1024) [8]")
    parser.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (128) [8]")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling threshold for generation")
    parser.add_argument("--eps-low", type=float, default=0.2, help="MAGIC clip: ratio floor 1 - eps_low")
    parser.add_argument("--eps-high", type=float, default=0.2, help="MAGIC clip: ratio ceiling 1 + eps_high")
    parser.add_argument("--entropy-coef", type=float, default=5e-3,
                        help="alpha of the entropy bonus (the recipe's c_max, so its gradient is exercised)")


def settle_shapes(args):
    """Fills the options left unset with the full or the tiny defaults."""
    full = dict(tokens=16384, seq_len=4096, gen_batch=64, gen_tokens=1024, prompt_len=128)
    tiny = dict(tokens=256, seq_len=64, gen_batch=2, gen_tokens=8, prompt_len=8)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tokens % args.seq_len:
        raise SystemExit("--tokens must be a multiple of --seq-len")


# ---------------------------------------------------------------- the loss (pure functions)

def token_log_probs_and_entropy(logits, targets):
    """log p(target) and the full-vocabulary entropy per token, in fp32 whatever the logits' dtype."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    chosen = log_probs.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return chosen, entropy


def magic_policy_loss(log_probs, old_log_probs, advantages, entropy, mask, total_tokens, eps_low, eps_high, alpha):
    """docs/RECIPE.md step 6, summed over these tokens and divided by the batch's response-token count:
    -(1/T) sum_t [ min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) + alpha H_t ],  rho = exp(logp - logp_old).
    Dividing by the whole batch's T (not this micro-batch's) makes the micro-batches add up to the token mean."""
    ratio = torch.exp(log_probs - old_log_probs)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    surrogate = torch.minimum(ratio * advantages, clipped * advantages)
    return -((surrogate + alpha * entropy) * mask).sum() / total_tokens


def loss_inputs(tokens, device, seed=0):
    """Per-token inputs shaped like one rollout batch: one advantage per 256-token response, an old policy
    off by a little (so both clip branches are taken), entropies of a few nats, all tokens in the loss."""
    generator = torch.Generator().manual_seed(seed)
    log_probs = -torch.rand(tokens, generator=generator) * 3
    old = log_probs + torch.randn(tokens, generator=generator) * 0.3
    advantages = torch.randn(max(tokens // 256, 1), generator=generator).repeat_interleave(256)[:tokens]
    if advantages.numel() < tokens:
        advantages = torch.cat([advantages, torch.zeros(tokens - advantages.numel())])
    entropy = torch.rand(tokens, generator=generator) * 4
    mask = torch.ones(tokens)
    return [t.to(device) for t in (log_probs, old, advantages, entropy, mask)]


def loss_section(report):
    """The MAGIC loss alone, forward and backward (d log-probs and d entropies), over one step's tokens."""
    args = report.args
    log_probs, old, advantages, entropy, mask = loss_inputs(args.tokens, report.device)
    log_probs.requires_grad_()
    entropy.requires_grad_()

    def forward_backward():
        loss = magic_policy_loss(log_probs, old, advantages, entropy, mask, args.tokens,
                                 args.eps_low, args.eps_high, args.entropy_coef)
        return torch.autograd.grad(loss, (log_probs, entropy))

    report.measure("magic_loss", "%d tokens" % args.tokens, torch.float32, forward_backward,
                   ours="LossForward + LossBackward (GrpoBenchmarks)",
                   implementation="eager PyTorch: exp, clamp, minimum, masked sum; autograd for the gradients",
                   nbytes=7.0 * args.tokens * 4,
                   bytes_counting="5 fp32 inputs read + 2 fp32 gradients written per token",
                   eps_low=args.eps_low, eps_high=args.eps_high, entropy_coef=args.entropy_coef)


# ---------------------------------------------------------------- the model

def import_transformers():
    """(transformers module, None) or (None, why not): the GPU machine has it, CI does not."""
    try:
        import transformers  # noqa: PLC0415 - optional
        return transformers, None
    except ImportError:
        return None, "transformers not installed"
    except Exception as error:  # noqa: BLE001 - installed but unusable with this torch
        return None, "transformers failed to import: %s" % refbench.short_error(error)


def model_config(transformers, tiny):
    """A Qwen2Config of the 1.5B shape (or the tiny one): untied LM head as DeepSeek-R1-Distill-Qwen-1.5B, no
    EOS (random weights would stop rows at random lengths), no sliding window."""
    shape = TINY if tiny else QWEN25_15B
    return transformers.Qwen2Config(max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                    use_cache=True, bos_token_id=None, eos_token_id=None, pad_token_id=0,
                                    use_sliding_window=False, **shape)


def instantiate(transformers, config):
    """Qwen2ForCausalLM from the config with SDPA attention, by the public from_config where it takes
    attn_implementation, else by setting it on the config."""
    try:
        return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    except TypeError:
        config._attn_implementation = "sdpa"
        return transformers.Qwen2ForCausalLM(config)


def build_model(transformers, config, device):
    """The model with random fp32 weights, made directly on the device where torch can (torch.device as a
    context, 2.0+: a 1.5B model's CPU init takes a while), else on the CPU and moved; with the attention
    implementation it really uses and where it was made."""
    made_on = "cpu, then moved"
    model = None
    if device.type != "cpu" and hasattr(device, "__enter__"):
        try:
            with device:
                model = instantiate(transformers, config)
            made_on = str(device)
        except Exception as error:  # noqa: BLE001 - fall back to the plain way
            made_on = "cpu, then moved (on the device it raised %s)" % refbench.short_error(error)
            model = None
            refbench.free_memory(device)
    if model is None:
        model = instantiate(transformers, config)
    model = model.to(device=device, dtype=torch.float32)
    return model, getattr(model.config, "_attn_implementation", None), made_on


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def model_flops(config, tokens, seq_len):
    """Training flops of one step: 6 x (linear-layer parameters, LM head included) x tokens for the GEMMs,
    plus attention's forward 4 S^2 H D / 2 per sequence and layer, times 3.5 for forward + backward (2.5x)."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    heads, kv_heads, layers = config.num_attention_heads, config.num_key_value_heads, config.num_hidden_layers
    d = h // heads
    linear = layers * (h * h + 2 * h * kv_heads * d + h * h + 3 * h * i) + h * v
    sequences = tokens // seq_len
    attention = layers * sequences * 4.0 * seq_len * seq_len * heads * d / 2
    return 6.0 * linear * tokens + 3.5 * attention


def make_optimizer(params, device):
    """fp32 AdamW with the recipe's settings: fused on CUDA, foreach on the CPU where this PyTorch has them."""
    options = dict(lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    tries = ([("fused", {"fused": True})] if device.type == "cuda" else []) + [("foreach", {"foreach": True}), ("default", {})]
    for name, extra in tries:
        try:
            return torch.optim.AdamW(params, **options, **extra), "torch.optim.AdamW(%s)" % (
                ", ".join("%s=True" % k for k in extra) or "default")
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("torch.optim.AdamW could not be made")


def autocast(device):
    """bf16 autocast on the device: matmuls and attention in bf16, reductions and the loss in fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train_step_fn(model, optimizer, batches, advantages, args):
    """One optimizer step over the micro-batches: forward, log-probs, MAGIC loss, backward for each, then
    clip and AdamW. On-policy as the recipe runs it: logp_old is the detached logp of the same forward."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        optimizer.zero_grad(set_to_none=True)
        for ids, adv in zip(batches, advantages):
            with autocast(ids.device):
                logits = model(input_ids=ids).logits
            # Each position predicts the next token; the last position's target wraps around (benchmark only).
            targets = torch.roll(ids, shifts=-1, dims=1)
            log_probs, entropy = token_log_probs_and_entropy(logits, targets)
            loss = magic_policy_loss(log_probs, log_probs.detach(), adv, entropy, torch.ones_like(log_probs),
                                     args.tokens, args.eps_low, args.eps_high, args.entropy_coef)
            loss.backward()
            del logits, log_probs, entropy, loss
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return step


def peak_memory(device):
    """Peak bytes allocated by PyTorch on the GPU since the last reset; on the CPU the process's peak RSS."""
    if device.type == "cuda":
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(device),
                "peak_memory_reserved_bytes": torch.cuda.max_memory_reserved(device),
                "peak_memory_counting": "torch.cuda.max_memory_allocated (weights, gradients, optimizer state included)"}
    return {"peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_memory_counting": "peak resident set size of the process (CPU)"}


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def model_section(report):
    """The training step and generation of the 1.5B-shaped model with transformers, or two skip records."""
    args = report.args
    device = report.device
    train_shape = "%d tokens (%d x %d), 1.5B shape" % (args.tokens, args.tokens // args.seq_len, args.seq_len)
    gen_shape = "%d prompts of %d + %d new tokens, 1.5B shape" % (args.gen_batch, args.prompt_len, args.gen_tokens)
    if args.tiny:
        train_shape, gen_shape = train_shape.replace("1.5B", "tiny"), gen_shape.replace("1.5B", "tiny")
    transformers, why_not = import_transformers()
    if transformers is None:
        report.skip("train_step", train_shape, torch.bfloat16, why_not)
        report.skip("generation", gen_shape, torch.bfloat16, why_not)
        return
    report.document["software"]["transformers"] = transformers.__version__
    report.check_time()
    torch.manual_seed(0)
    config = model_config(transformers, args.tiny)
    started = time.perf_counter()
    model, attention, made_on = build_model(transformers, config, device)
    report.document["model"] = {"config": {k: getattr(config, k) for k in list(TINY) + ["tie_word_embeddings"]},
                                "parameters": count_parameters(model), "attn_implementation": attention,
                                "initialised_on": made_on, "build_s": round(time.perf_counter() - started, 1)}
    implementation = "transformers %s Qwen2ForCausalLM (attn_implementation=%r)" % (transformers.__version__, attention)
    try:
        train_section(report, model, config, train_shape, implementation)
    finally:
        refbench.free_memory(device)
    generation_section(report, model, config, gen_shape, implementation)


def train_section(report, model, config, shape, implementation):
    """Times whole training steps (median), then reports tokens/s, model TFLOP/s and peak memory."""
    args, device = report.args, report.device
    model.train()
    optimizer, optimizer_label = make_optimizer([p for p in model.parameters() if p.requires_grad], device)
    sequences = args.tokens // args.seq_len
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, config.vocab_size, (1, args.seq_len), generator=generator).to(device)
               for _ in range(sequences)]
    advantages = [torch.full((1, args.seq_len), float(torch.randn(1, generator=generator)), device=device)
                  for _ in range(sequences)]
    step = train_step_fn(model, optimizer, batches, advantages, args)
    reset_peak(device)
    flops = model_flops(config, args.tokens, args.seq_len)
    record = report.measure(
        "train_step", shape, torch.bfloat16, step, repeats=min(report.args.repeats, 3), warmup=1, key="model/train_step/bf16",
        ours="TrainingStep (bench/OR1.Bench ModelBenchmarks)",
        implementation="%s, fp32 weights under torch.autocast(bfloat16), log_softmax in fp32, MAGIC loss, "
                       "clip_grad_norm_(1.0), %s" % (implementation, optimizer_label),
        flops=flops, flops_counting="6 x linear parameters (LM head included) x tokens + 3.5 x causal attention "
                                    "forward (4*S^2*H*D/2 per sequence and layer)",
        tokens=args.tokens, micro_batches=sequences, micro_batch_tokens=args.seq_len)
    if "ms" in record:
        record.update(peak_memory(device))
        report.write()
    del optimizer
    for p in model.parameters():
        p.grad = None


def generation_section(report, model, config, shape, implementation):
    """Times one `generate` of gen_batch x gen_tokens (after a short warm-up generate) in bf16."""
    args, device = report.args, report.device
    report.check_time()
    model.to(torch.bfloat16).eval()
    refbench.free_memory(device)
    generator = torch.Generator().manual_seed(2)
    prompts = torch.randint(1, config.vocab_size, (args.gen_batch, args.prompt_len), generator=generator).to(device)
    attention_mask = torch.ones_like(prompts)
    # top_k=0 turns transformers' default top-k of 50 off (the recipe samples the whole nucleus).
    options = dict(do_sample=True, top_p=args.top_p, top_k=0, temperature=1.0, pad_token_id=0)
    lengths = []

    def generate(new_tokens):
        with torch.no_grad():
            out = model.generate(input_ids=prompts, attention_mask=attention_mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, **options)
        lengths.append(out.shape[1] - args.prompt_len)
        return out

    reset_peak(device)
    sampling = "do_sample=True, top_p=%g, top_k=0, temperature=1" % args.top_p
    try:
        generate(min(8, args.gen_tokens))  # warm-up: kernels, allocator, generation config
    except ValueError as error:
        # A transformers that refuses top_k=0 samples with its default top-k instead; the record says so.
        options.pop("top_k")
        sampling = "do_sample=True, top_p=%g, temperature=1, top_k left at transformers' default (top_k=0 raised %s)" % (
            args.top_p, refbench.short_error(error))
        try:
            generate(min(8, args.gen_tokens))
        except Exception as error2:  # noqa: BLE001 - recorded, the run goes on
            report.fail("generation", shape, torch.bfloat16, error2)
            return
    except Exception as error:  # noqa: BLE001 - recorded, the run goes on
        report.fail("generation", shape, torch.bfloat16, error)
        return
    record = report.measure(
        "generation", shape, torch.bfloat16, lambda: generate(args.gen_tokens), repeats=1, warmup=0, key="model/generate/bf16",
        ours="Generation (bench/OR1.Bench ModelBenchmarks)",
        implementation="%s, bf16 weights, model.generate(%s), KV cache as transformers defaults" % (implementation, sampling),
        tokens=args.gen_batch * args.gen_tokens)
    if "ms" in record:
        new_tokens = lengths[-1]
        record.update(peak_memory(device), new_tokens_per_row=new_tokens, tokens=args.gen_batch * new_tokens,
                      tokens_per_s=args.gen_batch * new_tokens / (record["ms"] * 1e-3),
                      note="warmed up by a generate of 8 tokens; tokens/s counts new tokens only")
        report.write()


def main(argv=None):
    args = refbench.parse_args(__doc__.split("\n\n")[0], add_arguments, argv)
    settle_shapes(args)
    report = refbench.Report("gpu_model.py", args)
    report.document["shapes"] = {k: getattr(args, k) for k in ("tokens", "seq_len", "gen_batch", "gen_tokens", "prompt_len")}
    return report.run([loss_section, model_section])


if __name__ == "__main__":
    sys.exit(main())
