using System.Text;
using System.Text.Json;
using OR1.Grpo.Data;
using OR1.Grpo.Rewards;
using OR1.Grpo.Training;
using OR1.Model;
using OR1.Model.Generation;
using OR1.Native.Distributed;

namespace OR1.Grpo.Rollout;

/// <summary>
/// Data-parallel rollouts: prompt i of a step's batch is generated and scored on rank i mod N (drawing the random
/// streams one process would draw for it, <see cref="GenerationOptions.PromptStreams"/>), then every rank's groups go to
/// every rank, so each holds the step's whole batch in prompt order, as one process would have made it. The trainer then
/// deals the groups the filter keeps evenly to the ranks (<see cref="MagicTrainer.World"/>): the filter drops groups
/// unevenly, so training each group where it was generated would leave some ranks idle. What travels is token ids,
/// rewards, log-probs and texts: kilobytes to a few megabytes a step, beside the gradients' gigabytes.
/// </summary>
public static class RolloutExchange
{
    /// <summary>The prompts of a batch of <paramref name="count"/> that <paramref name="rank"/> of <paramref name="world"/> generates: i with i mod world = rank.</summary>
    public static int[] PromptsOfRank(int count, int world, int rank)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(world, 1);
        if ((uint)rank >= (uint)world) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} is outside a world of {world}");
        return Enumerable.Range(0, Math.Max(0, (count - rank + world - 1) / world)).Select(j => rank + j * world).ToArray();
    }

    /// <summary>
    /// Every rank's rollouts to every rank (all ranks call it together): <paramref name="mine"/> answers
    /// <paramref name="batch"/>[<paramref name="myPrompts"/>[g]] in its group g. Returns the whole batch's rollouts in
    /// prompt order; the generation and scoring times are the slowest rank's (the step waited for it), the engine's
    /// counters are summed over the ranks.
    /// </summary>
    public static Rollouts AllGather(ICollectives world, Rollouts mine, IReadOnlyList<int> myPrompts, IReadOnlyList<RlExample> batch)
    {
        if (myPrompts.Count != mine.Examples.Count)
            throw new ArgumentException($"{myPrompts.Count} prompt indices for {mine.Examples.Count} groups", nameof(myPrompts));
        if (world.WorldSize == 1) return mine;
        byte[] own = Serialize(mine, myPrompts);
        // Every rank's size (an all-reduce of a vector with one slot per rank: exact for integers), then a broadcast from each.
        Span<double> sizes = stackalloc double[world.WorldSize];
        sizes[world.Rank] = own.Length;
        world.AllReduceSum(sizes);
        var groups = new (int Prompt, Group Group)[batch.Count];
        var filled = new bool[batch.Count];
        double generateSeconds = 0, rewardSeconds = 0;
        GenerationStats? engine = null;
        for (int root = 0; root < world.WorldSize; root++)
        {
            byte[] data = root == world.Rank ? own : new byte[(int)sizes[root]];
            world.Broadcast(data, root);
            var part = Deserialize(data);
            generateSeconds = Math.Max(generateSeconds, part.GenerateSeconds);
            rewardSeconds = Math.Max(rewardSeconds, part.RewardSeconds);
            engine = engine is { } sum ? GenerationStats.Add(sum, part.Engine) : part.Engine;
            foreach (var (prompt, group) in part.Groups)
            {
                if ((uint)prompt >= (uint)batch.Count || filled[prompt])
                    throw new CollectiveException($"rank {world.Rank}: rank {root} sent rollouts for prompt {prompt}, which is outside the step's {batch.Count} prompts or came twice");
                groups[prompt] = (prompt, group);
                filled[prompt] = true;
            }
        }
        int missing = Array.IndexOf(filled, false);
        if (missing >= 0) throw new CollectiveException($"rank {world.Rank}: no rank sent the rollouts of prompt {missing} (rank {missing % world.WorldSize} should have)");

        var builder = new ResponseBatch.Builder();
        var rewards = new List<double>();
        var truncated = new List<bool>();
        var logProbs = new List<IReadOnlyList<float>?>();
        var texts = new List<string>();
        var results = new List<RewardResult>();
        foreach (var (_, group) in groups)
        {
            builder.BeginGroup(group.PromptTokens);
            foreach (var s in group.Samples)
            {
                builder.AddResponse(s.Tokens);
                rewards.Add(s.Reward.Score);
                truncated.Add(s.Truncated);
                logProbs.Add(s.LogProbs);
                texts.Add(s.Text);
                results.Add(s.Reward);
            }
        }
        var rollouts = new RolloutBatch(builder.Build(), rewards, truncated, logProbs, batch.Select(e => e.Id).ToArray());
        return new Rollouts(rollouts, batch, texts, results, generateSeconds, rewardSeconds, engine ?? default);
    }

    private sealed record Sample(int[] Tokens, RewardResult Reward, bool Truncated, float[]? LogProbs, string Text);

    private sealed record Group(int[] PromptTokens, Sample[] Samples);

    private sealed record Part(double GenerateSeconds, double RewardSeconds, GenerationStats Engine, List<(int Prompt, Group Group)> Groups);

    private static byte[] Serialize(Rollouts mine, IReadOnlyList<int> myPrompts)
    {
        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(mine.GenerateSeconds);
            w.Write(mine.RewardSeconds);
            w.Write(JsonSerializer.Serialize(mine.Engine));
            var batch = mine.Batch.Responses;
            w.Write(batch.GroupCount);
            for (int g = 0; g < batch.GroupCount; g++)
            {
                int first = batch.GroupStart(g);
                w.Write(myPrompts[g]);
                WriteInts(w, batch.Prompt(first));
                w.Write(batch.GroupSize(g));
                for (int s = first; s < first + batch.GroupSize(g); s++)
                {
                    WriteInts(w, batch.Response(s));
                    w.Write(mine.Rewards[s].Score);
                    w.Write(mine.Rewards[s].Reason);
                    w.Write(mine.Batch.Truncated[s]);
                    var lp = mine.Batch.SamplerLogProbs[s];
                    w.Write(lp?.Count ?? -1);
                    if (lp is not null) foreach (float v in lp) w.Write(v);
                    w.Write(mine.Texts[s]);
                }
            }
        }
        return stream.ToArray();
    }

    private static Part Deserialize(byte[] data)
    {
        using var r = new BinaryReader(new MemoryStream(data), Encoding.UTF8);
        double generate = r.ReadDouble(), reward = r.ReadDouble();
        var engine = JsonSerializer.Deserialize<GenerationStats>(r.ReadString());
        int groups = r.ReadInt32();
        var list = new List<(int, Group)>(groups);
        for (int g = 0; g < groups; g++)
        {
            int prompt = r.ReadInt32();
            int[] promptTokens = ReadInts(r);
            var samples = new Sample[r.ReadInt32()];
            for (int s = 0; s < samples.Length; s++)
            {
                int[] tokens = ReadInts(r);
                var result = new RewardResult(r.ReadDouble(), r.ReadString());
                bool truncated = r.ReadBoolean();
                int count = r.ReadInt32();
                float[]? lp = count < 0 ? null : new float[count];
                for (int i = 0; i < count; i++) lp![i] = r.ReadSingle();
                samples[s] = new Sample(tokens, result, truncated, lp, r.ReadString());
            }
            list.Add((prompt, new Group(promptTokens, samples)));
        }
        return new Part(generate, reward, engine, list);
    }

    private static void WriteInts(BinaryWriter w, ReadOnlySpan<int> values)
    {
        w.Write(values.Length);
        foreach (int v in values) w.Write(v);
    }

    private static int[] ReadInts(BinaryReader r)
    {
        var values = new int[r.ReadInt32()];
        for (int i = 0; i < values.Length; i++) values[i] = r.ReadInt32();
        return values;
    }
}
