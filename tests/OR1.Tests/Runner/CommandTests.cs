using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using OR1.Model;
using OR1.Model.Tokenization;
using OR1.Native;
using OR1.Native.Cpu;
using OR1.Runner.Cli;
using OR1.Runner.Commands;
using OR1.Tests.Model;
using OR1.Tests.Support;

namespace OR1.Tests.Runner;

/// <summary>
/// `or1 logprobs` and `or1 generate` end to end on small checkpoints written two ways: by or1 itself,
/// and by an independent HF-compatible writer (a Python script using only struct and json, writing BF16
/// weights and an HF-style config.json, as transformers' save_pretrained does).
/// </summary>
public sealed class CommandTests
{
    private CpuBackend _backend = null!;
    private TinyTokenizerFiles _files = null!;
    private Qwen2Config _config = null!;
    private Dictionary<string, float[]> _weights = null!;
    private string _work = null!;

    [OneTimeSetUp]
    public void WriteCheckpoint()
    {
        _backend = new CpuBackend(threads: 2);
        _files = TinyTokenizerFiles.Create();
        _config = TinyModels.Config(tied: false, vocab: TinyTokenizerFiles.VocabSize) with { EosTokenIds = [TinyTokenizerFiles.EndOfSentenceId], BosTokenId = TinyTokenizerFiles.BeginOfSentenceId };
        using var model = new Qwen2Model(_backend, _config);
        _weights = TinyModels.Randomize(model.Weights, 77);
        Qwen2ModelFiles.Save(model, _files.Directory);
        _work = Path.Combine(Path.GetTempPath(), "or1-cmd-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_work);
    }

    [OneTimeTearDown]
    public void Clean()
    {
        _files?.Dispose();
        _backend?.Dispose();
        if (_work is not null && Directory.Exists(_work)) Directory.Delete(_work, recursive: true);
    }

    private string Work(string name) => Path.Combine(_work, name);

    /// <summary>Log-probs and entropies computed in-process, straight from the model API.</summary>
    private (float[] LogProbs, float[] Entropies) Expected(IReadOnlyDictionary<string, float[]> weights, int[] prompt, int[] response, float temperature)
    {
        using var model = new Qwen2Model(_backend, _config);
        foreach (var (name, tensor) in model.Weights.Named) _backend.Upload<float>(weights[name], tensor);
        var sequence = prompt.Concat(response).ToArray();
        using var batch = PackedBatch.Create(_backend, [sequence]);
        using var act = new Qwen2Activations(_backend, _config, sequence.Length);
        using var targets = _backend.Ints(sequence.Skip(1).Append(0).ToArray(), sequence.Length);
        using var lp = _backend.Zeros(sequence.Length);
        using var ent = _backend.Zeros(sequence.Length);
        model.Forward(batch, act);
        model.LogProbs(act, targets, temperature, lp, ent);
        return (lp.ToFloats()[(prompt.Length - 1)..(sequence.Length - 1)], ent.ToFloats()[(prompt.Length - 1)..(sequence.Length - 1)]);
    }

    private static List<(float[] LogProbs, float[] Entropies)> ReadOutput(string path) =>
        File.ReadAllLines(path).Select(line =>
        {
            using var doc = JsonDocument.Parse(line);
            return (doc.RootElement.GetProperty("logprobs").EnumerateArray().Select(e => e.GetSingle()).ToArray(),
                    doc.RootElement.GetProperty("entropies").EnumerateArray().Select(e => e.GetSingle()).ToArray());
        }).ToList();

    [Test]
    public void LogProbsOnAnOr1CheckpointMatchesTheModel()
    {
        int[] prompt1 = [TinyTokenizerFiles.BeginOfSentenceId, 5, 77, 250], response1 = [9, 100, 299, TinyTokenizerFiles.EndOfSentenceId];
        int[] prompt2 = [42], response2 = [42, 43];
        File.WriteAllLines(Work("in.jsonl"),
        [
            JsonSerializer.Serialize(new { prompt_tokens = prompt1, response_tokens = response1 }),
            "",
            JsonSerializer.Serialize(new { prompt_tokens = prompt2, response_tokens = response2 }),
            JsonSerializer.Serialize(new { prompt = "the question", response = " the answer" }),
        ]);
        Assert.That(LogProbsCommand.Run(_files.Directory, Work("in.jsonl"), Work("out.jsonl"), 0.8f, tokenBudget: 8, "cpu"), Is.Zero);
        var output = ReadOutput(Work("out.jsonl"));
        Assert.That(output, Has.Count.EqualTo(3));

        var tokenizer = Qwen2Tokenizer.Load(_files.Directory);
        var prompt3 = tokenizer.Encode("the question").ToArray();
        var response3 = tokenizer.Encode(" the answer").ToArray();
        var cases = new[] { (prompt1, response1), (prompt2, response2), (prompt3, response3) };
        for (int i = 0; i < cases.Length; i++)
        {
            var (expectedLp, expectedEnt) = Expected(_weights, cases[i].Item1, cases[i].Item2, 0.8f);
            Assert.That(output[i].LogProbs, Has.Length.EqualTo(cases[i].Item2.Length), $"line {i}: one log-prob per response token");
            TensorAssert.Close(output[i].LogProbs, expectedLp, 1e-5, 1e-5, $"line {i} logprobs");
            TensorAssert.Close(output[i].Entropies, expectedEnt, 1e-5, 1e-5, $"line {i} entropies");
        }
    }

    [Test]
    public void LogProbsWithPrecisionBf16OnEmuTrackTheFp32Values_AndCpuRefusesBf16()
    {
        int[] prompt = [TinyTokenizerFiles.BeginOfSentenceId, 5, 77, 250], response = [9, 100, 299, TinyTokenizerFiles.EndOfSentenceId];
        File.WriteAllLines(Work("bf16-in.jsonl"), [JsonSerializer.Serialize(new { prompt_tokens = prompt, response_tokens = response })]);
        var refused = Assert.Throws<CliException>(() => LogProbsCommand.Run(_files.Directory, Work("bf16-in.jsonl"), Work("bf16-cpu.jsonl"), 1f, 8192, "cpu", Precision.Bf16))!;
        Assert.That(refused.Message, Does.Contain("--precision bf16").And.Contain("the Cpu backend computes in fp32; use --precision fp32"));
        Assert.That(File.Exists(Work("bf16-cpu.jsonl")), Is.False);
        try
        {
            Assert.That(LogProbsCommand.Run(_files.Directory, Work("bf16-in.jsonl"), Work("bf16-emu.jsonl"), 1f, 8192, "emu", Precision.Bf16), Is.Zero);
        }
        catch (CliException e) when (e.Message.Contains("libor1_emu", StringComparison.Ordinal) && Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") != "1")
        {
            Assert.Ignore(e.Message);
        }
        var (expectedLp, expectedEnt) = Expected(_weights, prompt, response, 1f);
        var output = ReadOutput(Work("bf16-emu.jsonl")).Single();
        // bf16 weights and activations: within the whole-model bf16 bounds of MixedPrecisionTests, not fp32's.
        TensorAssert.Close(output.LogProbs, expectedLp, 0.1, 0.05, "bf16 log-probs on emu vs the fp32 model");
        TensorAssert.Close(output.Entropies, expectedEnt, 0.1, 0.05, "bf16 entropies on emu vs the fp32 model");
    }

    [Test]
    public void LogProbsOnAnHfCompatibleBf16CheckpointMatchesTheModel()
    {
        if (!PythonAvailable()) Assert.Ignore("python3 is not on this machine; the independent HF-style writer cannot run");
        string dir = Work("hf-model");
        Directory.CreateDirectory(dir);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(_files.Directory, file), Path.Combine(dir, file));
        var spec = new JsonObject
        {
            ["config"] = new JsonObject
            {
                ["architectures"] = new JsonArray("Qwen2ForCausalLM"), ["model_type"] = "qwen2", ["hidden_act"] = "silu",
                ["attention_dropout"] = 0.0, ["initializer_range"] = 0.02, ["use_cache"] = true, ["use_sliding_window"] = false,
                ["sliding_window"] = 4096, ["max_window_layers"] = 2, ["transformers_version"] = "4.44.0", ["torch_dtype"] = "bfloat16",
                ["hidden_size"] = _config.HiddenSize, ["intermediate_size"] = _config.IntermediateSize, ["num_hidden_layers"] = _config.NumHiddenLayers,
                ["num_attention_heads"] = _config.NumAttentionHeads, ["num_key_value_heads"] = _config.NumKeyValueHeads, ["rms_norm_eps"] = _config.RmsNormEps,
                ["rope_theta"] = _config.RopeTheta, ["vocab_size"] = _config.VocabSize, ["max_position_embeddings"] = _config.MaxPositionEmbeddings,
                ["tie_word_embeddings"] = false, ["bos_token_id"] = TinyTokenizerFiles.BeginOfSentenceId, ["eos_token_id"] = TinyTokenizerFiles.EndOfSentenceId,
            },
            ["tensors"] = new JsonObject(_weights.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonArray(kv.Value.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray())))),
            ["shapes"] = new JsonObject(OR1.Model.Checkpoints.Qwen2Checkpoint.ParameterShapes(_config).Select(p => KeyValuePair.Create(p.Name, (JsonNode?)new JsonArray(p.Shape.Select(d => (JsonNode?)d).ToArray())))),
        };
        File.WriteAllText(Work("spec.json"), spec.ToJsonString());
        File.WriteAllText(Work("write_hf.py"), HfWriterScript);
        RunPython(Work("write_hf.py"), Work("spec.json"), dir);

