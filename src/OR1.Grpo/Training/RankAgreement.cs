using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using OR1.Grpo.Data;
using OR1.Model;
using OR1.Native;
using OR1.Native.Distributed;

namespace OR1.Grpo.Training;

/// <summary>
/// Data-parallel ranks must start from the same config, data and weights: each reads them from its own disk, and a rank
/// that read another file would otherwise train silently on other data (the collectives only check sizes). Before the
/// first step the ranks compare fingerprints of the three (SHA-256 cut to 48 bits, exact in the doubles the collectives
/// carry) and every rank stops with the part that differs named.
/// </summary>
public static class RankAgreement
{
    /// <summary>Elements of each weight tensor read into its fingerprint (its first rows): enough to tell checkpoints apart without copying a 7B model to the host.</summary>
    public const int SampledElements = 4096;

    /// <summary>Throws <see cref="TrainingConfigException"/> on every rank when the ranks' parts differ.</summary>
    /// <param name="world">The ranks (one process: nothing to compare).</param>
    /// <param name="parts">What must agree, by name, with its fingerprint (<see cref="Fingerprint(string)"/> and the overloads).</param>
    public static void Check(ICollectives world, params (string What, long Fingerprint)[] parts)
    {
        if (world.WorldSize == 1) return;
        // The maximum of (f, -f) is (f, -f) itself only when every rank has f.
        var bounds = new double[2 * parts.Length];
        for (int i = 0; i < parts.Length; i++) (bounds[2 * i], bounds[2 * i + 1]) = (parts[i].Fingerprint, -parts[i].Fingerprint);
        world.AllReduceMax(bounds);
        var differ = parts.Where((p, i) => bounds[2 * i] != -bounds[2 * i + 1]).Select(p => p.What).ToArray();
        if (differ.Length > 0)
            throw new TrainingConfigException("the ranks", $"rank {world.Rank} of {world.WorldSize}: the ranks do not agree on {string.Join(", ", differ)}: " +
                                                           "every rank must read the same config, data files and model (the same files on every machine)");
    }

    /// <summary>A 48-bit fingerprint of text.</summary>
    public static long Fingerprint(string text)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(text));
        return Cut(hash);
    }

    /// <summary>The config as the run uses it (after command-line overrides).</summary>
    public static long Fingerprint(TrainingConfig config) => Fingerprint(JsonSerializer.Serialize(config, TrainingConfig.Json));

    /// <summary>The examples in order, by id and prompt.</summary>
    public static long Fingerprint(IEnumerable<RlExample> examples) =>
        Fingerprint(string.Join('\n', examples.Select(e => e.Id + "\t" + JsonSerializer.Serialize(e.Prompt))));

    /// <summary>
    /// Every tensor's name, shape and values as floats (bf16 widened): its first <see cref="SampledElements"/> values (its
    /// first rows) to tell checkpoints apart cheaply, or, with <paramref name="everyElement"/>, all of them (equal bits on
    /// every rank after an update).
    /// </summary>
    public static long Fingerprint(Qwen2Weights weights, bool everyElement = false)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, tensor) in weights.Named)
        {
            hash.AppendData(Encoding.UTF8.GetBytes(name + tensor.Shape));
            int rows = everyElement || tensor.Rank == 0 ? 0 : (int)Math.Clamp(SampledElements / Math.Max(1, tensor.RowLength), 1, tensor.Shape[0]);
            hash.AppendData(MemoryMarshal.AsBytes(weights.ReadFloats(rows == 0 ? tensor : tensor.SliceRows(0, rows)).AsSpan()));
        }
        return Cut(hash);
    }

    /// <summary>The hash's first 48 bits: exact as a double.</summary>
    private static long Cut(IncrementalHash hash)
    {
        Span<byte> digest = stackalloc byte[32];
        hash.GetHashAndReset(digest);
        long value = 0;
        for (int i = 0; i < 6; i++) value = (value << 8) | digest[i];
        return value;
    }
}
