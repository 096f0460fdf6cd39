using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using OR1.Model.Checkpoints;
using OR1.Model.Tokenization;
using OR1.Tests.Support;

namespace OR1.Tests.Model;

/// <summary>
/// Qwen2Tokenizer on the tiny byte-level BPE files of <see cref="TinyTokenizerFiles"/> (no real Qwen2
/// vocabulary is available to the tests; nothing is downloaded).
/// </summary>
[TestFixture]
public sealed class TokenizerTests
{
    private TinyTokenizerFiles _files = null!;
    private Qwen2Tokenizer _tokenizer = null!;

    [OneTimeSetUp]
    public void LoadTinyTokenizer()
    {
        _files = TinyTokenizerFiles.Create();
        _tokenizer = Qwen2Tokenizer.Load(_files.Directory);
    }

    [OneTimeTearDown]
    public void DeleteFiles() => _files.Dispose();

    [Test]
    public void Load_ReadsVocabularyAddedTokensAndConfig()
    {
        Assert.Multiple(() =>
        {
            Assert.That(_tokenizer.VocabSize, Is.EqualTo(TinyTokenizerFiles.VocabSize));
            Assert.That(_tokenizer.BosId, Is.EqualTo(TinyTokenizerFiles.BeginOfSentenceId), "bos_token given as an object with content");
            Assert.That(_tokenizer.EosId, Is.EqualTo(TinyTokenizerFiles.EndOfSentenceId), "eos_token given as a string");
            Assert.That(_tokenizer.PadId, Is.EqualTo(TinyTokenizerFiles.EndOfSentenceId));
            Assert.That(_tokenizer.AddBosToken, Is.True);
            Assert.That(_tokenizer.AddedTokens, Has.Count.EqualTo(8));
            Assert.That(_tokenizer.TokenToId("Ġthe"), Is.EqualTo(258));
            Assert.That(_tokenizer.TokenToId("<think>"), Is.EqualTo(TinyTokenizerFiles.ThinkId));
            Assert.That(_tokenizer.IdToToken(TinyTokenizerFiles.SpaceId), Is.EqualTo("Ġ"));
            Assert.That(_tokenizer.IdToToken(TinyTokenizerFiles.UserId), Is.EqualTo("<｜User｜>"));
            Assert.That(_tokenizer.IdToToken(100_000), Is.Null);
            Assert.That(_tokenizer.IsSpecial(TinyTokenizerFiles.BeginOfSentenceId), Is.True);
            Assert.That(_tokenizer.IsSpecial(TinyTokenizerFiles.EndOfSentenceId), Is.True);
            Assert.That(_tokenizer.IsSpecial(TinyTokenizerFiles.UserId), Is.False, "DeepSeek's turn markers are not flagged special");
            Assert.That(_tokenizer.IsSpecial(258), Is.False);
        });
    }

    [Test]
    public void TokenToId_UnknownToken_Throws()
    {
        Assert.That(() => _tokenizer.TokenToId("no such token"), Throws.TypeOf<KeyNotFoundException>());
        Assert.That(_tokenizer.TryTokenToId("no such token", out _), Is.False);
    }

