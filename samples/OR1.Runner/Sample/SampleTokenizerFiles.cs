using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OR1.Model;
using OR1.Model.Tokenization;

namespace OR1.Runner.Sample;

/// <summary>
/// Writes the sample's tokenizer (tokenizer.json + tokenizer_config.json), laid out like DeepSeek-R1-Distill-Qwen's
/// files so that it loads through <see cref="Qwen2Tokenizer.Load"/>, the same code path as a real model's.
/// </summary>
/// <remarks>
/// <para>Byte-level BPE that is in effect character-level: the vocabulary is the 256 GPT-2 byte symbols (ids 0-255 in
/// GPT-2 order, so '0' is 15, '+' is 10, '\n' is 198; the loader requires all 256), one chain of merges that makes
/// <c>\boxed</c> a single token (ids 256-260: every response ends with it, and each token saved is a decoding step
/// saved; the arithmetic itself gains nothing from merges because Qwen2's pre-tokenizer splits digits one by one),
/// then DeepSeek-R1-Distill's added tokens (ids 261-266). Only the 20 or so symbols the task uses are ever seen in
/// training; the others stay untrained rows of the embedding.</para>
/// <para>Added tokens carry DeepSeek's flags: BOS and EOS are special (dropped by skipSpecialTokens), the turn markers
/// and think tags are not. tokenizer_config.json sets add_bos_token (as DeepSeek does), EOS as eos and pad token,
/// and a DeepSeek-R1-Distill chat template, so a prompt renders as
/// <c>&lt;｜begin▁of▁sentence｜&gt;&lt;｜User｜&gt;47+38&lt;｜Assistant｜&gt;&lt;think&gt;\n</c>.</para>
/// </remarks>
public static class SampleTokenizerFiles
{
    /// <summary>Id of the first merge's token (<c>\b</c>); the chain ends at <see cref="BoxedId"/>.</summary>
    public const int FirstMergeId = 256;

    /// <summary>Id of the single token <c>\boxed</c>.</summary>
    public const int BoxedId = 260;

    /// <summary>Id of <c>&lt;｜begin▁of▁sentence｜&gt;</c> (BOS, special).</summary>
    public const int BeginOfSentenceId = 261;

    /// <summary>Id of <c>&lt;｜end▁of▁sentence｜&gt;</c> (EOS and padding, special).</summary>
    public const int EndOfSentenceId = 262;

    /// <summary>Id of <c>&lt;｜User｜&gt;</c>.</summary>
    public const int UserId = 263;

    /// <summary>Id of <c>&lt;｜Assistant｜&gt;</c>.</summary>
    public const int AssistantId = 264;

    /// <summary>Id of <c>&lt;think&gt;</c>.</summary>
    public const int ThinkId = 265;

    /// <summary>Id of <c>&lt;/think&gt;</c>.</summary>
    public const int ThinkEndId = 266;

    /// <summary>Number of token ids: 256 byte symbols + 5 merges + 6 added tokens. The model's vocab_size must be at least this.</summary>
    public const int VocabSize = 267;

    /// <summary>The text of the single token <see cref="BoxedId"/>.</summary>
    public const string Boxed = "\\boxed";

    /// <summary>The DeepSeek-R1-Distill-Qwen chat template, reduced to what the sample needs (system, user and assistant
    /// turns, earlier reasoning dropped from assistant turns, the <c>&lt;think&gt;\n</c> generation prompt).</summary>
    public const string ChatTemplateJinja =
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
        + "{% set ns = namespace(system_prompt='') %}"
        + "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
        + "{{ bos_token }}{{ ns.system_prompt }}"
        + "{%- for message in messages %}"
        + "{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{%- endif %}"
        + "{%- if message['role'] == 'assistant' %}{% set content = message['content'] %}"
        + "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
        + "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{%- endif %}"
        + "{%- endfor %}"
        + "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}";

    private static readonly JsonSerializerOptions s_indented = new()
    {
        WriteIndented = true,
        Encoder = ReadableJson.Encoder,
    };

    /// <summary>The added tokens: id, text, and DeepSeek's "special" flag.</summary>
    public static IReadOnlyList<(int Id, string Content, bool Special)> AddedTokens { get; } =
    [
        (BeginOfSentenceId, ChatTemplate.DeepSeekBeginOfSentence, true),
        (EndOfSentenceId, ChatTemplate.DeepSeekEndOfSentence, true),
        (UserId, ChatTemplate.DeepSeekUser, false),
        (AssistantId, ChatTemplate.DeepSeekAssistant, false),
        (ThinkId, "<think>", false),
        (ThinkEndId, ChatTemplate.ThinkEnd, false),
    ];

