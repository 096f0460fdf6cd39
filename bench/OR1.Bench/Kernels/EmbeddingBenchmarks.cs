using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// Token embedding lookup and its gradient (kernels/embedding.cu, Cpu/Embedding.cs, Ilgpu/Embedding.cs)
/// with the model's vocabulary and hidden width. Forward gathers one table row per token; backward adds
/// each token's gradient row into the table (read-modify-write of the touched rows).
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*Embedding*'</code>
/// </summary>
public class EmbeddingBenchmarks : KernelBenchmark
{
    private Tensor _tokens = null!, _table = null!, _out = null!, _dOut = null!, _dTable = null!;

    private long RowBytes => (long)Model.Hidden * sizeof(float);

    private int Tokens => Scale.RowsFor(2 * RowBytes);

    protected override void Allocate(Random random)
    {
        _tokens = Ints(random, Tokens, Model.Vocab);
        _table = Floats(random, Model.Vocab, Model.Hidden);
        _out = Zeros(new TensorShape(Tokens, Model.Hidden));
        _dOut = Floats(random, Tokens, Model.Hidden);
        _dTable = Zeros(new TensorShape(Model.Vocab, Model.Hidden));
    }

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Forward() => Repeat<EmbeddingBenchmarks>(static b => b.Backend.EmbeddingForward(b._tokens, b._table, b._out));

    [Benchmark(OperationsPerInvoke = Launches)]
    public void Backward() => Repeat<EmbeddingBenchmarks>(static b => b.Backend.EmbeddingBackward(b._tokens, b._dOut, b._dTable));

    public override long BytesMoved(string method) =>
        Tokens * ((method == nameof(Forward) ? 2 : 3) * RowBytes + sizeof(int));

    public override double Flops(string method) => 0;
}