    [Test]
    public void Merges_AreApplied_WithExactIds()
    {
        int b(char c) => TinyTokenizerFiles.Vocab[c.ToString()];
        Assert.Multiple(() =>
        {
            // "the": t+h is not a merge, h+e is (257), then t+he (259).
            Assert.That(_tokenizer.Encode("the"), Is.EqualTo(new[] { 259 }));
            // " the" is its own pre-token: Ġ+t (256), h+e (257), Ġt+he (258).
            Assert.That(_tokenizer.Encode("the the"), Is.EqualTo(new[] { 259, 258 }));
            Assert.That(_tokenizer.Encode(" the world"), Is.EqualTo(new[] { 258, 270 }));
            // "thing": pre-token "thing" -> t h i n g -> in (260) -> ing (262); t+h never merges.
            Assert.That(_tokenizer.Encode("thing"), Is.EqualTo(new[] { b('t'), b('h'), 262 }));
            // Six UTF-8 bytes, one token.
            Assert.That(_tokenizer.Encode("你好"), Is.EqualTo(new[] { 275 }));
            Assert.That(_tokenizer.Encode("你"), Is.EqualTo(new[] { 272 }));
            // Whitespace: "\n\n" merges; four spaces before a word: "   " + " the" per the \s+(?!\S) rule.
            Assert.That(_tokenizer.Encode("\n\n"), Is.EqualTo(new[] { 263 }));
            Assert.That(_tokenizer.Encode("    the"), Is.EqualTo(new[] { 264, TinyTokenizerFiles.SpaceId, 258 }));
            Assert.That(_tokenizer.Encode("x"), Is.EqualTo(new[] { b('x') }));
        });
        Assert.That(_tokenizer.Encode(" the world").Count, Is.LessThan(Encoding.UTF8.GetByteCount(" the world")));
    }

    [Test]
    public void MergesAsPairs_LoadAndEncodeLikeStrings()
    {
        using TinyTokenizerFiles pairs = TinyTokenizerFiles.Create(mergesAsPairs: true);
        Qwen2Tokenizer fromPairs = Qwen2Tokenizer.Load(pairs.Directory);
        foreach (string text in new[] { "the the world", "你好, thing!", "    the\n\n" })
        {
            Assert.That(fromPairs.Encode(text), Is.EqualTo(_tokenizer.Encode(text)), text);
        }

        Assert.That(fromPairs.Encode(" the world"), Is.EqualTo(new[] { 258, 270 }));
    }

    [TestCase("")]
    [TestCase("the")]
    [TestCase("你好，世界！这是一个测试。")]
    [TestCase("混合 English 和中文 text 123")]
    [TestCase("emoji 😀🎉 and 🇯🇵 flag")]
    [TestCase("family 👨‍👩‍👧‍👦 and 👍🏽 skin tone")]
    [TestCase("😀abc 𝑥² + 𝑦² = 𝑧², 𝟙𝟚𝟛 𠀀𠀁")]
    [TestCase("def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n")]
    [TestCase("   leading and trailing   ")]
    [TestCase("a  b   c    d\t\te\n\n\nf\r\n\r\ng \n \n ")]
    [TestCase("\n")]
    [TestCase(" ")]
    [TestCase("\t \u00A0\u3000\u2028x")]
    [TestCase("It's I'LL we'd they're 'ſ")]
    [TestCase("<｜User")]
    [TestCase("｜User｜>")]
    [TestCase("<|im_end")]
    [TestCase("<think")]
    [TestCase("</thin k>")]
    [TestCase("<｜begin▁of▁sentence")]
    [TestCase("<<｜User｜>> <thinking> <think></think>")]
    [TestCase("\\boxed{\\frac{1}{2}} $x^2$")]
    [TestCase("e\u0301 combining (not NFC)")]
    public void RoundTrip_ExactText(string text)
    {
        IReadOnlyList<int> ids = _tokenizer.Encode(text);
        Assert.That(_tokenizer.Decode(ids), Is.EqualTo(text));
        Assert.That(ids, Has.All.InRange(0, TinyTokenizerFiles.VocabSize - 1));
    }

    [Test]
    public void RoundTrip_EveryControlCharacter()
    {
        // C0 and C1 controls (NUL included) each map to one byte symbol; kept out of test-case names.
        string text = new(Enumerable.Range(0, 0x20).Concat(Enumerable.Range(0x7F, 0x21)).Select(c => (char)c).ToArray());
        Assert.That(_tokenizer.Decode(_tokenizer.Encode(text)), Is.EqualTo(text));
        Assert.That(_tokenizer.Encode("\0"), Is.EqualTo(new[] { TinyTokenizerFiles.Vocab["\u0100"] }));
    }

