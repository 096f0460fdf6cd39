using System.CommandLine;
using OR1.Model;
using OR1.Model.Generation;

namespace OR1.Runner.Cli;

/// <summary><c>--kv-cache-memory</c> of the commands that generate (generate, eval): the rollout engine's KV-cache budget.</summary>
public static class KvCacheMemoryOption
{
    public static Option<string?> Create() => new("--kv-cache-memory")
    {
        Description = "KV cache memory (e.g. 8GiB); when the cache is full the newest sample is pre-empted and recomputed later. " +
                      "Default: room for --max-batch samples of the longest prompt + --max-new-tokens, or half the free memory when that is less",
    };

    /// <summary>The budget the option's text names (null: 0, the engine's default); checked before a command loads anything.</summary>
    public static long Bytes(string? kvCacheMemory) => kvCacheMemory is null ? 0 : ByteSize.Parse(kvCacheMemory, "--kv-cache-memory");

    /// <summary>
    /// The engine for a command with that budget (and <c>--cuda-graphs</c>, <c>--decode-steps-per-sync</c>); a budget the
    /// engine refuses (below one page) is the option's error.
    /// </summary>
    public static Qwen2Generator CreateGenerator(Qwen2Model model, int maxBatch, int maxLength, long bytes, string? kvCacheMemory, bool deviceGraphs = true,
        int decodeStepsPerSync = 0)
    {
        try
        {
            return new Qwen2Generator(model, maxBatch, maxLength, kvCacheBytes: bytes, deviceGraphs: deviceGraphs, decodeStepsPerSync: decodeStepsPerSync);
        }
        catch (ArgumentException e) when (e.ParamName == "kvCacheBytes")
        {
            throw new CliException($"--kv-cache-memory {kvCacheMemory}: {e.Message}");
        }
    }
}
