using OR1.Bench.Tokenization;
using OR1.Grpo.Data;
using OR1.Model.Tokenization;
using OR1.Tests.Data;
using OR1.Tests.Support;

namespace OR1.Tests.Model.RealTokenizer;

/// <summary>
/// The lines the real Qwen tokenizer is checked on against the independent tokenizers: each family the
/// pre-tokenizer, the byte-level BPE, NFC, the added-token split and the chat templates treat differently, text that
/// is not valid Unicode, the 60 real AIME problems, seeded random strings and paragraphs of the benchmark's mixed text.
/// </summary>
internal static class TokenizerCorpus
{
    /// <summary>Every line, each with the family it belongs to (for failure messages).</summary>
    public static IReadOnlyList<(string Family, string Text)> Lines()
    {
        var lines = new List<(string, string)>();
        void Add(string family, params string[] texts) => lines.AddRange(texts.Select(t => (family, t)));

        Add("ascii prose",
            "Hello world",
            "The quick brown fox jumps over the lazy dog.",
            "It's what we'd said: they're here, I'll go, you've seen, she'S DONE, WE'LL see, I'M sure, he'D know.",
            "Let's think step by step and output the final answer within \\boxed{}.",
            "Wait, actually... hmm -- no; that's (probably) wrong! Isn't it? \"Yes,\" she said.",
            "e.g. Dr. O'Brien's state-of-the-art model (v2.5) scored 87.3% on AIME'24.",
            "a", " ", "!", "'s", "'", "''", "x'y", "don't", "DON'T", "won't've");
        Add("digits",
            "1234567890123456789012345678901234567890",
            "3.14159265358979323846264338327950288419716939937510",
            "1,000,000 and 1 000 000 and 1_000_000",
            "2^{64} = 18446744073709551616",
            "0.000001 1e-9 6.02214076e23 -42 +7 007 0x1F 0b1010",
            "١٢٣٤٥ ۱۲۳ १२३४ ௧௨௩ ①②③ ½ ¾ ²³",
            "Year 2024, page 17, item #3: 12/25/2024 at 23:59:59.");
        Add("whitespace",
            "a  b   c    d     e",
            "   leading spaces",
            "trailing spaces   ",
            "\n", "\n\n", "\n\n\n\n", " \n", "\n ", " \n \n ", "\r\n", "\r\n\r\n", "\r", "\r\r\n\n",
            "\t", "\t\t\tindented", "tab\tseparated\tvalues", " \t \t ",
            "line one\nline two\n\nline four\n",
            "x\u00A0y\u2009z\u3000w\u2028v\u2029u\u0085t\u000B\u000Cs",
            "    four spaces then code", "word    \n    next",
            new string(' ', 100), new string('\n', 40), string.Concat(Enumerable.Repeat(" \t\n", 20)));
        Add("code",
            "def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n",
            "import numpy as np\nprint(np.arange(10).reshape(2, 5).sum(axis=1))",
            "public static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);",
            "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
            "const xs = [1, 2, 3].map((x) => x * 2); // => [2, 4, 6]",
            "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}",
            "#include <vector>\ntemplate <typename T> T max(T a, T b) { return a < b ? b : a; }",
            "SELECT id, COUNT(*) FROM t WHERE x >= 10 GROUP BY id ORDER BY 2 DESC;",
            "for f in *.cu; do nvcc -arch=sm_90 -ptx \"$f\" -o \"${f%.cu}.ptx\"; done",
            "<div class=\"a\"><span>&nbsp;&lt;tag&gt;</span></div>",
            "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
            "```python\nprint('hi')\n```");
        Add("latex",
            "\\frac{1}{2} + \\sqrt{2} = \\boxed{\\dfrac{1+2\\sqrt{2}}{2}}",
            "$x^2 + y^2 = r^2$ and \\[ \\int_0^1 x^2\\,dx = \\frac{1}{3} \\]",
            "\\sum_{k=1}^{n} k^2 = \\frac{n(n+1)(2n+1)}{6}",
            "\\binom{5}{2} = {5 \\choose 2} = 10, \\angle BAC = 60^\\circ, \\triangle ABC",
            "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
            "\\left( \\frac{3}{4} \\right)^{2} \\cdot \\pi r^2 \\approx 1.767");
        Add("cjk",
            "你好，世界！这是一个测试。",
            "混合 English 和中文 text 123",
            "日本語のテキストとカタカナ、ひらがな。",
            "한국어 텍스트입니다. 안녕하세요!",
            "「引用」『二重』【括弧】（全角）１２３ＡＢＣ",
            "𠀀𠀁𠀂 𪚥 (CJK extension B)");
        Add("rtl and indic",
            "مرحبا بالعالم! هذا اختبار.",
            "שלום עולם, זה מבחן.",
            "नमस्ते दुनिया, यह एक परीक्षण है।",
            "English مع عربي and עברית mixed 123.",
            "हिन्दी में क्षत्रिय और ज्ञान");
        Add("emoji",
            "emoji 😀🎉 and 🇯🇵 flag",
            "family 👨‍👩‍👧‍👦 and 👍🏽 skin tone, 👩🏻‍💻 at work",
            "keycaps 1️⃣ #️⃣ and ❤️ vs ❤ and 🏳️‍🌈",
            "😀abc 𝑥² + 𝑦² = 𝑧², 𝟙𝟚𝟛",
            string.Concat(Enumerable.Repeat("🤔", 30)));
        Add("nfc changes",
            "e\u0301 combining (not NFC)",
            "cafe\u0301 re\u0301sume\u0301 nai\u0308ve",
            "\u1100\u1161\u11A8 \uAC00\u11A8",
            "\u212B \u2126 \uF900",
            "a\u0301\u0328",
            "\u0958\u0959 (composition exclusions)",
            "\u0301e (leading mark)",
            "Vie\u0323\u0302t Nam",
            "\u00C5ngstr\u00F6m = A\u030Angstro\u0308m");
        Add("added tokens in text",
            "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
            "<think>\nreasoning here\n</think>\n\nThe answer is 5.",
            "text<|im_end|>more text<|endoftext|>",
            " <|im_end|> ", "<|im_end|><|im_end|>", "<<|im_end|>>",
            "<|im_end", "im_end|>", "<think", "</think", "<thinking>", "< think>",
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
            "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
            "<|vision_start|><|image_pad|><|vision_end|>",
            "<｜User｜>hi<｜Assistant｜>",
            "<｜begin▁of▁sentence｜>");
        Add("chat templates",
            ChatTemplate.ChatML().Apply([ChatMessage.User("What is 2+2?")], addGenerationPrompt: true),
            ChatTemplate.ChatML().Apply([ChatMessage.System("You are helpful."), ChatMessage.User("Solve x^2=4."),
                ChatMessage.Assistant("<think>\nx = ±2\n</think>\n\n\\boxed{\\pm 2}")], addGenerationPrompt: false),
            ChatTemplate.DeepSeekR1Distill().FormatPrompt("Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b$."),
            ChatTemplate.DeepSeekR1Distill().Apply([ChatMessage.User("What is 1+1?"), ChatMessage.Assistant("<think>\n1+1=2\n</think>\n\n\\boxed{2}")],
                addGenerationPrompt: false));
        Add("invalid unicode",
            "a\ud800b", "\ud800", "\udc00", "end\ud83d", "\udc00\ud800", "x\ud83d\ud83dy",
            "\ufffe", "\uffff", "\ufdd0", "\ufdef", "x\ufffey\uffff", "\U0001FFFE \U0010FFFF",
            "e\u0301\ufffe\u0301", "\ufeff BOM", "\u0000 NUL \u0001\u001f\u007f\u0080\u009f");
        lines.AddRange(AimeProblems().Select(p => ("aime", p)));
        lines.AddRange(RandomStrings(200, seed: 1234).Select(s => ("random", s)));
        lines.AddRange(MixedText.Generate(48 * 1024, seed: 7).Split("\n\n").Where(p => p.Length > 0).Select(p => ("mixed text", p)));
        return lines;
    }