    [Test]
    public void RoundTrip_RandomUtf8Strings()
    {
        (int Lo, int Hi)[] ranges =
        [
            (0x00, 0x7F), (0x20, 0x7E), (0x20, 0x7E), (0x80, 0x7FF), (0x4E00, 0x9FFF), (0x3000, 0x303F),
            (0x0300, 0x036F), (0x1F300, 0x1FAFF), (0x1D400, 0x1D7FF), (0x20000, 0x2A6DF), (0x10000, 0x10FFFF),
            (0xE000, 0xFFFD), (0x2000, 0x206F),
        ];
        char[] specials = [' ', ' ', '\n', '\t', '\r', '\'', 's', '<', '>', '|', '｜'];
        int n = 0;
        foreach (string text in RandomUnicode.Strings(400, seed: 1234, minLength: 0, maxLength: 40, ranges, specials, specialOneIn: 4))
        {
            Assert.That(_tokenizer.Decode(_tokenizer.Encode(text)), Is.EqualTo(text), $"string #{n++}: {Escape(text)}");
        }
    }

    [Test]
    public void SpecialTokens_EncodeToSingleIds_AndDecodeBack()
    {
        foreach (AddedToken token in _tokenizer.AddedTokens)
        {
            Assert.That(_tokenizer.Encode(token.Content), Is.EqualTo(new[] { token.Id }), token.Content);
            Assert.That(_tokenizer.Decode([token.Id]), Is.EqualTo(token.Content));
        }

        IReadOnlyList<int> ids = _tokenizer.Encode("<｜User｜>the<｜Assistant｜><think>\n</think><|im_end|>");
        Assert.That(ids, Is.EqualTo(new[]
        {
            TinyTokenizerFiles.UserId, 259, TinyTokenizerFiles.AssistantId, TinyTokenizerFiles.ThinkId,
            TinyTokenizerFiles.NewlineId, TinyTokenizerFiles.ThinkEndId, TinyTokenizerFiles.ImEndId,
        }));
    }

    [Test]
    public void SpecialTokens_SplitTheTextAroundThem()
    {
        // Without the split, " the" + "<think>" would be pre-tokenized together differently; HF encodes each side alone.
        Assert.That(_tokenizer.Encode(" the<think> the"), Is.EqualTo(new[] { 258, TinyTokenizerFiles.ThinkId, 258 }));
        // Text that only looks like part of a special token stays ordinary text.
        Assert.That(_tokenizer.Encode("<think"), Does.Not.Contain(TinyTokenizerFiles.ThinkId));
        Assert.That(_tokenizer.Encode("<｜User"), Does.Not.Contain(TinyTokenizerFiles.UserId));
    }

    [Test]
    public void Decode_SkipSpecialTokens_DropsOnlyTokensFlaggedSpecial()
    {
        int[] ids =
        [
            TinyTokenizerFiles.BeginOfSentenceId, TinyTokenizerFiles.UserId, 259, TinyTokenizerFiles.AssistantId,
            TinyTokenizerFiles.ThinkId, 270, TinyTokenizerFiles.ImStartId, TinyTokenizerFiles.ImEndId, TinyTokenizerFiles.EndOfSentenceId,
        ];
        Assert.That(_tokenizer.Decode(ids), Is.EqualTo("<｜begin▁of▁sentence｜><｜User｜>the<｜Assistant｜><think> world<|im_start|><|im_end|><｜end▁of▁sentence｜>"));
        // HF semantics: BOS/EOS/ChatML markers are special and dropped; DeepSeek's turn markers and <think> are not.
        Assert.That(_tokenizer.Decode(ids, skipSpecialTokens: true), Is.EqualTo("<｜User｜>the<｜Assistant｜><think> world"));
    }

