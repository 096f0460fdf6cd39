using System.Text;
using System.Text.Json.Nodes;

namespace OR1.Tests.Model;

/// <summary>
/// Writes a small but real byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) into a fresh
/// temporary directory, laid out like DeepSeek-R1-Distill-Qwen's files.
/// </summary>
/// <remarks>
/// No real Qwen2 vocabulary is available to the tests (nothing is downloaded), so tokenizer behaviour is
/// tested through this one: the 256 GPT-2 byte symbols as ids 0-255 in GPT-2/Qwen2 order (so ' ' is "Ġ" = 220
/// and '\n' is "Ċ" = 198, as in the real vocabulary), then one vocabulary entry per merge in merge order
/// (ids 256..), then the added tokens at fixed ids 300-307. The byte table here is written independently of
/// the production code's.
/// </remarks>
public sealed class TinyTokenizerFiles : IDisposable
{
    public const int EndOfSentenceId = 300;
    public const int UserId = 301;
    public const int AssistantId = 302;
    public const int BeginOfSentenceId = 303;
    public const int ThinkId = 304;
    public const int ThinkEndId = 305;
    public const int ImStartId = 306;
    public const int ImEndId = 307;
    public const int VocabSize = 308;
    public const int SpaceId = 220;
    public const int NewlineId = 198;

    public const string Bos = "<｜begin▁of▁sentence｜>";
    public const string Eos = "<｜end▁of▁sentence｜>";

    /// <summary>A shortened Jinja template with DeepSeek-R1-Distill's markers (only the markers pick the family).</summary>
    public const string DeepSeekTemplate =
        @"{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}"
        + @"{%- for message in messages %}{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{%- endif %}"
        + @"{%- if message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}{%- endif %}{%- endfor %}"
        + @"{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\n' }}{% endif %}";

