using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// Drawing the next token of a generation batch from logits over the model's vocabulary
/// (kernels/sampling.cu, Cpu/Sampling.cs, Ilgpu/Sampling.cs): the rollout setting (temperature 1, no
/// filtering), nucleus top-p 0.95, top-k 50 and greedy on uniform logits in [-8, 8) (the filters' worst case: a nucleus of a
/// fifth of the vocabulary), top-p and the rollout draw on model-like rows (<see cref="RandomFill.ModelLike"/>); the logits in bf16 too on the backends that store
/// it. GB/s counts one read of the logits, the least any sampler must do; the filtered modes read them more
/// than once. <c>StopRules</c> is the step after the draw (kernels/sampling_stop.cu, Cpu/DecodeAdvance.cs,
/// Ilgpu/DecodeAdvance.cs): each row's token checked against stop tokens and its remaining length and its next inputs
/// written in place; a launch's worth of work, so its time is the launch's (GB/s counts the ints it reads and writes).
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Sampling*'</code>
/// </summary>
public class SamplingBenchmarks : KernelBenchmark
{
    private Tensor _logits = null!, _modelLike = null!, _tokens = null!, _logProbs = null!;
    private Tensor _stopTokens = null!, _remaining = null!, _emitted = null!;
    private DecodeInputs _next;
    private ulong _counter;
    private SamplingOptions _options;

    public override IEnumerable<KernelCase> Cases() => KernelCase.ForModelsInEachStorage();

    protected override void Allocate(Random random)
    {
        var shape = new TensorShape(Scale.SampleRows, Model.Vocab);
        _logits = Stored(random, shape, 8f);
        var modelLike = new float[shape.ElementCount];
        RandomFill.ModelLike(modelLike, Model.Vocab, random.Next());
        _modelLike = Stored(modelLike, shape);
        _tokens = Ints(new int[Scale.SampleRows]);
        _logProbs = Zeros(new TensorShape(Scale.SampleRows));
        // Rows that never stop (no token is a stop token; the remaining counts outlast any run) and a page table of one
        // page whose size outlasts the positions, so every call does the whole work of a running row.
        int rows = Scale.SampleRows;
        _stopTokens = Ints([-1, -2, -3, -4]);
        _remaining = Ints(Enumerable.Repeat(int.MaxValue, rows).ToArray());
        _emitted = Ints(new int[rows]);
        _next = new DecodeInputs(Ints(new int[rows]), Ints(new int[rows]), Ints(Enumerable.Repeat(1, rows).ToArray()), Ints(new int[2 * rows]).Reshape(rows, 2),
            Ints(new int[rows]), Ints(new int[rows]).Reshape(rows, 1), 1 << 30, 0);
    }

    private void Draw(SamplingOptions options, bool modelLike = false)
    {
        _options = options;
        if (modelLike) Repeat<SamplingBenchmarks>(static b => b.Backend.Sample(b._modelLike, b._options, 1234, ++b._counter, b._tokens, b._logProbs));
        else Repeat<SamplingBenchmarks>(static b => b.Backend.Sample(b._logits, b._options, 1234, ++b._counter, b._tokens, b._logProbs));
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Rollout() => Draw(new SamplingOptions(1f));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void TopP() => Draw(new SamplingOptions(1f, 0.95f));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void TopK() => Draw(new SamplingOptions(1f, TopK: 50));

    /// <summary>Top-p 0.95 on logits shaped like a model's (<see cref="RandomFill.ModelLike"/>): the usual row, a small nucleus.</summary>
    [Benchmark(OperationsPerInvoke = Launches)]
    public void TopPModelLike() => Draw(new SamplingOptions(1f, 0.95f), modelLike: true);

    /// <summary>The recipe's draw (T 1, no filter) on the same model-like rows.</summary>
    [Benchmark(OperationsPerInvoke = Launches)]
    public void RolloutModelLike() => Draw(new SamplingOptions(1f), modelLike: true);

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Greedy() => Draw(new SamplingOptions(0f));

    /// <summary>The stop rules and next inputs of a decode step's rows (<see cref="IBackend.AdvanceDecode"/>).</summary>
    [Benchmark(OperationsPerInvoke = Launches)]
    public void StopRules() => Repeat<SamplingBenchmarks>(static b => b.Backend.AdvanceDecode(b._tokens, b._stopTokens, b._remaining, b._emitted, b._next));

    // StopRules reads a row's token, remaining count, position, stream and page entry, and writes eight ints.
    public override long BytesMoved(string method) => method == nameof(StopRules)
        ? (long)Scale.SampleRows * 14 * sizeof(int)
        : (long)Scale.SampleRows * Model.Vocab * Case.Storage.SizeOf();

    public override double Flops(string method) => 0;
}
