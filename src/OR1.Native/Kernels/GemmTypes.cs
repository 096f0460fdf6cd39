namespace OR1.Native.Kernels;

/// <summary>
/// The element types of a GEMM: A and B share <paramref name="Inputs"/>; C is <paramref name="Output"/>, either the
/// same or Float32 (bf16 activations accumulating into an fp32 parameter gradient). Products are summed in fp32.
/// </summary>
internal readonly record struct GemmTypes(DType Inputs, DType Output)
{
    public static GemmTypes Float32 { get; } = new(DType.Float32, DType.Float32);

    /// <summary>The builtin kernel of kernels/gemm.cu for these types.</summary>
    public string BuiltinKernel => (Inputs, Output) switch
    {
        (DType.Float32, DType.Float32) => "gemm_f32",
        (DType.BFloat16, DType.BFloat16) => "gemm_bf16",
        (DType.BFloat16, DType.Float32) => "gemm_bf16_f32",
        _ => throw new ArgumentException($"no GEMM takes {Inputs} inputs into a {Output} output", nameof(Inputs)),
    };

    public override string ToString() => Inputs == Output ? Inputs.ToString() : $"{Inputs} -> {Output}";
}
