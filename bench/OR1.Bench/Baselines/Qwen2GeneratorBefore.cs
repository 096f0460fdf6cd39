using System.Diagnostics;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native;

namespace OR1.Bench.Baselines;

/// <summary>
/// The generator the rollout engine (issue 21) replaced, kept for the benchmarks' before/after only: static batches.
/// Batched sampling with a KV cache: the prompts (each repeated n times) are prefilled as one packed
/// batch whose keys and values are scattered into the cache, then every step decodes one token per
/// unfinished sample through the decode attention path. Finished samples leave the batch (their cache
/// slot stays, the decode op reads slots through an indirection), so late steps cost only what is left.
/// </summary>
/// <remarks>
/// Round trips: a decode step waits for the device once, to read the sampled tokens (the host decides which samples
/// stop). The sampled tokens' log-probs stay on the device, each step's in the next rows of one buffer, and come back
/// in one copy when the chunk is done. Every device buffer is sized once (grow-only for the prefill and the log-prob
/// history), so after the first chunk of a size nothing is allocated per prefill or per step.
/// </remarks>
public sealed class Qwen2GeneratorBefore : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IBackend _backend;
    private readonly KvCache _cache;
    private readonly Qwen2Activations _decode;
    private Qwen2Activations? _prefill;
    private readonly PackedBatchBuffers _prefillBatch;
    private Tensor? _prefillCacheRows, _logProbHistory;
    private readonly Tensor _decodeInputs, _sampled, _logits, _lastHidden, _lastRows;
    private readonly int[] _hostDecodeInputs;
    private int[] _hostPromptTokens = [], _hostPromptLengths = [], _hostCacheRows = [], _historySample = [];
    private float[] _hostLogProbHistory = [];

    /// <summary>
    /// What a decode step uploads, one row of MaxBatch ints each in <see cref="_decodeInputs"/>, so that the step's
    /// inputs go to the device in one copy: the tokens to embed, their positions, the cache slot of each row, the
    /// cache length after this token, and the flattened cache row the token's key and value go to.
    /// </summary>
    private enum DecodeInput { Tokens, Positions, Slots, Lengths, CacheRows, Count }

    /// <summary>Prepares buffers for up to <paramref name="maxBatch"/> concurrent samples of up to <paramref name="maxLength"/> tokens (prompt + generated).</summary>
    public Qwen2GeneratorBefore(Qwen2Model model, int maxBatch, int maxLength)
    {
        _model = model;
        _backend = model.Backend;
        MaxBatch = maxBatch;
        MaxLength = maxLength;
        var c = model.Config;
        _cache = new KvCache(_backend, c, maxBatch, maxLength, model.Storage);
        _decode = new Qwen2Activations(_backend, c, maxBatch, model.Storage);
        _prefillBatch = new PackedBatchBuffers(_backend, c.VocabSize);
        _decodeInputs = Ints((int)DecodeInput.Count * maxBatch);
        _hostDecodeInputs = new int[(int)DecodeInput.Count * maxBatch];
        _sampled = Ints(maxBatch);
        _lastRows = Ints(maxBatch);
        _logits = _backend.Allocate(DType.Float32, new TensorShape(maxBatch, c.VocabSize));
        _lastHidden = _backend.Allocate(model.Storage, new TensorShape(maxBatch, c.HiddenSize));
    }

    public int MaxBatch { get; }
    public int MaxLength { get; }

    private Tensor Ints(int n) => _backend.Allocate(DType.Int32, new TensorShape(n));

    /// <summary>The first <paramref name="rows"/> entries of one decode input on the device.</summary>
    private Tensor DeviceInput(DecodeInput input, int rows) => _decodeInputs.SliceRows((int)input * MaxBatch, rows);

    /// <summary>The host staging of one decode input (all MaxBatch entries).</summary>
    private Span<int> HostInput(DecodeInput input) => _hostDecodeInputs.AsSpan((int)input * MaxBatch, MaxBatch);

    /// <summary>
    /// Samples <see cref="GenerationOptions.SamplesPerPrompt"/> continuations of every prompt. Results are
    /// ordered by prompt, then sample. <paramref name="progress"/> hears after every decode step how many samples are
    /// finished and how many tokens were sampled.
    /// </summary>
    public IReadOnlyList<GeneratedSample> Generate(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, IProgress<GenerationProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        if (options.SamplesPerPrompt < 1) throw new ArgumentException($"SamplesPerPrompt is {options.SamplesPerPrompt}; it must be at least 1", nameof(options));
        if (options.MaxNewTokens < 1) throw new ArgumentException($"MaxNewTokens is {options.MaxNewTokens}; it must be at least 1", nameof(options));
        for (int p = 0; p < prompts.Count; p++)
        {
            if (prompts[p].Count == 0) throw new ArgumentException($"prompt {p} is empty", nameof(prompts));
            if (prompts[p].Count + options.MaxNewTokens > MaxLength)
                throw new ArgumentException($"prompt {p} has {prompts[p].Count} tokens; with {options.MaxNewTokens} new tokens it exceeds the generator's maximum length {MaxLength}", nameof(prompts));
            // Checked here, before any chunk runs, so a bad id in the last prompt wastes no generation.
            var prompt = prompts[p];
            for (int i = 0; i < prompt.Count; i++)
                if ((uint)prompt[i] >= (uint)_model.Config.VocabSize)
                    throw new ArgumentException($"prompt {p} has token id {prompt[i]} at position {i}, outside the vocabulary [0, {_model.Config.VocabSize})", nameof(prompts));
        }
        var requests = new List<(int Prompt, int Sample)>();
        for (int p = 0; p < prompts.Count; p++)
            for (int s = 0; s < options.SamplesPerPrompt; s++) requests.Add((p, s));

        var results = new GeneratedSample[requests.Count];
        var done = new ProgressCount(requests.Count, progress);
        ulong chunkCounter = options.CounterOffset;
        for (int start = 0; start < requests.Count; start += MaxBatch)
        {
            int count = Math.Min(MaxBatch, requests.Count - start);
            var chunk = requests.GetRange(start, count);
            // Each chunk draws from its own counter range so chunks never reuse random numbers.
            var samples = GenerateChunk(chunk.Select(r => prompts[r.Prompt]).ToArray(), chunk.Select(r => options.MaxNewTokensOf(r.Prompt)).ToArray(), options, chunkCounter, done);
            chunkCounter += (ulong)options.MaxNewTokens + 1;
            for (int i = 0; i < count; i++)
                results[start + i] = new GeneratedSample(chunk[i].Prompt, chunk[i].Sample, samples[i].Tokens, samples[i].LogProbs, samples[i].Truncated);
        }
        return results;
    }

    /// <summary>Finished samples and sampled tokens of one Generate call, reported after each decode step.</summary>
    private sealed class ProgressCount(int total, IProgress<GenerationProgress>? progress)
    {
        public int Finished;
        public long Tokens;

        public void Report() => progress?.Report(new GenerationProgress(Finished, total, Tokens));
    }

    private (List<int> Tokens, List<float> LogProbs, bool Truncated)[] GenerateChunk(IReadOnlyList<int>[] prompts, int[] limits, GenerationOptions options, ulong counterBase, ProgressCount done)
    {
        int b = prompts.Length;
        var c = _model.Config;
        var outputs = new (List<int> Tokens, List<float> LogProbs, bool Truncated)[b];
        for (int i = 0; i < b; i++) outputs[i] = ([], [], false);
        var stop = options.StopTokenIds as ISet<int> ?? new HashSet<int>(options.StopTokenIds);

        // Prefill: all prompts packed, keys/values scattered into slot i, logits of each last position. The packed
        // prompts, their cache rows and the activations live in grow-only buffers (no allocation once warm).
        int total = 0;
        for (int i = 0; i < b; i++) total += prompts[i].Count;
        Grow(ref _hostPromptTokens, total);
        Grow(ref _hostCacheRows, total);
        Grow(ref _hostPromptLengths, b);
        Span<int> lastRows = HostInput(DecodeInput.Tokens)[..b]; // staging for the prefill's last rows; decode reuses it
        for (int i = 0, at = 0; i < b; i++)
        {
            var prompt = prompts[i];
            _hostPromptLengths[i] = prompt.Count;
            for (int p = 0; p < prompt.Count; p++, at++)
            {
                _hostPromptTokens[at] = prompt[p];
                _hostCacheRows[at] = i * MaxLength + p;
            }
            lastRows[i] = at - 1;
        }
        var batch = _prefillBatch.Load(_hostPromptTokens.AsSpan(0, total), _hostPromptLengths.AsSpan(0, b));
        if (_prefill is null || _prefill.Capacity < total)
        {
            _prefill?.Dispose();
            _prefill = new Qwen2Activations(_backend, c, total, _model.Storage);
        }
        if (_prefillCacheRows is null || _prefillCacheRows.ElementCount < total)
        {
            _prefillCacheRows?.Dispose();
            _prefillCacheRows = Ints(Math.Max(total, _prefillBatch.Capacity));
        }
        var cacheRowTensor = _prefillCacheRows.SliceRows(0, total);
        _backend.Upload<int>(_hostCacheRows.AsSpan(0, total), cacheRowTensor);
        _backend.EmbeddingForward(batch.Tokens, _model.Weights.Embedding, _prefill.Residuals[0].SliceRows(0, total));
        _model.RunLayers(_prefill, total, batch.Positions, (layer, _, q, k, v, attention, lse) =>
        {
            _backend.AttentionForward(q, k, v, batch.Sequences, _model.Heads, _model.Heads.DefaultScale, attention, lse);
            _backend.WriteKeyCache(k, cacheRowTensor, _cache.Keys[layer]);
            _backend.ScatterRows(v, cacheRowTensor, _cache.ValueRows(layer));
        });
        var hidden = _model.FinalNorm(_prefill, total);
        _backend.Upload<int>(lastRows, _lastRows.SliceRows(0, b));
        _backend.GatherRows(hidden, _lastRows.SliceRows(0, b), _lastHidden.SliceRows(0, b));

        // The sampled tokens' log-probs, step after step: step s writes rows [written, written + rows) of the history
        // and historySample[k] says whose row k is; they come back in one copy after the last step.
        int historyCapacity = b * options.MaxNewTokens;
        if (_logProbHistory is null || _logProbHistory.ElementCount < historyCapacity)
        {
            _logProbHistory?.Dispose();
            _logProbHistory = _backend.Allocate(DType.Float32, new TensorShape(historyCapacity), "sampled log-probs");
            _hostLogProbHistory = new float[historyCapacity];
            _historySample = new int[historyCapacity];
        }
        int written = 0;

        // Active samples: row r of the decode batch is sample active[r]; the step's survivors go to the other array
        // (no allocation per decode step).
        var active = new int[b];
        var survivors = new int[b];
        for (int i = 0; i < b; i++) active[i] = i;
        int rows = b;
        var lengths = prompts.Select(p => p.Count).ToArray();
        var tokenBuffer = new int[b];
        Tensor lastHidden = _lastHidden.SliceRows(0, b);
        for (int step = 0; rows > 0; step++)
        {
            var logits = _logits.SliceRows(0, rows);
            _model.Logits(lastHidden, logits);
            _backend.Sample(logits, options.Sampling, options.Seed, counterBase + (ulong)step, _sampled.SliceRows(0, rows), _logProbHistory.SliceRows(written, rows));
            // The step's one synchronisation: the host decides from the tokens which samples stop.
            _backend.Download<int>(_sampled.SliceRows(0, rows), tokenBuffer.AsSpan(0, rows));
            int bad = tokenBuffer.AsSpan(0, rows).IndexOfAnyExceptInRange(0, c.VocabSize - 1);
            if (bad >= 0)
                throw new InvalidOperationException($"the sampler returned token id {tokenBuffer[bad]} for sample {active[bad]} at step {step}, outside the vocabulary [0, {c.VocabSize}); the logits are probably not finite");

            // Samples that go on: their sampled tokens are decoded next, the others are finished.
            Span<int> nextTokens = HostInput(DecodeInput.Tokens);
            int n = 0;
            for (int r = 0; r < rows; r++)
            {
                int i = active[r];
                var o = outputs[i];
                _historySample[written + r] = i;
                o.Tokens.Add(tokenBuffer[r]);
                if (stop.Contains(tokenBuffer[r])) { done.Finished++; continue; }
                if (o.Tokens.Count >= limits[i])
                {
                    outputs[i] = (o.Tokens, o.LogProbs, true);
                    done.Finished++;
                    continue;
                }
                nextTokens[n] = tokenBuffer[r];
                survivors[n++] = i;
            }
            written += rows;
            done.Tokens += rows;
            done.Report();
            (active, survivors) = (survivors, active);
            rows = n;
            if (n == 0) break;

            Span<int> positions = HostInput(DecodeInput.Positions), slots = HostInput(DecodeInput.Slots);
            Span<int> cacheLengths = HostInput(DecodeInput.Lengths), cacheRows = HostInput(DecodeInput.CacheRows);
            for (int j = 0; j < n; j++)
            {
                int i = active[j];
                positions[j] = lengths[i];
                cacheLengths[j] = lengths[i] + 1;
                slots[j] = i;
                cacheRows[j] = i * MaxLength + lengths[i];
                lengths[i]++;
                // Generated here from checked prompts (prompt + MaxNewTokens <= MaxLength), so an assertion suffices.
                Debug.Assert((uint)i < (uint)MaxBatch && lengths[i] >= 1 && lengths[i] <= MaxLength, "decode slot or cache length out of range");
            }
            // One copy for all five inputs: rows of MaxBatch ints, the last one (cache rows) cut to the n entries used.
            int uploaded = (int)DecodeInput.CacheRows * MaxBatch + n;
            _backend.Upload<int>(_hostDecodeInputs.AsSpan(0, uploaded), _decodeInputs.SliceRows(0, uploaded));

            _backend.EmbeddingForward(DeviceInput(DecodeInput.Tokens, n), _model.Weights.Embedding, _decode.Residuals[0].SliceRows(0, n));
            var slotTensor = DeviceInput(DecodeInput.Slots, n);
            var lengthTensor = DeviceInput(DecodeInput.Lengths, n);
            var rowsTensor = DeviceInput(DecodeInput.CacheRows, n);
            _model.RunLayers(_decode, n, DeviceInput(DecodeInput.Positions, n), (layer, _, q, k, v, attention, _) =>
            {
                _backend.WriteKeyCache(k, rowsTensor, _cache.Keys[layer]);
                _backend.ScatterRows(v, rowsTensor, _cache.ValueRows(layer));
                _backend.AttentionDecode(q, _cache.Keys[layer], _cache.Values[layer], slotTensor, lengthTensor, _model.Heads, _model.Heads.DefaultScale, attention);
            });
            lastHidden = _model.FinalNorm(_decode, n);
        }

        // The chunk's one more synchronisation: every sampled log-prob at once, handed out in sampling order.
        _backend.Download<float>(_logProbHistory.SliceRows(0, written), _hostLogProbHistory.AsSpan(0, written));
        for (int k = 0; k < written; k++) outputs[_historySample[k]].LogProbs.Add(_hostLogProbHistory[k]);
        return outputs;
    }

    /// <summary>Makes <paramref name="buffer"/> hold at least <paramref name="n"/> elements (grow-only host staging).</summary>
    private static void Grow(ref int[] buffer, int n)
    {
        if (buffer.Length < n) buffer = new int[Math.Max(n, buffer.Length + buffer.Length / 2)];
    }

    public void Dispose()
    {
        _cache.Dispose();
        _decode.Dispose();
        _prefill?.Dispose();
        _prefillBatch.Dispose();
        _prefillCacheRows?.Dispose();
        _logProbHistory?.Dispose();
        foreach (var t in new[] { _decodeInputs, _sampled, _logits, _lastHidden, _lastRows }) t.Dispose();
    }
}
