using OR1.Model.Checkpoints;
using OR1.Native;

namespace OR1.Model;

/// <summary>Loading a Qwen2 model from, and saving it to, a HuggingFace-format directory.</summary>
public static class Qwen2ModelFiles
{
    /// <summary>
    /// Reads config.json and the (possibly sharded) safetensors weights of <paramref name="modelDir"/> onto
    /// <paramref name="backend"/> in <paramref name="precision"/>. Every tensor is checked against the config before any is
    /// uploaded. With <paramref name="master"/> a bf16 model also gets fp32 master weights, filled from the checkpoint at
    /// its full precision (training needs them; inference does not).
    /// </summary>
    public static Qwen2Model Load(IBackend backend, string modelDir, Precision precision = Precision.Fp32, bool master = false)
    {
        var config = Qwen2Config.Load(Path.Combine(modelDir, Qwen2Checkpoint.ConfigFileName));
        var model = new Qwen2Model(backend, config, precision, master);
        try
        {
            Qwen2Checkpoint.Load(modelDir, (name, data) =>
            {
                model.Weights.Set(name, data);
                model.Master?.Set(name, data);
            });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes config.json and model.safetensors (atomically) from the model's fp32 parameters (the master in mixed
    /// precision), in <paramref name="dtype"/>: F32, or BF16 rounded to nearest even.
    /// </summary>
    public static void Save(Qwen2Model model, string modelDir, SafetensorsDType dtype = SafetensorsDType.F32) =>
        Save(model.Parameters, model.Config, modelDir, dtype);

    /// <summary>Writes a set of weights (parameters, or gradients named like them) as a checkpoint.</summary>
    public static void Save(Qwen2Weights weights, Qwen2Config config, string modelDir, SafetensorsDType dtype = SafetensorsDType.F32) =>
        Qwen2Checkpoint.Save(modelDir, config, name => weights.ReadFloats(weights[name]), dtype);

    /// <summary>
    /// The dtype a checkpoint states for its weights (config.json's torch_dtype): what saving "as the input checkpoint"
    /// means; F32 when unstated or not a float type we write.
    /// </summary>
    public static SafetensorsDType CheckpointDType(Qwen2Config config) => config.TorchDType switch
    {
        "bfloat16" => SafetensorsDType.BF16,
        "float16" => SafetensorsDType.F16,
        _ => SafetensorsDType.F32,
    };
}
