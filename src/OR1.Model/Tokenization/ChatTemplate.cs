using System.Text;
using System.Text.RegularExpressions;

namespace OR1.Model.Tokenization;

/// <summary>
/// Renders a conversation to the prompt text a model was trained on, as HF's apply_chat_template does with
/// the model's Jinja template, for the two template families this project meets (no Jinja engine: the
/// template text only picks the family, see <see cref="FromJinja"/>).
/// </summary>
/// <remarks>
/// <para><b>DeepSeek-R1-Distill</b> (the Jinja template in DeepSeek-R1-Distill-Qwen's tokenizer_config.json):
/// BOS, then the system prompt (the last system message's content, no markers), then per turn
/// <c>&lt;｜User｜&gt;{content}</c> or <c>&lt;｜Assistant｜&gt;{content}&lt;｜end▁of▁sentence｜&gt;</c>, where an
/// assistant content containing <c>&lt;/think&gt;</c> keeps only the text after the last <c>&lt;/think&gt;</c>
/// (the template drops earlier reasoning); the generation prompt is <c>&lt;｜Assistant｜&gt;&lt;think&gt;\n</c>
/// (the template's current revision and docs/RECIPE.md; its first revision ended at <c>&lt;｜Assistant｜&gt;</c>).
/// A single user turn gives docs/RECIPE.md's prompt <c>&lt;｜begin▁of▁sentence｜&gt;&lt;｜User｜&gt;{problem}&lt;｜Assistant｜&gt;&lt;think&gt;\n</c>.
/// Tool calls and tool outputs are not supported.</para>
/// <para><b>ChatML</b> (Qwen2 instruct): <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c> per message and
/// <c>&lt;|im_start|&gt;assistant\n</c> as the generation prompt. Qwen's templates write a default system
/// message when the conversation does not start with one; when the Jinja text has such a literal it becomes
/// <see cref="DefaultSystemPrompt"/>.</para>
/// </remarks>
public sealed partial class ChatTemplate
{
    /// <summary>DeepSeek-R1-Distill's BOS token text.</summary>
    public const string DeepSeekBeginOfSentence = "<｜begin▁of▁sentence｜>";

    /// <summary>DeepSeek-R1-Distill's end-of-turn (and EOS) token text.</summary>
    public const string DeepSeekEndOfSentence = "<｜end▁of▁sentence｜>";

    /// <summary>DeepSeek-R1-Distill's user-turn marker.</summary>
    public const string DeepSeekUser = "<｜User｜>";

    /// <summary>DeepSeek-R1-Distill's assistant-turn marker.</summary>
    public const string DeepSeekAssistant = "<｜Assistant｜>";

    /// <summary>The tag that closes a reasoning block.</summary>
    public const string ThinkEnd = "</think>";

    /// <summary>ChatML's message start marker.</summary>
    public const string ImStart = "<|im_start|>";

    /// <summary>ChatML's message end marker.</summary>
    public const string ImEnd = "<|im_end|>";

    private ChatTemplate(ChatTemplateKind kind, string? bosToken, string? defaultSystemPrompt, string? source)
    {
        Kind = kind;
        BosToken = bosToken;
        DefaultSystemPrompt = defaultSystemPrompt;
        Source = source;
    }

    /// <summary>Which format this template renders.</summary>
    public ChatTemplateKind Kind { get; }

    /// <summary>The BOS text a DeepSeek-R1-Distill rendering starts with; null for ChatML.</summary>
    public string? BosToken { get; }

    /// <summary>ChatML only: the system message written when the conversation does not start with one; null for none.</summary>
    public string? DefaultSystemPrompt { get; }

    /// <summary>The Jinja template this was chosen from; null when built in code.</summary>
    public string? Source { get; }

    /// <summary>The text appended by <c>addGenerationPrompt</c>: where the model's answer starts.</summary>
    public string GenerationPrompt => Kind == ChatTemplateKind.DeepSeekR1Distill
        ? DeepSeekAssistant + "<think>\n"
        : ImStart + "assistant\n";

    /// <summary>The DeepSeek-R1-Distill template, starting with <paramref name="bosToken"/>.</summary>
    public static ChatTemplate DeepSeekR1Distill(string bosToken = DeepSeekBeginOfSentence)
    {
        ArgumentNullException.ThrowIfNull(bosToken);
        return new ChatTemplate(ChatTemplateKind.DeepSeekR1Distill, bosToken, null, null);
    }

    /// <summary>The ChatML template, optionally with a default system message.</summary>
    public static ChatTemplate ChatML(string? defaultSystemPrompt = null) =>
        new(ChatTemplateKind.ChatML, null, defaultSystemPrompt, null);

