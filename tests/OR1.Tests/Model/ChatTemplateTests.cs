using System.Text.Json.Nodes;
using OR1.Model.Checkpoints;
using OR1.Model.Tokenization;

namespace OR1.Tests.Model;

/// <summary>ChatTemplate rendering and its selection from the tiny tokenizer files.</summary>
[TestFixture]
public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] s_conversation =
    [
        ChatMessage.System("You are terse."),
        ChatMessage.User("What is 1+1?"),
        ChatMessage.Assistant("<think>\n1 plus 1.\n</think>\n\n2"),
        ChatMessage.User("And 2+2?"),
    ];

    [Test]
    public void DeepSeek_KnownConversation_ExactString()
    {
        ChatTemplate template = ChatTemplate.DeepSeekR1Distill();
        Assert.That(template.Apply(s_conversation, addGenerationPrompt: true), Is.EqualTo(
            "<｜begin▁of▁sentence｜>You are terse.<｜User｜>What is 1+1?<｜Assistant｜>\n\n2<｜end▁of▁sentence｜>"
            + "<｜User｜>And 2+2?<｜Assistant｜><think>\n"));
        Assert.That(template.Apply(s_conversation.Take(3).ToArray(), addGenerationPrompt: false), Is.EqualTo(
            "<｜begin▁of▁sentence｜>You are terse.<｜User｜>What is 1+1?<｜Assistant｜>\n\n2<｜end▁of▁sentence｜>"));
    }

    [Test]
    public void DeepSeek_RecipePrompt()
    {
        ChatTemplate template = ChatTemplate.DeepSeekR1Distill();
        const string problem = "What is 1+1? Let's think step by step and output the final answer within \\boxed{}.";
        string expected = "<｜begin▁of▁sentence｜><｜User｜>" + problem + "<｜Assistant｜><think>\n";
        Assert.That(template.FormatPrompt(problem), Is.EqualTo(expected));
        Assert.That(template.Apply([ChatMessage.User(problem)], addGenerationPrompt: true), Is.EqualTo(expected));
        Assert.That(template.GenerationPrompt, Is.EqualTo("<｜Assistant｜><think>\n"));
    }

    [Test]
    public void DeepSeek_LastSystemMessageWins_AndOnlyTextAfterLastThinkEndIsKept()
    {
        ChatTemplate template = ChatTemplate.DeepSeekR1Distill();
        ChatMessage[] messages =
        [
            ChatMessage.System("first"),
            ChatMessage.User("q"),
            ChatMessage.Assistant("a</think>b</think>c"),
            ChatMessage.System("second"),
        ];
        Assert.That(template.Apply(messages, addGenerationPrompt: false), Is.EqualTo(
            "<｜begin▁of▁sentence｜>second<｜User｜>q<｜Assistant｜>c<｜end▁of▁sentence｜>"));
    }

    [Test]
    public void DeepSeek_UnknownRole_Throws()
    {
        Assert.That(
            () => ChatTemplate.DeepSeekR1Distill().Apply([new ChatMessage("tool", "x")], addGenerationPrompt: true),
            Throws.ArgumentException.With.Message.Contains("'tool'"));
        Assert.That(
            () => ChatTemplate.DeepSeekR1Distill().Apply([new ChatMessage("user", null!)], addGenerationPrompt: true),
            Throws.ArgumentException);
    }

    [Test]
    public void ChatML_KnownConversation_ExactString()
    {
        ChatTemplate template = ChatTemplate.ChatML();
        Assert.That(template.Apply(s_conversation, addGenerationPrompt: true), Is.EqualTo(
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            + "<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
            + "<|im_start|>assistant\n<think>\n1 plus 1.\n</think>\n\n2<|im_end|>\n"
            + "<|im_start|>user\nAnd 2+2?<|im_end|>\n"
            + "<|im_start|>assistant\n"));
        Assert.That(template.Apply([ChatMessage.User("Hi")], addGenerationPrompt: false), Is.EqualTo(
            "<|im_start|>user\nHi<|im_end|>\n"));
    }

    [Test]
    public void ChatML_DefaultSystemPrompt_FromTemplateLiteral()
    {
        ChatTemplate template = ChatTemplate.FromJinja(TinyTokenizerFiles.ChatMLTemplate, bosToken: null)!;
        Assert.That(template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
        Assert.That(template.DefaultSystemPrompt, Is.EqualTo("You are a helpful assistant."));
        Assert.That(template.Apply([ChatMessage.User("Hi")], addGenerationPrompt: true), Is.EqualTo(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        Assert.That(template.Apply([ChatMessage.System("S"), ChatMessage.User("Hi")], addGenerationPrompt: false), Is.EqualTo(
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"));
    }

    [Test]
    public void ChatML_DefaultSystemPrompt_UnescapesJinjaLiteral()
    {
        // Qwen2.5-Math style: the literal holds \\boxed{} and \n escapes.
        const string jinja = @"{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n' }}{%- endif %}";
        ChatTemplate template = ChatTemplate.FromJinja(jinja, null)!;
        Assert.That(template.DefaultSystemPrompt, Is.EqualTo("Please reason step by step, and put your final answer within \\boxed{}."));
    }

    [Test]
    public void FromJinja_PicksFamilyByMarkers()
    {
        Assert.That(ChatTemplate.FromJinja(TinyTokenizerFiles.DeepSeekTemplate, "<bos>")!.Kind, Is.EqualTo(ChatTemplateKind.DeepSeekR1Distill));
        Assert.That(ChatTemplate.FromJinja(TinyTokenizerFiles.DeepSeekTemplate, "<bos>")!.BosToken, Is.EqualTo("<bos>"));
        Assert.That(ChatTemplate.FromJinja(TinyTokenizerFiles.ChatMLTemplate, null)!.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
        Assert.That(ChatTemplate.FromJinja("{{ messages[0]['content'] }}", null), Is.Null);
    }

    [Test]
    public void Tokenizer_DeepSeekConfig_RendersAndEncodesWithBosFirst()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create();
        Qwen2Tokenizer tokenizer = Qwen2Tokenizer.Load(files.Directory);
        Assert.That(tokenizer.Template.Kind, Is.EqualTo(ChatTemplateKind.DeepSeekR1Distill));
        Assert.That(tokenizer.Template.Source, Is.EqualTo(TinyTokenizerFiles.DeepSeekTemplate));

        string prompt = tokenizer.Template.FormatPrompt("the world");
        Assert.That(prompt, Is.EqualTo("<｜begin▁of▁sentence｜><｜User｜>the world<｜Assistant｜><think>\n"));
        IReadOnlyList<int> ids = tokenizer.Encode(prompt);
        Assert.That(ids[0], Is.EqualTo(tokenizer.BosId));
        Assert.That(ids, Is.EqualTo(new[]
        {
            TinyTokenizerFiles.BeginOfSentenceId, TinyTokenizerFiles.UserId, 259, 270,
            TinyTokenizerFiles.AssistantId, TinyTokenizerFiles.ThinkId, TinyTokenizerFiles.NewlineId,
        }));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo(prompt));
    }

    [Test]
    public void Tokenizer_ChatMLConfig_RendersAndEncodes()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create(chatTemplate: TinyTokenizerFiles.ChatMLTemplate);
        Qwen2Tokenizer tokenizer = Qwen2Tokenizer.Load(files.Directory);
        Assert.That(tokenizer.Template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
        string text = tokenizer.Template.Apply([ChatMessage.System("the"), ChatMessage.User("你好")], addGenerationPrompt: true);
        Assert.That(text, Is.EqualTo("<|im_start|>system\nthe<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"));
        int nl = TinyTokenizerFiles.NewlineId, s = TinyTokenizerFiles.ImStartId, e = TinyTokenizerFiles.ImEndId;
        int[] system = "system".Select(c => TinyTokenizerFiles.Vocab[c.ToString()]).ToArray();
        int[] user = "user".Select(c => TinyTokenizerFiles.Vocab[c.ToString()]).ToArray();
        int[] assistant = "assistant".Select(c => TinyTokenizerFiles.Vocab[c.ToString()]).ToArray();
        int[] expected =
        [
            s, .. system, nl, 259, e, nl,
            s, .. user, nl, 275, e, nl,
            s, .. assistant, nl,
        ];
        Assert.That(tokenizer.Encode(text), Is.EqualTo(expected));
    }

    [Test]
    public void Tokenizer_NoConfig_DefaultsByVocabulary()
    {
        using TinyTokenizerFiles deepSeek = TinyTokenizerFiles.Create(writeConfig: false);
        Assert.That(Qwen2Tokenizer.Load(deepSeek.Directory).Template.Kind, Is.EqualTo(ChatTemplateKind.DeepSeekR1Distill));
        Assert.That(Qwen2Tokenizer.Load(deepSeek.Directory).Template.BosToken, Is.EqualTo(TinyTokenizerFiles.Bos));

        using TinyTokenizerFiles chatML = TinyTokenizerFiles.Create(writeConfig: false, deepSeekMarkers: false);
        Assert.That(Qwen2Tokenizer.Load(chatML.Directory).Template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
    }

    [Test]
    public void Tokenizer_ConfigWithoutTemplate_DefaultsByVocabulary()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create(chatTemplate: null, deepSeekMarkers: false);
        Assert.That(Qwen2Tokenizer.Load(files.Directory).Template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
    }

    [Test]
    public void Tokenizer_TemplateListAndJinjaFile_AreRead()
    {
        using TinyTokenizerFiles list = TinyTokenizerFiles.Create(chatTemplate: null);
        JsonObject config = TinyTokenizerFiles.ConfigJson(chatTemplate: null);
        config["chat_template"] = new JsonArray(
            new JsonObject { ["name"] = "tool_use", ["template"] = TinyTokenizerFiles.DeepSeekTemplate },
            new JsonObject { ["name"] = "default", ["template"] = TinyTokenizerFiles.ChatMLTemplate });
        list.WriteFile("tokenizer_config.json", config.ToJsonString());
        Assert.That(Qwen2Tokenizer.Load(list.Directory).Template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));

        using TinyTokenizerFiles jinja = TinyTokenizerFiles.Create(chatTemplate: null);
        jinja.WriteFile("chat_template.jinja", TinyTokenizerFiles.ChatMLTemplate);
        Assert.That(Qwen2Tokenizer.Load(jinja.Directory).Template.Kind, Is.EqualTo(ChatTemplateKind.ChatML));
    }

    [Test]
    public void Tokenizer_UnknownTemplate_IsAnError()
    {
        using TinyTokenizerFiles files = TinyTokenizerFiles.Create(chatTemplate: "{% for m in messages %}{{ m['content'] }}{% endfor %}");
        var e = Assert.Throws<ModelFormatException>(() => Qwen2Tokenizer.Load(files.Directory))!;
        Assert.That(e.FilePath, Is.EqualTo(Path.Combine(files.Directory, "tokenizer_config.json")));
        Assert.That(e.Message, Does.Contain("neither DeepSeek-R1-Distill"));
    }
}
