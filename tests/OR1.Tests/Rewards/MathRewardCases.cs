namespace OR1.Tests.Rewards;

/// <summary>
/// The table of (response, accepted answers, expected reward) cases for <c>MathReward</c>. Each row becomes its own
/// NUnit case named "category: response vs answers -> score".
/// </summary>
public static class MathRewardCases
{
    /// <summary>One row: the text after &lt;/think&gt;, the accepted answers, and the reward it must get.</summary>
    public sealed record Case(string Category, string Response, string[] Answers, double Expected);

    private static Case C(string category, string response, string answer, double expected) =>
        new(category, response, [answer], expected);

    private static Case C(string category, string response, string[] answers, double expected) =>
        new(category, response, answers, expected);

    /// <summary>Ordinary model outputs: every rule of extraction, normalisation and comparison, right and wrong.</summary>
    public static IEnumerable<Case> Ordinary()
    {
        // Fractions.
        yield return C("fraction", @"\boxed{\frac{1}{2}}", "1/2", 1);
        yield return C("fraction", @"\boxed{\dfrac{3}{4}}", @"\frac{3}{4}", 1);
        yield return C("fraction", @"\boxed{\tfrac{3}{4}}", "0.75", 1);
        yield return C("fraction", @"\boxed{\frac12}", @"\frac{1}{2}", 1);
        yield return C("fraction", @"\boxed{\frac{2}{4}}", @"\frac{1}{2}", 1);
        yield return C("fraction", @"\boxed{\frac1{12}}", "1/12", 1);
        yield return C("fraction", @"\boxed{\frac{10}3}", @"\frac{10}{3}", 1);
        yield return C("fraction", @"\boxed{-\frac{5}{7}}", @"\frac{-5}{7}", 1);
        yield return C("fraction", @"\boxed{\frac{5}{-7}}", @"-\dfrac{5}{7}", 1);
        yield return C("fraction wrong", @"\boxed{\frac{5}{7}}", @"-\frac{5}{7}", 0);
        yield return C("fraction wrong", @"\boxed{1/3}", "0.33", 0);
        // A decimal side rounds both to 6 places, as math_verify does: 1/3 = 0.333333(3...), but not 0.33.
        yield return C("fraction", @"\boxed{\frac{1}{3}}", "0.3333333333", 1);
        yield return C("fraction wrong", @"\boxed{\frac{3}{2}}", "2/3", 0);
        yield return C("fraction", @"\boxed{\frac{1}{3}}", "0.33333333333333333333", 1);
        yield return C("fraction wrong", @"\boxed{\frac{1}{3}}", "0.33334", 0);
        yield return C("fraction", @"\boxed{6/8}", @"\frac{3}{4}", 1);

        // Mixed numbers.
        yield return C("mixed number", @"\boxed{2\frac{1}{2}}", @"\frac{5}{2}", 1);
        yield return C("mixed number", @"\boxed{2 1/2}", "2.5", 1);
        yield return C("mixed number", @"\boxed{-1\frac{3}{4}}", @"-\frac{7}{4}", 1);
        yield return C("mixed number", @"\boxed{3\frac12}", "7/2", 1);
        yield return C("mixed number wrong", @"\boxed{2\frac{1}{2}}", "1", 0);
        yield return C("mixed number wrong", @"\boxed{2\frac{1}{3}}", @"\frac{5}{2}", 0);

        // Decimals and scientific notation.
        yield return C("decimal", @"\boxed{0.5}", ".5", 1);
        yield return C("decimal", @"\boxed{.5}", @"\frac{1}{2}", 1);
        yield return C("decimal", @"\boxed{2.50}", "2.5", 1);
        yield return C("decimal", @"\boxed{5.0}", "5", 1);
        yield return C("decimal", @"\boxed{1.5e3}", "1500", 1);
        yield return C("decimal", @"\boxed{2.5\times10^{3}}", "2500", 1);
        yield return C("decimal", @"\boxed{1.2 \cdot 10^{-2}}", "0.012", 1);
        yield return C("decimal wrong", @"\boxed{3.14}", @"\pi", 0);
        yield return C("decimal", @"\boxed{0.1}", "0.10000001", 1);
        yield return C("decimal wrong", @"\boxed{0.1}", "0.1000006", 0);
        yield return C("decimal wrong", @"\boxed{0.25}", "0.205", 0);

        // A decimal against a constant: both sides rounded to 6 decimal places (math_verify's float_rounding).
        yield return C("decimal rounded", @"\boxed{6.283185}", @"2\pi", 1);
        yield return C("decimal rounded", @"\boxed{1.414214}", @"\sqrt{2}", 1);
        yield return C("decimal rounded", @"\boxed{2\pi}", "6.283185", 1);
        yield return C("decimal rounded", @"\boxed{-0.707107}", @"-\frac{\sqrt{2}}{2}", 1);
        yield return C("decimal rounded", @"\boxed{x = 1.732051}", @"\sqrt{3}", 1);
        yield return C("decimal rounded wrong", @"\boxed{6.283186}", @"2\pi", 0);
        yield return C("decimal rounded wrong", @"\boxed{1.4142}", @"\sqrt{2}", 0);
        yield return C("decimal rounded wrong", @"\boxed{1.414213}", @"\sqrt{2}", 0);
        yield return C("decimal rounded wrong", @"\boxed{6.28}", @"2\pi", 0);

        // Binomial coefficients: \binom, \dbinom, \tbinom and {n \choose k} are evaluated.
        yield return C("binomial", @"\boxed{\binom{5}{2}}", "10", 1);
        yield return C("binomial", @"\boxed{\dbinom{5}{2}}", "10", 1);
        yield return C("binomial", @"\boxed{\tbinom{6}{3}}", "20", 1);
        yield return C("binomial", @"\boxed{{5 \choose 2}}", "10", 1);
        yield return C("binomial", @"\boxed{5 \choose 2}", "10", 1);
        yield return C("binomial", @"\boxed{\binom52}", "10", 1);
        yield return C("binomial", @"\boxed{\binom{10}{3}}", @"\binom{10}{7}", 1);
        yield return C("binomial", @"\boxed{2\binom{4}{2}}", "12", 1);
        yield return C("binomial", @"\boxed{\frac{\binom{4}{2}}{\binom{6}{3}}}", "0.3", 1);
        yield return C("binomial", @"\boxed{\binom{3}{5}}", "0", 1);
        yield return C("binomial", @"\boxed{\binom{60}{30}}", "118264581564861424", 1);
        yield return C("binomial wrong", @"\boxed{\binom{5}{2}}", "11", 0);
        yield return C("binomial wrong", @"\boxed{{5 \choose 3}}", "11", 0);
        yield return C("binomial wrong", @"\boxed{\dbinom{5}{2}}", @"\binom{5}{1}", 0);
        yield return C("binomial wrong", @"\boxed{\binom{60}{30}}", "118264581564861425", 0);

        // Integers, signs, leading zeros (AIME ground truths such as "025").
        yield return C("integer", @"The answer is \boxed{204}.", "204", 1);
        yield return C("integer wrong", @"\boxed{204}", "240", 0);
        yield return C("leading zero", @"\boxed{25}", "025", 1);
        yield return C("leading zero", @"\boxed{007}", "7", 1);
        yield return C("leading zero wrong", @"\boxed{250}", "025", 0);
        yield return C("sign", @"\boxed{-3}", "\u22123", 1);
        yield return C("sign", "\\boxed{\u22123}", "-3", 1);
        yield return C("sign", @"\boxed{+5}", "5", 1);
        yield return C("sign wrong", @"\boxed{3}", "-3", 0);
        yield return C("factorial", @"\boxed{5!}", "120", 1);
        yield return C("arithmetic", @"\boxed{2^{10}}", "1024", 1);
        yield return C("arithmetic", @"\boxed{10^{3}}", "1000", 1);
        yield return C("arithmetic", @"\boxed{2^{-1}}", "1/2", 1);
        yield return C("arithmetic", @"\boxed{3(2+1)^2}", "27", 1);
        yield return C("arithmetic wrong", @"\boxed{2^{10}}", "1000", 0);

        // Radicals.
        yield return C("radical", @"\boxed{2\sqrt{3}}", @"\sqrt{12}", 1);
        yield return C("radical", @"\boxed{\frac{3\sqrt{2}}{2}}", @"3\sqrt{2}/2", 1);
        yield return C("radical", @"\boxed{\frac{3}{\sqrt{2}}}", @"\frac{3\sqrt{2}}{2}", 1);
        yield return C("radical", @"\boxed{\sqrt2}", @"\sqrt{2}", 1);
        yield return C("radical", @"\boxed{\sqrt{16}}", "4", 1);
        yield return C("radical", @"\boxed{\sqrt[3]{27}}", "3", 1);
        yield return C("radical", @"\boxed{1+\sqrt{5}}", @"\sqrt{5}+1", 1);
        yield return C("radical", @"\boxed{4\sqrt{3}}", @"\sqrt{48}", 1);
        yield return C("radical", @"\boxed{\frac{\sqrt{3}}{3}}", @"\frac{1}{\sqrt{3}}", 1);
        yield return C("radical", @"\boxed{\sqrt{2}}", "1.4142135623730951", 1);
        yield return C("radical", @"\boxed{\sqrt{2}^2}", "2", 1);
        yield return C("radical", "\\boxed{2\u221A3}", @"2\sqrt{3}", 1);
        yield return C("radical wrong", @"\boxed{2\sqrt{3}}", @"2\sqrt{2}", 0);
        yield return C("radical wrong", @"\boxed{1-\sqrt{5}}", @"1+\sqrt{5}", 0);
        yield return C("radical wrong", @"\boxed{\sqrt{2}}", "1.414", 0);
        yield return C("radical wrong", @"\boxed{3\sqrt{2}}", @"2\sqrt{3}", 0);

        // Pi.
        yield return C("pi", @"\boxed{2\pi}", @"2 \pi", 1);
        yield return C("pi", @"\boxed{\frac{\pi}{2}}", @"0.5\pi", 1);
        yield return C("pi", @"\boxed{\pi/4}", @"\frac{\pi}{4}", 1);
        yield return C("pi", @"\boxed{12\pi}", "12\u03C0", 1);
        yield return C("pi", @"\boxed{\frac{25\pi}{4}}", @"6.25\pi", 1);
        yield return C("pi", @"\boxed{\pi r^2}", @"\pi r^{2}", 1);
        yield return C("pi wrong", @"\boxed{3\pi}", @"\pi^3", 0);
        yield return C("pi wrong", @"\boxed{\frac{\pi}{3}}", @"\frac{\pi}{6}", 0);

        // Percent: stripped, as verl does ("50%" equals 50, not 0.5).
        yield return C("percent", @"\boxed{50\%}", "50", 1);
        yield return C("percent", @"\boxed{50}", @"50\%", 1);
        yield return C("percent", @"\boxed{50%}", "50", 1);
        yield return C("percent", @"\boxed{12.5\%}", "12.5", 1);
        yield return C("percent wrong", @"\boxed{50\%}", "0.5", 0);
        yield return C("percent wrong", @"\boxed{40\%}", "50", 0);

        // Degrees (AIME ground truth "336^\circ").
        yield return C("degrees", @"\boxed{336}", @"336^\circ", 1);
        yield return C("degrees", @"\boxed{336^\circ}", "336", 1);
        yield return C("degrees", @"\boxed{30^{\circ}}", "30", 1);
        yield return C("degrees", "\\boxed{45\u00B0}", "45", 1);
        yield return C("degrees", @"\boxed{45 \text{ degrees}}", "45", 1);
        yield return C("degrees wrong", @"\boxed{36^\circ}", @"336^\circ", 0);

        // Units and text.
        yield return C("units", @"\boxed{10 \text{ cm}}", "10", 1);
        yield return C("units", @"\boxed{10\text{ cm}^2}", "10", 1);
        yield return C("units", @"\boxed{5 \mbox{ meters}}", "5", 1);
        yield return C("units", @"\boxed{3\,\mathrm{kg}}", "3", 1);
        yield return C("units", @"\boxed{\$18.90}", "18.90", 1);
        yield return C("units", @"\boxed{12 \text{ dollars}}", "12", 1);
        yield return C("units", @"\boxed{7 \text{ inches}}", "7", 1);
        yield return C("units", @"\boxed{15 minutes}", "15", 1);
        yield return C("units", @"\boxed{24 \text{ square units}}", "24", 1);
        yield return C("units wrong", @"\boxed{20 \text{ cm}}", "10", 0);
        yield return C("text", @"\boxed{\text{Monday}}", "Monday", 1);
        yield return C("text", @"\boxed{\text{(B)}}", "B", 1);
        yield return C("text", @"\boxed{\textbf{(D)}}", "(D)", 1);
        yield return C("text", @"\boxed{\text{yes}}", "Yes", 1);
        yield return C("text wrong", @"\boxed{(C)}", "B", 0);
        yield return C("text wrong", @"\boxed{no}", "on", 0);
        yield return C("text wrong", @"\boxed{\text{odd}}", "even", 0);

        // Thousands separators.
        yield return C("thousands", @"\boxed{1,000,000}", "1000000", 1);
        yield return C("thousands", @"\boxed{1000000}", "1,000,000", 1);
        yield return C("thousands", @"\boxed{1{,}000}", "1000", 1);
        yield return C("thousands", @"\boxed{12,345.5}", "12345.5", 1);
        yield return C("thousands", @"\boxed{1\,000}", "1000", 1);
        yield return C("thousands", @"\boxed{1,\!000}", "1000", 1);
        yield return C("thousands wrong", @"\boxed{1,000}", "100", 0);

        // Tuples and points.
        yield return C("tuple", @"\boxed{(1, 2)}", "(1,2)", 1);
        yield return C("tuple", @"\boxed{\left(\frac{1}{2}, 3\right)}", "(0.5, 3)", 1);
        yield return C("tuple", @"\boxed{(100,200)}", "(100, 200)", 1);
        yield return C("tuple", @"\boxed{(-1, \sqrt{2})}", @"(-1,\sqrt2)", 1);
        yield return C("tuple", @"\boxed{x=1, y=2}", "(1,2)", 1);
        yield return C("tuple", @"\boxed{(3, -4, 5)}", "(3,-4,5)", 1);
        yield return C("tuple wrong", @"\boxed{(1,2)}", "(2,1)", 0);
        yield return C("tuple wrong", @"\boxed{(1,2,3)}", "(1,2)", 0);
        yield return C("tuple wrong", @"\boxed{(100,200)}", "100200", 0);
        yield return C("tuple wrong", @"\boxed{(1,2)}", "[1,2]", 0);

        // Intervals.
        yield return C("interval", @"\boxed{[1, 3)}", "[1,3)", 1);
        yield return C("interval", @"\boxed{(-\infty, 2]}", @"(-\infty,2]", 1);
        yield return C("interval", @"\boxed{\left[ \frac{1}{2}, 4 \right)}", "[0.5,4)", 1);
        yield return C("interval", @"\boxed{(-\infty,1)\cup(2,\infty)}", @"(2,\infty)\cup(-\infty,1)", 1);
        yield return C("interval", @"\boxed{x \in [1,3)}", "[1,3)", 1);
        yield return C("interval", @"\boxed{(-\infty, \infty)}", @"\mathbb{R}", 1);
        yield return C("interval", @"\boxed{(1,+\infty)}", @"(1,\infty)", 1);
        yield return C("interval wrong", @"\boxed{[1,3)}", "[1,3]", 0);
        yield return C("interval wrong", @"\boxed{(-\infty, 2)}", @"(-\infty,2]", 0);
        yield return C("interval wrong", @"\boxed{[2,5]}", "[2,6]", 0);
        yield return C("interval wrong", @"\boxed{(-\infty,1)\cup(2,\infty)}", @"(-\infty,1]\cup(2,\infty)", 0);

        // Sets.
        yield return C("set", @"\boxed{\{1, 2\}}", @"\{2,1\}", 1);
        yield return C("set", @"\boxed{\left\{ -1, \frac{1}{2} \right\}}", @"\{0.5,-1\}", 1);
        yield return C("set", @"\boxed{\emptyset}", @"\varnothing", 1);
        yield return C("set", @"\boxed{\{1,2\}}", "2, 1", 1);
        yield return C("set wrong", @"\boxed{\{1,2\}}", @"\{1,3\}", 0);
        yield return C("set wrong", @"\boxed{\{1,2\}}", @"\{1,2,3\}", 0);
        yield return C("set wrong", @"\boxed{\{1,1\}}", @"\{1,2\}", 0);

        // Lists of solutions (unordered).
        yield return C("list", @"\boxed{1, 2}", "2, 1", 1);
        yield return C("list", @"\boxed{x=1 \text{ or } x=2}", "1, 2", 1);
        yield return C("list", @"\boxed{x = -2, x = 3}", "3,-2", 1);
        yield return C("list", @"\boxed{1 \pm \sqrt{2}}", @"1+\sqrt{2}, 1-\sqrt{2}", 1);
        yield return C("list", @"\boxed{3 \text{ and } 5}", "3, 5", 1);
        yield return C("list wrong", @"\boxed{1, 2}", "1, 3", 0);
        yield return C("list wrong", @"\boxed{1, 2}", "1", 0);

        // Equations.
        yield return C("equation", @"\boxed{x = 5}", "5", 1);
        yield return C("equation", @"\boxed{5}", "x=5", 1);
        yield return C("equation", @"\boxed{k = \frac{3}{2}}", "1.5", 1);
        yield return C("equation", @"\boxed{y = 2x + 1}", "y=2x+1", 1);
        yield return C("equation", @"\boxed{y=1+2x}", "y = 2x + 1", 1);
        yield return C("equation", @"\boxed{2x+1=y}", "y=2x+1", 1);
        yield return C("equation", @"\boxed{2x = 10}", "x = 5", 1);
        yield return C("equation wrong", @"\boxed{x = 5}", "6", 0);
        yield return C("equation wrong", @"\boxed{y = 2x - 1}", "y=2x+1", 0);
        yield return C("equation wrong", @"\boxed{x + y = 3}", "x - y = 3", 0);

        // Inequalities read as intervals.
        yield return C("inequality", @"\boxed{x > 2}", @"(2,\infty)", 1);
        yield return C("inequality", @"\boxed{[-1, 1]}", @"-1 \le x \le 1", 1);
        yield return C("inequality", @"\boxed{x<1 \text{ or } x>2}", @"(-\infty,1)\cup(2,\infty)", 1);
        yield return C("inequality wrong", @"\boxed{x \geq 2}", @"(2,\infty)", 0);
        yield return C("inequality wrong", @"\boxed{x < 2}", @"x > 2", 0);

        // Repeating decimals, logarithms.
        yield return C("repeating decimal", @"\boxed{0.\overline{3}}", "1/3", 1);
        yield return C("repeating decimal", @"\boxed{0.1\overline{6}}", @"\frac{1}{6}", 1);
        yield return C("repeating decimal wrong", @"\boxed{0.\overline{3}}", "0.3", 0);
        yield return C("logarithm", @"\boxed{\log_2 8}", "3", 1);
        yield return C("logarithm wrong", @"\boxed{\ln 2}", @"\ln 3", 0);

        // Expressions with variables.
        yield return C("expression", @"\boxed{x^2+2x+1}", "(x+1)^2", 1);
        yield return C("expression", @"\boxed{a^{2}}", "a^2", 1);
        yield return C("expression", @"\boxed{\frac{x}{2}}", "x/2", 1);
        yield return C("expression wrong", @"\boxed{x^2+1}", "(x+1)^2", 0);
        yield return C("expression wrong", @"\boxed{2a}", "2b", 0);

        // Infinity, matrices, delimiters.
        yield return C("infinity", @"\boxed{\infty}", @"\infty", 1);
        yield return C("infinity", @"\boxed{\text{infinity}}", @"\infty", 1);
        yield return C("infinity wrong", @"\boxed{-\infty}", @"\infty", 0);
        yield return C("matrix", @"\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}", @"\begin{bmatrix}1&2\\3&4\end{bmatrix}", 1);
        yield return C("matrix", @"\boxed{\begin{pmatrix} \frac12 \\ 2 \end{pmatrix}}", @"\begin{pmatrix}0.5\\2\end{pmatrix}", 1);
        yield return C("matrix wrong", @"\boxed{\begin{pmatrix} 1 & 2 \\ 4 & 3 \end{pmatrix}}", @"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0);
        yield return C("delimiters", @"\boxed{\displaystyle \frac{1}{2}}", "1/2", 1);
        yield return C("delimiters", @"So the result is $\boxed{5}$.", "5", 1);
        yield return C("delimiters", @"\boxed{5.}", "5", 1);
        yield return C("delimiters", @"\[\boxed{\left( 3 \right)}\]", "3", 1);
        yield return C("delimiters", @"\boxed{\;7\,}", "7", 1);

        // Several accepted answers: any one matching counts.
        yield return C("accepted answers", @"\boxed{\frac{1}{2}}", ["2", "0.5"], 1);
        yield return C("accepted answers wrong", @"\boxed{3}", ["2", "0.5"], 0);

        // Several boxes: the last one counts.
        yield return C("multiple boxed", @"First \boxed{3}, then corrected: \boxed{5}", "5", 1);
        yield return C("multiple boxed wrong", @"\boxed{5} ... on reflection \boxed{3}", "5", 0);
        yield return C("multiple boxed wrong", @"\boxed{1} and \boxed{2}", "1", 0);

        // Nested and escaped braces.
        yield return C("nested braces", @"\boxed{\frac{\sqrt{\frac{1}{4}}}{2}}", "1/4", 1);
        yield return C("nested braces", @"\boxed{\left\{ 1, 2 \right\}}", @"\{1,2\}", 1);
        yield return C("nested braces", @"\boxed{{{5}}}", "5", 1);
        yield return C("nested braces", @"\boxed{\{3\}}", @"\{3\}", 1);
        yield return C("nested braces", @"\boxed{\frac{2^{\frac{1}{2}}}{\sqrt{2}}}", "1", 1);

        // Boxes without braces, \fbox.
        yield return C("boxed token", @"so $\boxed 5$", "5", 1);
        yield return C("boxed token", @"\boxed 42", "42", 1);
        yield return C("fbox", @"\fbox{42}", "42", 1);

        // Phrases and the last number.
        yield return C("final answer phrase", "The final answer is $\\frac{1}{2}$. I hope it is correct.", "0.5", 1);
        yield return C("final answer phrase", "Final Answer: 12", "12", 1);
        yield return C("answer phrase", "Answer: 17", "17", 1);
        yield return C("answer phrase", "**Answer:** 12", "12", 1);
        yield return C("answer phrase", "The final answer is 12. Answer: 13", "12", 1);
        yield return C("last number", "So we get 3 apples and 4 oranges, 7 in total.", "7", 1);
        yield return C("last number", "The total is 1,250 people", "1250", 1);
        yield return C("last number wrong", "The sum is 12 and the product is 35", "12", 0);

        // No answer.
        yield return C("no answer", "I could not solve this.", "5", 0);
        yield return C("no answer", "", "5", 0);
        yield return C("no answer", @"\boxed{}", "5", 0);
    }

    /// <summary>Hostile or pathological outputs: all must finish inside the time limit and score as stated.</summary>
    public static IEnumerable<Case> Adversarial()
    {
        yield return C("adversarial unbalanced", @"\boxed{\frac{1}{2}", "1/2", 0);
        yield return C("adversarial unbalanced", @"\boxed{5} and then \boxed{{{{", "5", 1);
        yield return C("adversarial unbalanced", @"}}}}\boxed{7}}}}{{{{", "7", 1);
        yield return C("adversarial unbalanced", @"\boxed{\frac{1}{2}}}}} \left( \right", "1/2", 1);
        yield return C("adversarial unbalanced", @"\boxed{(1,2]}", "(1,2)", 0);
        yield return C("adversarial 100KB digits", new string('1', 100_000), "5", 0);
        yield return C("adversarial 100KB digits boxed", @"\boxed{" + new string('9', 100_000) + "}", "5", 0);
        yield return C("adversarial 100KB digits equal", @"\boxed{" + new string('7', 5_000) + "}", new string('7', 5_000), 1);
        yield return C("adversarial 100KB digits near", @"\boxed{" + new string('7', 5_000) + "}", new string('7', 4_999) + "8", 0);
        yield return C("adversarial deep braces", @"\boxed{" + new string('{', 10_000) + "5" + new string('}', 10_000) + "}", "5", 0);
        yield return C("adversarial deep braces", @"\boxed{" + new string('{', 2_000) + "5" + new string('}', 2_000) + "}", "5", 1);
        yield return C("adversarial deep parens", @"\boxed{" + new string('(', 4_000) + "5" + new string(')', 4_000) + "}", "6", 0);
        yield return C("adversarial deep sqrt", @"\boxed{" + string.Concat(Enumerable.Repeat(@"\sqrt{", 1_000)) + "2" + new string('}', 1_000) + "}", "2", 0);
        yield return C("adversarial deep minus", @"\boxed{" + new string('-', 5_001) + "5}", "5", 0);
        yield return C("adversarial huge exponent", @"\boxed{9^9^9^9}", "1", 0);
        yield return C("adversarial huge exponent", @"\boxed{9^{9^{9^{9}}}}", "9", 0);
        yield return C("adversarial huge exponent", @"\boxed{2^{100000000}}", "1", 0);
        yield return C("adversarial huge exponent", @"\boxed{1e999999}", "1", 0);
        yield return C("adversarial huge exponent", @"\boxed{(-1)^{10^{100}}}", "1", 1);
        yield return C("adversarial huge factorial", @"\boxed{100000!}", "1", 0);
        yield return C("adversarial exact big power", @"\boxed{10^{999}}", "1" + new string('0', 999), 1);
        // Not exactly 1/3, but a decimal side is rounded to 6 places (math_verify): it must still be fast.
        yield return C("adversarial long decimal", @"\boxed{0." + new string('3', 999) + "}", "1/3", 1);
        yield return C("adversarial long decimal", @"\boxed{0." + new string('3', 999) + "}", "1/4", 0);
        yield return C("adversarial huge binomial", @"\boxed{\binom{1000000000}{500000000}}", "1", 0);
        yield return C("adversarial huge binomial", @"\boxed{\binom{100000}{50000}}", "1", 0);
        yield return C("adversarial huge binomial", @"\boxed{\binom{" + new string('9', 900) + "}{" + new string('4', 899) + "}}", "1", 0);
        yield return C("adversarial odd binomial", @"\boxed{\binom{-1}{2}}", "1", 0);
        yield return C("adversarial odd binomial", @"\boxed{\binom{5/2}{1}}", "2.5", 0);
        yield return C("adversarial nested choose", @"\boxed{" + string.Concat(Enumerable.Repeat(@"{1 \choose ", 300)) + "1" + new string('}', 300) + "}", "2", 0);
        yield return C("adversarial long sum", @"\boxed{" + string.Concat(Enumerable.Repeat("1+", 3_000)) + "1}", "3001", 1);
        yield return C("adversarial long harmonic sum", @"\boxed{" + string.Join("+", Enumerable.Range(1, 600).Select(i => $"\\frac{{1}}{{{i}}}")) + "}", "7", 0);
        yield return C("adversarial long list", @"\boxed{" + string.Concat(Enumerable.Repeat("1,", 3_000)) + "1}", "1", 0);
        yield return C("adversarial many boxes", string.Concat(Enumerable.Repeat(@"\boxed{", 5_000)), "5", 0);
        yield return C("adversarial many fracs", @"\boxed{" + string.Concat(Enumerable.Repeat(@"\frac", 1_000)) + "}", "5", 0);
        yield return C("adversarial many texts", @"\boxed{5" + string.Concat(Enumerable.Repeat(@"\text{", 1_000)) + "}", "5", 1); // the box never closes: the last number, 5, is the answer
        yield return C("adversarial phrase spam", string.Concat(Enumerable.Repeat("final answer is ", 5_000)), "5", 0);
        yield return C("adversarial phrase spam", string.Concat(Enumerable.Repeat("Answer:\n", 5_000)) + "Answer: 5", "5", 1);
        yield return C("adversarial regex bait", new string('a', 50_000) + "!", "5", 0);
        yield return C("adversarial regex bait", string.Concat(Enumerable.Repeat("1,", 20_000)) + "x", "1", 1);
        yield return C("adversarial regex bait", @"\boxed{" + string.Concat(Enumerable.Repeat("x=", 3_000)) + "5}", "5", 1);
        yield return C("adversarial regex bait", @"\boxed{" + string.Concat(Enumerable.Repeat(@"\left(", 1_000)) + "}", "5", 0);
        yield return C("adversarial nested sets", @"\boxed{" + string.Concat(Enumerable.Repeat(@"\{", 2_000)) + "1" + string.Concat(Enumerable.Repeat(@"\}", 2_000)) + "}", "1", 0);
        yield return C("adversarial nested tuples", @"\boxed{" + string.Concat(Enumerable.Repeat("(1,", 1_500)) + "1" + new string(')', 1_500) + "}", "1", 0);
        yield return C("adversarial binary junk", "\0\u0001\uFFFF\uD800 \\boxed{\uDC00}", "5", 0);
        yield return C("adversarial long answer after think", new string('x', 200_000) + @" \boxed{42}", "42", 1);
    }
}
