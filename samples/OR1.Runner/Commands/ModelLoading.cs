using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Model.Tokenization;
using OR1.Native;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary>Opening a model directory for a command, with file problems turned into user-facing errors.</summary>
internal static class ModelLoading
{
    /// <summary>Loads <paramref name="modelDir"/> in <paramref name="precision"/> (with fp32 master weights when <paramref name="master"/>, for training).</summary>
    public static Qwen2Model Load(IBackend backend, string modelDir, Precision precision, bool master = false)
    {
        if (!Directory.Exists(modelDir)) throw new CliException($"--model '{modelDir}': directory not found");
        try
        {
            return Qwen2ModelFiles.Load(backend, modelDir, precision, master);
        }
        catch (ModelFormatException e)
        {
            throw new CliException($"--model '{modelDir}': {e.Message}", e);
        }
    }

    public static Qwen2Tokenizer LoadTokenizer(string modelDir, string why)
    {
        try
        {
            return Qwen2Tokenizer.Load(modelDir);
        }
        catch (Exception e) when (e is ModelFormatException or IOException)
        {
            throw new CliException($"{why}, which needs the model's tokenizer: {e.Message}", e);
        }
    }
}
