namespace OR1.Native;

/// <summary>
/// The op contract: every operation the Qwen2 model and the MAGIC trainer need, forward and backward,
/// over packed variable-length sequences. Each backend (Cpu, Cuda, Emu, Ilgpu) implements all of it;
/// model and trainer code is written once against this interface.
/// </summary>
/// <remarks>
/// Conventions (llm.c's):
/// <list type="bullet">
/// <item>Outputs are allocated by the caller. Ops never allocate on the hot path and never copy device
/// data to the host unless their result is a host scalar (<see cref="GlobalNorm"/>).</item>
/// <item>Parameter gradients accumulate (+=); activation gradients overwrite (=). Each method says which.</item>
/// <item>Shapes, dtypes and owning backend are checked once, here, with the op and argument named in
/// the <see cref="ArgumentException"/>; kernels trust their arguments.</item>
/// <item>Reductions accumulate in fp32 or wider. Results are deterministic run to run for a fixed
/// thread count unless a method says otherwise.</item>
/// <item>Ops may be asynchronous on device backends: call <see cref="Synchronize"/> before timing
/// or before reading host memory a kernel wrote.</item>
/// </list>
/// Row-major layout; activations are [tokens, features]; a row holds heads as [heads, head_dim].
/// </remarks>
public interface IBackend : IDisposable
{
    // ---------------------------------------------------------------- identity, memory, sync

    /// <summary>Which implementation this is.</summary>
    BackendKind Kind { get; }

    /// <summary>Human-readable description: device, threads, instruction sets.</summary>
    string Description { get; }

    /// <summary>
    /// The dtypes this backend stores activations, weights' working copies and KV caches in: Float32 always, and
    /// BFloat16 on the CUDA-kernel backends (Cuda, Emu). Statistics (log-sum-exp, 1/rms, log-probs), parameter
    /// gradients, optimizer state and losses are Float32 on every backend; every op computes in fp32.
    /// </summary>
    IReadOnlyList<DType> StorageTypes { get; }

    /// <summary>
    /// What this backend runs on, read now: the CUDA device and libraries (name, SMs, memory total and free, compute
    /// capability, driver, NVRTC and cuBLAS versions), or the host CPU (threads, SIMD) and what an emulator emulates;
    /// where the kernels come from; the storage dtypes. For diagnostics: <c>or1 info</c> and the GPU check print it.
    /// </summary>
    BackendFacts Facts();

    /// <summary>Allocates a zero-filled tensor owned by this backend.</summary>
    Tensor Allocate(DType dtype, TensorShape shape, string? name = null);

    /// <summary>Copies host data into a tensor of this backend (element type must match the dtype).</summary>
    void Upload<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged;

    /// <summary>Copies a tensor of this backend into host memory (synchronises first).</summary>
    void Download<T>(Tensor source, Span<T> destination) where T : unmanaged;

    /// <summary>Waits until every op issued so far has finished.</summary>
    void Synchronize();

    // ---------------------------------------------------------------- elementwise and data movement

    /// <summary>Sets every element of a storage-dtype tensor (Float32, or BFloat16 where the backend stores it) to <paramref name="value"/>, rounded once.</summary>
    void Fill(Tensor x, float value);

    /// <summary>destination = source (same dtype and element count; shapes may differ).</summary>
    void Copy(Tensor source, Tensor destination);

    /// <summary>
    /// destination = source in destination's dtype, element count equal: Float32 to BFloat16 rounds to nearest even
    /// (NaN stays NaN), BFloat16 to Float32 is exact, equal dtypes copy.
    /// </summary>
    void Convert(Tensor source, Tensor destination);

    /// <summary>output = a + b elementwise; output may alias a or b.</summary>
    void Add(Tensor a, Tensor b, Tensor output);

    /// <summary>x *= factor, in place.</summary>
    void Scale(Tensor x, float factor);

    /// <summary>x[n, :] += bias[:] for every row n, in place. x: [N, D], bias: [D].</summary>
    void AddBias(Tensor x, Tensor bias);

    /// <summary>dBias[d] += sum over rows of dOutput[n, d] (accumulates; a parameter gradient).</summary>
    void BiasBackward(Tensor dOutput, Tensor dBias);

    /// <summary>destination[i, :] = source[rowIndices[i], :]. source [R, D], rowIndices Int32 [N], destination [N, D].</summary>
    void GatherRows(Tensor source, Tensor rowIndices, Tensor destination);

