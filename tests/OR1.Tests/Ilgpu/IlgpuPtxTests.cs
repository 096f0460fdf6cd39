using OR1.Native.Ilgpu;

namespace OR1.Tests.Ilgpu;

/// <summary>
/// Every ILGPU kernel compiles for CUDA without a GPU: ILGPU's PTX backend generates sm_80 PTX for each
/// one, so a kernel that only the CPU simulator accepts (a managed call, an unsupported intrinsic) fails
/// CI on a machine with no device.
/// </summary>
/// <remarks>ILGPU 1.5 emits sm_80 PTX for every newer architecture too; the driver JIT-compiles it for Hopper.</remarks>
public sealed class IlgpuPtxTests
{
    private static readonly Lazy<IReadOnlyList<IlgpuPtx.CompiledKernel>> s_sm80 = new(() => IlgpuPtx.CompileAll(8, 0));

    [Test]
    public void EveryKernelCompilesToPtxForSm80()
    {
        var kernels = s_sm80.Value;
        Assert.That(kernels.Select(k => k.Kernel), Is.EquivalentTo(IlgpuPtx.KernelNames()));
        // One kernel family per file, each with at least one kernel (forward and backward where there is one).
        string[] families = ["IlgpuAdamW", "IlgpuAttention", "IlgpuElementwise", "IlgpuEmbedding", "IlgpuGemm", "IlgpuGrpo",
            "IlgpuLogProb", "IlgpuReduce", "IlgpuRmsNorm", "IlgpuRope", "IlgpuSampling", "IlgpuSwiGlu"];
        Assert.That(families.Where(f => !kernels.Any(k => k.Kernel.StartsWith(f + ".", StringComparison.Ordinal))), Is.Empty, "families without kernels");
        Assert.Multiple(() =>
        {
            foreach (var (name, ptx) in kernels)
            {
                Assert.That(ptx, Does.Contain(".target sm_80"), name);
                Assert.That(ptx, Does.Contain(".entry "), $"{name}: no kernel entry point");
                // Without NVVM, a libdevice call would be an unresolved extern that the driver cannot link.
                Assert.That(ptx, Does.Not.Contain(".extern"), $"{name}: calls an external function");
            }
        });
    }

    [Test]
    public void AttentionAndGemmUseSharedMemoryAndBarriers()
    {
        var kernels = s_sm80.Value.ToDictionary(k => k.Kernel, k => k.Assembly);
        foreach (var name in new[] { "IlgpuGemm.GemmKernel", "IlgpuAttention.ForwardKernel", "IlgpuAttention.BackwardQueryKernel", "IlgpuAttention.BackwardKeyValueKernel" })
        {
            Assert.That(kernels[name], Does.Contain(".shared"), $"{name} stages tiles in shared memory");
            Assert.That(kernels[name], Does.Contain("bar.sync"), $"{name} synchronises its group");
        }
        Assert.That(kernels["IlgpuRmsNorm.ForwardKernel"], Does.Contain("shfl.sync"), "group reductions use warp shuffles");
    }
}
