using System.Diagnostics;
using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Model.Generation;

/// <summary>
/// The rollout engine: continuous batching over a paged KV cache. Requests (a prompt and one of its samples) wait in
/// order; every iteration decodes one token for each running request (at most <see cref="MaxBatch"/>), then admits
/// waiting requests while there is room, so the decode batch stays full until the queue is empty (a long response no
/// longer holds a whole batch at batch 1-2). Admitted requests are prefilled as one packed batch, a prompt once for all
/// of its requests admitted together, up to <see cref="PrefillTokenBudget"/> prompt tokens per iteration; each draws its
/// first token from its prompt's last position. A sequence longer than that budget is prefilled in chunks of it, each
/// chunk's positions run as extra rows of a decode step (chunked prefill: the running requests keep decoding meanwhile). Row b of any step draws from its request's own random stream, keyed by
/// (seed, request id, position), so a request's tokens do not depend on which requests share its batch or where its row
/// sits. Prefill and decode use inference arenas (<see cref="Qwen2Activations.ForInference"/>).
/// <para>The cache (<see cref="KvCache"/>) is a pool of pages of <see cref="PageSize"/> positions within a memory budget;
/// each request holds a list of pages (its page table, which decode attention reads through). The samples of a prompt
/// prefilled together share its full pages by reference and each gets its own copy of the last, partial one, where they
/// diverge. When a running request needs a page and none is free, the newest running request is pre-empted: its pages
/// are freed and it waits at the head of the queue, to be prefilled again (prompt and tokens so far) and go on where it
/// stopped, drawing the same tokens, as vLLM does; never an out-of-memory failure.</para>
/// </summary>
/// <remarks>
/// Round trips: a run of up to <see cref="DecodeStepsPerSync"/> decode steps waits for the device once, to read the
/// emitted tokens and the rows' stop states (the stop rules run on the device, <see cref="IBackend.AdvanceDecode"/>), and
/// an iteration that admits requests once more, for their first tokens. The sampled tokens' log-probs stay
/// on the device, each step's in the next rows of one buffer of MaxBatch x (MaxNewTokens + 1), and come back in one copy
/// at the end (or when that buffer fills, in a call of many more requests than the batch). Every device buffer is sized
/// once or grows only (the prefill arena and its row table, the log-prob history), so a warm generator allocates nothing
/// per prefill or per step.
/// </remarks>
public sealed class Qwen2Generator : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IBackend _backend;
    private readonly KvCache _cache;
    private readonly PageAllocator _pages;
    private readonly Qwen2Activations _decode;
    private Qwen2Activations? _prefill;
    private readonly PackedBatchBuffers _prefillBatch;
    private Tensor? _prefillCacheRows, _logProbHistory, _truncatedHistory;
    private Tensor? _chunkTable;
    private readonly Tensor _decodeInputs, _emitted, _pageTable, _sampled, _logits, _lastHidden, _lastRows, _waveStreams, _stepLogProbs, _stepTruncated;
    private readonly int[] _hostDecodeInputs, _hostEmitted, _hostWaveStreams;
    private int[] _hostPageTable;
    private int[] _hostPromptTokens = [], _hostPromptLengths = [], _hostCacheRows = [], _historyOwner = [];
    private float[] _hostLogProbHistory = [], _hostTruncatedHistory = [];

    /// <summary>
    /// What a decode run uploads in one copy, as consecutive runs of <see cref="StepRowCapacity"/> ints (two runs for
    /// the streams): the tokens to embed, their positions, the cache length after this token, each row's random stream
    /// (request id, position), the flattened cache row the token's key and value go to, and the tokens the row may still
    /// sample (the device's stop state, <see cref="IBackend.AdvanceDecode"/>), which the device moves on step by step.
    /// </summary>
    private enum DecodeInput { Tokens, Positions, Lengths, Streams, CacheRows, Remaining }

    /// <summary>The most rows one step runs: a token per running request and a chunk of a long prefill.</summary>
    private int StepRowCapacity => MaxBatch + PrefillTokenBudget;

    private int Offset(DecodeInput input) => (int)input * StepRowCapacity + (input > DecodeInput.Streams ? StepRowCapacity : 0);

    /// <summary>
    /// Prepares an engine for up to <paramref name="maxBatch"/> concurrent requests of up to <paramref name="maxLength"/>
    /// tokens each (prompt + generated). <paramref name="prefillTokenBudget"/> caps the prompt tokens prefilled per
    /// iteration: a longer sequence is prefilled in chunks of that many tokens, one chunk per decode step; 0 means
    /// <see cref="DefaultPrefillTokenBudget"/>. <paramref name="kvCacheBytes"/>
    /// is the KV cache's memory (keys and values of every layer); 0 means enough for maxBatch requests of maxLength (no
    /// pre-emption) if half the backend's free memory holds it, else that half (<see cref="KvCacheSizing"/>). <paramref name="pageSize"/> is the positions per page; 0 means 128 on the Cpu backend (its decode
    /// reads a page as one run) and 32 elsewhere. <paramref name="decodeStepsPerSync"/> is <see cref="DecodeStepsPerSync"/>; 0 means 1 on the
    /// Cpu backend (its memory is the host's: nothing to wait for) and 4 elsewhere.
    /// </summary>
    public Qwen2Generator(Qwen2Model model, int maxBatch, int maxLength, int prefillTokenBudget = 0, long kvCacheBytes = 0, int pageSize = 0,
        bool deviceGraphs = true, int decodeStepsPerSync = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(prefillTokenBudget);
        ArgumentOutOfRangeException.ThrowIfNegative(kvCacheBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(pageSize);
        ArgumentOutOfRangeException.ThrowIfNegative(decodeStepsPerSync);
        _model = model;
        _backend = model.Backend;
        DecodeStepsPerSync = decodeStepsPerSync > 0 ? decodeStepsPerSync : _backend is CpuBackend ? 1 : 4;
        DeviceGraphs = deviceGraphs;
        MaxBatch = maxBatch;
        MaxLength = maxLength;
        PrefillTokenBudget = prefillTokenBudget > 0 ? prefillTokenBudget : DefaultPrefillTokenBudget;
        if ((long)maxBatch + PrefillTokenBudget > int.MaxValue / 6)
            throw new ArgumentException($"a step of {maxBatch} rows and a prefill chunk of {PrefillTokenBudget} tokens is more rows than one step takes", nameof(prefillTokenBudget));
        PageSize = pageSize > 0 ? pageSize : _backend is CpuBackend ? 128 : 32;
        var c = model.Config;
        PageBytes = 2L * c.NumHiddenLayers * PageSize * c.NumKeyValueHeads * c.HeadDim * model.Storage.SizeOf();
        MaxPagesPerRequest = (maxLength + PageSize - 1) / PageSize;
        long pages;
        if (kvCacheBytes == 0) pages = KvCacheSizing.DefaultPages((long)maxBatch * MaxPagesPerRequest, MaxPagesPerRequest, PageBytes, _backend.FreeMemoryBytes);
        else
        {
            if (kvCacheBytes < PageBytes)
                throw new ArgumentException($"the KV cache budget of {kvCacheBytes:N0} bytes is smaller than one page ({PageBytes:N0} bytes: {PageSize} positions " +
                                            $"x {c.NumHiddenLayers} layers x keys and values of {c.NumKeyValueHeads * c.HeadDim} in {model.Storage})", nameof(kvCacheBytes));
            pages = kvCacheBytes / PageBytes;
        }
        if (pages + 1 > int.MaxValue / PageSize)
            throw new ArgumentException($"the KV cache of {pages:N0} pages of {PageSize} positions has more rows than one tensor holds", nameof(kvCacheBytes));
        CachePages = (int)pages;
        // One page more than the budget: the sink that a prefill's copy tables point at for rows no copy keeps.
        _cache = new KvCache(_backend, c, CachePages + 1, PageSize, model.Storage);
        _pages = new PageAllocator(CachePages);
        _decode = Qwen2Activations.ForInference(_backend, c, maxBatch, model.Storage);
        _prefillBatch = new PackedBatchBuffers(_backend, c.VocabSize);
        _decodeInputs = Ints(Offset(DecodeInput.Remaining) + StepRowCapacity);
        _hostDecodeInputs = new int[Offset(DecodeInput.Remaining) + StepRowCapacity];
        // Each step of a run emits a token per row; the rows' stop states follow the last step's, for one download.
        _emitted = Ints((DecodeStepsPerSync + 1) * maxBatch);
        _hostEmitted = new int[(DecodeStepsPerSync + 1) * maxBatch];
        _pageTable = Ints(maxBatch * MaxPagesPerRequest);
        _hostPageTable = new int[maxBatch * MaxPagesPerRequest];
        _waveStreams = Ints(2 * maxBatch);
        _hostWaveStreams = new int[2 * maxBatch];
        _sampled = Ints(maxBatch);
        _stepLogProbs = _backend.Allocate(DType.Float32, new TensorShape(maxBatch));
        _stepTruncated = _backend.Allocate(DType.Float32, new TensorShape(maxBatch));
        _lastRows = Ints(maxBatch);
        _logits = _backend.Allocate(DType.Float32, new TensorShape(maxBatch, c.VocabSize));
        _lastHidden = _backend.Allocate(model.Storage, new TensorShape(maxBatch, c.HiddenSize));
    }

    public int MaxBatch { get; }
    public int MaxLength { get; }

    /// <summary>
    /// Whether decode steps run as device graphs where the backend has them (CUDA graphs on the Cuda backend, recorded
    /// launches on the emulator; <c>--cuda-graphs</c>): a step's hundreds of launches become one. Each call captures a
    /// graph per batch-size bucket (powers of two up to MaxBatch; a step's rows are padded to its bucket with rows that
    /// write only the sink page) after running that bucket's first step directly; the page table then has a fixed width.
    /// Off, or on a backend without graphs (Cpu, ILGPU), every step launches its ops.
    /// </summary>
    public bool DeviceGraphs { get; }

    /// <summary>
    /// Decode steps run back to back before the host reads their tokens. The stop tokens and length limits are applied on
    /// the device (<see cref="IBackend.AdvanceDecode"/>), which also moves each row on to its next step, so the host waits
    /// for the device once per run instead of once per step; a row that stops within a run idles (writing only the sink
    /// page) until the run ends, when finished requests leave and waiting ones are admitted. 1 waits after every step.
    /// </summary>
    public int DecodeStepsPerSync { get; }

    /// <summary>Why the last decode-graph capture failed (the engine then launched every op), or null.</summary>
    public string? GraphFailure { get; private set; }

    /// <summary>
    /// Prompt tokens prefilled per iteration at most. Whole sequences up to it are prefilled in packed waves; a longer one
    /// (a long prompt, or a pre-empted request's prompt and tokens) is prefilled in chunks of this many tokens, each run in
    /// a decode step beside the running requests' tokens, so no iteration stalls the batch for a whole long prefill and
    /// the prefill arena never exceeds MaxBatch + this many rows.
    /// </summary>
    public int PrefillTokenBudget { get; }

    /// <summary>The prefill budget when none is given: 4096 tokens (vLLM's chunked prefill uses budgets of this order).</summary>
    public const int DefaultPrefillTokenBudget = 4096;

    /// <summary>Positions per page of the KV cache.</summary>
    public int PageSize { get; }

    /// <summary>Bytes of one page: keys and values of every layer.</summary>
    public long PageBytes { get; }

    /// <summary>Pages the cache holds (its memory budget over <see cref="PageBytes"/>).</summary>
    public int CachePages { get; }

    /// <summary>Pages one request of <see cref="MaxLength"/> tokens needs.</summary>
    public int MaxPagesPerRequest { get; }

    /// <summary>What the last <see cref="Generate"/> call did (rates, occupancy, pre-emptions).</summary>
    public GenerationStats LastStats { get; private set; }

    private int SinkPage => CachePages;

    private int PagesFor(int positions) => (positions + PageSize - 1) / PageSize;

    private Tensor Ints(int n) => _backend.Allocate(DType.Int32, new TensorShape(n));

    /// <summary>The first <paramref name="rows"/> entries of one step input on the device ([rows, 2] for the streams).</summary>
    private Tensor DeviceInput(DecodeInput input, int rows) => input == DecodeInput.Streams
        ? _decodeInputs.SliceRows(Offset(input), 2 * rows).Reshape(rows, 2)
        : _decodeInputs.SliceRows(Offset(input), rows);

    /// <summary>The host staging of one step input (all of its entries).</summary>
    private Span<int> HostInput(DecodeInput input) =>
        _hostDecodeInputs.AsSpan(Offset(input), input == DecodeInput.Streams ? 2 * StepRowCapacity : StepRowCapacity);

    /// <summary>One request: a prompt's sample, its pages while it runs, and what it has produced.</summary>
    private sealed class Request(int prompt, int sample, int promptLength, int stream)
    {
        public readonly int Prompt = prompt, Sample = sample;
        // Its random stream's id (GenerationOptions.PromptStreams).
        public readonly int Stream = stream;
        public readonly List<int> Pages = [];
        public int Length = promptLength; // tokens in its cache pages
        public int Pending;               // the last sampled token, decoded next
        public readonly List<int> Tokens = [];
        public readonly List<float> LogProbs = [];
        public readonly List<float> TruncatedMass = [];
        public bool Truncated;
    }

    /// <summary>
    /// A sequence longer than the prefill budget, prefilled a chunk per decode step. Its first member owns its pages (all
    /// allocated at admission) and writes them; the other members are samples of the same prompt admitted with it, which
    /// hold its full pages by reference and a page of their own for the partial last one, copied from the owner's when the
    /// last chunk is done. Members are not running until then; they count against the batch.
    /// </summary>
    private sealed class ChunkedPrefill(int key, int length)
    {
        public readonly int Key = key, Length = length;
        public int Done; // positions prefilled so far
        public readonly List<int> Members = [];
    }

    /// <summary>
    /// Samples <see cref="GenerationOptions.SamplesPerPrompt"/> continuations of every prompt. Results are ordered by
    /// prompt, then sample. <paramref name="progress"/> hears after every iteration how many samples are finished, how
    /// many tokens were sampled, and the rates, occupancy and pre-emptions so far.
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
            int needed = PagesFor(prompts[p].Count + options.MaxNewTokensOf(p));
            if (needed > CachePages)
                throw new ArgumentException($"prompt {p} with its {options.MaxNewTokensOf(p)} new tokens needs {needed} pages of {PageSize} positions, more than " +
                                            $"the KV cache's {CachePages} ({CachePages * PageBytes:N0} bytes); give the cache more memory", nameof(prompts));
            // Checked here, before anything runs, so a bad id in the last prompt wastes no generation.
            var prompt = prompts[p];
            for (int i = 0; i < prompt.Count; i++)
                if ((uint)prompt[i] >= (uint)_model.Config.VocabSize)
                    throw new ArgumentException($"prompt {p} has token id {prompt[i]} at position {i}, outside the vocabulary [0, {_model.Config.VocabSize})", nameof(prompts));
        }
        long requestCount = (long)prompts.Count * options.SamplesPerPrompt;
        if (requestCount > int.MaxValue)
            throw new ArgumentException($"{prompts.Count} prompts x {options.SamplesPerPrompt} samples is more requests than one call takes ({int.MaxValue})", nameof(prompts));
        if (options.PromptStreams is { } streams)
        {
            if (streams.Count != prompts.Count)
                throw new ArgumentException($"PromptStreams has {streams.Count} ids for {prompts.Count} prompts; give one per prompt", nameof(options));
            if (streams.Count > 0 && (streams.Min() < 0 || (long)(streams.Max() + 1) * options.SamplesPerPrompt > int.MaxValue))
                throw new ArgumentException($"PromptStreams holds ids from {streams.Min()} to {streams.Max()}; each must be in [0, {int.MaxValue / options.SamplesPerPrompt})", nameof(options));
            if (streams.Distinct().Count() != streams.Count)
                throw new ArgumentException("PromptStreams repeats an id: two prompts would draw the same random numbers", nameof(options));
        }
        var requests = new Request[requestCount];
        for (int p = 0, r = 0; p < prompts.Count; p++)
        {
            int stream = (options.PromptStreams?[p] ?? p) * options.SamplesPerPrompt;
            for (int s = 0; s < options.SamplesPerPrompt; s++) requests[r++] = new Request(p, s, prompts[p].Count, stream + s);
        }

        _pages.Reset();
        var run = new Run(this, prompts, requests, options, progress);
        // The weights do not change during a call: the backend may prepare them once for the call's many small
        // products (the Cpu backend packs each for its GEMM once instead of at every decode step; same bits).
        using (_backend.FreezeWeights(_model.Weights.ProjectionWeights))
        {
            try { run.Execute(); }
            finally { run.Dispose(); }
        }
        LastStats = run.Stats;
        return requests.Select(q => new GeneratedSample(q.Prompt, q.Sample, q.Tokens, q.LogProbs, q.Truncated, q.TruncatedMass)).ToArray();
    }

    /// <summary>One Generate call: the queue, the running requests, the pages and the counters.</summary>
    private sealed class Run(Qwen2Generator g, IReadOnlyList<IReadOnlyList<int>> prompts, Request[] requests, GenerationOptions options,
        IProgress<GenerationProgress>? progress)
    {
        // The stop tokens on the device (null when there are none), for AdvanceDecode.
        private readonly Tensor? _stopTokens = options.StopTokenIds.Count == 0 ? null : g.UploadInts(options.StopTokenIds);
        private readonly ulong _seed = options.StreamSeed;
        // Sampling at T > 0 draws from logits already divided by T in the LM head's GEMM (the trainer's log-prob scales
        // its tiles the same way), so the sampler runs at T = 1 and its log-probs are the trainer's bit for bit on Cpu.
        private readonly SamplingOptions _sampling = options.Sampling.Temperature > 0f ? options.Sampling with { Temperature = 1f } : options.Sampling;
        // Only top-k or top-p at T > 0 cut mass from the draw; otherwise it is 0 and nothing is computed for it.
        private readonly bool _filtered = options.Sampling.Temperature > 0f && (options.Sampling.TopK > 0 || options.Sampling.TopP < 1f);

        private void Logits(Tensor hidden, Tensor logits)
        {
            float t = options.Sampling.Temperature;
            if (t > 0f) g._model.TemperedLogits(hidden, t, logits);
            else g._model.Logits(hidden, logits);
        }
        // Running requests in admission order (the newest last: the one pre-empted first).
        private List<int> _running = new(g.MaxBatch), _survivors = new(g.MaxBatch);
        private readonly List<int> _admitted = new(g.MaxBatch), _fresh = new(g.MaxBatch);
        // Pre-empted requests wait here, ahead of the fresh ones (the oldest pre-emption first).
        private readonly List<int> _preempted = [];
        private readonly List<int> _distinct = [];
        private readonly Dictionary<int, List<int>> _copies = [];
        private readonly Dictionary<int, int> _lastRowOf = [];
        private int _next, _finished, _written;
        private long _sampledTokens;
        private GenerationStats _stats = new() { Slots = g.MaxBatch, CachePages = g.CachePages };

        public GenerationStats Stats => _stats;

        private bool Waiting => _preempted.Count > 0 || _next < requests.Length;

        // The long sequence being prefilled a chunk per step, or null.
        private ChunkedPrefill? _chunk;

        private int ChunkMembers => _chunk?.Members.Count ?? 0;

        /// <summary>The tokens request q may still sample (its length limit less what it has).</summary>
        private int TokensLeft(Request q) => options.MaxNewTokensOf(q.Prompt) - q.Tokens.Count;

        public void Execute()
        {
            // Room for MaxNewTokens + 1 full steps before a flush; a call that samples more flushes (one extra wait).
            g.EnsureHistory(g.MaxBatch * (options.MaxNewTokens + 1));
            while (_running.Count > 0 || Waiting || _chunk is not null)
            {
                if (_running.Count > 0 || _chunk is not null) DecodeRun();
                // Again while there is room: a request whose first token stops it frees its place at once.
                while (Waiting && _running.Count + ChunkMembers < g.MaxBatch && AdmitAndPrefill()) { }
                // Generate checked that every request fits the cache alone, so an empty engine always admits one.
                if (_running.Count == 0 && _chunk is null && Waiting && _finished < requests.Length && !AdmitAndPrefill())
                    throw new InvalidOperationException("the rollout engine could not admit a request into an empty KV cache");
                int inUse = g.CachePages - g._pages.FreeCount;
                _stats = _stats with { CachePagesInUse = inUse, PeakCachePagesInUse = Math.Max(_stats.PeakCachePagesInUse, inUse) };
                progress?.Report(new GenerationProgress(_finished, requests.Length, _sampledTokens, _stats));
            }
            FlushLogProbs();
        }

        /// <summary>
        /// The sampled log-probs (and truncated masses) held on the device, downloaded in one copy each and handed out in
        /// sampling order. Entries of rows that had stopped within a run (owner -1) are dropped.
        /// </summary>
        private void FlushLogProbs()
        {
            if (_written == 0) return;
            g._backend.Download<float>(g._logProbHistory!.SliceRows(0, _written), g._hostLogProbHistory.AsSpan(0, _written));
            if (_filtered) g._backend.Download<float>(g._truncatedHistory!.SliceRows(0, _written), g._hostTruncatedHistory.AsSpan(0, _written));
            double truncated = 0;
            for (int k = 0; k < _written; k++)
            {
                int owner = g._historyOwner[k];
                if (owner < 0) continue;
                var q = requests[owner];
                q.LogProbs.Add(g._hostLogProbHistory[k]);
                float mass = _filtered ? g._hostTruncatedHistory[k] : 0f;
                q.TruncatedMass.Add(mass);
                truncated += mass;
            }
            _stats = _stats with { TruncatedMassSum = _stats.TruncatedMassSum + truncated };
            _written = 0;
        }

        private void ReleasePages(Request q)
        {
            foreach (int page in q.Pages) g._pages.Release(page);
            q.Pages.Clear();
        }

        /// <summary>Draws rows [0, rows) of the logits: tokens, log-probs and (filtered) truncated masses into the step buffers.</summary>
        private void SampleIntoStepBuffers(int rows, Tensor streams) =>
            g._backend.Sample(g._logits.SliceRows(0, rows), _sampling, _seed, streams, g._sampled.SliceRows(0, rows), g._stepLogProbs.SliceRows(0, rows),
                _filtered ? g._stepTruncated.SliceRows(0, rows) : null);

        /// <summary>
        /// After step <paramref name="step"/> of a run of <paramref name="rows"/> sampled rows (the first n of them requests'):
        /// their log-probs (and truncated masses) go on into the history on the device, and the stop rules run on the device
        /// (<see cref="IBackend.AdvanceDecode"/>), writing the step's emitted tokens and, with <paramref name="next"/>, the
        /// next step's inputs. Nothing waits for the device.
        /// </summary>
        private void RecordStep(int step, int n, int rows, DecodeInputs? next)
        {
            var b = g._backend;
            int at = _written + step * n;
            b.Copy(g._stepLogProbs.SliceRows(0, n), g._logProbHistory!.SliceRows(at, n));
            if (_filtered) b.Copy(g._stepTruncated.SliceRows(0, n), g._truncatedHistory!.SliceRows(at, n));
            b.AdvanceDecode(g._sampled.SliceRows(0, rows), _stopTokens, g.DeviceInput(DecodeInput.Remaining, rows), g._emitted.SliceRows(step * rows, rows), next);
        }

        /// <summary>
        /// After a run of <paramref name="steps"/> recorded steps (<see cref="RecordStep"/>) over rows owned by
        /// <paramref name="owners"/>: the emitted tokens and the rows' stop states come back in one copy (the one wait for
        /// the device), each request takes its tokens, and a stopped one (0: its length limit, -1: a stop token) leaves
        /// with its pages freed; the others go on (into the survivors) with their last token pending.
        /// <paramref name="decoded"/>: the run's steps wrote each token's predecessor to the cache (a decode run, not a
        /// first token). Returns the rows that emitted at each step, summed.
        /// </summary>
        private long CollectRun(List<int> owners, int n, int rows, int steps, bool decoded, string where)
        {
            var b = g._backend;
            b.Copy(g.DeviceInput(DecodeInput.Remaining, n), g._emitted.SliceRows(steps * rows, n));
            int count = steps * rows + n;
            b.Download<int>(g._emitted.SliceRows(0, count), g._hostEmitted.AsSpan(0, count));
            int vocab = g._model.Config.VocabSize;
            long emitted = 0;
            for (int j = 0; j < n; j++)
            {
                int r = owners[j];
                var q = requests[r];
                int taken = 0;
                for (int k = 0; k < steps; k++)
                {
                    int token = g._hostEmitted[k * rows + j];
                    g._historyOwner[_written + k * n + j] = token < 0 ? -1 : r;
                    if (token < 0) continue;
                    if (token >= vocab)
                        throw new InvalidOperationException($"the sampler returned token id {token} at row {j} of {where}, outside the vocabulary " +
                                                            $"[0, {vocab}); the logits are probably not finite");
                    q.Tokens.Add(token);
                    taken++;
                }
                emitted += taken;
                if (decoded) q.Length += taken;
                int state = g._hostEmitted[steps * rows + j];
                if (state > 0)
                {
                    q.Pending = q.Tokens[^1];
                    _survivors.Add(r);
                    continue;
                }
                q.Truncated = state == 0;
                ReleasePages(q);
                _finished++;
            }
            _written += steps * n;
            _sampledTokens += emitted;
            _stats = _stats with { SampledTokens = _stats.SampledTokens + emitted };
            return emitted;
        }

        /// <summary>Flushes the log-prob history first if a run of <paramref name="entries"/> more would not fit.</summary>
        private void MakeHistoryRoom(int entries)
        {
            if (_written + entries > g._logProbHistory!.ElementCount) FlushLogProbs();
        }

        /// <summary>
        /// Pre-empts the newest running request: its pages are freed and it waits, ahead of the fresh requests, to be
        /// prefilled again (prompt and tokens so far) and go on with its pending token.
        /// </summary>
        private void PreemptNewest()
        {
            int r = _running[^1];
            _running.RemoveAt(_running.Count - 1);
            var q = requests[r];
            ReleasePages(q);
            q.Length = 0;
            _preempted.Add(r);
            _stats = _stats with { Preemptions = _stats.Preemptions + 1 };
        }

        /// <summary>
        /// Gives every running request the pages for the positions a run of <paramref name="steps"/> steps writes (as many
        /// as it may still sample, up to the run's steps), pre-empting the newest while none is free.
        /// </summary>
        private void ReservePages(int steps)
        {
            for (int j = 0; j < _running.Count; j++)
            {
                var q = requests[_running[j]];
                int needed = g.PagesFor(q.Length + Math.Min(steps, TokensLeft(q)));
                while (q.Pages.Count < needed)
                {
                    int page = g._pages.Allocate();
                    if (page >= 0)
                    {
                        q.Pages.Add(page);
                        continue;
                    }
                    bool self = _running[^1] == _running[j];
                    PreemptNewest();
                    if (self) return; // it was the newest: the requests before it have their pages
                }
            }
        }

        // Per batch-size bucket, this call's decode graph (captured with its seed, sampling options and temperature).
        private readonly Dictionary<int, IDeviceGraph> _graphs = [];
        private bool _graphsAvailable = g.DeviceGraphs;

        /// <summary>The rows a step of <paramref name="n"/> requests runs: n, or its bucket (a power of two up to MaxBatch) with graphs.</summary>
        private int StepRows(int n) => _graphsAvailable ? Math.Min(g.MaxBatch, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)n)) : n;

        /// <summary>
        /// A run of decode steps: up to <see cref="DecodeStepsPerSync"/> tokens for every running request, back to back on
        /// the device (the stop rules and each row's next inputs applied there), then one wait to read them. With a long
        /// prefill under way the run is one step that also carries its next chunk: the chunk's positions are rows after
        /// the decode rows, each attending through its sequence's page table up to its own position (decode attention
        /// walks a row's keys as the forward does, so on Cpu a chunked prefill gives the bits of a whole one). Only the
        /// decode rows are sampled; the chunk's last row gives its members' first tokens when it completes.
        /// </summary>
        private void DecodeRun()
        {
            var chunk = _chunk;
            int steps = chunk is null ? g.DecodeStepsPerSync : 1;
            ReservePages(steps);
            if (_running.Count == 0 && chunk is null) return;
            var timer = Stopwatch.StartNew();
            bool queued = Waiting;
            int n = _running.Count, mostLeft = 0;
            for (int j = 0; j < n; j++) mostLeft = Math.Max(mostLeft, TokensLeft(requests[_running[j]]));
            steps = Math.Min(steps, Math.Max(1, mostLeft)); // no step in which every row has stopped
            int c = chunk is null ? 0 : Math.Min(g.PrefillTokenBudget, chunk.Length - chunk.Done);
            // A step with a chunk runs its ops (its rows vary); a decode-only step may replay its bucket's graph.
            bool graphs = _graphsAvailable && c == 0;
            int rows = graphs ? StepRows(n) : n + c, sampledRows = c > 0 ? n : rows;
            Span<int> tokens = g.HostInput(DecodeInput.Tokens), positions = g.HostInput(DecodeInput.Positions), left = g.HostInput(DecodeInput.Remaining);
            Span<int> lengths = g.HostInput(DecodeInput.Lengths), streams = g.HostInput(DecodeInput.Streams), cacheRows = g.HostInput(DecodeInput.CacheRows);
            // A graph's table has a fixed width; otherwise it is as wide as the longest row needs.
            int tablePages = graphs ? g.MaxPagesPerRequest : 0;
            for (int j = 0; j < n; j++) tablePages = Math.Max(tablePages, requests[_running[j]].Pages.Count);
            var owner = chunk is null ? null : requests[chunk.Members[0]];
            if (chunk is not null) tablePages = Math.Max(tablePages, g.PagesFor(chunk.Done + c));
            Grow(ref g._hostPageTable, rows * tablePages);
            var table = g._hostPageTable.AsSpan(0, rows * tablePages);
            for (int j = 0; j < rows; j++)
            {
                var tableRow = table.Slice(j * tablePages, tablePages);
                if (j >= n && owner is not null)
                {
                    // A chunk row: the owner's position Done + i, which attends to the positions up to it; never sampled.
                    int position = chunk!.Done + j - n;
                    tokens[j] = SequenceToken(owner, position);
                    positions[j] = position;
                    lengths[j] = position + 1;
                    streams[2 * j] = streams[2 * j + 1] = 0;
                    cacheRows[j] = owner.Pages[position / g.PageSize] * g.PageSize + position % g.PageSize;
                    FillTableRow(tableRow, owner.Pages);
                    continue;
                }
                if (j >= n)
                {
                    // A padding row of a graph's bucket: token 0 at position 0 of the sink page, stopped from the start.
                    tokens[j] = positions[j] = left[j] = 0;
                    lengths[j] = 1;
                    streams[2 * j] = streams[2 * j + 1] = 0;
                    cacheRows[j] = g.SinkPage * g.PageSize;
                    tableRow.Fill(-1);
                    tableRow[0] = g.SinkPage;
                    continue;
                }
                int r = _running[j];
                var q = requests[r];
                tokens[j] = q.Pending;
                positions[j] = q.Length;
                lengths[j] = q.Length + 1;
                cacheRows[j] = q.Pages[q.Length / g.PageSize] * g.PageSize + q.Length % g.PageSize;
                streams[2 * j] = q.Stream;
                streams[2 * j + 1] = q.Tokens.Count;
                left[j] = TokensLeft(q);
                FillTableRow(tableRow, q.Pages);
                Debug.Assert(q.Length < g.MaxLength, "decode past the request's maximum length");
            }
            // One copy for the run's inputs (runs of StepRowCapacity ints, the last cut to the rows used), one for the table.
            int uploaded = g.Offset(DecodeInput.Remaining) + rows;
            var b = g._backend;
            b.Upload<int>(g._hostDecodeInputs.AsSpan(0, uploaded), g._decodeInputs.SliceRows(0, uploaded));
            var tableTensor = g.StepTable(rows * tablePages);
            b.Upload<int>(table, tableTensor);
            tableTensor = tableTensor.Reshape(rows, tablePages);

            MakeHistoryRoom(steps * n);
            var next = new DecodeInputs(g.DeviceInput(DecodeInput.Tokens, rows), g.DeviceInput(DecodeInput.Positions, rows), g.DeviceInput(DecodeInput.Lengths, rows),
                g.DeviceInput(DecodeInput.Streams, rows), g.DeviceInput(DecodeInput.CacheRows, rows), tableTensor, g.PageSize, g.SinkPage * g.PageSize);
            for (int step = 0; step < steps; step++)
            {
                if (c > 0) StepWork(g.PrefillArena(rows), rows, sampledRows, tableTensor); // with a chunk: the prefill arena's rows
                else RunDecodeStep(rows, tableTensor);
                // The last step's rows need no next inputs: the host writes the next run's.
                if (sampledRows > 0) RecordStep(step, n, sampledRows, step + 1 < steps ? next : null);
            }
            _survivors.Clear();
            long decoded = n > 0 ? CollectRun(_running, n, sampledRows, steps, decoded: true, "a decode step") : 0;
            if (chunk is not null)
            {
                chunk.Done += c;
                if (chunk.Done == chunk.Length) CompleteChunk(chunk, g._prefill!, rows, lastRow: rows - 1);
            }
            (_running, _survivors) = (_survivors, _running);
            // A step's time is shared between its decode rows and its chunk's rows by their counts (the chunk's rows cost
            // about what a decode row does in the projections; their attention reads longer rows).
            double seconds = timer.Elapsed.TotalSeconds, chunkShare = (double)c / (n + c);
            _stats = _stats with
            {
                DecodeTokens = _stats.DecodeTokens + decoded, DecodeSeconds = _stats.DecodeSeconds + seconds * (1 - chunkShare),
                PrefillTokens = _stats.PrefillTokens + c, PrefillSeconds = _stats.PrefillSeconds + seconds * chunkShare,
                PrefillChunks = _stats.PrefillChunks + (c > 0 ? 1 : 0),
            };
            // Occupancy counts the rows that sampled at each step (a row stopped within a run idles until it ends).
            if (n > 0)
                _stats = _stats with
                {
                    DecodeSteps = _stats.DecodeSteps + steps, DecodeRows = _stats.DecodeRows + decoded, DecodeRuns = _stats.DecodeRuns + 1,
                    QueuedSteps = _stats.QueuedSteps + (queued ? steps : 0), QueuedRows = _stats.QueuedRows + (queued ? decoded : 0),
                };
        }

        /// <summary>One decode-only step over the uploaded (or advanced) inputs: its bucket's graph replayed, or its ops launched.</summary>
        private void RunDecodeStep(int rows, Tensor tableTensor)
        {
            var b = g._backend;
            if (!_graphsAvailable) StepWork(g._decode, rows, rows, tableTensor);
            else if (_graphs.TryGetValue(rows, out var graph) && graph.IsCurrent)
            {
                graph.Replay();
                _stats = _stats with { DecodeGraphReplays = _stats.DecodeGraphReplays + 1 };
            }
            else
            {
                // The bucket's first step runs directly (it warms what a capture cannot allocate), then is captured.
                StepWork(g._decode, rows, rows, tableTensor);
                graph?.Dispose();
                IDeviceGraph? captured;
                try
                {
                    captured = b.CaptureGraph(() => StepWork(g._decode, rows, rows, tableTensor));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // A driver that refuses the capture costs the speed of graphs, not the generation: this step's
                    // results came from the direct run, and the rest of the call launches its ops. The reason is kept.
                    g.GraphFailure = $"{e.GetType().Name}: {e.Message}";
                    captured = null;
                }
                if (captured is null) _graphsAvailable = false; // no graphs (or a failed capture): launch from now on
                else
                {
                    _graphs[rows] = captured;
                    _stats = _stats with { DecodeGraphCaptures = _stats.DecodeGraphCaptures + 1 };
                }
            }
        }

        /// <summary>A row of the page table: the sequence's pages, then -1 (never read: past its length).</summary>
        private static void FillTableRow(Span<int> row, List<int> pages)
        {
            int count = Math.Min(row.Length, pages.Count);
            System.Runtime.InteropServices.CollectionsMarshal.AsSpan(pages)[..count].CopyTo(row);
            row[count..].Fill(-1);
        }

        /// <summary>
        /// A step's device work over <paramref name="rows"/> rows whose inputs are uploaded: embed, the layers (each writes
        /// its keys and values to the cache, then attends through the page table), and for the first
        /// <paramref name="sampledRows"/> rows the LM head and the sampler into the step buffers. Nothing in it touches the
        /// host, so it can be captured as a graph.
        /// </summary>
        private void StepWork(Qwen2Activations arena, int rows, int sampledRows, Tensor tableTensor)
        {
            var b = g._backend;
            var model = g._model;
            b.EmbeddingForward(g.DeviceInput(DecodeInput.Tokens, rows), model.Weights.Embedding, arena.Residuals[0].SliceRows(0, rows));
            var lengthTensor = g.DeviceInput(DecodeInput.Lengths, rows);
            var rowsTensor = g.DeviceInput(DecodeInput.CacheRows, rows);
            model.RunLayers(arena, rows, g.DeviceInput(DecodeInput.Positions, rows), (layer, _, q, k, v, attention, _) =>
            {
                b.WriteKeyCache(k, rowsTensor, g._cache.Keys[layer]);
                b.ScatterRows(v, rowsTensor, g._cache.ValueRows(layer));
                b.AttentionDecode(q, g._cache.Keys[layer], g._cache.Values[layer], tableTensor, lengthTensor, model.Heads, model.Heads.DefaultScale, attention);
            });
            if (sampledRows == 0) return;
            Logits(model.FinalNorm(arena, sampledRows), g._logits.SliceRows(0, sampledRows));
            SampleIntoStepBuffers(sampledRows, g.DeviceInput(DecodeInput.Streams, sampledRows));
        }

        /// <summary>
        /// A chunked prefill's last chunk ran (its last position at <paramref name="lastRow"/> of the arena): the other
        /// members get their copy of the owner's partial last page (copy-on-write, where the samples diverge), a resumed
        /// owner goes on with its pending token, and fresh members draw their first tokens from the last position.
        /// </summary>
        private void CompleteChunk(ChunkedPrefill chunk, Qwen2Activations arena, int rows, int lastRow)
        {
            _chunk = null;
            var owner = requests[chunk.Members[0]];
            bool partial = chunk.Length % g.PageSize != 0;
            _fresh.Clear();
            foreach (int r in chunk.Members)
            {
                var q = requests[r];
                if (partial && q != owner) g.CopyPage(owner.Pages[^1], q.Pages[^1]);
                if (q.Tokens.Count > 0)
                {
                    q.Pending = q.Tokens[^1];
                    _survivors.Add(r);
                }
                else _fresh.Add(r);
            }
            if (_fresh.Count > 0) SampleFirstTokens(g._model.FinalNorm(arena, rows), _ => lastRow);
        }

        /// <summary>
        /// Each request of <see cref="_fresh"/> draws its first token from the hidden row <paramref name="lastRowOf"/> names
        /// (its prompt's last position), on its own stream at position 0, and is taken (running unless it stopped).
        /// </summary>
        private void SampleFirstTokens(Tensor hidden, Func<int, int> lastRowOf)
        {
            var b = g._backend;
            int n = _fresh.Count;
            Span<int> lastRows = g.HostInput(DecodeInput.Tokens)[..n]; // staging; the next step rewrites it
            for (int i = 0; i < n; i++)
            {
                int r = _fresh[i];
                lastRows[i] = lastRowOf(r);
                g._hostWaveStreams[2 * i] = requests[r].Stream;
                g._hostWaveStreams[2 * i + 1] = 0;
            }
            b.Upload<int>(lastRows, g._lastRows.SliceRows(0, n));
            b.Upload<int>(g._hostWaveStreams.AsSpan(0, 2 * n), g._waveStreams.SliceRows(0, 2 * n));
            b.GatherRows(hidden, g._lastRows.SliceRows(0, n), g._lastHidden.SliceRows(0, n));
            Logits(g._lastHidden.SliceRows(0, n), g._logits.SliceRows(0, n));
            SampleIntoStepBuffers(n, g._waveStreams.SliceRows(0, 2 * n).Reshape(n, 2));
            // The stop rules on the device, as for decode steps: each request may sample its whole limit.
            Span<int> left = g.HostInput(DecodeInput.Remaining)[..n];
            for (int i = 0; i < n; i++) left[i] = TokensLeft(requests[_fresh[i]]);
            b.Upload<int>(left, g.DeviceInput(DecodeInput.Remaining, n));
            MakeHistoryRoom(n);
            RecordStep(0, n, n, next: null);
            CollectRun(_fresh, n, n, steps: 1, decoded: false, "a prefill");
        }

        /// <summary>This call's graphs are for its seed and options only; so is its stop list.</summary>
        public void Dispose()
        {
            foreach (var graph in _graphs.Values) graph.Dispose();
            _graphs.Clear();
            _stopTokens?.Dispose();
        }

        /// <summary>The tokens a request's prefill runs: its prompt, and for a pre-empted one the tokens before its pending one.</summary>
        private int SequenceLength(Request q) => prompts[q.Prompt].Count + Math.Max(0, q.Tokens.Count - 1);

        private int SequenceToken(Request q, int i)
        {
            var prompt = prompts[q.Prompt];
            return i < prompt.Count ? prompt[i] : q.Tokens[i - prompt.Count];
        }

        /// <summary>
        /// Admits request r, whose sequence of <paramref name="length"/> tokens exceeds the prefill budget, to the chunked
        /// prefill: as its owner when none is under way (all of its pages allocated now; the chunks write them), or as one
        /// more sample of the prompt being chunked (its full pages by reference, a page of its own for the partial last
        /// one). False when it must wait: another sequence is being chunked, or the pages are not free.
        /// </summary>
        private bool JoinChunk(int r, int key, int length)
        {
            var q = requests[r];
            int fullPages = length / g.PageSize, tail = length % g.PageSize != 0 ? 1 : 0;
            if (_chunk is null)
            {
                if (fullPages + tail > g._pages.FreeCount) return false;
                for (int i = 0; i < fullPages + tail; i++) q.Pages.Add(g._pages.Allocate());
                _chunk = new ChunkedPrefill(key, length);
            }
            else
            {
                if (_chunk.Key != key || tail > g._pages.FreeCount) return false;
                var owner = requests[_chunk.Members[0]];
                for (int i = 0; i < fullPages; i++)
                {
                    g._pages.Retain(owner.Pages[i]);
                    q.Pages.Add(owner.Pages[i]);
                }
                if (tail > 0) q.Pages.Add(g._pages.Allocate());
            }
            q.Length = length;
            _chunk.Members.Add(r);
            return true;
        }

        /// <summary>
        /// Admits waiting requests (pre-empted ones first, then fresh ones in order) while the batch, the prefill budget and
        /// the free pages allow, prefills their distinct sequences as one packed batch, writing each copy's keys and values
        /// to its pages (a prompt's full pages once, shared; the partial last page per copy), and samples each fresh
        /// request's first token. Returns false when nothing could be admitted.
        /// </summary>
        private bool AdmitAndPrefill()
        {
            var timer = Stopwatch.StartNew();
            _admitted.Clear();
            _fresh.Clear();
            _distinct.Clear();
            _copies.Clear();
            // Distinct sequences of this wave (a prompt's index for fresh requests, ~request for a pre-empted one).
            int promptTokens = 0;
            bool joinedChunk = false;
            while (Waiting && _running.Count + _admitted.Count + ChunkMembers < g.MaxBatch)
            {
                bool resumed = _preempted.Count > 0;
                int r = resumed ? _preempted[0] : _next;
                var q = requests[r];
                int key = resumed ? ~r : q.Prompt, length = SequenceLength(q);
                if (length > g.PrefillTokenBudget)
                {
                    // Longer than a wave's budget: prefilled in chunks by the decode steps (one such sequence at a time).
                    if (!JoinChunk(r, key, length)) break;
                    joinedChunk = true;
                    if (resumed) _preempted.RemoveAt(0);
                    else _next++;
                    continue;
                }
                bool shared = _copies.TryGetValue(key, out var sharers);
                int cost = shared ? 0 : length;
                if (_admitted.Count > 0 && promptTokens + cost > g.PrefillTokenBudget) break;
                // Pages: a new sequence's all; a sharer only its own copy of a partial last page.
                int fullPages = length / g.PageSize, tail = length % g.PageSize != 0 ? 1 : 0;
                int needed = shared ? tail : fullPages + tail;
                if (needed > g._pages.FreeCount) break;
                if (shared)
                {
                    var first = requests[sharers![0]];
                    for (int i = 0; i < fullPages; i++)
                    {
                        g._pages.Retain(first.Pages[i]);
                        q.Pages.Add(first.Pages[i]);
                    }
                }
                else
                {
                    for (int i = 0; i < fullPages; i++) q.Pages.Add(g._pages.Allocate());
                    _distinct.Add(key);
                    _copies[key] = sharers = [];
                    promptTokens += cost;
                }
                if (tail > 0) q.Pages.Add(g._pages.Allocate());
                q.Length = length;
                sharers!.Add(r);
                _admitted.Add(r);
                if (resumed) _preempted.RemoveAt(0);
                else
                {
                    _next++;
                    _fresh.Add(r);
                }
            }
            if (_admitted.Count == 0) return joinedChunk;
            int total = promptTokens, maxCopies = _copies.Values.Max(list => list.Count), sequences = _distinct.Count;

            // The packed sequences, and per copy c a table of cache rows: sequence d's position i goes to its c-th
            // request's page, or to the sink page when the row is a shared full page (copy 0 writes it) or d has fewer copies.
            Grow(ref g._hostPromptTokens, total);
            Grow(ref g._hostPromptLengths, sequences);
            Grow(ref g._hostCacheRows, maxCopies * total);
            _lastRowOf.Clear();
            for (int d = 0, at = 0; d < sequences; d++)
            {
                var copies = _copies[_distinct[d]];
                var owner = requests[copies[0]];
                int length = SequenceLength(owner), fullRows = length / g.PageSize * g.PageSize;
                g._hostPromptLengths[d] = length;
                for (int i = 0; i < length; i++, at++)
                {
                    g._hostPromptTokens[at] = SequenceToken(owner, i);
                    for (int c = 0; c < maxCopies; c++)
                    {
                        bool writes = c < copies.Count && (c == 0 || i >= fullRows);
                        int page = writes ? requests[copies[c]].Pages[i / g.PageSize] : g.SinkPage;
                        g._hostCacheRows[c * total + at] = page * g.PageSize + i % g.PageSize;
                    }
                }
                _lastRowOf[_distinct[d]] = at - 1;
            }
            var b = g._backend;
            var model = g._model;
            var batch = g._prefillBatch.Load(g._hostPromptTokens.AsSpan(0, total), g._hostPromptLengths.AsSpan(0, sequences));
            var arena = g.PrefillArena(total);
            if (g._prefillCacheRows is null || g._prefillCacheRows.ElementCount < maxCopies * total)
            {
                int size = Math.Max(maxCopies * total, (int)Math.Min(int.MaxValue, (g._prefillCacheRows?.ElementCount ?? 0) * 3 / 2));
                g._prefillCacheRows?.Dispose();
                g._prefillCacheRows = g.Ints(size);
            }
            b.Upload<int>(g._hostCacheRows.AsSpan(0, maxCopies * total), g._prefillCacheRows.SliceRows(0, maxCopies * total));
            b.EmbeddingForward(batch.Tokens, model.Weights.Embedding, arena.Residuals[0].SliceRows(0, total));
            model.RunLayers(arena, total, batch.Positions, (layer, _, q, k, v, attention, lse) =>
            {
                b.AttentionForward(q, k, v, batch.Sequences, model.Heads, model.Heads.DefaultScale, attention, lse);
                for (int c = 0; c < maxCopies; c++)
                {
                    var rows = g._prefillCacheRows.SliceRows(c * total, total);
                    b.WriteKeyCache(k, rows, g._cache.Keys[layer]);
                    b.ScatterRows(v, rows, g._cache.ValueRows(layer));
                }
            });

            // Pre-empted requests go on with their pending token; each fresh one draws its first from its prompt's last
            // position, on its own stream at position 0.
            _survivors.Clear();
            _survivors.AddRange(_running);
            foreach (int r in _admitted)
            {
                var q = requests[r];
                if (q.Tokens.Count > 0)
                {
                    q.Pending = q.Tokens[^1];
                    _survivors.Add(r);
                }
            }
            if (_fresh.Count > 0) SampleFirstTokens(model.FinalNorm(arena, total), r => _lastRowOf[requests[r].Prompt]);
            (_running, _survivors) = (_survivors, _running);
            _stats = _stats with
            {
                PrefillTokens = _stats.PrefillTokens + total, PrefillSeconds = _stats.PrefillSeconds + timer.Elapsed.TotalSeconds,
                Prefills = _stats.Prefills + 1,
            };
            return true;
        }
    }

    /// <summary>A new Int32 tensor holding <paramref name="values"/>.</summary>
    private Tensor UploadInts(IReadOnlyCollection<int> values)
    {
        var tensor = Ints(values.Count);
        _backend.Upload<int>(values.ToArray(), tensor);
        return tensor;
    }

    /// <summary>The prefill arena with room for at least <paramref name="rows"/> rows (grow-only: sized by the largest wave or chunk step).</summary>
    private Qwen2Activations PrefillArena(int rows)
    {
        if (_prefill is null || _prefill.Capacity < rows)
        {
            int capacity = Math.Max(rows, _prefill?.Capacity ?? 0);
            _prefill?.Dispose();
            _prefill = Qwen2Activations.ForInference(_backend, _model.Config, capacity, _model.Storage);
        }
        return _prefill;
    }

    /// <summary>
    /// A device page table of <paramref name="entries"/> ints: the decode table (fixed, as graphs captured it) when it is
    /// large enough, else a grow-only one for the steps that carry a chunk.
    /// </summary>
    private Tensor StepTable(int entries)
    {
        if (entries <= _pageTable.ElementCount) return _pageTable.SliceRows(0, entries);
        if (_chunkTable is null || _chunkTable.ElementCount < entries)
        {
            _chunkTable?.Dispose();
            _chunkTable = _backend.Allocate(DType.Int32, new TensorShape(Math.Max(entries, (int)Math.Min(int.MaxValue, (_chunkTable?.ElementCount ?? 0) * 3 / 2))), "chunk page table");
        }
        return _chunkTable.SliceRows(0, entries);
    }

    /// <summary>
    /// Copies page <paramref name="from"/>'s keys and values of every layer to page <paramref name="to"/> (copy-on-write):
    /// whole pages, so whatever the backend's <see cref="KeyCacheLayout"/> inside a page.
    /// </summary>
    private void CopyPage(int from, int to)
    {
        for (int l = 0; l < _model.Config.NumHiddenLayers; l++)
        {
            _backend.Copy(_cache.KeyRows(l).SliceRows(from * PageSize, PageSize), _cache.KeyRows(l).SliceRows(to * PageSize, PageSize));
            _backend.Copy(_cache.ValueRows(l).SliceRows(from * PageSize, PageSize), _cache.ValueRows(l).SliceRows(to * PageSize, PageSize));
        }
    }

    /// <summary>The log-prob history holds at least <paramref name="rows"/> entries (grow-only).</summary>
    private void EnsureHistory(int rows)
    {
        if (_logProbHistory is not null && _logProbHistory.ElementCount >= rows) return;
        _logProbHistory?.Dispose();
        _truncatedHistory?.Dispose();
        _logProbHistory = _backend.Allocate(DType.Float32, new TensorShape(Math.Max(rows, 1)), "sampled log-probs");
        _truncatedHistory = _backend.Allocate(DType.Float32, new TensorShape(Math.Max(rows, 1)), "sampled tokens' truncated masses");
        _hostLogProbHistory = new float[Math.Max(rows, 1)];
        _hostTruncatedHistory = new float[Math.Max(rows, 1)];
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
        _chunkTable?.Dispose();
        _logProbHistory?.Dispose();
        _truncatedHistory?.Dispose();
        foreach (var t in new[] { _decodeInputs, _emitted, _pageTable, _sampled, _logits, _lastHidden, _lastRows, _waveStreams, _stepLogProbs, _stepTruncated }) t.Dispose();
    }
}
