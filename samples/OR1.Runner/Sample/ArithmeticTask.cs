using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OR1.Grpo.Data;
using OR1.Model;
using OR1.Model.Tokenization;

namespace OR1.Runner.Sample;

/// <summary>
/// The bundled sample's task: seeded, verifiable arithmetic problems of graded difficulty in the Skywork-OR1
/// data schema, each with a short, perfectly regular worked solution for the supervised warm-up.
/// </summary>
/// <remarks>
/// <para><b>Levels</b> (disjoint: no problem text belongs to two levels):</para>
/// <list type="number">
/// <item>1-2 digit addition or subtraction without a carry or borrow (<c>42+35</c>, <c>87-23</c>).</item>
/// <item>addition or subtraction of a 2-3 digit number and a 1-3 digit number with exactly one carry or borrow.</item>
/// <item>3-digit addition or subtraction (second operand 2-3 digits) with two or more carries or borrows, or a
/// two-digit number times a one-digit number (<c>47*6</c>); half each.</item>
/// <item>two steps, <c>a+b-c</c> with 2-digit operands and <c>a + b &gt;= c</c>.</item>
/// </list>
/// <para><b>Prompts</b> are the bare expression (<c>47+38</c>), without a question or the recipe's instruction
/// ("put the final answer within \boxed{}"): the sample's model is trained from scratch on this task only, so
/// an instruction would carry no information, and every prompt token costs attention in every generated token of
/// a ~90k-parameter model whose RL time is mostly generation.</para>
/// <para><b>Worked solutions</b> (<see cref="WorkedSolution"/>) are the assistant's response after the prompt's
/// <c>&lt;think&gt;\n</c>: one line per digit column, least significant first, then <c>&lt;/think&gt;\n\boxed{answer}</c>.
/// A column line shows the digits with the carry or borrow made explicit:</para>
/// <list type="bullet">
/// <item>addition: <c>8+6=14</c>, then with the carry <c>7+5+1=13</c>; a missing digit is written 0. The answer is
/// the last line's value followed by the last digits of the earlier lines, last line first (478+56: 534).</item>
/// <item>subtraction: a column that borrows writes the borrowed ten in front of its digit, <c>15-8=7</c>; the next
/// column subtracts the borrow, <c>14-7-1=6</c>. The answer is each line's result, last line first, without leading
/// zeros (345-78: <c>15-8=7</c>, <c>14-7-1=6</c>, <c>3-0-1=2</c>: 267).</item>
/// <item>multiplication: <c>7*6=42</c>, then with the carried tens <c>4*6+4=28</c> (47*6: 282).</item>
/// <item>two steps: the addition lines, a line with the sum minus the third operand (<c>85-29</c>), then the
/// subtraction lines.</item>
/// </list>
/// <para><b>Splits</b>: a problem is held out when a fixed hash of its text says so (<see cref="SplitOf(string)"/>),
/// so the split is the same for every seed, count and machine. <b>Determinism</b>: generation uses
/// <see cref="SplitMix64"/>, whose output is fixed by its definition, never <see cref="Random"/>.</para>
/// </remarks>
public static class ArithmeticTask
{
    /// <summary>The easiest level.</summary>
    public const int MinLevel = 1;

    /// <summary>The hardest level.</summary>
    public const int MaxLevel = 4;

    /// <summary>The largest operand of any problem.</summary>
    public const int MaxOperand = 999;

    /// <summary>Percent of all problem texts (by hash) that are held out.</summary>
    public const int HeldOutPercent = 20;

    /// <summary>data_source of a level's examples is this followed by the level: <c>arith-level2</c>.</summary>
    public const string DataSourcePrefix = "arith-level";

    /// <summary>What a worked solution writes between its lines and the boxed answer (the response's end of thinking).</summary>
    public const string AnswerPrefix = ChatTemplate.ThinkEnd + "\n\\boxed{";

    private const long StallDraws = 1_000_000;

    private static readonly JsonSerializerOptions s_jsonLine = new()
    {
        // Keeps '+', '<' and '>' readable in the file (the default encoder writes them as \u002B ...).
        Encoder = ReadableJson.Encoder,
    };

    /// <summary>The levels, easiest first.</summary>
    public static IReadOnlyList<int> Levels { get; } = [1, 2, 3, 4];

