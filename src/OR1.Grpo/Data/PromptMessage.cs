namespace OR1.Grpo.Data;

/// <summary>One chat turn of a prompt, as stored in the dataset's <c>prompt</c> column ({role, content}).</summary>
/// <param name="Role">"user", "system" or "assistant" (the training data has one user turn).</param>
/// <param name="Content">The turn's text, unchanged (no chat template applied).</param>
public sealed record PromptMessage(string Role, string Content);
