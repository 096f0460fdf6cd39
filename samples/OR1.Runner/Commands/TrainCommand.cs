using System.CommandLine;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Checkpoints;
using OR1.Runner.Cli;

namespace OR1.Runner.Commands;

/// <summary><c>or1 train --config CONFIG.json [--resume DIR]</c>: a MAGIC training run.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Training config (JSON): model, data, stages, hyper-parameters", Required = true };
        var resume = new Option<string?>("--resume") { Description = "Continue from a checkpoint folder, or from the latest checkpoint of a run folder" };
        var unsafeNoSandbox = CodeSandboxOption.Create();
        var oldLogProbs = OldLogProbsOption.Create();
        oldLogProbs.Description += "; overrides the config's old_logprobs";
        var precision = PrecisionOptions.CreatePrecision();
        precision.Description += "; overrides the config's precision";
        var saveDType = PrecisionOptions.CreateSaveDType();
        saveDType.Description += "; overrides the config's save_dtype";
        var recompute = new Option<bool>("--recompute")
        {
            Description = "Recompute each layer's activations in the backward instead of keeping them (same gradients, bit for bit; about one " +
                          "hidden vector per layer per token); overrides the config's recompute",
        };
        var shardOptimizer = new Option<bool?>("--shard-optimizer")
        {
            Description = "Under mpirun, keep each rank's 1/N of the optimizer state only (ZeRO-1: the Adam moments, and in bf16 the fp32 master; the same update). Default true; overrides the config's shard_optimizer",
        };
        var overlap = new Option<bool?>("--overlap-grad-reduce")
        {
            Description = "Under mpirun, sum the gradients bucket by bucket during the backward (the same sums): true or false. " +
                          "Default: on a GPU with NCCL, not in host memory; overrides the config's overlap_grad_reduce",
        };
        var command = new Command("train", "Train a policy with GRPO/MAGIC (data parallel under mpirun: mpirun -np N or1 train ...)")
            { config, resume, unsafeNoSandbox, oldLogProbs, precision, saveDType, recompute, shardOptimizer, overlap };
        command.SetAction(r => Run(r.GetValue(config)!, r.GetValue(resume), r.GetValue(unsafeNoSandbox), r.GetValue(oldLogProbs),
            r.GetValue(precision), r.GetValue(saveDType), r.GetValue(recompute), r.GetValue(shardOptimizer), r.GetValue(overlap)));
        return command;
    }

    public static int Run(string configPath, string? resume, bool unsafeNoSandbox = false, OldLogProbSource? oldLogProbs = null,
        Precision? precision = null, Precision? saveDType = null, bool recompute = false, bool? shardOptimizer = null, bool? overlapGradReduce = null) =>
        // Under mpirun every rank runs this with the same config; rank 0 prints and writes.
        LauncherWorld.Run(world => Train(world, configPath, resume, unsafeNoSandbox, oldLogProbs, precision, saveDType, recompute, shardOptimizer, overlapGradReduce));

    private static int Train(OR1.Native.Distributed.ICollectives world, string configPath, string? resume, bool unsafeNoSandbox, OldLogProbSource? oldLogProbs,
        Precision? precision, Precision? saveDType, bool recompute, bool? shardOptimizer, bool? overlapGradReduce)
    {
        TrainingConfig config;
        try
        {
            config = TrainingConfig.Load(configPath);
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message, e);
        }
        if (oldLogProbs is { } source) config = config with { OldLogprobs = source };
        if (precision is { } p) config = config with { Precision = p };
        if (saveDType is { } d) config = config with { SaveDtype = d };
        if (recompute) config = config with { Recompute = true };
        if (shardOptimizer is { } shard) config = config with { ShardOptimizer = shard };
        if (overlapGradReduce is { } overlapping) config = config with { OverlapGradReduce = overlapping };
        var log = world.Rank == 0 ? Console.Out : TextWriter.Null;
        string? checkpoint = null;
        if (resume is not null)
        {
            checkpoint = File.Exists(Path.Combine(resume, TrainerState.FileName)) ? resume : TrainingRun.LatestCheckpoint(resume);
            if (checkpoint is null) throw new CliException($"--resume '{resume}': neither a checkpoint nor a run folder with checkpoints");
        }
        try
        {
            using var session = TrainingSetup.Create(config, Devices.Create, CodeSandboxOption.Verifiers(unsafeNoSandbox), checkpoint, log, world);
            session.Run.Run();
        }
        catch (Exception e) when (e is ModelFormatException or DatasetFormatException or TrainingConfigException or IOException or TrainingStalledException)
        {
            throw new CliException(e.Message, e);
        }
        log.WriteLine($"train: done; checkpoints and metrics in {config.OutputDir}");
        return 0;
    }
}