    /// <summary>destination[rowIndices[i], :] = source[i, :] (indices must be distinct). Used to write a value cache.</summary>
    void ScatterRows(Tensor source, Tensor rowIndices, Tensor destination);

    /// <summary>How <see cref="WriteKeyCache"/> lays out a key-cache page and <see cref="AttentionDecode"/> reads it.</summary>
    KeyCacheLayout KeyCacheLayout { get; }

    /// <summary>
    /// Writes keys [N, Hkv*D] to cache rows cacheRows Int32 [N] (row = page * pageSize + position in the page, as
    /// <see cref="AttentionDecode"/> numbers them) of keyCache [pages, pageSize, Hkv*D], in this backend's
    /// <see cref="KeyCacheLayout"/>: what <see cref="ScatterRows"/> is for the values. Rows must be distinct, except rows
    /// that are never read (the rollout engine's stopped rows all write one sink row).
    /// </summary>
    void WriteKeyCache(Tensor keys, Tensor cacheRows, Tensor keyCache);

    /// <summary>
    /// Bytes of the tensors allocated through <see cref="Allocate"/> and not yet disposed (what a model, an arena or a
    /// cache holds; a kernel backend's launcher scratch and library workspaces are not counted). The memory planner's
    /// predictions are checked against it.
    /// </summary>
    long AllocatedBytes { get; }

    // ---------------------------------------------------------------- GEMM

    /// <summary>
    /// c = alpha * op(a) * op(b) + beta * c, op(x) = x or x^T. Rank 2: a [M, K] (or [K, M] transposed),
    /// b [K, N] (or [N, K]), c [M, N]. Rank 3: the same with a leading batch dimension on all three
    /// (strided batches). beta = 0 overwrites c (its old contents, even NaN, are ignored); beta = 1 accumulates.
    /// </summary>
    void MatMul(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f);

    /// <summary>
    /// Declares that <paramref name="weights"/> (matrices [N, K], used as MatMul's B with transposeB) will not be written
    /// until the returned scope is disposed, so the backend may prepare them for many products: the Cpu backend packs each
    /// once for its GEMM (the same kernel and bits as without; a decode step no longer repacks the LM head every call),
    /// within <paramref name="maxBytes"/> of packed copies; the kernel backends need nothing. Writing a frozen weight inside
    /// the scope is a caller error that is not detected.
    /// </summary>
    IDisposable FreezeWeights(IReadOnlyList<Tensor> weights, long maxBytes = 1L << 31);

    /// <summary>
    /// Memory the backend could still allocate now, in bytes: free device memory on a GPU, available host memory on the Cpu
    /// backend and the simulators; null when it cannot tell. For sizing (the rollout engine's default KV cache).
    /// </summary>
    long? FreeMemoryBytes { get; }

    /// <summary>
    /// Runs <paramref name="work"/>'s device operations into a graph instead of executing them, and returns it for
    /// replay (<see cref="IDeviceGraph"/>): a decode step replayed costs one launch instead of hundreds. Null where the
    /// backend has no graphs (Cpu, ILGPU; <paramref name="work"/> is then not run). Inside the capture only device work
    /// may happen: an allocation, an upload, a download or a synchronisation throws, as the driver refuses it.
    /// </summary>
    IDeviceGraph? CaptureGraph(Action work);

    // ---------------------------------------------------------------- embedding

    /// <summary>output[n, :] = table[tokenIds[n], :]. tokenIds Int32 [N], table [V, D], output [N, D].</summary>
    void EmbeddingForward(Tensor tokenIds, Tensor table, Tensor output);

    /// <summary>dTable[tokenIds[n], :] += dOutput[n, :] (accumulates, deterministic order).</summary>
    void EmbeddingBackward(Tensor tokenIds, Tensor dOutput, Tensor dTable);

    // ---------------------------------------------------------------- RMSNorm