        int[] prompt = [TinyTokenizerFiles.BeginOfSentenceId, 11, 12, 13], response = [200, 201, 7, TinyTokenizerFiles.EndOfSentenceId];
        File.WriteAllText(Work("hf-in.jsonl"), JsonSerializer.Serialize(new { prompt_tokens = prompt, response_tokens = response }) + "\n");
        Assert.That(LogProbsCommand.Run(dir, Work("hf-in.jsonl"), Work("hf-out.jsonl"), 1f, 8192, "cpu"), Is.Zero);
        var bf16 = _weights.ToDictionary(kv => kv.Key, kv => kv.Value.Select(v => (float)(BFloat16)v).ToArray());
        var (expectedLp, expectedEnt) = Expected(bf16, prompt, response, 1f);
        var output = ReadOutput(Work("hf-out.jsonl"));
        TensorAssert.Close(output[0].LogProbs, expectedLp, 1e-5, 1e-5, "logprobs of the BF16 checkpoint");
        TensorAssert.Close(output[0].Entropies, expectedEnt, 1e-5, 1e-5, "entropies of the BF16 checkpoint");
    }

    [Test]
    public void GenerateWritesEverySampleForEveryPrompt()
    {
        File.WriteAllLines(Work("prompts.jsonl"),
        [
            JsonSerializer.Serialize(new { prompt = "the" }),
            JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = "hello there" } } }),
            JsonSerializer.Serialize(new { prompt_tokens = new[] { 5, 6, 7 } }),
        ]);
        var args = new GenerateCommand.Arguments(_files.Directory, null, Work("prompts.jsonl"), Work("samples.jsonl"), 3, 6,
            new SamplingOptions(1f), 11, 4, "cpu");
        Assert.That(GenerateCommand.Run(args), Is.Zero);
        var lines = File.ReadAllLines(Work("samples.jsonl"));
        Assert.That(lines, Has.Length.EqualTo(9));
        foreach (var line in lines)
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            int tokens = root.GetProperty("tokens").GetArrayLength();
            Assert.That(root.GetProperty("logprobs").GetArrayLength(), Is.EqualTo(tokens));
            Assert.That(tokens, Is.InRange(1, 6));
            bool truncated = root.GetProperty("truncated").GetBoolean();
            int last = root.GetProperty("tokens")[tokens - 1].GetInt32();
            Assert.That(truncated, Is.EqualTo(last != TinyTokenizerFiles.EndOfSentenceId));
        }
        Assert.That(GenerateCommand.Run(args), Is.Zero);
        Assert.That(File.ReadAllLines(Work("samples.jsonl")), Is.EqualTo(lines), "same seed, same samples");
    }

    /// <summary>
    /// --cuda-graphs: on the emulator (a kernel backend, so decode steps are replayed graphs by default) turning graphs off
    /// gives the same samples' tokens; the Cpu backend, which has no graphs, runs either way.
    /// </summary>
    [Test]
    public void GenerateWithAndWithoutDecodeGraphsGivesTheSameTokens()
    {
        File.WriteAllLines(Work("graphs.jsonl"), [JsonSerializer.Serialize(new { prompt_tokens = new[] { 5, 6, 7 } }), JsonSerializer.Serialize(new { prompt = "the" })]);
        var args = new GenerateCommand.Arguments(_files.Directory, null, Work("graphs.jsonl"), Work("cpu-off.jsonl"), 3, 6, new SamplingOptions(1f), 5, 6, "cpu",
            CudaGraphs: false);
        Assert.That(GenerateCommand.Run(args), Is.Zero);
        Assert.That(GenerateCommand.Run(args with { Output = Work("cpu-on.jsonl"), CudaGraphs = true }), Is.Zero);
        Assert.That(File.ReadAllLines(Work("cpu-on.jsonl")), Is.EqualTo(File.ReadAllLines(Work("cpu-off.jsonl"))), "no graphs on Cpu: the same run");
        try
        {
            Assert.That(GenerateCommand.Run(args with { Device = "emu", Output = Work("emu-on.jsonl"), CudaGraphs = true }), Is.Zero);
        }
        catch (CliException e) when (e.Message.Contains("libor1_emu", StringComparison.Ordinal) && Environment.GetEnvironmentVariable("OR1_REQUIRE_EMU") != "1")
        {
            Assert.Ignore(e.Message);
        }
        Assert.That(GenerateCommand.Run(args with { Device = "emu", Output = Work("emu-off.jsonl") }), Is.Zero);
        static int[][] Tokens(string path) => File.ReadAllLines(path)
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray()).ToArray();
        Assert.That(Tokens(Work("emu-on.jsonl")), Is.EqualTo(Tokens(Work("emu-off.jsonl"))), "graphs replayed or ops launched: the same tokens");
        Assert.That(Tokens(Work("emu-on.jsonl")).Sum(t => t.Length), Is.GreaterThan(6), "samples were generated");
    }

    /// <summary>
    /// --decode-steps-per-sync: runs of several decode steps per wait for the device (stop rules on the device) write the
    /// samples one step per wait writes, line for line; a negative count is refused with the option's name, nothing written.
    /// </summary>
    [Test]
    public void GenerateWithSeveralDecodeStepsPerSyncGivesTheSameSamples()
    {
        File.WriteAllLines(Work("steps.jsonl"), [JsonSerializer.Serialize(new { prompt_tokens = new[] { 5, 6, 7 } }), JsonSerializer.Serialize(new { prompt = "the" })]);
        var args = new GenerateCommand.Arguments(_files.Directory, null, Work("steps.jsonl"), Work("steps-1.jsonl"), 3, 6, new SamplingOptions(1f), 5, 6, "cpu",
            DecodeStepsPerSync: 1);
        Assert.That(GenerateCommand.Run(args), Is.Zero);
        Assert.That(GenerateCommand.Run(args with { Output = Work("steps-4.jsonl"), DecodeStepsPerSync = 4 }), Is.Zero);
        Assert.That(File.ReadAllLines(Work("steps-4.jsonl")), Is.EqualTo(File.ReadAllLines(Work("steps-1.jsonl"))));
        Assert.That(() => GenerateCommand.Run(args with { Output = Work("steps-bad.jsonl"), DecodeStepsPerSync = -2 }),
            Throws.InstanceOf<CliException>().With.Message.Contains("--decode-steps-per-sync is -2"));
        Assert.That(File.Exists(Work("steps-bad.jsonl")), Is.False);
    }

    /// <summary>
    /// --kv-cache-memory: a budget of a few pages still yields every sample (pre-empting and recomputing), the same as
    /// without a budget; one below a page is refused with the option's name, and nothing is written.
    /// </summary>
    [Test]
    public void GenerateUnderAKvCacheBudgetGivesTheSameSamplesAndATinyOneIsRefused()
    {
        File.WriteAllLines(Work("budget.jsonl"), [JsonSerializer.Serialize(new { prompt_tokens = new[] { 5, 6, 7 } }), JsonSerializer.Serialize(new { prompt = "the" })]);
        var args = new GenerateCommand.Arguments(_files.Directory, null, Work("budget.jsonl"), Work("unlimited.jsonl"), 3, 6, new SamplingOptions(1f), 5, 6, "cpu");
        Assert.That(GenerateCommand.Run(args), Is.Zero);
        Assert.That(GenerateCommand.Run(args with { Output = Work("budgeted.jsonl"), KvCacheMemory = "1MiB" }), Is.Zero);
        Assert.That(File.ReadAllLines(Work("budgeted.jsonl")), Is.EqualTo(File.ReadAllLines(Work("unlimited.jsonl"))));
        var e = Assert.Throws<CliException>(() => GenerateCommand.Run(args with { Output = Work("tiny.jsonl"), KvCacheMemory = "10B" }))!;
        Assert.That(e.Message, Does.Contain("--kv-cache-memory 10B").And.Contain("smaller than one page"));
        Assert.That(File.Exists(Work("tiny.jsonl")), Is.False);
        Assert.That(() => GenerateCommand.Run(args with { KvCacheMemory = "lots" }), Throws.InstanceOf<CliException>().With.Message.Contains("--kv-cache-memory is 'lots'"));
    }

    [TestCase("1500", 1500L)]
    [TestCase("2KiB", 2048L)]
    [TestCase("1.5 GB", 1_500_000_000L)]
    [TestCase("8gib", 8L << 30)]
    public void ByteSizesParse(string text, long bytes) => Assert.That(ByteSize.Parse(text, "--x"), Is.EqualTo(bytes));

    [Test]
    public void MalformedInputLineIsReportedWithItsLineNumberAndNothingIsWritten()
    {
        File.WriteAllLines(Work("bad.jsonl"), [JsonSerializer.Serialize(new { prompt_tokens = new[] { 1 }, response_tokens = new[] { 2 } }), "{not json"]);
        var e = Assert.Throws<CliException>(() => LogProbsCommand.Run(_files.Directory, Work("bad.jsonl"), Work("bad-out.jsonl"), 1f, 8192, "cpu"))!;
        Assert.That(e.Message, Does.Contain("bad.jsonl line 2").And.Contain("not valid JSON"));
        Assert.That(File.Exists(Work("bad-out.jsonl")), Is.False);
    }

    [Test]
    public void TokenOutsideTheVocabularyIsReported()
    {
        File.WriteAllText(Work("oov.jsonl"), JsonSerializer.Serialize(new { prompt_tokens = new[] { 1 }, response_tokens = new[] { 5000 } }) + "\n");
        Assert.That(() => LogProbsCommand.Run(_files.Directory, Work("oov.jsonl"), Work("oov-out.jsonl"), 1f, 8192, "cpu"),
            Throws.TypeOf<CliException>().With.Message.Contains("line 1").And.Message.Contains("5000"));
    }

    [Test]
    public void MissingModelDirectoryIsReported() =>
        Assert.That(() => LogProbsCommand.Run(Work("nowhere"), Work("in.jsonl"), Work("x.jsonl"), 1f, 8192, "cpu"),
            Throws.TypeOf<CliException>().With.Message.Contains("--model").And.Message.Contains("not found"));

    [Test]
    public void UnknownDeviceIsReported() =>
        Assert.That(() => LogProbsCommand.Run(_files.Directory, Work("in.jsonl"), Work("x.jsonl"), 1f, 8192, "tpu"),
            Throws.TypeOf<CliException>().With.Message.Contains("--device 'tpu'"));

    private static bool PythonAvailable()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("python3", "--version") { RedirectStandardOutput = true, RedirectStandardError = true });
            p!.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    private static void RunPython(params string[] args)
    {
        var info = new ProcessStartInfo("python3") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.Zero, $"python3 failed: {err}");
    }

    /// <summary>
    /// Writes config.json and a BF16 model.safetensors the way HF's save_pretrained + safetensors do:
    /// 8-byte little-endian header length, compact JSON header with __metadata__ {"format": "pt"}, header
    /// padded with spaces to 8 bytes, tensors contiguous, bf16 by round-to-nearest-even of the fp32 bits.
    /// </summary>
    private const string HfWriterScript = """
        import json, struct, sys
        spec = json.load(open(sys.argv[1]))
        out = sys.argv[2]
        json.dump(spec["config"], open(out + "/config.json", "w"), indent=2)
        def bf16(x):
            bits = struct.unpack("<I", struct.pack("<f", x))[0]
            return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
        header = {"__metadata__": {"format": "pt"}}
        blobs = []
        offset = 0
        for name in sorted(spec["tensors"]):
            values = spec["tensors"][name]
            blob = struct.pack("<%dH" % len(values), *[bf16(v) for v in values])
            header[name] = {"dtype": "BF16", "shape": spec["shapes"][name], "data_offsets": [offset, offset + len(blob)]}
            offset += len(blob)
            blobs.append(blob)
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(out + "/model.safetensors", "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for blob in blobs:
                f.write(blob)
        """;
}
