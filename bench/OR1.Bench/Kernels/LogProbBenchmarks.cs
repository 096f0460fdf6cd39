using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// The fused LM-head log-prob and entropy (kernels/logprob.cu, Cpu/LogProb.cs, Ilgpu/LogProb.cs): hidden
/// [tokens, hidden] against the full vocabulary without materialising the logits. Forward is the logits
/// GEMM (2 N D V) folded into running softmax statistics; backward recomputes the logits and forms
/// dHidden and dWeight (3x), with the entropy gradient on as in MAGIC.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*LogProb*'</code>
/// </summary>
public class LogProbBenchmarks : KernelBenchmark
{
    private Tensor _hidden = null!, _weight = null!, _targets = null!, _logProbs = null!, _entropy = null!, _lse = null!;
    private Tensor _dLogProbs = null!, _dEntropy = null!, _dHidden = null!, _dWeight = null!;

    private int Rows => Case.Tokens(Scale.LogProbRows);

    protected override void Allocate(Random random)
    {
        _hidden = Floats(random, Rows, Model.Hidden);
        _weight = Floats(random, Model.Vocab, Model.Hidden, 0.05f);
        _targets = Ints(random, Rows, Model.Vocab);
        _logProbs = Zeros(new TensorShape(Rows));
        _entropy = Zeros(new TensorShape(Rows));
        _lse = Zeros(new TensorShape(Rows));
        _dLogProbs = Floats(random, Rows);
        _dEntropy = Floats(random, Rows);
        _dHidden = Zeros(new TensorShape(Rows, Model.Hidden));
        _dWeight = Zeros(new TensorShape(Model.Vocab, Model.Hidden));
        Backend.LogProbForward(_hidden, _weight, _targets, 1f, _logProbs, _entropy, _lse);
    }

    [Benchmark]
    public void Forward()
    {
        Backend.LogProbForward(_hidden, _weight, _targets, 1f, _logProbs, _entropy, _lse);
        Backend.Synchronize();
    }

    [Benchmark]
    public void Backward()
    {
        Backend.LogProbBackward(_dLogProbs, _dEntropy, _hidden, _weight, _targets, 1f, _entropy, _lse, _dHidden, _dWeight);
        Backend.Synchronize();
    }

    public override long BytesMoved(string method) => 0; // compute-bound: judged by GFLOP/s

    public override double Flops(string method) => method == nameof(Forward)
        ? KernelCost.LogProbForwardFlops(Rows, Model.Hidden, Model.Vocab)
        : KernelCost.LogProbBackwardFlops(Rows, Model.Hidden, Model.Vocab);
}