    [Test]
    public void Decode_UnknownIds_DecodeToNothing()
    {
        Assert.That(_tokenizer.Decode([259, 151_000, -1, 258]), Is.EqualTo("the the"));
    }

    [Test]
    public void Decode_SplitMultiByteCharacter_GivesReplacementCharacter()
    {
        // 你 is three bytes; token 271 holds only the first two.
        Assert.That(_tokenizer.Decode([271]), Is.EqualTo("\uFFFD"));
        Assert.That(_tokenizer.Decode([271, TinyTokenizerFiles.Vocab["ł"]]), Is.EqualTo("你"));
    }

    [Test]
    public void Encode_AddSpecialTokens_PrependsBosWhenConfigSaysSo()
    {
        Assert.That(_tokenizer.Encode("the", addSpecialTokens: true), Is.EqualTo(new[] { TinyTokenizerFiles.BeginOfSentenceId, 259 }));
        Assert.That(_tokenizer.Encode("the", addSpecialTokens: false), Is.EqualTo(new[] { 259 }));

        using TinyTokenizerFiles noBos = TinyTokenizerFiles.Create(addBosToken: false);
        Assert.That(Qwen2Tokenizer.Load(noBos.Directory).Encode("the", addSpecialTokens: true), Is.EqualTo(new[] { 259 }));
    }

