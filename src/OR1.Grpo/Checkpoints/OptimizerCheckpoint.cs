using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;

namespace OR1.Grpo.Checkpoints;

/// <summary>
/// A training checkpoint's optimizer side: the fp32 parameters (model.safetensors, in the checkpoint's dtype) and the
/// AdamW moments in one safetensors file, named exp_avg.&lt;param&gt; and exp_avg_sq.&lt;param&gt; like torch's
/// optimizer state, in fp32 so a resumed run continues bit for bit.
/// <para>Both files are streamed: each tensor goes from the optimizer into the file a piece at a time
/// (<see cref="AdamWOptimizer.StreamTensor"/>), so neither the host nor the device holds a copy of the whole state (a 7B
/// model's weights and moments are 91 GB of fp32). Data parallel, rank 0 writes and the other ranks follow it
/// (<see cref="FollowWeights"/>, <see cref="FollowMoments"/>): where the state is sharded they send the pieces of their
/// slices as rank 0 reaches them, in the files' order.</para>
/// </summary>
public static class OptimizerCheckpoint
{
    public const string FileName = "optimizer.safetensors";

    private const string FirstPrefix = "exp_avg.", SecondPrefix = "exp_avg_sq.";

    /// <summary>Writes the fp32 parameters as a transformers checkpoint (model.safetensors and config.json) in <paramref name="dtype"/>.</summary>
    public static void WriteWeights(string directory, Qwen2Config config, AdamWOptimizer optimizer, SafetensorsDType dtype) =>
        Qwen2Checkpoint.Save(directory, config, (name, sink) => optimizer.StreamTensor(OptimizerState.Parameters, name, sink), dtype);

    /// <summary>Writes the moments as exp_avg.NAME and exp_avg_sq.NAME (optimizer.safetensors).</summary>
    public static void WriteMoments(string directory, AdamWOptimizer optimizer) =>
        SafetensorsWriter.Write(Path.Combine(directory, FileName), Layout(optimizer), (name, sink) =>
        {
            var (what, parameter) = Parse(name);
            optimizer.StreamTensor(what, parameter, sink);
        });

    /// <summary>A rank that does not write: its part in rank 0's <see cref="WriteWeights"/> (the same calls, keeping nothing).</summary>
    public static void FollowWeights(Qwen2Config config, AdamWOptimizer optimizer)
    {
        foreach (var name in Qwen2Checkpoint.WeightsFileOrder(config)) optimizer.StreamTensor(OptimizerState.Parameters, name, null);
    }

    /// <summary>A rank that does not write: its part in rank 0's <see cref="WriteMoments"/>.</summary>
    public static void FollowMoments(AdamWOptimizer optimizer)
    {
        foreach (var name in SafetensorsWriter.DataOrder(Layout(optimizer).Select(t => t.Name)))
        {
            var (what, parameter) = Parse(name);
            optimizer.StreamTensor(what, parameter, null);
        }
    }

    /// <summary>Reads the moments (a sharded optimizer reads its slice only), after checking every name and shape.</summary>
    /// <exception cref="ModelFormatException">The file is missing or malformed, or a moment is missing, has another shape or
    /// a non-float dtype; nothing has been loaded then.</exception>
    public static void Load(string directory, AdamWOptimizer optimizer)
    {
        string path = Path.Combine(directory, FileName);
        using var file = SafetensorsFile.Open(path);
        foreach (var (name, shape) in Layout(optimizer))
        {
            if (!file.Tensors.TryGetValue(name, out var entry))
                throw new ModelFormatException(path, $"tensor '{name}' is missing");
            if (!entry.HasShape(shape))
                throw new ModelFormatException(path, $"tensor '{name}' has shape {entry.ShapeText}, expected {TensorEntry.FormatShape(shape)}");
            if (!entry.DType.IsReadableAsFloat())
                throw new ModelFormatException(path, $"tensor '{name}' has dtype {entry.DType}, which cannot be read as floats");
        }
        optimizer.LoadMoments((what, name, start, destination) =>
            file.ReadAsFloat32((what == OptimizerState.FirstMoment ? FirstPrefix : SecondPrefix) + name, start, destination));
    }

    /// <summary>The file's tensors: every parameter's exp_avg and exp_avg_sq, with the parameter's shape.</summary>
    private static IReadOnlyList<(string Name, int[] Shape)> Layout(AdamWOptimizer optimizer)
    {
        var parameters = optimizer.Gradients.Named;
        return parameters.Select(p => (FirstPrefix + p.Name, p.Tensor.Shape.ToArray()))
            .Concat(parameters.Select(p => (SecondPrefix + p.Name, p.Tensor.Shape.ToArray()))).ToArray();
    }

    private static (OptimizerState What, string Parameter) Parse(string name) =>
        name.StartsWith(SecondPrefix, StringComparison.Ordinal) ? (OptimizerState.SecondMoment, name[SecondPrefix.Length..])
        : (OptimizerState.FirstMoment, name[FirstPrefix.Length..]);
}
