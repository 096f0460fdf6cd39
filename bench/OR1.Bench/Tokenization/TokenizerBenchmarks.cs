using System.Globalization;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using OR1.Model.Tokenization;

namespace OR1.Bench.Tokenization;

/// <summary>
/// Encode throughput of <see cref="Qwen2Tokenizer"/> with the real Qwen files on one thread, over 1 MB of
/// <see cref="MixedText"/>, beside Hugging Face's Rust tokenizer (Node binding, one thread) timed by
/// tools/tokenizer-reference/bench.js on the same text in the same run. The columns give both rates and ours / Rust.
/// Needs tools/tokenizer-reference/install.sh; without it the setup fails with that instruction.
/// </summary>
[Config(typeof(TokenizerBenchmarkConfig))]
public class TokenizerBenchmarks : ITokenThroughputBenchmark
{
    /// <summary>Size of the encoded text.</summary>
    public const int TextBytes = 1 << 20;

    private const int Seed = 20261206;

    private Qwen2Tokenizer _tokenizer = null!;
    private string _text = "";

    /// <summary>Tokens in the text (set by the setup; the columns read it).</summary>
    public static long TextTokens { get; private set; }

    /// <summary>The Rust tokenizer's median rate on the same text, measured by the setup.</summary>
    public static double RustTokensPerSecond { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        TokenizerReference reference = TokenizerReference.TryFind(out string reason)
            ?? throw new InvalidOperationException("tokenizer benchmark: " + reason);
        _tokenizer = Qwen2Tokenizer.Load(reference.ModelDirectory);
        _text = MixedText.Generate(TextBytes, Seed);
        TextTokens = _tokenizer.Encode(_text).Count;

        string textFile = Path.Combine(Path.GetTempPath(), $"or1-tokenizer-bench-{Environment.ProcessId}.txt");
        File.WriteAllText(textFile, _text);
        try
        {
            string json = reference.RunScript("bench.js", TimeSpan.FromMinutes(5), reference.ModelDirectory, textFile, "7");
            using var result = JsonDocument.Parse(json);
            long rustTokens = result.RootElement.GetProperty("tokens").GetInt64();
            if (rustTokens != TextTokens)
                throw new InvalidOperationException($"tokenizer benchmark: the Rust tokenizer gives {rustTokens} tokens for the text, ours {TextTokens}");
            double[] seconds = result.RootElement.GetProperty("seconds").EnumerateArray().Select(e => e.GetDouble()).Order().ToArray();
            RustTokensPerSecond = rustTokens / seconds[seconds.Length / 2];
        }
        finally
        {
            File.Delete(textFile);
        }
    }

    /// <summary>One encode of the whole text (no special tokens).</summary>
    [Benchmark]
    public int Encode() => _tokenizer.Encode(_text).Count;

    public long Tokens(string method) => TextTokens;
}

/// <summary>tokens/s, the Rust tokenizer's tokens/s measured in the same run, and ours / Rust.</summary>
public sealed class TokenizerBenchmarkConfig : BenchmarkDotNet.Configs.ManualConfig
{
    public TokenizerBenchmarkConfig()
    {
        AddColumn(new TokensPerSecondColumn());
        AddColumn(new RustTokensPerSecondColumn());
        AddColumn(new VersusRustColumn());
    }

    private sealed class RustTokensPerSecondColumn() : CustomColumn("Rust tokens/s", "Hugging Face's Rust tokenizer on the same text, same run (median of 7)", 1)
    {
        protected override string Value(Summary summary, BenchmarkCase benchmarkCase) =>
            TokenizerBenchmarks.RustTokensPerSecond > 0 ? TokenizerBenchmarks.RustTokensPerSecond.ToString("F0", CultureInfo.InvariantCulture) : "-";
    }

    private sealed class VersusRustColumn() : CustomColumn("vs Rust", "Our tokens/s over the Rust tokenizer's (above 1: faster)", 2)
    {
        protected override string Value(Summary summary, BenchmarkCase benchmarkCase)
        {
            double? seconds = ThroughputCase.MeanSeconds(summary, benchmarkCase);
            if (seconds is null || TokenizerBenchmarks.RustTokensPerSecond <= 0) return "-";
            double ours = TokenizerBenchmarks.TextTokens / seconds.Value;
            return (ours / TokenizerBenchmarks.RustTokensPerSecond).ToString("F2", CultureInfo.InvariantCulture);
        }
    }
}
