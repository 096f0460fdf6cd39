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

    private static (string Prefix, Qwen2Weights Weights)[] Moments(AdamWOptimizer optimizer) =>
        optimizer is { FirstMoment: { } first, SecondMoment: { } second }
            ? [("exp_avg.", first), ("exp_avg_sq.", second)]
            : throw new NotSupportedException("the optimizer's moments are sharded over the ranks; a checkpoint of them (gathered on rank 0) is not built yet");

    public static void Save(string directory, AdamWOptimizer optimizer)
    {
        var tensors = new List<(string, int[], ReadOnlyMemory<float>)>();
        foreach (var (prefix, weights) in Moments(optimizer))
        {
            foreach (var (name, tensor) in weights.Named)
            {
                var data = new float[tensor.ElementCount];
                weights.Backend.Download<float>(tensor, data);
                tensors.Add((prefix + name, tensor.Shape.ToArray(), data));
            }
        }
        SafetensorsWriter.Write(Path.Combine(directory, FileName), tensors);
    }

    public static void Load(string directory, AdamWOptimizer optimizer)
    {
        string path = Path.Combine(directory, FileName);
        using var file = SafetensorsFile.Open(path);
        foreach (var (prefix, weights) in Moments(optimizer))
        {
            foreach (var (name, tensor) in weights.Named)
            {
                if (!file.Tensors.TryGetValue(prefix + name, out var entry))
                    throw new ModelFormatException(path, $"tensor '{prefix + name}' is missing");
                if (!entry.HasShape(tensor.Shape.ToArray()))
                    throw new ModelFormatException(path, $"tensor '{prefix + name}' has shape {entry.ShapeText}, expected {tensor.Shape}");
                weights.Backend.Upload<float>(file.ReadAsFloat32(prefix + name), tensor);
            }
        }
    }
}
