using OR1.Model.Checkpoints;
using OR1.Native;

namespace OR1.Model;

/// <summary>Loading a Qwen2 model from, and saving it to, a HuggingFace-format directory.</summary>
public static class Qwen2ModelFiles
{
    /// <summary>
    /// Reads config.json and the (possibly sharded) safetensors weights of <paramref name="modelDir"/>
    /// onto <paramref name="backend"/>. Every tensor is checked against the config before any is uploaded.
    /// </summary>
    public static Qwen2Model Load(IBackend backend, string modelDir)
    {
        var config = Qwen2Config.Load(Path.Combine(modelDir, Qwen2Checkpoint.ConfigFileName));
        var model = new Qwen2Model(backend, config);
        try
        {
            Qwen2Checkpoint.Load(modelDir, (name, data) => backend.Upload(data, model.Weights[name]));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Writes config.json and model.safetensors (atomically, F32 unless told otherwise).</summary>
    public static void Save(Qwen2Model model, string modelDir, SafetensorsDType dtype = SafetensorsDType.F32) =>
        Save(model.Weights, model.Config, modelDir, dtype);

    /// <summary>Writes a set of weights (parameters, or gradients named like them) as a checkpoint.</summary>
    public static void Save(Qwen2Weights weights, Qwen2Config config, string modelDir, SafetensorsDType dtype = SafetensorsDType.F32) =>
        Qwen2Checkpoint.Save(modelDir, config, name =>
        {
            var tensor = weights[name];
            var data = new float[tensor.ElementCount];
            weights.Backend.Download<float>(tensor, data);
            return data;
        }, dtype);
}
