using System.Diagnostics;
using OR1.Native;

namespace OR1.Model.Generation;

/// <summary>
/// The rollout engine: continuous batching over a KV cache of <see cref="MaxBatch"/> slots. Requests (a prompt and one
/// of its samples) wait in order; every iteration decodes one token for each running request, then fills the slots
/// that freed up with waiting requests, so the decode batch stays full until the queue is empty (a long response no
/// longer holds a whole batch at batch 1-2). The admitted requests' prompts are prefilled as one packed batch, a prompt
/// once for all of its requests admitted together (its keys and values written into each of their slots), up to
/// <see cref="PrefillTokenBudget"/> prompt tokens per iteration; each admitted request draws its first token from its
/// prompt's last position. Row b of any step draws from its request's own random stream, keyed by (seed, request id,
/// position) (<see cref="IBackend.Sample(Tensor, SamplingOptions, ulong, Tensor, Tensor, Tensor)"/>), so a request's
/// tokens do not depend on which requests share its batch or where its row sits. Prefill and decode use inference
/// arenas (<see cref="Qwen2Activations.ForInference"/>): no gradients, no saved training activations.
/// </summary>
/// <remarks>
/// Round trips: a decode step waits for the device once, to read the sampled tokens (the host decides which requests
/// stop), and an iteration that admits requests once more, for their first tokens. The sampled tokens' log-probs stay
/// on the device, each step's in the next rows of one buffer of MaxBatch x (MaxNewTokens + 1), and come back in one copy
/// at the end (or when that buffer fills, in a call of many more requests than the batch). Every device buffer
/// is sized once or grows only (the prefill arena and its row table, the log-prob history), so a warm generator
/// allocates nothing per prefill or per step.
/// </remarks>
public sealed class Qwen2Generator : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IBackend _backend;
    private readonly KvCache _cache;
    private readonly Qwen2Activations _decode;
    private Qwen2Activations? _prefill;
    private readonly PackedBatchBuffers _prefillBatch;
    private Tensor? _prefillCacheRows, _logProbHistory;
    private readonly Tensor _decodeInputs, _sampled, _logits, _lastHidden, _lastRows, _waveStreams;
    private readonly int[] _hostDecodeInputs, _hostWaveStreams;
    private int[] _hostPromptTokens = [], _hostPromptLengths = [], _hostCacheRows = [], _historyOwner = [];
    private float[] _hostLogProbHistory = [];

    /// <summary>
    /// What a decode step uploads in one copy, as consecutive runs of <see cref="MaxBatch"/> ints (two runs for the
    /// streams): the tokens to embed, their positions, the cache slot of each row, the cache length after this token,
    /// each row's random stream (request id, position), and the flattened cache row the token's key and value go to.
    /// </summary>
    private enum DecodeInput { Tokens, Positions, Slots, Lengths, Streams, CacheRows }

    private int Offset(DecodeInput input) => (int)input * MaxBatch + (input > DecodeInput.Streams ? MaxBatch : 0);

    /// <summary>
    /// Prepares an engine for up to <paramref name="maxBatch"/> concurrent requests of up to <paramref name="maxLength"/>
    /// tokens each (prompt + generated). <paramref name="prefillTokenBudget"/> caps the prompt tokens prefilled per
    /// iteration (a longer prompt is still prefilled, alone); 0 means max(maxLength, 4096).
    /// </summary>
    public Qwen2Generator(Qwen2Model model, int maxBatch, int maxLength, int prefillTokenBudget = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(prefillTokenBudget);
        _model = model;
        _backend = model.Backend;
        MaxBatch = maxBatch;
        MaxLength = maxLength;
        PrefillTokenBudget = prefillTokenBudget > 0 ? prefillTokenBudget : Math.Max(maxLength, 4096);
        var c = model.Config;
        // One slot more than the batch: the sink that a prefill's copy tables point at for prompts with fewer copies.
        _cache = new KvCache(_backend, c, maxBatch + 1, maxLength, model.Storage);
        _decode = Qwen2Activations.ForInference(_backend, c, maxBatch, model.Storage);
        _prefillBatch = new PackedBatchBuffers(_backend, c.VocabSize);
        _decodeInputs = Ints(Offset(DecodeInput.CacheRows) + maxBatch);
        _hostDecodeInputs = new int[Offset(DecodeInput.CacheRows) + maxBatch];
        _waveStreams = Ints(2 * maxBatch);
        _hostWaveStreams = new int[2 * maxBatch];
        _sampled = Ints(maxBatch);
        _lastRows = Ints(maxBatch);
        _logits = _backend.Allocate(DType.Float32, new TensorShape(maxBatch, c.VocabSize));
        _lastHidden = _backend.Allocate(model.Storage, new TensorShape(maxBatch, c.HiddenSize));
    }

    public int MaxBatch { get; }
    public int MaxLength { get; }

    /// <summary>Prompt tokens prefilled per iteration at most (one longer prompt goes alone).</summary>
    public int PrefillTokenBudget { get; }

    /// <summary>What the last <see cref="Generate"/> call did (rates, occupancy).</summary>
    public GenerationStats LastStats { get; private set; }

    private int SinkSlot => MaxBatch;

    private Tensor Ints(int n) => _backend.Allocate(DType.Int32, new TensorShape(n));

    /// <summary>The first <paramref name="rows"/> entries of one decode input on the device ([rows, 2] for the streams).</summary>
    private Tensor DeviceInput(DecodeInput input, int rows) => input == DecodeInput.Streams
        ? _decodeInputs.SliceRows(Offset(input), 2 * rows).Reshape(rows, 2)
        : _decodeInputs.SliceRows(Offset(input), rows);

    /// <summary>The host staging of one decode input (all of its entries).</summary>
    private Span<int> HostInput(DecodeInput input) =>
        _hostDecodeInputs.AsSpan(Offset(input), input == DecodeInput.Streams ? 2 * MaxBatch : MaxBatch);

    /// <summary>One request: a prompt's sample, its slot while it runs, and what it has produced.</summary>
    private sealed class Request(int prompt, int sample, int promptLength)
    {
        public readonly int Prompt = prompt, Sample = sample;
        public int Slot = -1;
        public int Length = promptLength; // tokens in its cache slot
        public int Pending;               // the last sampled token, decoded next
        public readonly List<int> Tokens = [];
        public readonly List<float> LogProbs = [];
        public bool Truncated;
    }

    /// <summary>
    /// Samples <see cref="GenerationOptions.SamplesPerPrompt"/> continuations of every prompt. Results are ordered by
    /// prompt, then sample. <paramref name="progress"/> hears after every iteration how many samples are finished, how
    /// many tokens were sampled, and the rates and occupancy so far.
    /// </summary>
    public IReadOnlyList<GeneratedSample> Generate(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, IProgress<GenerationProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        if (options.SamplesPerPrompt < 1) throw new ArgumentException($"SamplesPerPrompt is {options.SamplesPerPrompt}; it must be at least 1", nameof(options));
        if (options.MaxNewTokens < 1) throw new ArgumentException($"MaxNewTokens is {options.MaxNewTokens}; it must be at least 1", nameof(options));
        if (options.PromptMaxNewTokens is { } limits)
        {
            if (limits.Count != prompts.Count)
                throw new ArgumentException($"PromptMaxNewTokens has {limits.Count} limits for {prompts.Count} prompts; give one per prompt", nameof(options));
            for (int p = 0; p < limits.Count; p++)
                if (limits[p] < 1 || limits[p] > options.MaxNewTokens)
                    throw new ArgumentException($"PromptMaxNewTokens[{p}] is {limits[p]}; it must be in [1, MaxNewTokens = {options.MaxNewTokens}]", nameof(options));
        }
        for (int p = 0; p < prompts.Count; p++)
        {
            if (prompts[p].Count == 0) throw new ArgumentException($"prompt {p} is empty", nameof(prompts));
            if (prompts[p].Count + options.MaxNewTokens > MaxLength)
                throw new ArgumentException($"prompt {p} has {prompts[p].Count} tokens; with {options.MaxNewTokens} new tokens it exceeds the generator's maximum length {MaxLength}", nameof(prompts));
            // Checked here, before anything runs, so a bad id in the last prompt wastes no generation.
            var prompt = prompts[p];
            for (int i = 0; i < prompt.Count; i++)
                if ((uint)prompt[i] >= (uint)_model.Config.VocabSize)
                    throw new ArgumentException($"prompt {p} has token id {prompt[i]} at position {i}, outside the vocabulary [0, {_model.Config.VocabSize})", nameof(prompts));
        }
        long requestCount = (long)prompts.Count * options.SamplesPerPrompt;
        if (requestCount > int.MaxValue)
            throw new ArgumentException($"{prompts.Count} prompts x {options.SamplesPerPrompt} samples is more requests than one call takes ({int.MaxValue})", nameof(prompts));
        var requests = new Request[requestCount];
        for (int p = 0, r = 0; p < prompts.Count; p++)
            for (int s = 0; s < options.SamplesPerPrompt; s++) requests[r++] = new Request(p, s, prompts[p].Count);

        var run = new Run(this, prompts, requests, options, progress);
        run.Execute();
        LastStats = run.Stats;
        return requests.Select(q => new GeneratedSample(q.Prompt, q.Sample, q.Tokens, q.LogProbs, q.Truncated)).ToArray();
    }

    /// <summary>One Generate call: the queue, the running requests, the free slots and the counters.</summary>
    private sealed class Run(Qwen2Generator g, IReadOnlyList<IReadOnlyList<int>> prompts, Request[] requests, GenerationOptions options,
        IProgress<GenerationProgress>? progress)
    {
        private readonly ISet<int> _stop = options.StopTokenIds as ISet<int> ?? new HashSet<int>(options.StopTokenIds);
        private readonly ulong _seed = options.StreamSeed;
        private readonly bool[] _slotBusy = new bool[g.MaxBatch];
        private readonly int[] _tokens = new int[g.MaxBatch];
        private List<int> _running = new(g.MaxBatch), _survivors = new(g.MaxBatch);
        private readonly List<int> _admitted = new(g.MaxBatch);
        private int _next, _finished, _written;
        private long _sampledTokens;
        private GenerationStats _stats = new() { Slots = g.MaxBatch };

        public GenerationStats Stats => _stats;

        public void Execute()
        {
            // Room for MaxNewTokens + 1 full steps before a flush; a call that samples more flushes (one extra wait).
            g.EnsureHistory(g.MaxBatch * (options.MaxNewTokens + 1));
            while (_running.Count > 0 || _next < requests.Length)
            {
                if (_running.Count > 0) DecodeStep();
                // Again while slots are free: a request whose first token stops it frees its slot at once.
                while (_next < requests.Length && _running.Count < g.MaxBatch) AdmitAndPrefill();
                progress?.Report(new GenerationProgress(_finished, requests.Length, _sampledTokens, _stats));
            }
            FlushLogProbs();
        }

        /// <summary>The sampled log-probs held on the device, downloaded in one copy and handed out in sampling order.</summary>
        private void FlushLogProbs()
        {
            if (_written == 0) return;
            g._backend.Download<float>(g._logProbHistory!.SliceRows(0, _written), g._hostLogProbHistory.AsSpan(0, _written));
            for (int k = 0; k < _written; k++) requests[g._historyOwner[k]].LogProbs.Add(g._hostLogProbHistory[k]);
            _written = 0;
        }

        /// <summary>
        /// Takes a sampled token for request r: recorded, and the request either stops (stop token, length limit; its
        /// slot is freed) or goes on with the token pending.
        /// </summary>
        private void Take(int r, int token)
        {
            var q = requests[r];
            q.Tokens.Add(token);
            _sampledTokens++;
            bool stop = _stop.Contains(token);
            if (!stop && q.Tokens.Count >= options.MaxNewTokensOf(q.Prompt))
            {
                q.Truncated = true;
                stop = true;
            }
            if (stop)
            {
                _slotBusy[q.Slot] = false;
                _finished++;
                return;
            }
            q.Pending = token;
            _survivors.Add(r);
        }

        private void CheckTokens(int rows, string where)
        {
            int bad = _tokens.AsSpan(0, rows).IndexOfAnyExceptInRange(0, g._model.Config.VocabSize - 1);
            if (bad >= 0)
                throw new InvalidOperationException($"the sampler returned token id {_tokens[bad]} at row {bad} of {where}, outside the vocabulary " +
                                                    $"[0, {g._model.Config.VocabSize}); the logits are probably not finite");
        }

        /// <summary>Samples rows [0, rows) of the logits with the given streams, downloads the tokens, records the owners of the log-probs.</summary>
        private void SampleRows(int rows, Tensor streams, List<int> owners, string where)
        {
            var b = g._backend;
            if (_written + rows > g._logProbHistory!.ElementCount) FlushLogProbs();
            b.Sample(g._logits.SliceRows(0, rows), options.Sampling, _seed, streams, g._sampled.SliceRows(0, rows), g._logProbHistory!.SliceRows(_written, rows));
            // The one synchronisation: the host decides from the tokens which requests stop.
            b.Download<int>(g._sampled.SliceRows(0, rows), _tokens.AsSpan(0, rows));
            CheckTokens(rows, where);
            for (int i = 0; i < rows; i++) g._historyOwner[_written + i] = owners[i];
            _written += rows;
        }

        private void DecodeStep()
        {
            var timer = Stopwatch.StartNew();
            bool queued = _next < requests.Length;
            int n = _running.Count;
            Span<int> tokens = g.HostInput(DecodeInput.Tokens), positions = g.HostInput(DecodeInput.Positions), slots = g.HostInput(DecodeInput.Slots);
            Span<int> lengths = g.HostInput(DecodeInput.Lengths), streams = g.HostInput(DecodeInput.Streams), cacheRows = g.HostInput(DecodeInput.CacheRows);
            for (int j = 0; j < n; j++)
            {
                int r = _running[j];
                var q = requests[r];
                tokens[j] = q.Pending;
                positions[j] = q.Length;
                slots[j] = q.Slot;
                cacheRows[j] = q.Slot * g.MaxLength + q.Length;
                q.Length++;
                lengths[j] = q.Length;
                streams[2 * j] = r;
                streams[2 * j + 1] = q.Tokens.Count;
                // Prompt + MaxNewTokens <= MaxLength was checked, and a request at the limit has stopped.
                Debug.Assert(q.Length <= g.MaxLength, "decode past the cache's length");
            }
            // One copy for all inputs: runs of MaxBatch ints, the last one (cache rows) cut to the n entries used.
            int uploaded = g.Offset(DecodeInput.CacheRows) + n;
            var b = g._backend;
            b.Upload<int>(g._hostDecodeInputs.AsSpan(0, uploaded), g._decodeInputs.SliceRows(0, uploaded));

            var model = g._model;
            b.EmbeddingForward(g.DeviceInput(DecodeInput.Tokens, n), model.Weights.Embedding, g._decode.Residuals[0].SliceRows(0, n));
            var slotTensor = g.DeviceInput(DecodeInput.Slots, n);
            var lengthTensor = g.DeviceInput(DecodeInput.Lengths, n);
            var rowsTensor = g.DeviceInput(DecodeInput.CacheRows, n);
            model.RunLayers(g._decode, n, g.DeviceInput(DecodeInput.Positions, n), (layer, _, q, k, v, attention, _) =>
            {
                b.ScatterRows(k, rowsTensor, g._cache.KeyRows(layer));
                b.ScatterRows(v, rowsTensor, g._cache.ValueRows(layer));
                b.AttentionDecode(q, g._cache.Keys[layer], g._cache.Values[layer], slotTensor, lengthTensor, model.Heads, model.Heads.DefaultScale, attention);
            });
            model.Logits(model.FinalNorm(g._decode, n), g._logits.SliceRows(0, n));
            SampleRows(n, g.DeviceInput(DecodeInput.Streams, n), _running, "a decode step");

            _survivors.Clear();
            for (int j = 0; j < n; j++) Take(_running[j], _tokens[j]);
            (_running, _survivors) = (_survivors, _running);
            _stats = _stats with
            {
                DecodeTokens = _stats.DecodeTokens + n, DecodeSeconds = _stats.DecodeSeconds + timer.Elapsed.TotalSeconds,
                DecodeSteps = _stats.DecodeSteps + 1, DecodeRows = _stats.DecodeRows + n,
                QueuedSteps = _stats.QueuedSteps + (queued ? 1 : 0), QueuedRows = _stats.QueuedRows + (queued ? n : 0),
            };
        }

        /// <summary>
        /// Admits waiting requests into the free slots (in order, up to the prefill budget), prefills their distinct
        /// prompts as one packed batch with every copy's keys and values written to its slot, and samples each admitted
        /// request's first token.
        /// </summary>
        private void AdmitAndPrefill()
        {
            var timer = Stopwatch.StartNew();
            _admitted.Clear();
            // Distinct prompts of this wave in order, and for each the slots of its admitted requests.
            var distinct = new List<int>();
            var copies = new Dictionary<int, List<int>>();
            int promptTokens = 0;
            while (_next < requests.Length && _running.Count + _admitted.Count < g.MaxBatch)
            {
                var q = requests[_next];
                bool shared = copies.ContainsKey(q.Prompt);
                int cost = shared ? 0 : prompts[q.Prompt].Count;
                if (_admitted.Count > 0 && promptTokens + cost > g.PrefillTokenBudget) break;
                q.Slot = Array.IndexOf(_slotBusy, false);
                _slotBusy[q.Slot] = true;
                if (!shared)
                {
                    distinct.Add(q.Prompt);
                    copies[q.Prompt] = [];
                    promptTokens += cost;
                }
                copies[q.Prompt].Add(q.Slot);
                _admitted.Add(_next++);
            }
            int total = promptTokens, maxCopies = copies.Values.Max(list => list.Count), waves = distinct.Count;

            // The packed prompts, and per copy c a table of cache rows: prompt p's tokens go to its c-th slot, or to the
            // sink slot when it has fewer copies.
            Grow(ref g._hostPromptTokens, total);
            Grow(ref g._hostPromptLengths, waves);
            Grow(ref g._hostCacheRows, maxCopies * total);
            var lastRowOf = new Dictionary<int, int>();
            for (int d = 0, at = 0; d < waves; d++)
            {
                var prompt = prompts[distinct[d]];
                var slots = copies[distinct[d]];
                g._hostPromptLengths[d] = prompt.Count;
                for (int i = 0; i < prompt.Count; i++, at++)
                {
                    g._hostPromptTokens[at] = prompt[i];
                    for (int c = 0; c < maxCopies; c++)
                        g._hostCacheRows[c * total + at] = (c < slots.Count ? slots[c] : g.SinkSlot) * g.MaxLength + i;
                }
                lastRowOf[distinct[d]] = at - 1;
            }
            var b = g._backend;
            var model = g._model;
            var batch = g._prefillBatch.Load(g._hostPromptTokens.AsSpan(0, total), g._hostPromptLengths.AsSpan(0, waves));
            if (g._prefill is null || g._prefill.Capacity < total)
            {
                g._prefill?.Dispose();
                g._prefill = Qwen2Activations.ForInference(b, model.Config, Math.Max(total, g._prefill?.Capacity ?? 0), model.Storage);
            }
            if (g._prefillCacheRows is null || g._prefillCacheRows.ElementCount < maxCopies * total)
            {
                int size = Math.Max(maxCopies * total, (int)Math.Min(int.MaxValue, (g._prefillCacheRows?.ElementCount ?? 0) * 3 / 2));
                g._prefillCacheRows?.Dispose();
                g._prefillCacheRows = g.Ints(size);
            }
            b.Upload<int>(g._hostCacheRows.AsSpan(0, maxCopies * total), g._prefillCacheRows.SliceRows(0, maxCopies * total));
            b.EmbeddingForward(batch.Tokens, model.Weights.Embedding, g._prefill.Residuals[0].SliceRows(0, total));
            model.RunLayers(g._prefill, total, batch.Positions, (layer, _, q, k, v, attention, lse) =>
            {
                b.AttentionForward(q, k, v, batch.Sequences, model.Heads, model.Heads.DefaultScale, attention, lse);
                for (int c = 0; c < maxCopies; c++)
                {
                    var rows = g._prefillCacheRows.SliceRows(c * total, total);
                    b.ScatterRows(k, rows, g._cache.KeyRows(layer));
                    b.ScatterRows(v, rows, g._cache.ValueRows(layer));
                }
            });
            var hidden = model.FinalNorm(g._prefill, total);

            // Each admitted request's first token from its prompt's last position, on its own stream at position 0.
            int n = _admitted.Count;
            Span<int> lastRows = g.HostInput(DecodeInput.Tokens)[..n]; // staging; the next decode step rewrites it
            for (int i = 0; i < n; i++)
            {
                int r = _admitted[i];
                lastRows[i] = lastRowOf[requests[r].Prompt];
                g._hostWaveStreams[2 * i] = r;
                g._hostWaveStreams[2 * i + 1] = 0;
            }
            b.Upload<int>(lastRows, g._lastRows.SliceRows(0, n));
            b.Upload<int>(g._hostWaveStreams.AsSpan(0, 2 * n), g._waveStreams.SliceRows(0, 2 * n));
            b.GatherRows(hidden, g._lastRows.SliceRows(0, n), g._lastHidden.SliceRows(0, n));
            model.Logits(g._lastHidden.SliceRows(0, n), g._logits.SliceRows(0, n));
            SampleRows(n, g._waveStreams.SliceRows(0, 2 * n).Reshape(n, 2), _admitted, "a prefill");

            _survivors.Clear();
            _survivors.AddRange(_running);
            for (int i = 0; i < n; i++) Take(_admitted[i], _tokens[i]);
            (_running, _survivors) = (_survivors, _running);
            _stats = _stats with
            {
                PrefillTokens = _stats.PrefillTokens + total, PrefillSeconds = _stats.PrefillSeconds + timer.Elapsed.TotalSeconds,
                Prefills = _stats.Prefills + 1,
            };
        }
    }

    /// <summary>The log-prob history holds at least <paramref name="rows"/> entries (grow-only).</summary>
    private void EnsureHistory(int rows)
    {
        if (_logProbHistory is not null && _logProbHistory.ElementCount >= rows) return;
        _logProbHistory?.Dispose();
        _logProbHistory = _backend.Allocate(DType.Float32, new TensorShape(Math.Max(rows, 1)), "sampled log-probs");
        _hostLogProbHistory = new float[Math.Max(rows, 1)];
        _historyOwner = new int[Math.Max(rows, 1)];
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
        foreach (var t in new[] { _decodeInputs, _sampled, _logits, _lastHidden, _lastRows, _waveStreams }) t.Dispose();
    }
}
