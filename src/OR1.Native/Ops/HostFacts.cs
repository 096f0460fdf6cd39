using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace OR1.Native;

/// <summary>The host CPU a backend computes on, and for the emulators what they emulate on it.</summary>
/// <param name="Threads">Host threads the backend computes with (the Cpu pool, the emulator's block pool, or the ILGPU
/// simulator's threads).</param>
/// <param name="InstructionSets">The SIMD instruction sets .NET uses here, e.g. "AVX-512F+AVX2+FMA".</param>
/// <param name="VectorBits">The widest vector .NET accelerates here (512, 256, 128; 0 when none is).</param>
/// <param name="Avx512">Whether AVX-512F is available: the Cpu backend's GEMM then runs its 12x32 AVX-512 micro-kernel.</param>
/// <param name="EmulatedArchitecture">The GPU architecture the Emu backend emulates (90 or 80); null elsewhere.</param>
/// <param name="Emulation">What is emulated and how, in words (the Emu backend, ILGPU's CPU simulator); null for the Cpu backend.</param>
public sealed record HostFacts(
    int Threads,
    string InstructionSets,
    int VectorBits,
    bool Avx512,
    int? EmulatedArchitecture = null,
    string? Emulation = null)
{
    /// <summary>The facts of this machine's CPU with <paramref name="threads"/> threads at work.</summary>
    public static HostFacts ForThisCpu(int threads, int? emulatedArchitecture = null, string? emulation = null) =>
        new(threads, InstructionSetNames(), WidestVectorBits(), Avx512F.IsSupported, emulatedArchitecture, emulation);

    private static string InstructionSetNames()
    {
        var sets = new List<string>();
        if (Avx512F.IsSupported) sets.Add("AVX-512F");
        if (Avx2.IsSupported) sets.Add("AVX2");
        else if (Avx.IsSupported) sets.Add("AVX");
        else if (Sse42.IsSupported) sets.Add("SSE4.2");
        if (Fma.IsSupported) sets.Add("FMA");
        if (AdvSimd.IsSupported) sets.Add("NEON");
        return sets.Count == 0 ? "none" : string.Join('+', sets);
    }

    private static int WidestVectorBits() =>
        Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : Vector128.IsHardwareAccelerated ? 128 : 0;
}
