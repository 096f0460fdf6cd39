using System.CommandLine;
using OR1.Grpo.Training;

namespace OR1.Runner.Cli;

/// <summary>The --old-logprobs option: where log p_old of the clipped ratio comes from.</summary>
public static class OldLogProbsOption
{
    public static Option<OldLogProbSource?> Create() => new("--old-logprobs")
    {
        Description = "Source of log p_old: recompute (the trainer's own forward pass, the recipe's default; the rollouts' log-probs are then " +
            "only compared with it) or sampler (the rollouts' old_logprobs, required on every line)",
        CustomParser = result => result.Tokens.Count == 0 ? null : result.Tokens[0].Value.ToLowerInvariant() switch
        {
            "recompute" => OldLogProbSource.Recompute,
            "sampler" => OldLogProbSource.Sampler,
            var other => Fail(result, other),
        },
    };

    private static OldLogProbSource? Fail(System.CommandLine.Parsing.ArgumentResult result, string value)
    {
        result.AddError($"--old-logprobs '{value}' is not a source; use recompute or sampler");
        return null;
    }
}
