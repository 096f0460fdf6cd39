using System.CommandLine;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Native;

namespace OR1.Runner.Cli;

/// <summary>The --precision and --save-dtype options and how they resolve against a backend.</summary>
public static class PrecisionOptions
{
    /// <summary>--precision fp32|bf16 (default: bf16 where the backend stores it, i.e. the CUDA kernels; fp32 on the Cpu backend).</summary>
    public static Option<Precision?> CreatePrecision() => new("--precision")
    {
        Description = "fp32 or bf16 (mixed precision: bf16 weights, activations and KV cache, fp32 master weights, moments and every " +
            "reduction). Default: bf16 on the CUDA kernels (cuda, emu), fp32 on cpu and ilgpu",
        CustomParser = result => Parse(result, "--precision"),
    };

    /// <summary>--save-dtype bf16|fp32 (default: the dtype of the input checkpoint).</summary>
    public static Option<Precision?> CreateSaveDType() => new("--save-dtype")
    {
        Description = "Dtype of the saved weights: bf16 or fp32 (the fp32 master rounded to nearest even for bf16). Default: that of the input checkpoint",
        CustomParser = result => Parse(result, "--save-dtype"),
    };

    /// <summary>The precision to run: the one asked for, else the backend's default; a clear error when the backend cannot.</summary>
    public static Precision Resolve(IBackend backend, Precision? requested)
    {
        var precision = requested ?? PrecisionInfo.DefaultFor(backend);
        try
        {
            backend.Require(precision);
        }
        catch (ArgumentException e)
        {
            throw new CliException($"--precision {precision.Name()}: {e.Message.Split(" (Parameter", 2)[0]}", e);
        }
        return precision;
    }

    /// <summary>The safetensors dtype to save in: the one asked for, else the input checkpoint's.</summary>
    public static SafetensorsDType SaveDType(Precision? requested, Qwen2Config input) =>
        requested is { } p ? p.SafetensorsDType() : Qwen2ModelFiles.CheckpointDType(input);

    private static Precision? Parse(System.CommandLine.Parsing.ArgumentResult result, string option)
    {
        if (result.Tokens.Count == 0) return null;
        string value = result.Tokens[0].Value;
        if (PrecisionInfo.Parse(value) is { } precision) return precision;
        result.AddError($"{option} '{value}' is not a precision; use fp32 or bf16");
        return null;
    }
}