    /// <summary>The merges in rank order ("\ b", "\b o", ..., "\boxe d"), in byte-level spelling.</summary>
    public static IReadOnlyList<(string Left, string Right)> Merges { get; } = BuildMerges();

    /// <summary>The id of the byte-level symbol of byte <paramref name="b"/> (for example '0' is 15, '\n' is 198).</summary>
    public static int ByteId(byte b) => s_byteIds[b];

    private static readonly int[] s_byteIds = BuildByteIds();

    /// <summary>Writes tokenizer.json and tokenizer_config.json into <paramref name="directory"/>, creating it; existing files are replaced.</summary>
    public static void Write(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        Directory.CreateDirectory(directory);
        var utf8 = new UTF8Encoding(false);
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), TokenizerJson().ToJsonString(s_indented), utf8);
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"), TokenizerConfigJson().ToJsonString(s_indented), utf8);
    }

    /// <summary>The tokenizer.json document.</summary>
    public static JsonObject TokenizerJson()
    {
        var vocab = new JsonObject();
        int id = 0;
        foreach (char symbol in ByteLevelAlphabet.SymbolsInIdOrder())
        {
            vocab[symbol.ToString()] = id++;
        }

        var merges = new JsonArray();
        foreach ((string left, string right) in Merges)
        {
            vocab[left + right] = id++;
            merges.Add(new JsonArray(left, right));
        }

        if (id != BeginOfSentenceId)
        {
            throw new InvalidOperationException($"the vocabulary ends at {id}, where the added tokens start at {BeginOfSentenceId}");
        }

        var added = new JsonArray();
        foreach ((int tokenId, string content, bool special) in AddedTokens)
        {
            added.Add(new JsonObject
            {
                ["id"] = tokenId,
                ["content"] = content,
                ["single_word"] = false,
                ["lstrip"] = false,
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = special,
            });
        }

        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = Qwen2PreTokenizer.Pattern },
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
            ["post_processor"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = false,
                ["use_regex"] = false,
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = false,
                ["use_regex"] = false,
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = merges,
            },
        };
    }

    /// <summary>The tokenizer_config.json document.</summary>
    public static JsonObject TokenizerConfigJson()
    {
        var decoder = new JsonObject();
        foreach ((int tokenId, string content, bool special) in AddedTokens)
        {
            decoder[tokenId.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = content,
                ["lstrip"] = false,
                ["normalized"] = false,
                ["rstrip"] = false,
                ["single_word"] = false,
                ["special"] = special,
            };
        }

        return new JsonObject
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["added_tokens_decoder"] = decoder,
            ["bos_token"] = ChatTemplate.DeepSeekBeginOfSentence,
            ["eos_token"] = ChatTemplate.DeepSeekEndOfSentence,
            ["pad_token"] = ChatTemplate.DeepSeekEndOfSentence,
            ["clean_up_tokenization_spaces"] = false,
            ["legacy"] = true,
            ["model_max_length"] = 4096,
            ["sp_model_kwargs"] = new JsonObject(),
            ["unk_token"] = null,
            ["tokenizer_class"] = "LlamaTokenizerFast",
            ["chat_template"] = ChatTemplateJinja,
        };
    }

    private static List<(string, string)> BuildMerges()
    {
        // "\boxed" is one pre-token (Qwen2's pattern takes one non-letter before a run of letters); chain it left to right.
        var merges = new List<(string, string)>();
        string done = Boxed[0].ToString();
        for (int i = 1; i < Boxed.Length; i++)
        {
            merges.Add((done, Boxed[i].ToString()));
            done += Boxed[i];
        }

        return merges;
    }

    private static int[] BuildByteIds()
    {
        var ids = new int[256];
        var idOfSymbol = new Dictionary<char, int>();
        int id = 0;
        foreach (char symbol in ByteLevelAlphabet.SymbolsInIdOrder())
        {
            idOfSymbol[symbol] = id++;
        }

        for (int b = 0; b < 256; b++)
        {
            ids[b] = idOfSymbol[ByteLevelAlphabet.ByteToChar((byte)b)];
        }

        return ids;
    }
}
