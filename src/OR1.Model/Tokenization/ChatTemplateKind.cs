namespace OR1.Model.Tokenization;

/// <summary>The chat formats <see cref="ChatTemplate"/> renders.</summary>
public enum ChatTemplateKind
{
    /// <summary>DeepSeek-R1-Distill: BOS, system prompt, &lt;｜User｜&gt;..., &lt;｜Assistant｜&gt;...&lt;｜end▁of▁sentence｜&gt;.</summary>
    DeepSeekR1Distill,

    /// <summary>ChatML (Qwen2 instruct): &lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n.</summary>
    ChatML,
}
