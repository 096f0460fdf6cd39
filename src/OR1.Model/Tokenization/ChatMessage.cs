namespace OR1.Model.Tokenization;

/// <summary>One turn of a conversation for <see cref="ChatTemplate.Apply"/>.</summary>
/// <param name="Role">"system", "user" or "assistant" (ChatML also renders any other role verbatim).</param>
/// <param name="Content">The text of the turn.</param>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>A "system" message.</summary>
    public static ChatMessage System(string content) => new("system", content);

    /// <summary>A "user" message.</summary>
    public static ChatMessage User(string content) => new("user", content);

    /// <summary>An "assistant" message.</summary>
    public static ChatMessage Assistant(string content) => new("assistant", content);
}