    /// <summary>The data_source of <paramref name="level"/>'s examples (<c>arith-level{level}</c>).</summary>
    public static string DataSource(int level)
    {
        CheckLevel(level);
        return DataSourcePrefix + level.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// <paramref name="count"/> distinct problems of <paramref name="level"/> that fall on <paramref name="split"/>, in
    /// generation order. The same arguments give the same list on every machine and .NET version; the train and
    /// held-out lists of any seeds never share a problem.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a level outside 1..4 or a negative count.</exception>
    /// <exception cref="InvalidOperationException">the level has fewer than <paramref name="count"/> distinct problems on
    /// that split (level 1 has about 4,600 train and 1,100 held-out problems; the others far more).</exception>
    public static IReadOnlyList<ArithmeticProblem> Generate(int level, int count, long seed, DataSplit split)
    {
        CheckLevel(level);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        // One stream per (seed, level), so asking for more of one level does not change another level's problems.
        var rng = new SplitMix64(SplitMix64.Mix(unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)level)));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var problems = new List<ArithmeticProblem>(count);
        long drawsSinceNew = 0;
        while (problems.Count < count)
        {
            // Each level-1 problem comes up with probability above 1e-5 per draw (and the other levels are far too
            // large to run out), so a million draws in a row without a new problem means the split is exhausted.
            if (++drawsSinceNew > StallDraws)
            {
                throw new InvalidOperationException(
                    $"level {level} has fewer than {count} distinct {split} problems: no new one in {StallDraws} draws after {problems.Count}");
            }

            ArithmeticProblem? problem = Draw(level, rng);
            if (problem is not null && problem.Split == split && seen.Add(problem.Text))
            {
                problems.Add(problem);
                drawsSinceNew = 0;
            }
        }

