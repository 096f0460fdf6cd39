using System.Text.Json;

namespace OR1.Tests.GpuCheck;

/// <summary>
/// One case of bench/compare/gpu_cases.json, the list of kernel measurements both sides of the GPU check run (PyTorch's
/// gpu_kernels.py and our <see cref="KernelBenchmark"/>). Kept as the JSON element, read by name, so the file stays the
/// one place a shape is written.
/// </summary>
public sealed class KernelCaseSpec(JsonElement element)
{
    public string Key => element.GetProperty("key").GetString()!;
    public string Raw => element.GetRawText();
    public string Op => element.GetProperty("op").GetString()!;
    public string Dtype => element.TryGetProperty("dtype", out var d) ? d.GetString()! : "";

    public int Int(string name) => element.GetProperty(name).GetInt32();
    public long Long(string name) => element.GetProperty(name).GetInt64();
    public float Float(string name) => element.GetProperty(name).GetSingle();
    public bool Has(string name) => element.TryGetProperty(name, out _);

    /// <summary>The [rows, columns] (or [n]) shapes of a list-valued field (AdamW's parameters).</summary>
    public int[][] Shapes(string name) =>
        element.GetProperty(name).EnumerateArray().Select(s => s.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();

    /// <summary>The case's fields other than key, op and dtype, as "name value" pairs for the report.</summary>
    public string ShapeText => string.Join(", ", element.EnumerateObject().Where(p => p.Name is not ("key" or "op" or "dtype"))
        .Select(p => $"{p.Name} {p.Value.GetRawText().Replace("\"", "")}"));

    /// <summary>
    /// The same case with every size field divided by <paramref name="by"/> (at least 1; head dims and head counts
    /// kept), for running the GPU check's code on the emulator in CI.
    /// </summary>
    public KernelCaseSpec Shrunk(int by)
    {
        string[] kept = ["heads", "kv_heads", "head_dim", "causal", "top_p", "top_k", "temperature"];
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            foreach (var p in element.EnumerateObject())
            {
                writer.WritePropertyName(p.Name);
                if (p.Value.ValueKind == JsonValueKind.Number && !kept.Contains(p.Name) && p.Value.TryGetInt64(out long v))
                    writer.WriteNumberValue(Math.Max(1, v / by));
                else if (p.Value.ValueKind == JsonValueKind.Array)
                {
                    writer.WriteStartArray();
                    foreach (var shape in p.Value.EnumerateArray())
                    {
                        writer.WriteStartArray();
                        foreach (var x in shape.EnumerateArray()) writer.WriteNumberValue(Math.Max(1, x.GetInt64() / by));
                        writer.WriteEndArray();
                    }
                    writer.WriteEndArray();
                }
                else p.Value.WriteTo(writer);
            }
            writer.WriteEndObject();
        }
        return new KernelCaseSpec(JsonDocument.Parse(stream.ToArray()).RootElement.Clone());
    }

    /// <summary>Reads the cases of a gpu_cases.json.</summary>
    public static IReadOnlyList<KernelCaseSpec> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"gpu-check: the kernel cases file {path} does not exist (bench/compare/gpu_cases.json in the repository)", path);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        if (!document.RootElement.TryGetProperty("cases", out var cases) || cases.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: expected an object with a \"cases\" array");
        return cases.EnumerateArray().Select(c => new KernelCaseSpec(c.Clone())).ToArray();
    }
}
