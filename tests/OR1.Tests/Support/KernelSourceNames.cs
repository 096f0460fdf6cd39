using System.Text.RegularExpressions;

namespace OR1.Tests.Support;

/// <summary>
/// The kernel names a kernels/*.cu source exports, read from its registration macros: OR1_REGISTER(name) or
/// OR1_BOUNDED_KERNEL(name, ...) for a plain kernel, OR1_STORAGE_KERNELS(name, ...) or OR1_BOUNDED_STORAGE_KERNELS(name, ...)
/// for the pair name_f32 / name_bf16, OR1_GEMM_KERNEL(name, ...) for one GEMM instantiation, and the tensor-core
/// attention's per-head-dim sets (kernels/attention.cu): OR1_ATTENTION_TC_FORWARD(Dp) for attention_forward_bf16_d&lt;Dp&gt;
/// and attention_backward_dq_bf16_d&lt;Dp&gt;, OR1_ATTENTION_TC_KV(name, Dp, ...) for name_bf16_d&lt;Dp&gt;, and decode's split
/// kernels (kernels/attention_decode.cu): OR1_DECODE_SPLIT_KERNELS(HB) for attention_decode_split[_scalar]_g&lt;HB&gt;_{f32,bf16}
/// (macro definitions themselves are skipped).
/// </summary>
internal static partial class KernelSourceNames
{
    public static IReadOnlyList<string> Exported(string source)
    {
        source = MacroDefinition().Replace(source, "");
        var names = new List<string>();
        names.AddRange(Plain().Matches(source).Select(m => m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value));
        foreach (Match m in Storage().Matches(source)) names.AddRange([m.Groups[1].Value + "_f32", m.Groups[1].Value + "_bf16"]);
        names.AddRange(Gemm().Matches(source).Select(m => m.Groups[1].Value));
        foreach (Match m in AttentionForward().Matches(source))
            names.AddRange([$"attention_forward_bf16_d{m.Groups[1].Value}", $"attention_backward_dq_bf16_d{m.Groups[1].Value}"]);
        names.AddRange(AttentionKv().Matches(source).Select(m => $"{m.Groups[1].Value}_bf16_d{m.Groups[2].Value}"));
        foreach (Match m in DecodeSplit().Matches(source))
            foreach (string path in (ReadOnlySpan<string>)["", "_scalar"])
                names.AddRange([$"attention_decode_split{path}_g{m.Groups[1].Value}_f32", $"attention_decode_split{path}_g{m.Groups[1].Value}_bf16"]);
        return names;
    }

    /// <summary>A #define with its backslash-continued lines (a macro body names its parameters, not kernels).</summary>
    [GeneratedRegex(@"^[ \t]*#define(?:[^\n\\]|\\(?!\r?\n))*(?:\\\r?\n(?:[^\n\\]|\\(?!\r?\n))*)*", RegexOptions.Multiline)]
    private static partial Regex MacroDefinition();

    [GeneratedRegex(@"(?<!#define )(?:OR1_REGISTER\((\w+)\)|OR1_BOUNDED_KERNEL\((\w+),)")]
    private static partial Regex Plain();

    [GeneratedRegex(@"(?<!#define )OR1_(?:BOUNDED_)?STORAGE_KERNELS\((\w+),")]
    private static partial Regex Storage();

    [GeneratedRegex(@"(?<!#define )OR1_GEMM_KERNEL\((\w+),")]
    private static partial Regex Gemm();

    [GeneratedRegex(@"(?<!#define )OR1_ATTENTION_TC_FORWARD\((\d+)\)")]
    private static partial Regex AttentionForward();

    [GeneratedRegex(@"(?<!#define )OR1_ATTENTION_TC_KV\((\w+), (\d+),")]
    private static partial Regex AttentionKv();

    [GeneratedRegex(@"(?<!#define )OR1_DECODE_SPLIT_KERNELS\((\d+)\)")]
    private static partial Regex DecodeSplit();
}