    /// <summary>
    /// Picks the family of a Jinja chat template (tokenizer_config.json's "chat_template"): DeepSeek-R1-Distill
    /// if it contains <c>&lt;｜User｜&gt;</c>, ChatML if it contains <c>&lt;|im_start|&gt;</c>; null if neither.
    /// </summary>
    /// <param name="jinja">The template text.</param>
    /// <param name="bosToken">The tokenizer's BOS text ({{bos_token}}); DeepSeek's default when null.</param>
    public static ChatTemplate? FromJinja(string jinja, string? bosToken)
    {
        ArgumentNullException.ThrowIfNull(jinja);
        if (jinja.Contains(DeepSeekUser, StringComparison.Ordinal))
        {
            return new ChatTemplate(ChatTemplateKind.DeepSeekR1Distill, bosToken ?? DeepSeekBeginOfSentence, null, jinja);
        }

        if (jinja.Contains(ImStart, StringComparison.Ordinal))
        {
            return new ChatTemplate(ChatTemplateKind.ChatML, null, FindDefaultSystemPrompt(jinja), jinja);
        }

        return null;
    }

    /// <summary>Renders <paramref name="messages"/>, ending with <see cref="GenerationPrompt"/> when <paramref name="addGenerationPrompt"/>.</summary>
    /// <exception cref="ArgumentException">A message is null, has null content, or a role the template cannot render.</exception>
    public string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        ArgumentNullException.ThrowIfNull(messages);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage? m = messages[i];
            if (m is null || m.Role is null || m.Content is null)
            {
                throw new ArgumentException($"Message {i} is null or has a null role or content.", nameof(messages));
            }
        }

        var sb = new StringBuilder();
        if (Kind == ChatTemplateKind.DeepSeekR1Distill)
        {
            RenderDeepSeek(messages, sb);
        }
        else
        {
            RenderChatML(messages, sb);
        }

        if (addGenerationPrompt)
        {
            sb.Append(GenerationPrompt);
        }

        return sb.ToString();
    }

    /// <summary>The prompt for one user message with the generation prompt (the training prompt of docs/RECIPE.md).</summary>
    public string FormatPrompt(string userContent)
    {
        ArgumentNullException.ThrowIfNull(userContent);
        return Apply([ChatMessage.User(userContent)], addGenerationPrompt: true);
    }

    private void RenderDeepSeek(IReadOnlyList<ChatMessage> messages, StringBuilder sb)
    {
        // The template first scans for the system prompt (a later system message replaces an earlier one)
        // and writes it right after BOS, then renders the turns in order.
        string systemPrompt = "";
        foreach (ChatMessage m in messages)
        {
            if (m.Role == "system")
            {
                systemPrompt = m.Content;
            }
        }

        sb.Append(BosToken).Append(systemPrompt);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage m = messages[i];
            switch (m.Role)
            {
                case "system":
                    break;
                case "user":
                    sb.Append(DeepSeekUser).Append(m.Content);
                    break;
                case "assistant":
                    sb.Append(DeepSeekAssistant).Append(AfterLastThinkEnd(m.Content)).Append(DeepSeekEndOfSentence);
                    break;
                default:
                    throw new ArgumentException(
                        $"Message {i} has role '{m.Role}'; the DeepSeek-R1-Distill template renders only system, user and assistant.",
                        nameof(messages));
            }
        }
    }

    private void RenderChatML(IReadOnlyList<ChatMessage> messages, StringBuilder sb)
    {
        if (DefaultSystemPrompt is not null && (messages.Count == 0 || messages[0].Role != "system"))
        {
            AppendChatML(sb, "system", DefaultSystemPrompt);
        }

        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage m = messages[i];
            if (m.Role.Length == 0)
            {
                throw new ArgumentException($"Message {i} has an empty role.", nameof(messages));
            }

            AppendChatML(sb, m.Role, m.Content);
        }
    }

    private static void AppendChatML(StringBuilder sb, string role, string content) =>
        sb.Append(ImStart).Append(role).Append('\n').Append(content).Append(ImEnd).Append('\n');

    /// <summary>Jinja's <c>content.split('&lt;/think&gt;')[-1]</c>.</summary>
    private static string AfterLastThinkEnd(string content)
    {
        int at = content.LastIndexOf(ThinkEnd, StringComparison.Ordinal);
        return at < 0 ? content : content[(at + ThinkEnd.Length)..];
    }

    /// <summary>
    /// A Jinja string literal holding a whole default system message, as in Qwen's templates:
    /// <c>'&lt;|im_start|&gt;system\nYou are a helpful assistant.&lt;|im_end|&gt;\n'</c>.
    /// </summary>
    private static string? FindDefaultSystemPrompt(string jinja)
    {
        Match m = DefaultSystemLiteral().Match(jinja);
        return m.Success ? UnescapeJinja(m.Groups["text"].Value) : null;
    }

    private static string UnescapeJinja(string literal)
    {
        var sb = new StringBuilder(literal.Length);
        for (int i = 0; i < literal.Length; i++)
        {
            char c = literal[i];
            if (c != '\\' || i + 1 == literal.Length)
            {
                sb.Append(c);
                continue;
            }

            char next = literal[++i];
            sb.Append(next switch
            {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                _ => next, // \\ \' \"
            });
        }

        return sb.ToString();
    }

    [GeneratedRegex(@"'<\|im_start\|>system(?:\\n|\n)(?<text>(?:[^'\\]|\\.)*?)<\|im_end\|>(?:\\n|\n)'", RegexOptions.CultureInvariant)]
    private static partial Regex DefaultSystemLiteral();
}
