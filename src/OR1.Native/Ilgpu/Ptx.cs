using System.Reflection;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace OR1.Native.Ilgpu;

/// <summary>
/// Compiles every kernel of the backend with ILGPU's PTX backend, without a GPU or a CUDA driver:
/// the CI check that each kernel is one ILGPU can generate CUDA code for (a kernel that only works on
/// the CPU simulator, say one that calls a managed API, fails here), and a way to read the PTX.
/// </summary>
public static class IlgpuPtx
{
    /// <summary>One kernel's PTX.</summary>
    /// <param name="Kernel">Declaring family and method, e.g. <c>IlgpuAttention.ForwardKernel</c>.</param>
    /// <param name="Assembly">The PTX text.</param>
    public readonly record struct CompiledKernel(string Kernel, string Assembly);

    /// <summary>Names of every kernel method of the backend (Family.Method).</summary>
    public static IReadOnlyList<string> KernelNames() =>
        IlgpuDevice.AllKernelMethods().Select(Name).ToArray();

    /// <summary>
    /// PTX for every kernel for compute capability <paramref name="major"/>.<paramref name="minor"/>
    /// (default sm_80, the recipe's A100/H100 class), PTX ISA 8.0.
    /// </summary>
    public static IReadOnlyList<CompiledKernel> CompileAll(int major = 8, int minor = 0)
    {
        using var context = Context.Create(builder => builder.Default().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaArchitecture(major, minor), CudaInstructionSet.ISA_80, null!);
        var results = new List<CompiledKernel>();
        foreach (var method in IlgpuDevice.AllKernelMethods())
        {
            var entry = EntryPointDescription.FromExplicitlyGroupedKernel(method);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization());
            results.Add(new CompiledKernel(Name(method), compiled.PTXAssembly));
        }
        return results;
    }

    private static string Name(MethodInfo method) => $"{method.DeclaringType!.Name}.{method.Name}";
}