    /// <summary>A ChatML Jinja template in Qwen2-Instruct's style, with a default system message literal.</summary>
    public const string ChatMLTemplate =
        @"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        + @"{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        + @"{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
        + @"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// <summary>The pre-tokenizer regex as it appears in Qwen2's tokenizer.json.</summary>
    public const string QwenRegex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly char[] s_byteToChar = BuildByteTable();

    private TinyTokenizerFiles(string directory)
    {
        Directory = directory;
    }

    /// <summary>The model directory holding the files.</summary>
    public string Directory { get; }

    /// <summary>The merges, in rank order, as "a b" strings in byte-level spelling.</summary>
    public static IReadOnlyList<(string Left, string Right)> Merges { get; } = BuildMerges();

    /// <summary>The vocabulary (byte-level spelling to id) written to model.vocab.</summary>
    public static IReadOnlyDictionary<string, int> Vocab { get; } = BuildVocab();

    /// <summary>Writes the files into a new temporary directory.</summary>
    /// <param name="mergesAsPairs">Write merges as ["a","b"] pairs instead of "a b" strings.</param>
    /// <param name="chatTemplate">tokenizer_config.json's chat_template; null to leave it out.</param>
    /// <param name="writeConfig">Whether to write tokenizer_config.json at all.</param>
    /// <param name="normalizer">tokenizer.json's normalizer (null for none; Qwen2's real files say NFC).</param>
    /// <param name="deepSeekMarkers">Whether the added tokens include &lt;｜User｜&gt; and &lt;｜Assistant｜&gt;.</param>
    /// <param name="addBosToken">tokenizer_config.json's add_bos_token.</param>
    public static TinyTokenizerFiles Create(
        bool mergesAsPairs = false,
        string? chatTemplate = DeepSeekTemplate,
        bool writeConfig = true,
        JsonNode? normalizer = null,
        bool deepSeekMarkers = true,
        bool addBosToken = true)
    {
        string dir = Path.Combine(Path.GetTempPath(), "or1-tok-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(dir);
        var files = new TinyTokenizerFiles(dir);
        files.WriteFile("tokenizer.json", TokenizerJson(mergesAsPairs, normalizer, deepSeekMarkers).ToJsonString());
        if (writeConfig)
        {
            files.WriteFile("tokenizer_config.json", ConfigJson(chatTemplate, addBosToken).ToJsonString());
        }

        return files;
    }

    /// <summary>The tokenizer.json document, for tests that corrupt one part of it.</summary>
    public static JsonObject TokenizerJson(bool mergesAsPairs = false, JsonNode? normalizer = null, bool deepSeekMarkers = true)
    {
        var vocab = new JsonObject();
        foreach (KeyValuePair<string, int> entry in Vocab)
        {
            vocab[entry.Key] = entry.Value;
        }

        var merges = new JsonArray();
        foreach ((string left, string right) in Merges)
        {
            merges.Add(mergesAsPairs ? new JsonArray(left, right) : (JsonNode)JsonValue.Create(left + " " + right));
        }

        var added = new JsonArray();
        void Add(int id, string content, bool special)
        {
            added.Add(new JsonObject
            {
                ["id"] = id,
                ["content"] = content,
                ["single_word"] = false,
                ["lstrip"] = false,
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = special,
            });
        }

        // The flags follow DeepSeek-R1-Distill-Qwen: the turn markers and think tags are not "special".
        Add(EndOfSentenceId, Eos, true);
        if (deepSeekMarkers)
        {
            Add(UserId, "<｜User｜>", false);
            Add(AssistantId, "<｜Assistant｜>", false);
        }

        Add(BeginOfSentenceId, Bos, true);
        Add(ThinkId, "<think>", false);
        Add(ThinkEndId, "</think>", false);
        Add(ImStartId, "<|im_start|>", true);
        Add(ImEndId, "<|im_end|>", true);

        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = QwenRegex },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    new JsonObject
                    {
                        ["type"] = "ByteLevel",
                        ["add_prefix_space"] = false,
                        ["trim_offsets"] = false,
                        ["use_regex"] = false,
                    }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = merges,
            },
        };
    }

    /// <summary>The tokenizer_config.json document (bos_token as an AddedToken object, eos/pad as strings, as in the wild).</summary>
    public static JsonObject ConfigJson(string? chatTemplate = DeepSeekTemplate, bool addBosToken = true)
    {
        var config = new JsonObject
        {
            ["add_bos_token"] = addBosToken,
            ["add_eos_token"] = false,
            ["bos_token"] = new JsonObject { ["__type"] = "AddedToken", ["content"] = Bos, ["lstrip"] = false },
            ["eos_token"] = Eos,
            ["pad_token"] = Eos,
            ["clean_up_tokenization_spaces"] = false,
            ["tokenizer_class"] = "LlamaTokenizerFast",
        };
        if (chatTemplate is not null)
        {
            config["chat_template"] = chatTemplate;
        }

        return config;
    }

    /// <summary>Writes (or overwrites) a file in the model directory.</summary>
    public void WriteFile(string name, string content) => File.WriteAllText(Path.Combine(Directory, name), content, new UTF8Encoding(false));

    /// <summary>Deletes a file from the model directory.</summary>
    public void DeleteFile(string name) => File.Delete(Path.Combine(Directory, name));

    /// <summary>The byte-level spelling of <paramref name="text"/>'s UTF-8 bytes (" the" is "Ġthe").</summary>
    public static string Spell(string text) => new(Encoding.UTF8.GetBytes(text).Select(b => s_byteToChar[b]).ToArray());

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }

    private static char[] BuildByteTable()
    {
        // GPT-2 bytes_to_unicode: '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves; the rest become U+0100.. in order.
        var printable = Enumerable.Range('!', '~' - '!' + 1)
            .Concat(Enumerable.Range('¡', '¬' - '¡' + 1))
            .Concat(Enumerable.Range('®', 'ÿ' - '®' + 1))
            .ToHashSet();
        var table = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            table[b] = printable.Contains(b) ? (char)b : (char)(256 + n++);
        }

        return table;
    }

    private static IReadOnlyList<(string, string)> BuildMerges()
    {
        var merges = new List<(string, string)>();
        void M(string left, string right) => merges.Add((Spell(left), Spell(right)));

        // Chains every byte of text onto the ones before it: the merges that make text one token.
        void Chain(string text)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            string acc = s_byteToChar[bytes[0]].ToString();
            for (int i = 1; i < bytes.Length; i++)
            {
                merges.Add((acc, s_byteToChar[bytes[i]].ToString()));
                acc += s_byteToChar[bytes[i]];
            }
        }

        M(" ", "t");       // 256 Ġt
        M("h", "e");       // 257 he
        M(" t", "he");     // 258 Ġthe
        M("t", "he");      // 259 the
        M("i", "n");       // 260 in
        M(" ", "in");      // 261 Ġin
        M("in", "g");      // 262 ing
        M("\n", "\n");     // 263 ĊĊ
        M(" ", " ");       // 264 ĠĠ
        M("  ", "  ");     // 265 ĠĠĠĠ
        M("o", "r");       // 266 or
        M(" ", "w");       // 267 Ġw
        M(" w", "or");     // 268 Ġwor
        M("l", "d");       // 269 ld
        M(" wor", "ld");   // 270 Ġworld
        Chain("你");        // 271 ä½, 272 ä½ł
        Chain("好");        // 273 å¥, 274 å¥½
        M("你", "好");      // 275 ä½łå¥½
        return merges;
    }

    private static IReadOnlyDictionary<string, int> BuildVocab()
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++)
        {
            if (s_byteToChar[b] == (char)b)
            {
                vocab[s_byteToChar[b].ToString()] = vocab.Count;
            }
        }

        for (int b = 0; b < 256; b++)
        {
            if (s_byteToChar[b] != (char)b)
            {
                vocab[s_byteToChar[b].ToString()] = vocab.Count;
            }
        }

        foreach ((string left, string right) in Merges)
        {
            vocab.TryAdd(left + right, vocab.Count);
        }

        if (vocab.Count > EndOfSentenceId)
        {
            throw new InvalidOperationException("The tiny vocabulary overlaps the added-token ids.");
        }

        return vocab;
    }
}