        return problems;
    }

    /// <summary>
    /// The split of a problem text: held out when <c>Mix(FNV-1a-64(UTF-8 text)) mod 100 &lt; </c><see cref="HeldOutPercent"/>,
    /// where Mix is the SplitMix64 finaliser (FNV's low bits alone are poorly mixed).
    /// </summary>
    public static DataSplit SplitOf(string problemText)
    {
        ArgumentNullException.ThrowIfNull(problemText);
        return SplitMix64.Mix(Fnv1a64(problemText)) % 100 < HeldOutPercent ? DataSplit.HeldOut : DataSplit.Train;
    }

    /// <summary>64-bit FNV-1a over the UTF-8 bytes of <paramref name="text"/>.</summary>
    public static ulong Fnv1a64(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            hash = unchecked((hash ^ b) * 1099511628211UL);
        }

        return hash;
    }

    /// <summary>
    /// The assistant response that solves <paramref name="problem"/>: the column lines, then
    /// <c>&lt;/think&gt;\n\boxed{answer}</c> (see the class remarks). It starts inside the thinking, right after the
    /// prompt's <c>&lt;think&gt;\n</c>, and does not include the end-of-sentence token that must follow it.
    /// </summary>
    public static string WorkedSolution(ArithmeticProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var sb = new StringBuilder(96);
        int result;
        switch (problem.Operation)
        {
            case ArithmeticOperation.Add:
                result = AppendAddition(sb, problem.A, problem.B);
                break;
            case ArithmeticOperation.Subtract:
                result = AppendSubtraction(sb, problem.A, problem.B);
                break;
            case ArithmeticOperation.Multiply:
                result = AppendMultiplication(sb, problem.A, problem.B);
                break;
            default:
                int sum = AppendAddition(sb, problem.A, problem.B);
                sb.Append(Num(sum)).Append('-').Append(Num(problem.C)).Append('\n');
                result = AppendSubtraction(sb, sum, problem.C);
                break;
        }

        if (result != problem.Answer)
        {
            throw new InvalidOperationException($"worked solution of {problem.Text} reached {result}, not {problem.Answer}");
        }

        sb.Append(AnswerPrefix).Append(problem.AnswerText).Append('}');
        return sb.ToString();
    }

    /// <summary>The RL example of <paramref name="problem"/> in the Skywork-OR1 schema (see <see cref="ToJsonLine"/>).</summary>
    public static RlExample ToExample(ArithmeticProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return new RlExample(
            DataSource(problem.Level),
            [new PromptMessage("user", problem.Text)],
            Abilities.Math,
            new MathGroundTruth([problem.AnswerText]),
            IndexOf(problem),
            split: SplitName(problem.Split));
    }

    /// <summary>The RL examples of <paramref name="problems"/>, in order.</summary>
    public static IReadOnlyList<RlExample> ToExamples(IEnumerable<ArithmeticProblem> problems)
    {
        ArgumentNullException.ThrowIfNull(problems);
        return problems.Select(ToExample).ToList();
    }

    /// <summary>
    /// extra_info.index of a problem: its operation (1 add, 2 subtract, 3 multiply, 4 two-step) and operands as
    /// decimal fields, <c>op*10^9 + a*10^6 + b*10^3 + c</c> (47+38-29 is 4047038029): unique per problem and the
    /// same whatever seed or count produced it, so <see cref="RlExample.Id"/> names the problem.
    /// </summary>
    public static long IndexOf(ArithmeticProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        long op = (int)problem.Operation + 1;
        return op * 1_000_000_000L + problem.A * 1_000_000L + problem.B * 1_000L + problem.C;
    }

    /// <summary>extra_info.split's value: "train" or "test".</summary>
    public static string SplitName(DataSplit split) => split == DataSplit.HeldOut ? "test" : "train";

    /// <summary>
    /// One JSON line in the Skywork-OR1 schema, readable by <see cref="DatasetReader"/> (<c>or1 eval --data</c>):
    /// <c>{"data_source":"arith-level4","prompt":[{"role":"user","content":"47+38-29"}],"ability":"math",
    /// "reward_model":{"ground_truth":"[\"56\"]","style":"rule"},"extra_info":{"index":4047038029,"level":4,"split":"train"}}</c>.
    /// </summary>
    public static string ToJsonLine(ArithmeticProblem problem)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var row = new JsonObject
        {
            ["data_source"] = DataSource(problem.Level),
            ["prompt"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = problem.Text }),
            ["ability"] = Abilities.Math,
            ["reward_model"] = new JsonObject
            {
                // A JSON-encoded list of accepted answers, as the Skywork-OR1 training data stores it.
                ["ground_truth"] = new JsonArray(problem.AnswerText).ToJsonString(s_jsonLine),
                ["style"] = "rule",
            },
            ["extra_info"] = new JsonObject
            {
                ["index"] = IndexOf(problem),
                ["level"] = problem.Level,
                ["split"] = SplitName(problem.Split),
            },
        };
        return row.ToJsonString(s_jsonLine);
    }

    /// <summary>
    /// Writes <paramref name="problems"/> as JSON Lines (<see cref="ToJsonLine"/>, UTF-8, '\n' line ends) to
    /// <paramref name="path"/>, creating its folder; the file appears whole or not at all. Returns the number of rows.
    /// </summary>
    public static int WriteJsonl(string path, IEnumerable<ArithmeticProblem> problems)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(problems);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        int rows = 0;
        Cli.AtomicFile.Write(full, stream =>
        {
            using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { NewLine = "\n" };
            foreach (ArithmeticProblem problem in problems)
            {
                writer.WriteLine(ToJsonLine(problem));
                rows++;
            }
        });
        return rows;
    }

    /// <summary>One candidate of <paramref name="level"/>, or null when the draw does not fit the level (rejection sampling).</summary>
    private static ArithmeticProblem? Draw(int level, SplitMix64 rng)
    {
        switch (level)
        {
            case 1:
            {
                bool add = rng.NextBelow(2) == 0;
                int a = WithDigits(1 + (int)rng.NextBelow(2), rng);
                int b = WithDigits(1 + (int)rng.NextBelow(2), rng);
                return AddOrSubtract(level, add, a, b, carries => carries == 0);
            }
            case 2:
            {
                bool add = rng.NextBelow(2) == 0;
                int digitsA = 2 + (int)rng.NextBelow(2);
                int a = WithDigits(digitsA, rng);
                int b = WithDigits(1 + (int)rng.NextBelow((ulong)digitsA), rng);
                return AddOrSubtract(level, add, a, b, carries => carries == 1);
            }
            case 3:
            {
                if (rng.NextBelow(2) == 0)
                {
                    int a = WithDigits(2, rng);
                    int m = 2 + (int)rng.NextBelow(8);
                    return new ArithmeticProblem(level, ArithmeticOperation.Multiply, a, m);
                }

                bool add = rng.NextBelow(2) == 0;
                int x = WithDigits(3, rng);
                int y = WithDigits(2 + (int)rng.NextBelow(2), rng);
                return AddOrSubtract(level, add, x, y, carries => carries >= 2);
            }
            default:
            {
                int a = WithDigits(2, rng);
                int b = WithDigits(2, rng);
                int c = WithDigits(2, rng);
                return a + b >= c ? new ArithmeticProblem(level, ArithmeticOperation.AddThenSubtract, a, b, c) : null;
            }
        }
    }

    private static ArithmeticProblem? AddOrSubtract(int level, bool add, int a, int b, Func<int, bool> carriesFit)
    {
        if (add)
        {
            return carriesFit(CarryCount(a, b)) ? new ArithmeticProblem(level, ArithmeticOperation.Add, a, b) : null;
        }

        if (a < b)
        {
            (a, b) = (b, a);
        }

        return carriesFit(BorrowCount(a, b)) ? new ArithmeticProblem(level, ArithmeticOperation.Subtract, a, b) : null;
    }

    /// <summary>A uniform number with exactly <paramref name="digits"/> digits (1..9 for one digit).</summary>
    private static int WithDigits(int digits, SplitMix64 rng)
    {
        int low = digits == 1 ? 1 : Pow10(digits - 1);
        int high = Pow10(digits) - 1;
        return low + (int)rng.NextBelow((ulong)(high - low + 1));
    }

    private static int Pow10(int n)
    {
        int p = 1;
        for (int i = 0; i < n; i++)
        {
            p *= 10;
        }

        return p;
    }

    /// <summary>Number of columns of <c>a+b</c> whose sum (with the incoming carry) is 10 or more.</summary>
    internal static int CarryCount(int a, int b)
    {
        int count = 0, carry = 0;
        for (; a > 0 || b > 0; a /= 10, b /= 10)
        {
            carry = (a % 10 + b % 10 + carry) >= 10 ? 1 : 0;
            count += carry;
        }

        return count;
    }

    /// <summary>Number of columns of <c>a-b</c> (a &gt;= b) that borrow.</summary>
    internal static int BorrowCount(int a, int b)
    {
        int count = 0, borrow = 0;
        for (; a > 0 || b > 0; a /= 10, b /= 10)
        {
            borrow = (a % 10 - b % 10 - borrow) < 0 ? 1 : 0;
            count += borrow;
        }

        return count;
    }

    /// <summary>Column lines of a+b; returns the sum.</summary>
    private static int AppendAddition(StringBuilder sb, int a, int b)
    {
        int columns = Math.Max(DigitCount(a), DigitCount(b));
        int carry = 0, result = 0, place = 1;
        for (int i = 0; i < columns; i++, a /= 10, b /= 10)
        {
            int da = a % 10, db = b % 10;
            int sum = da + db + carry;
            sb.Append(Digit(da)).Append('+').Append(Digit(db));
            if (carry > 0)
            {
                sb.Append("+1");
            }

            sb.Append('=').Append(Num(sum)).Append('\n');
            result += (i == columns - 1 ? sum : sum % 10) * place;
            place *= 10;
            carry = sum / 10;
        }

        return result;
    }

    /// <summary>Column lines of a-b (a &gt;= b); returns the difference.</summary>
    private static int AppendSubtraction(StringBuilder sb, int a, int b)
    {
        int columns = DigitCount(a);
        int borrowIn = 0, result = 0, place = 1;
        for (int i = 0; i < columns; i++, a /= 10, b /= 10)
        {
            int da = a % 10, db = b % 10;
            bool borrows = da - db - borrowIn < 0;
            if (borrows)
            {
                sb.Append('1');
            }

            sb.Append(Digit(da)).Append('-').Append(Digit(db));
            if (borrowIn > 0)
            {
                sb.Append("-1");
            }

            int digit = (borrows ? 10 : 0) + da - db - borrowIn;
            sb.Append('=').Append(Digit(digit)).Append('\n');
            result += digit * place;
            place *= 10;
            borrowIn = borrows ? 1 : 0;
        }

        return result;
    }

    /// <summary>Column lines of a*m (a two digits, m one digit); returns the product.</summary>
    private static int AppendMultiplication(StringBuilder sb, int a, int m)
    {
        int columns = DigitCount(a);
        int carry = 0, result = 0, place = 1;
        for (int i = 0; i < columns; i++, a /= 10)
        {
            int d = a % 10;
            int value = d * m + carry;
            sb.Append(Digit(d)).Append('*').Append(Digit(m));
            if (carry > 0)
            {
                sb.Append('+').Append(Digit(carry));
            }

            sb.Append('=').Append(Num(value)).Append('\n');
            result += (i == columns - 1 ? value : value % 10) * place;
            place *= 10;
            carry = value / 10;
        }

        return result;
    }

    private static int DigitCount(int n)
    {
        int count = 1;
        while (n >= 10)
        {
            n /= 10;
            count++;
        }

        return count;
    }

    private static char Digit(int d) => (char)('0' + d);

    private static string Num(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static void CheckLevel(int level)
    {
        if (level < MinLevel || level > MaxLevel)
        {
            throw new ArgumentOutOfRangeException(nameof(level), level, $"levels are {MinLevel}..{MaxLevel}");
        }
    }
}