    /// <summary>
    /// output = x * invRms * weight with invRms[n] = 1 / sqrt(mean(x[n, :]^2) + eps), saved for the backward.
    /// x, output [N, D]; weight [D]; invRms [N].
    /// </summary>
    void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor output, Tensor invRms);

    /// <summary>dx = d(output)/dx^T dOutput (overwrites); dWeight += sum_n dOutput * x * invRms (accumulates).</summary>
    void RmsNormBackward(Tensor dOutput, Tensor x, Tensor weight, Tensor invRms, Tensor dx, Tensor dWeight);

    // ---------------------------------------------------------------- rotary embedding

    /// <summary>
    /// Rotary embedding in the HF "rotate_half" convention: within each head, element i pairs with
    /// i + headDim/2, rotated by angle positions[n] * theta^(-2i/headDim). x, output [N, heads * headDim]
    /// (output may alias x); positions Int32 [N].
    /// </summary>
    void RopeForward(Tensor x, Tensor positions, int numHeads, int headDim, float theta, Tensor output);

    /// <summary>dx = the inverse rotation of dOutput (overwrites; may alias dOutput).</summary>
    void RopeBackward(Tensor dOutput, Tensor positions, int numHeads, int headDim, float theta, Tensor dx);

    // ---------------------------------------------------------------- attention

    /// <summary>
    /// Causal grouped-query attention within each packed sequence. q [N, Hq*D], k and v [N, Hkv*D],
    /// output [N, Hq*D], logSumExp [N, Hq] (per row and head, of the scaled scores; saved for the backward).
    /// </summary>
    void AttentionForward(Tensor q, Tensor k, Tensor v, Segments sequences, AttentionHeads heads, float scale,
        Tensor output, Tensor logSumExp);

    /// <summary>Gradients of <see cref="AttentionForward"/> with respect to q, k and v (all overwrite).</summary>
    void AttentionBackward(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
        Segments sequences, AttentionHeads heads, float scale, Tensor dq, Tensor dk, Tensor dv);

    /// <summary>
    /// One query row per sequence attending to its KV cache, positions [0, lengths[b]), through a page table (vLLM's
    /// paged cache): keyCache, valueCache [pages, pageSize, Hkv*D]; pageTable Int32 [B, P], position p of row b in cache
    /// row pageTable[b, p / pageSize] * pageSize + p % pageSize; lengths Int32 [B] with 1 &lt;= lengths[b] &lt;= P *
    /// pageSize. Only the entries a row reads (p &lt; lengths[b]) must be pages in [0, pages); the rest may hold anything.
    /// A contiguous cache [slots, maxLength, Hkv*D] is the case P = 1: pageTable may then be Int32 [B], each row's slot.
    /// q, output [B, Hq*D]. The keys are in this backend's <see cref="KeyCacheLayout"/> (write them with
    /// <see cref="WriteKeyCache"/>); the values are rows (<see cref="ScatterRows"/>).
    /// </summary>
    void AttentionDecode(Tensor q, Tensor keyCache, Tensor valueCache, Tensor pageTable, Tensor lengths,
        AttentionHeads heads, float scale, Tensor output);

    // ---------------------------------------------------------------- SwiGLU

    /// <summary>output = silu(gate) * up, elementwise. All [N, F].</summary>
    void SwiGluForward(Tensor gate, Tensor up, Tensor output);

    /// <summary>dGate and dUp from dOutput (both overwrite).</summary>
    void SwiGluBackward(Tensor dOutput, Tensor gate, Tensor up, Tensor dGate, Tensor dUp);

    // ---------------------------------------------------------------- log-prob + entropy

    /// <summary>
    /// For each row n with logits z = hidden[n] · weight^T / temperature (never materialised whole; the
    /// vocabulary is processed in chunks): logProbs[n] = z[targets[n]] - lse(z), entropy[n] = the
    /// full-vocabulary entropy of softmax(z), logSumExp[n] = lse(z) (saved for the backward).
    /// hidden [N, D], weight [V, D], targets Int32 [N], the three outputs [N].
    /// </summary>
    void LogProbForward(Tensor hidden, Tensor weight, Tensor targets, float temperature,
        Tensor logProbs, Tensor entropy, Tensor logSumExp);

    /// <summary>
    /// Back-propagates dLogProbs and dEntropy (null: no entropy gradient) into dHidden (overwrites) and
    /// dWeight (accumulates). entropy and logSumExp are the forward's outputs.
    /// </summary>
    void LogProbBackward(Tensor dLogProbs, Tensor? dEntropy, Tensor hidden, Tensor weight, Tensor targets,
        float temperature, Tensor entropy, Tensor logSumExp, Tensor dHidden, Tensor dWeight);

    /// <summary>
    /// How <see cref="LogProbForward"/> and <see cref="LogProbBackward"/> would tile <paramref name="rows"/> hidden
    /// states of <paramref name="width"/> against a <paramref name="vocab"/>-row LM head stored as
    /// <paramref name="storage"/> if called now: rows and vocabulary columns per logit tile and the peak scratch.
    /// </summary>
    LogProbTiling PlanLogProb(int rows, int vocab, int width, DType storage);

    // ---------------------------------------------------------------- GRPO

    /// <summary>
    /// Group-relative advantages: for each group (a segment of responses), A = (r - mean) / (std + epsilon)
    /// with the unbiased std; a group of one has mean 0 and std 1. rewards, advantages [R].
    /// </summary>
    void GrpoAdvantages(Tensor rewards, Segments groups, float epsilon, Tensor advantages);

    /// <summary>output[t] = values[s] for every t in segment s. values [S], output [Total].</summary>
    void BroadcastSegments(Tensor values, Segments segments, Tensor output);

    /// <summary>
    /// The MAGIC policy loss (see <see cref="PolicyLossOptions"/>) over T tokens. Weights carry both
    /// the response mask and the aggregation (1/T_k for the token-level mean). referenceLogProbs may be
    /// null when the KL coefficient is 0. lossTerms [<see cref="PolicyLossTerms.Count"/>] is overwritten.
    /// </summary>
    void PolicyLossForward(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor entropy,
        Tensor tokenWeights, Tensor? referenceLogProbs, PolicyLossOptions options, Tensor lossTerms);

    /// <summary>dL/dlogProbs and dL/dentropy per token (both overwrite).</summary>
    void PolicyLossBackward(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor tokenWeights,
        Tensor? referenceLogProbs, PolicyLossOptions options, Tensor dLogProbs, Tensor dEntropy);

    // ---------------------------------------------------------------- optimizer

    /// <summary>
    /// One AdamW step (torch semantics) over several tensors, with g = gradientScale * gradient
    /// (the global-norm clip factor). step is the 1-based step count used for bias correction.
    /// </summary>
    void AdamWStep(IReadOnlyList<AdamWSlot> slots, AdamWOptions options, int step, float gradientScale);

    /// <summary>The L2 norm of all elements of all tensors together, as a host value (synchronises).</summary>
    float GlobalNorm(IReadOnlyList<Tensor> tensors);

    // ---------------------------------------------------------------- sampling

    /// <summary>
    /// Draws one token per row of logits [B, V] (a storage dtype of the backend) with temperature, top-k then top-p filtering. The
    /// uniform draw for row b is a counter-based hash of (seed, counter, b), so results do not depend
    /// on thread count or backend. tokens Int32 [B]; logProbs [B] receives log softmax(logits / T) at
    /// the drawn token, before filtering (T = 1 when greedy).
    /// </summary>
    void Sample(Tensor logits, SamplingOptions options, ulong seed, ulong counter, Tensor tokens, Tensor logProbs);

    /// <summary>
    /// As <see cref="Sample(Tensor, SamplingOptions, ulong, ulong, Tensor, Tensor)"/>, but row b draws from its own
    /// request's stream: streams Int32 [B, 2] holds (request id, position) per row and the uniform is the hash of
    /// (seed, position, request id), so a request's tokens do not depend on which other requests share the batch or
    /// where its row sits (the rollout engine's continuous batching). The ids are read as unsigned 32-bit values.
    /// truncatedMass Float32 [B], when given, receives the probability (under the full tempered distribution, whose
    /// log-prob logProbs holds) of the tokens top-k and top-p kept out of the draw: 0 unfiltered and greedy. It is the
    /// bias an importance ratio of the full-vocabulary log-probs would not see (exact to the sampler's integer weights).
    /// </summary>
    void Sample(Tensor logits, SamplingOptions options, ulong seed, Tensor streams, Tensor tokens, Tensor logProbs, Tensor? truncatedMass = null);

    /// <summary>
    /// The decode loop's stop rules, on the device, after a step's <see cref="Sample(Tensor, SamplingOptions, ulong, Tensor, Tensor, Tensor, Tensor?)"/>:
    /// remaining Int32 [B] holds per row how many tokens it may still sample (&gt; 0: running), or how it stopped (0: at its
    /// length limit, -1: at a stop token). A running row's sampled token (sampled Int32 [B]) goes to emitted Int32 [B] and
    /// its remaining count drops by one; a token in stopTokens (Int32 [S], null for none) sets -1. A row stopped before
    /// this call emits -1 and keeps its state. With <paramref name="next"/>, a row still running gets the next step's
    /// inputs in place (token = the sampled one, position and length + 1, stream position + 1, the cache row of the new
    /// position through its page-table row, which must hold that page) and a stopped row's cache row becomes the sink,
    /// so several steps run without the host, which reads the emitted tokens and remaining counts once after them.
    /// </summary>
    void AdvanceDecode(Tensor sampled, Tensor? stopTokens, Tensor remaining, Tensor emitted, DecodeInputs? next = null);
}