    [Test]
    public void NoConfig_LeavesBosEosPadUnset()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create(writeConfig: false);
        Qwen2Tokenizer tokenizer = Qwen2Tokenizer.Load(files.Directory);
        Assert.That(tokenizer.BosId, Is.Null);
        Assert.That(tokenizer.EosId, Is.Null);
        Assert.That(tokenizer.PadId, Is.Null);
        Assert.That(tokenizer.Encode("the", addSpecialTokens: true), Is.EqualTo(new[] { 259 }));
    }

    [Test]
    public void NfcNormalizer_ComposesBeforeEncoding()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create(normalizer: new JsonObject { ["type"] = "NFC" });
        Qwen2Tokenizer nfc = Qwen2Tokenizer.Load(files.Directory);
        Assert.That(nfc.Encode("e\u0301"), Is.EqualTo(nfc.Encode("\u00E9")));
        Assert.That(nfc.Decode(nfc.Encode("caf" + "e\u0301 the")), Is.EqualTo("caf\u00E9 the"));
        Assert.That(nfc.Encode("<think>e\u0301"), Is.EqualTo(new[] { TinyTokenizerFiles.ThinkId }.Concat(nfc.Encode("\u00E9"))));
    }

    [TestCase("plain ASCII", "plain ASCII")]
    [TestCase("e\u0301", "\u00E9")]
    [TestCase("\u1100\u1161\u11A8 \uAC00\u11A8", "\uAC01 \uAC01")] // Hangul jamo compose algorithmically
    [TestCase("\u212B \u2126 \uF900", "\u00C5 \u03A9 \u8C48")] // singletons: Angstrom, Ohm, CJK compatibility
    [TestCase("a\u0301\u0328", "\u0105\u0301")] // canonical reordering: ogonek (202) before acute (230), then composes
    [TestCase("\u0958", "\u0915\u093C")] // composition exclusion stays decomposed
    [TestCase("a\u0301\u0301", "\u00E1\u0301")] // the second acute is blocked
    [TestCase("\u0301e", "\u0301e")] // a leading mark has no starter to join
    [TestCase("中文 😀 𝑥", "中文 😀 𝑥")]
    public void Nfc_KnownCases(string input, string expected)
    {
        Assert.That(NfcNormalizer.ToNfc(input), Is.EqualTo(expected));
        Assert.That(NfcNormalizer.ToNfc(expected), Is.EqualTo(expected), "NFC is idempotent");
    }

    // Invalid Unicode, from code (attribute strings are UTF-8 in metadata and cannot hold a lone surrogate).
    private static IEnumerable<TestCaseData> InvalidUnicodeNfcCases()
    {
        yield return new TestCaseData("a\ud800b", "a\uFFFDb").SetArgDisplayNames("lone high surrogate");
        yield return new TestCaseData("\udc00x", "\uFFFDx").SetArgDisplayNames("lone low surrogate");
        yield return new TestCaseData("\udc00\ud800", "\uFFFD\uFFFD").SetArgDisplayNames("reversed pair");
        yield return new TestCaseData("end\ud83d", "end\uFFFD").SetArgDisplayNames("cut pair at the end");
        yield return new TestCaseData("\ud83d\ude00", "\ud83d\ude00").SetArgDisplayNames("valid pair kept");
        yield return new TestCaseData("x\ufffey\uffff\ufdd0\ufdef", "x\ufffey\uffff\ufdd0\ufdef").SetArgDisplayNames("noncharacters kept");
        yield return new TestCaseData("e\u0301\ufffee\u0301", "\u00E9\ufffe\u00E9").SetArgDisplayNames("NFC on both sides of a noncharacter");
        yield return new TestCaseData("\ufffe\u0301", "\ufffe\u0301").SetArgDisplayNames("a mark after a noncharacter stays");
        yield return new TestCaseData("\ud800\u0301e\u0301", "\uFFFD\u0301\u00E9").SetArgDisplayNames("surrogate then marks");
    }

    [TestCaseSource(nameof(InvalidUnicodeNfcCases))]
    public void Nfc_InvalidUnicode_NeverThrows(string input, string expected)
    {
        Assert.That(NfcNormalizer.ToNfc(input), Is.EqualTo(expected));
    }

    [TestCaseSource(nameof(InvalidUnicodeNfcCases))]
    public void Encode_InvalidUnicode_NeverThrows_AndDecodesToTheRepairedText(string input, string expected)
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create(normalizer: new JsonObject { ["type"] = "NFC" });
        Qwen2Tokenizer nfc = Qwen2Tokenizer.Load(files.Directory);
        Assert.That(nfc.Decode(nfc.Encode(input)), Is.EqualTo(expected));
        Assert.That(_tokenizer.Decode(_tokenizer.Encode(input)), Is.EqualTo(Utf16Text.ReplaceLoneSurrogates(input)), "without a normalizer");
    }

    [Test]
    public void ReplaceLoneSurrogates_ReturnsSameInstanceWhenValid()
    {
        const string text = "plain 😀 text";
        Assert.That(Utf16Text.ReplaceLoneSurrogates(text), Is.SameAs(text));
        Assert.That(Utf16Text.IndexOfLoneSurrogate("ab\ud83d\ude00c\ud800", 0), Is.EqualTo(5));
    }

    [Test]
    public void Nfc_ReturnsSameInstanceWhenUnchanged()
    {
        const string text = "你好 the world";
        Assert.That(NfcNormalizer.ToNfc(text), Is.SameAs(text));
    }

    [Test]
    public void Encode_IsThreadSafe()
    {
        string[] texts = Enumerable.Range(0, 64).Select(i => $"the world {i} 你好 <think>{new string(' ', i % 7)}thing</think>").ToArray();
        IReadOnlyList<int>[] expected = texts.Select(t => _tokenizer.Encode(t)).ToArray();
        var results = new IReadOnlyList<int>[texts.Length * 8];
        Parallel.For(0, results.Length, i => results[i] = _tokenizer.Encode(texts[i % texts.Length]));
        for (int i = 0; i < results.Length; i++)
        {
            Assert.That(results[i], Is.EqualTo(expected[i % texts.Length]));
        }
    }

    // ---- pre-tokenizer ----

    [Test]
    public void PreTokenizer_MatchesDotNetRegex_OnBmpText()
    {
        // On BMP-only text .NET's Regex and the hand-written scanner must split identically.
        var regex = new Regex(Qwen2PreTokenizer.Pattern, RegexOptions.CultureInvariant);
        string alphabet = "abcSTdmlLrevE'’ ſ\t\n\r\u000B\u000C\u0085\u00A0\u2028\u3000  \n\n..,!?()[]{}<>|＿_-+=*/\\\"#$%^&~`"
                          + "0123456789١٢٣Ⅻ½²éñßДЖ中文字あカ한글\u0301\u0300\u200D\uFE0F\uFFFD€£";
        var random = new Random(42);
        for (int n = 0; n < 3000; n++)
        {
            char[] chars = new char[random.Next(1, 30)];
            for (int i = 0; i < chars.Length; i++)
            {
                chars[i] = alphabet[random.Next(alphabet.Length)];
            }

            string text = new(chars);
            var expected = regex.Matches(text).Select(m => (m.Index, m.Length)).ToList();
            var actual = Qwen2PreTokenizer.Split(text);
            Assert.That(actual, Is.EqualTo(expected), $"text: {Escape(text)}");
        }
    }

    [Test]
    public void PreTokenizer_TreatsAstralCodePointsAsWholeCharacters()
    {
        static List<string> Pieces(string s) => Qwen2PreTokenizer.Split(s).Select(p => s.Substring(p.Offset, p.Length)).ToList();

        Assert.Multiple(() =>
        {
            // An emoji is one [^\r\n\p{L}\p{N}] code point, so it joins the following letters (as in HF).
            Assert.That(Pieces("a😀bc"), Is.EqualTo(new[] { "a", "😀bc" }));
            // Math italic letters are \p{L}; Ext-B ideographs too.
            Assert.That(Pieces("x 𝑥𝑦 𠀀𠀁"), Is.EqualTo(new[] { "x", " 𝑥𝑦", " 𠀀𠀁" }));
            // Mathematical digits are \p{N}: one piece each.
            Assert.That(Pieces("𝟙𝟚"), Is.EqualTo(new[] { "𝟙", "𝟚" }));
            Assert.That(Pieces(" 😀😀!\n"), Is.EqualTo(new[] { " 😀😀!\n" }));
            Assert.That(Pieces("it's  \n\n x"), Is.EqualTo(new[] { "it", "'s", "  \n\n", " x" }));
        });
    }

    // ---- malformed files ----

    [Test]
    public void Error_ModelDirectoryMissing()
    {
        string dir = Path.Combine(Path.GetTempPath(), "or1-tok-missing-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<ModelFormatException>(() => Qwen2Tokenizer.Load(dir))!;
        Assert.That(e.FilePath, Is.EqualTo(dir));
        Assert.That(e.Message, Does.Contain(dir).And.Contain("not found"));
    }

    [Test]
    public void Error_TokenizerJsonMissing()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        files.DeleteFile("tokenizer.json");
        ExpectError(files, "tokenizer.json", "not found");
    }

    [Test]
    public void Error_TokenizerJsonNotJson()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        files.WriteFile("tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 0,");
        ExpectError(files, "tokenizer.json", "not valid JSON");
    }

    [Test]
    public void Error_ModelMissing() => ExpectTokenizerJsonError(j => j.Remove("model"), "no \"model\" object");

    [Test]
    public void Error_VocabMissing() => ExpectTokenizerJsonError(j => j["model"]!.AsObject().Remove("vocab"), "model.vocab is missing");

    [Test]
    public void Error_VocabNotAnObject() => ExpectTokenizerJsonError(j => j["model"]!["vocab"] = new JsonArray(1, 2), "model.vocab is a array, not an object");

    [Test]
    public void Error_VocabIdNotAnInteger() => ExpectTokenizerJsonError(j => j["model"]!["vocab"]!["Ġthe"] = "x", "model.vocab entry 'Ġthe'");

    [Test]
    public void Error_VocabDuplicateId() => ExpectTokenizerJsonError(j => j["model"]!["vocab"]!["extra"] = 5, "gives id 5 to both");

    [Test]
    public void Error_VocabLacksByteSymbols() => ExpectTokenizerJsonError(j => j["model"]!["vocab"]!.AsObject().Remove("Ā"), "byte-level symbol 'Ā'");

    [Test]
    public void Error_MergeUsesUnknownToken() => ExpectTokenizerJsonError(j => j["model"]!["merges"]!.AsArray().Add("q z"), "'qz', which is not in model.vocab");

    [Test]
    public void Error_MergeMalformed() => ExpectTokenizerJsonError(j => j["model"]!["merges"]!.AsArray().Add("abc"), "model.merges[20]");

    [Test]
    public void Error_MergePairMalformed() => ExpectTokenizerJsonError(j => j["model"]!["merges"]!.AsArray().Add(new JsonArray("a")), "expected \"a b\" or [\"a\", \"b\"]");

    [Test]
    public void Error_AddedTokenWithoutContent() => ExpectTokenizerJsonError(j => j["added_tokens"]![0]!.AsObject().Remove("content"), "added_tokens[0] (id 300) has no \"content\"");

    [Test]
    public void Error_AddedTokenDuplicateId() => ExpectTokenizerJsonError(j => j["added_tokens"]![1]!["id"] = 300, "id 300 appears twice");

    [Test]
    public void Error_NotBpe() => ExpectTokenizerJsonError(j => j["model"]!["type"] = "WordPiece", "model.type is 'WordPiece'");

    [Test]
    public void Error_UnsupportedNormalizer() => ExpectTokenizerJsonError(j => j["normalizer"] = new JsonObject { ["type"] = "Lowercase" }, "normalizer.type is 'Lowercase'");

    [Test]
    public void Error_NfkcNormalizer() => ExpectTokenizerJsonError(j => j["normalizer"] = new JsonObject { ["type"] = "NFKC" }, "only the NFC normalizer");

    [Test]
    public void Error_OtherPreTokenizerRegex() =>
        ExpectTokenizerJsonError(j => j["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = @"\w+", "Split that is not Qwen2's");

    [Test]
    public void Error_ConfigNotJson()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        files.WriteFile("tokenizer_config.json", "{ \"bos_token\": ");
        ExpectError(files, "tokenizer_config.json", "not valid JSON");
    }

    [Test]
    public void Error_ConfigTokenNotInVocabulary()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        JsonObject config = TinyTokenizerFiles.ConfigJson();
        config["eos_token"] = "<|endoftext|>";
        files.WriteFile("tokenizer_config.json", config.ToJsonString());
        ExpectError(files, "tokenizer_config.json", "eos_token '<|endoftext|>' is not a token");
    }

    [Test]
    public void Error_ConfigTokenOfWrongType()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        JsonObject config = TinyTokenizerFiles.ConfigJson();
        config["bos_token"] = 5;
        files.WriteFile("tokenizer_config.json", config.ToJsonString());
        ExpectError(files, "tokenizer_config.json", "bos_token is 5");
    }

    private static void ExpectTokenizerJsonError(Action<JsonObject> corrupt, string expected)
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        JsonObject json = TinyTokenizerFiles.TokenizerJson();
        corrupt(json);
        files.WriteFile("tokenizer.json", json.ToJsonString());
        ExpectError(files, "tokenizer.json", expected);
    }

    private static void ExpectError(TinyTokenizerFiles files, string fileName, string expected)
    {
        var e = Assert.Throws<ModelFormatException>(() => Qwen2Tokenizer.Load(files.Directory))!;
        Assert.That(e.FilePath, Is.EqualTo(Path.Combine(files.Directory, fileName)));
        Assert.That(e.Message, Does.StartWith(e.FilePath).And.Contain(expected));
    }

    private static string Escape(string s) =>
        string.Concat(s.EnumerateRunes().Select(r => r.Value is < 0x20 or > 0x7E ? $"\\u{{{r.Value:X}}}" : r.ToString()));
}
