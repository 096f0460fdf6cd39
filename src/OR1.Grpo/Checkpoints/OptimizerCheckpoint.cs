using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;

namespace OR1.Grpo.Checkpoints;

/// <summary>
/// AdamW moments in one safetensors file, named exp_avg.&lt;param&gt; and exp_avg_sq.&lt;param&gt; like
/// torch's optimizer state, in fp32 so a resumed run continues bit for bit.
/// </summary>
public static class OptimizerCheckpoint
{
    public const string FileName = "optimizer.safetensors";

    /// <summary>Writes the moments of a single process's optimizer (sharded ones: <see cref="AdamWOptimizer.GatherMoments"/> on every rank, then <see cref="Write"/>).</summary>
    public static void Save(string directory, AdamWOptimizer optimizer) => Write(directory, optimizer.GatherMoments());

    /// <summary>Writes whole moments (<see cref="AdamWOptimizer.GatherMoments"/>) as exp_avg.NAME and exp_avg_sq.NAME.</summary>
    public static void Write(string directory, IReadOnlyList<(string Name, int[] Shape, float[] First, float[] Second)> moments)
    {
        var tensors = new List<(string, int[], ReadOnlyMemory<float>)>();
        foreach (var (name, shape, first, _) in moments) tensors.Add(("exp_avg." + name, shape, first));
        foreach (var (name, shape, _, second) in moments) tensors.Add(("exp_avg_sq." + name, shape, second));
        SafetensorsWriter.Write(Path.Combine(directory, FileName), tensors);
    }

    /// <summary>Reads the moments (whole tensors; a sharded optimizer keeps its slice), checking every name and shape.</summary>
    public static void Load(string directory, AdamWOptimizer optimizer)
    {
        string path = Path.Combine(directory, FileName);
        using var file = SafetensorsFile.Open(path);
        var shapes = optimizer.Gradients.Named.ToDictionary(n => n.Name, n => n.Tensor.Shape, StringComparer.Ordinal);
        float[] Read(string prefix, string name)
        {
            if (!file.Tensors.TryGetValue(prefix + name, out var entry))
                throw new ModelFormatException(path, $"tensor '{prefix + name}' is missing");
            if (!entry.HasShape(shapes[name].ToArray()))
                throw new ModelFormatException(path, $"tensor '{prefix + name}' has shape {entry.ShapeText}, expected {shapes[name]}");
            return file.ReadAsFloat32(prefix + name);
        }
        optimizer.LoadMoments(name => (Read("exp_avg.", name), Read("exp_avg_sq.", name)));
    }
}
