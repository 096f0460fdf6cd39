using BenchmarkDotNet.Attributes;
using OR1.Native;

namespace OR1.Bench.Kernels;

/// <summary>
/// GEMM (kernels/gemm.cu and cuBLAS, Cpu/Gemm.cs, Ilgpu/Gemm.cs) as the model uses it, on the MLP's up
/// projection: forward Y = X Wᵀ with X [tokens, hidden] and W [intermediate, hidden]; the backward's
/// dX = dY W and dW += dYᵀ X. GFLOP/s = 2 M N K / time.
/// <code>dotnet run -c Release --project bench/OR1.Bench -- --filter '*GemmBenchmarks*'</code>
/// </summary>
public class GemmBenchmarks : KernelBenchmark
{
    private Tensor _x = null!, _w = null!, _y = null!, _dy = null!, _dx = null!, _dw = null!;

    private int Tokens => Case.Tokens(Scale.GemmRows);

    protected override void Allocate(Random random)
    {
        _x = Floats(random, Tokens, Model.Hidden);
        _w = Floats(random, Model.Intermediate, Model.Hidden, 0.05f);
        _y = Zeros(new TensorShape(Tokens, Model.Intermediate));
        _dy = Floats(random, Tokens, Model.Intermediate);
        _dx = Zeros(new TensorShape(Tokens, Model.Hidden));
        _dw = Zeros(new TensorShape(Model.Intermediate, Model.Hidden));
    }

    [Benchmark]
    public void Forward()
    {
        Backend.MatMul(_x, false, _w, true, _y);
        Backend.Synchronize();
    }

    [Benchmark]
    public void BackwardInput()
    {
        Backend.MatMul(_dy, false, _w, false, _dx);
        Backend.Synchronize();
    }

    [Benchmark]
    public void BackwardWeight()
    {
        Backend.MatMul(_dy, true, _x, false, _dw, beta: 1f);
        Backend.Synchronize();
    }

    public override long BytesMoved(string method) => 0; // compute-bound: judged by GFLOP/s

    public override double Flops(string method) => KernelCost.MatMulFlops(Tokens, Model.Intermediate, Model.Hidden);
}
