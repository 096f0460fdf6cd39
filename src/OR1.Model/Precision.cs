using OR1.Model.Checkpoints;
using OR1.Native;

namespace OR1.Model;

/// <summary>
/// How a model stores what its forward and backward read (CLI <c>--precision</c>, config <c>precision</c>).
/// <see cref="Bf16"/> is the recipe's mixed precision: weights' working copies, activations and the KV cache in bf16;
/// every reduction, softmax, norm, log-sum-exp, entropy and loss in fp32; fp32 master weights, fp32 Adam moments and
/// fp32 gradients accumulated across micro-batches; after each optimizer step the bf16 working copy is refreshed
/// from the master (round to nearest even). <see cref="Fp32"/> stores everything in fp32.
/// </summary>
public enum Precision
{
    Fp32,
    Bf16,
}

/// <summary>Precision names and defaults.</summary>
public static class PrecisionInfo
{
    /// <summary>The storage dtype of <paramref name="precision"/>.</summary>
    public static DType StorageType(this Precision precision) => precision == Precision.Bf16 ? DType.BFloat16 : DType.Float32;

    /// <summary>The lower-case name the CLI and configs use ("fp32", "bf16").</summary>
    public static string Name(this Precision precision) => precision == Precision.Bf16 ? "bf16" : "fp32";

    /// <summary>The safetensors dtype a checkpoint saved in this precision uses.</summary>
    public static SafetensorsDType SafetensorsDType(this Precision precision) =>
        precision == Precision.Bf16 ? Checkpoints.SafetensorsDType.BF16 : Checkpoints.SafetensorsDType.F32;

    /// <summary>Parses "fp32" or "bf16" (case-insensitive); null otherwise.</summary>
    public static Precision? Parse(string? text) => text?.ToLowerInvariant() switch
    {
        "fp32" or "float32" => Precision.Fp32,
        "bf16" or "bfloat16" => Precision.Bf16,
        _ => null,
    };

    /// <summary>bf16 where the backend stores it (the CUDA kernels), fp32 elsewhere (the Cpu backend, ILGPU).</summary>
    public static Precision DefaultFor(IBackend backend) =>
        backend.StorageTypes.Contains(DType.BFloat16) ? Precision.Bf16 : Precision.Fp32;

    /// <summary>
    /// Fails clearly when <paramref name="backend"/> cannot run <paramref name="precision"/>: "the Cpu backend computes in
    /// fp32; use --precision fp32".
    /// </summary>
    public static void Require(this IBackend backend, Precision precision)
    {
        if (!backend.StorageTypes.Contains(precision.StorageType()))
            throw new ArgumentException($"the {backend.Kind} backend computes in fp32; use --precision fp32 (bf16 storage runs on the CUDA kernels: --device cuda or emu)", nameof(precision));
    }
}
