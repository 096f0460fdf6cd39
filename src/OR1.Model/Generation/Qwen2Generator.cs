using OR1.Native;

namespace OR1.Model.Generation;

/// <summary>
/// Batched sampling with a KV cache: the prompts (each repeated n times) are prefilled as one packed
/// batch whose keys and values are scattered into the cache, then every step decodes one token per
/// unfinished sample through the decode attention path. Finished samples leave the batch (their cache
/// slot stays, the decode op reads slots through an indirection), so late steps cost only what is left.
/// </summary>
public sealed class Qwen2Generator : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IBackend _backend;
    private readonly KvCache _cache;
    private readonly Qwen2Activations _decode;
    private Qwen2Activations? _prefill;
    private readonly Tensor _tokens, _positions, _slots, _lengths, _cacheRows, _sampled, _sampledLogProbs, _logits, _lastHidden, _lastRows;

    /// <summary>Prepares buffers for up to <paramref name="maxBatch"/> concurrent samples of up to <paramref name="maxLength"/> tokens (prompt + generated).</summary>
    public Qwen2Generator(Qwen2Model model, int maxBatch, int maxLength)
    {
        _model = model;
        _backend = model.Backend;
        MaxBatch = maxBatch;
        MaxLength = maxLength;
        var c = model.Config;
        _cache = new KvCache(_backend, c, maxBatch, maxLength, model.Storage);
        _decode = new Qwen2Activations(_backend, c, maxBatch, model.Storage);
        _tokens = Ints(maxBatch);
        _positions = Ints(maxBatch);
        _slots = Ints(maxBatch);
        _lengths = Ints(maxBatch);
        _cacheRows = Ints(maxBatch);
        _sampled = Ints(maxBatch);
        _lastRows = Ints(maxBatch);
        _sampledLogProbs = _backend.Allocate(DType.Float32, new TensorShape(maxBatch));
        _logits = _backend.Allocate(DType.Float32, new TensorShape(maxBatch, c.VocabSize));
        _lastHidden = _backend.Allocate(model.Storage, new TensorShape(maxBatch, c.HiddenSize));
    }

    public int MaxBatch { get; }
    public int MaxLength { get; }

    private Tensor Ints(int n) => _backend.Allocate(DType.Int32, new TensorShape(n));

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
            foreach (int t in prompts[p])
                if ((uint)t >= (uint)_model.Config.VocabSize)
                    throw new ArgumentException($"prompt {p} contains token id {t}, outside the vocabulary [0, {_model.Config.VocabSize})", nameof(prompts));
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
            var samples = GenerateChunk(chunk.Select(r => prompts[r.Prompt]).ToArray(), options, chunkCounter, done);
            chunkCounter += options.CountersPerChunk;
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

    private (List<int> Tokens, List<float> LogProbs, bool Truncated)[] GenerateChunk(IReadOnlyList<int>[] prompts, GenerationOptions options, ulong counterBase, ProgressCount done)
    {
        int b = prompts.Length;
        var c = _model.Config;
        var outputs = new (List<int> Tokens, List<float> LogProbs, bool Truncated)[b];
        for (int i = 0; i < b; i++) outputs[i] = ([], [], false);
        var stop = options.StopTokenIds as ISet<int> ?? new HashSet<int>(options.StopTokenIds);

        // Prefill: all prompts packed, keys/values scattered into slot i, logits of each last position.
        using var batch = PackedBatch.Create(_backend, prompts);
        int total = batch.TokenCount;
        if (_prefill is null || _prefill.Capacity < total)
        {
            _prefill?.Dispose();
            _prefill = new Qwen2Activations(_backend, c, total, _model.Storage);
        }
        var cacheRows = new int[total];
        var lastRows = new int[b];
        for (int i = 0, at = 0; i < b; i++)
        {
            for (int p = 0; p < prompts[i].Count; p++, at++) cacheRows[at] = i * MaxLength + p;
            lastRows[i] = at - 1;
        }
        using var cacheRowTensor = _backend.Allocate(DType.Int32, new TensorShape(total));
        _backend.Upload<int>(cacheRows, cacheRowTensor);
        _backend.EmbeddingForward(batch.Tokens, _model.Weights.Embedding, _prefill.Residuals[0].SliceRows(0, total));
        _model.RunLayers(_prefill, total, batch.Positions, (layer, _, q, k, v, attention, lse) =>
        {
            _backend.AttentionForward(q, k, v, batch.Sequences, _model.Heads, _model.Heads.DefaultScale, attention, lse);
            _backend.ScatterRows(k, cacheRowTensor, _cache.KeyRows(layer));
            _backend.ScatterRows(v, cacheRowTensor, _cache.ValueRows(layer));
        });
        var hidden = _model.FinalNorm(_prefill, total);
        _backend.Upload<int>(lastRows, _lastRows.SliceRows(0, b));
        _backend.GatherRows(hidden, _lastRows.SliceRows(0, b), _lastHidden.SliceRows(0, b));

        // Active samples: row r of the decode batch is sample active[r]; the step's survivors go to the other array
        // (no allocation per decode step).
        var active = new int[b];
        var survivors = new int[b];
        for (int i = 0; i < b; i++) active[i] = i;
        int rows = b;
        var lengths = prompts.Select(p => p.Count).ToArray();
        var tokenBuffer = new int[b];
        var logProbBuffer = new float[b];
        var hostInts = new int[b];
        Tensor lastHidden = _lastHidden.SliceRows(0, b);
        for (int step = 0; rows > 0; step++)
        {
            var logits = _logits.SliceRows(0, rows);
            _model.Logits(lastHidden, logits);
            _backend.Sample(logits, options.Sampling, options.Seed, counterBase + (ulong)step, _sampled.SliceRows(0, rows), _sampledLogProbs.SliceRows(0, rows));
            _backend.Download<int>(_sampled.SliceRows(0, rows), tokenBuffer.AsSpan(0, rows));
            _backend.Download<float>(_sampledLogProbs.SliceRows(0, rows), logProbBuffer.AsSpan(0, rows));

            // Samples that go on: their sampled tokens are decoded next (hostInts), the others are finished.
            int n = 0;
            for (int r = 0; r < rows; r++)
            {
                int i = active[r];
                var o = outputs[i];
                o.Tokens.Add(tokenBuffer[r]);
                o.LogProbs.Add(logProbBuffer[r]);
                if (stop.Contains(tokenBuffer[r])) { done.Finished++; continue; }
                if (o.Tokens.Count >= options.MaxNewTokens)
                {
                    outputs[i] = (o.Tokens, o.LogProbs, true);
                    done.Finished++;
                    continue;
                }
                hostInts[n] = tokenBuffer[r];
                survivors[n++] = i;
            }
            done.Tokens += rows;
            done.Report();
            (active, survivors) = (survivors, active);
            rows = n;
            if (n == 0) break;

            _backend.Upload<int>(hostInts.AsSpan(0, n), _tokens.SliceRows(0, n));
            for (int j = 0; j < n; j++) hostInts[j] = lengths[active[j]];
            _backend.Upload<int>(hostInts.AsSpan(0, n), _positions.SliceRows(0, n));
            for (int j = 0; j < n; j++) hostInts[j] = lengths[active[j]] + 1;
            _backend.Upload<int>(hostInts.AsSpan(0, n), _lengths.SliceRows(0, n));
            for (int j = 0; j < n; j++) hostInts[j] = active[j];
            _backend.Upload<int>(hostInts.AsSpan(0, n), _slots.SliceRows(0, n));
            for (int j = 0; j < n; j++) hostInts[j] = active[j] * MaxLength + lengths[active[j]];
            _backend.Upload<int>(hostInts.AsSpan(0, n), _cacheRows.SliceRows(0, n));
            for (int j = 0; j < n; j++) lengths[active[j]]++;

            _backend.EmbeddingForward(_tokens.SliceRows(0, n), _model.Weights.Embedding, _decode.Residuals[0].SliceRows(0, n));
            var slots = _slots.SliceRows(0, n);
            var cacheLengths = _lengths.SliceRows(0, n);
            var rowsTensor = _cacheRows.SliceRows(0, n);
            _model.RunLayers(_decode, n, _positions.SliceRows(0, n), (layer, _, q, k, v, attention, _) =>
            {
                _backend.ScatterRows(k, rowsTensor, _cache.KeyRows(layer));
                _backend.ScatterRows(v, rowsTensor, _cache.ValueRows(layer));
                _backend.AttentionDecode(q, _cache.Keys[layer], _cache.Values[layer], slots, cacheLengths, _model.Heads, _model.Heads.DefaultScale, attention);
            });
            lastHidden = _model.FinalNorm(_decode, n);
        }
        return outputs;
    }

    public void Dispose()
    {
        _cache.Dispose();
        _decode.Dispose();
        _prefill?.Dispose();
        foreach (var t in new[] { _tokens, _positions, _slots, _lengths, _cacheRows, _sampled, _sampledLogProbs, _logits, _lastHidden, _lastRows }) t.Dispose();
    }
}
