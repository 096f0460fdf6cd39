namespace OR1.Grpo.Rewards.Math;

/// <summary>Which rule of <see cref="AnswerExtractor"/> found the answer, in priority order.</summary>
public enum AnswerSource
{
    /// <summary>The last <c>\boxed{...}</c>, <c>\boxed x</c> or <c>\fbox{...}</c> with balanced braces.</summary>
    Boxed,

    /// <summary>The text after the last "final answer is" / "final answer:".</summary>
    FinalAnswerPhrase,

    /// <summary>The text after the last "answer:" / "answer is".</summary>
    AnswerPhrase,

    /// <summary>The last number in the text.</summary>
    LastNumber,
}