    /// <summary>The user prompts of the real AIME24 and AIME25 files the repository carries.</summary>
    private static IEnumerable<string> AimeProblems()
    {
        foreach (string file in new[] { DataFiles.Aime24, DataFiles.Aime25 })
        {
            foreach (RlExample example in DatasetReader.Read(DataFiles.EvalFile(file), new DataLoadReport()))
                yield return example.ProblemText;
        }
    }

    /// <summary>Seeded strings over many Unicode blocks, with spaces, newlines, apostrophes and marker characters mixed in.</summary>
    private static IEnumerable<string> RandomStrings(int count, int seed)
    {
        (int Lo, int Hi)[] ranges =
        [
            (0x00, 0x7F), (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E), (0x80, 0x7FF), (0x4E00, 0x9FFF), (0x3000, 0x303F),
            (0x0300, 0x036F), (0x1F300, 0x1FAFF), (0x1D400, 0x1D7FF), (0x20000, 0x2A6DF), (0x10000, 0x10FFFF),
            (0xE000, 0xFFFD), (0x2000, 0x206F), (0x0600, 0x06FF), (0x0900, 0x097F), (0xAC00, 0xD7A3), (0x1100, 0x11FF),
        ];
        char[] specials = [' ', ' ', ' ', '\n', '\t', '\r', '\'', 's', 't', '<', '>', '|', '0', '9'];
        return RandomUnicode.Strings(count, seed, minLength: 1, maxLength: 60, ranges, specials, specialOneIn: 3);
    }
}
