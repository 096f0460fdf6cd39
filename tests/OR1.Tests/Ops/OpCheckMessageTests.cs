using OR1.Native;
using OR1.Native.Cpu;

namespace OR1.Tests.Ops;

/// <summary>
/// The op checks format their messages only when a check fails (<see cref="ProblemText"/>): every op call checks its
/// arguments, and a decode step makes about a hundred ops, so a message built on every call, shapes formatted whether or
/// not anything was wrong, was most of the rollout engine's garbage. A failing check still names every value.
/// </summary>
public sealed class OpCheckMessageTests
{
    /// <summary>Counts how often it is formatted into a message.</summary>
    private sealed class Counted
    {
        public int Formatted;

        public override string ToString()
        {
            Formatted++;
            return "[3, 5]";
        }
    }

    [Test]
    public void APassingCheckFormatsNothingAndAFailingOneEverything()
    {
        using var backend = new CpuBackend(threads: 1);
        var shape = new Counted();
        var check = new OpCheck("MatMul", backend);
        check.Require(true, "c", $"has shape {shape}, expected {42}");
        Assert.That(shape.Formatted, Is.Zero, "a check that holds formats nothing");
        var error = Assert.Throws<ArgumentException>(() => new OpCheck("MatMul", backend).Require(false, "c", $"has shape {shape}, expected [{3}, {6}]"))!;
        Assert.That(shape.Formatted, Is.EqualTo(1));
        Assert.That(error.Message, Does.StartWith("MatMul: argument 'c' has shape [3, 5], expected [3, 6]."));
        Assert.That(error.ParamName, Is.EqualTo("c"));
    }

    [Test]
    public void APassingCheckAllocatesNothing()
    {
        using var backend = new CpuBackend(threads: 1);
        using var a = backend.Allocate(DType.Float32, new TensorShape(3, 4));
        void Checks()
        {
            var check = new OpCheck("MatMul", backend);
            for (int i = 0; i < 1000; i++)
                check.Require(a.Shape[0] == 3, "a", $"has shape {a.Shape}, expected {3} rows of {a.Describe()}");
        }
        Checks(); // compiled, statics initialized
        long before = GC.GetAllocatedBytesForCurrentThread();
        Checks();
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, "1,000 passing checks with formatted messages allocate nothing");
    }

    /// <summary>The dtype rule of MatMul's output (a message of two forms in one): a bf16 output of fp32 inputs names both dtypes and the rule.</summary>
    [Test]
    public void MatMulsOutputDtypeMessageNamesTheDtypes()
    {
        using var backend = Support.EmuOrIgnore.Open(() => new OR1.Native.Emu.EmuBackend());
        using var a = backend.Allocate(DType.Float32, new TensorShape(2, 2));
        using var c = backend.Allocate(DType.BFloat16, new TensorShape(2, 2));
        var error = Assert.Throws<ArgumentException>(() => backend.MatMul(a, false, a, false, c))!;
        Assert.That(error.Message, Does.StartWith("MatMul: argument 'c' has dtype BFloat16, expected Float32 like 'a' and 'b' (a bf16 output needs bf16 inputs)."));
    }
}
