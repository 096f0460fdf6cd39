using System.Text.RegularExpressions;

namespace OR1.Tests.Support;

/// <summary>
/// The kernel names a kernels/*.cu source exports, read from its registration macros: OR1_REGISTER(name) for a
/// plain kernel, OR1_STORAGE_KERNELS(name, ...) for the pair name_f32 / name_bf16, OR1_GEMM_KERNEL(name, ...) for
/// one GEMM instantiation (macro definitions themselves are skipped).
/// </summary>
internal static partial class KernelSourceNames
{
    public static IReadOnlyList<string> Exported(string source)
    {
        source = MacroDefinition().Replace(source, "");
        var names = new List<string>();
        names.AddRange(Plain().Matches(source).Select(m => m.Groups[1].Value));
        foreach (Match m in Storage().Matches(source)) names.AddRange([m.Groups[1].Value + "_f32", m.Groups[1].Value + "_bf16"]);
        names.AddRange(Gemm().Matches(source).Select(m => m.Groups[1].Value));
        return names;
    }

    /// <summary>A #define with its backslash-continued lines (a macro body names its parameters, not kernels).</summary>
    [GeneratedRegex(@"^[ \t]*#define(?:[^\n\\]|\\(?!\r?\n))*(?:\\\r?\n(?:[^\n\\]|\\(?!\r?\n))*)*", RegexOptions.Multiline)]
    private static partial Regex MacroDefinition();

    [GeneratedRegex(@"(?<!#define )OR1_REGISTER\((\w+)\)")]
    private static partial Regex Plain();

    [GeneratedRegex(@"(?<!#define )OR1_STORAGE_KERNELS\((\w+),")]
    private static partial Regex Storage();

    [GeneratedRegex(@"(?<!#define )OR1_GEMM_KERNEL\((\w+),")]
    private static partial Regex Gemm();
}
