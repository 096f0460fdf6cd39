using System.Globalization;
using System.Numerics;

namespace OR1.Grpo.Rewards.Math;

/// <summary>
/// A small recursive-descent parser for normalised answers (output of <see cref="LatexNormalizer"/>):
/// decimals (<c>025</c>, <c>.5</c>, <c>1.5e-3</c>), <c>+ - * /</c>, <c>^</c> (right-associative, braced or bare
/// exponent), implicit multiplication (<c>2\sqrt{3}</c>, <c>3(x+1)</c>), parentheses and braces, <c>\frac</c>,
/// <c>\sqrt</c>, <c>\sqrt[n]</c>, <c>\binom</c>, <c>\pi</c>, <c>e</c>, <c>n!</c>, repeating decimals (<c>0.\overline{3}</c>),
/// <c>\ln \log \log_b \exp</c> and the trigonometric functions (radians), and variables (letters with optional subscript,
/// Greek letters). Anything else (functions, <c>\infty</c>, relations, commas) is not an expression.
/// It is safe on hostile input: number literals longer than the digit limit and nesting deeper than
/// <see cref="MaxDepth"/> are refused with <see cref="MathParseException"/>, and the deadline is polled.
/// </summary>
internal sealed class MathExpressionParser
{
    /// <summary>Deepest nesting of parentheses, braces, signs and powers accepted.</summary>
    public const int MaxDepth = 200;

    private static readonly HashSet<string> GreekLetters =
    [
        "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
        "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
        "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
    ];

    private readonly string _s;
    private readonly Deadline _deadline;
    private readonly int _maxDigits;
    private int _pos;
    private int _depth;

    private MathExpressionParser(string s, Deadline deadline, int maxDigits)
    {
        _s = s;
        _deadline = deadline;
        _maxDigits = maxDigits;
    }

    /// <summary>The expression <paramref name="text"/> denotes, or null when it is not one.</summary>
    public static MathExpression? TryParse(string text, Deadline deadline, int maxDigits)
    {
        if (text.Length == 0) return null;
        try
        {
            var parser = new MathExpressionParser(text, deadline, maxDigits);
            var expression = parser.ParseSum();
            parser.SkipSpaces();
            return parser._pos == text.Length ? expression : null;
        }
        catch (MathParseException)
        {
            return null;
        }
    }

    private char Peek => _pos < _s.Length ? _s[_pos] : '\0';

    private void SkipSpaces()
    {
        while (_pos < _s.Length && _s[_pos] == ' ') _pos++;
    }

    private void Enter()
    {
        _deadline.Check();
        if (++_depth > MaxDepth) throw new MathParseException("expression nested too deeply");
    }

    private MathExpression ParseSum()
    {
        Enter();
        var terms = new List<(bool, MathExpression)> { (false, ParseTerm()) };
        while (true)
        {
            _deadline.Check();
            SkipSpaces();
            if (Peek is '+' or '-')
            {
                bool subtract = Peek == '-';
                _pos++;
                terms.Add((subtract, ParseTerm()));
            }
            else break;
        }
        _depth--;
        return terms.Count == 1 && !terms[0].Item1 ? terms[0].Item2 : new SumExpression(terms);
    }

    private MathExpression ParseTerm()
    {
        var factors = new List<(bool, MathExpression)> { (false, ParseUnary()) };
        while (true)
        {
            _deadline.Check();
            SkipSpaces();
            char c = Peek;
            if (c is '*' or '/')
            {
                _pos++;
                factors.Add((c == '/', ParseUnary()));
            }
            else if (StartsPrimary()) factors.Add((false, ParsePower())); // implicit multiplication
            else break;
        }
        return factors.Count == 1 ? factors[0].Item2 : new ProductExpression(factors);
    }

    private MathExpression ParseUnary()
    {
        Enter();
        SkipSpaces();
        MathExpression result;
        if (Peek == '-') { _pos++; result = new NegateExpression(ParseUnary()); }
        else if (Peek == '+') { _pos++; result = ParseUnary(); }
        else result = ParsePower();
        _depth--;
        return result;
    }

    private MathExpression ParsePower()
    {
        var @base = ParsePostfix();
        SkipSpaces();
        if (Peek != '^') return @base;
        _pos++;
        SkipSpaces();
        MathExpression exponent;
        if (Peek == '{') exponent = ParseGroup('{', '}');
        else exponent = ParseUnary(); // 9^9^9^9 is 9^(9^(9^9))
        return new PowerExpression(@base, exponent);
    }

    private MathExpression ParsePostfix()
    {
        var operand = ParsePrimary();
        while (Peek == '!')
        {
            _deadline.Check();
            _pos++;
            operand = new FactorialExpression(operand);
        }
        return operand;
    }

    private bool StartsPrimary()
    {
        char c = Peek;
        if (char.IsAsciiDigit(c) || char.IsAsciiLetter(c) || c is '(' or '{' or '.') return true;
        if (c != '\\' || _pos + 1 >= _s.Length || !char.IsAsciiLetter(_s[_pos + 1])) return false;
        string name = CommandNameAt(_pos);
        return name is "frac" or "binom" or "sqrt" or "pi" or "log" or "ln" or "exp" or "sin" or "cos" or "tan" or "cot" or "sec" or "csc"
            or "arcsin" or "arccos" or "arctan" || GreekLetters.Contains(name);
    }

    private string CommandNameAt(int backslash)
    {
        int end = backslash + 1;
        while (end < _s.Length && char.IsAsciiLetter(_s[end])) end++;
        return _s[(backslash + 1)..end];
    }

    private MathExpression ParsePrimary()
    {
        Enter();
        SkipSpaces();
        char c = Peek;
        MathExpression result;
        if (char.IsAsciiDigit(c) || c == '.') result = ParseNumber();
        else if (c == '(') result = ParseGroup('(', ')');
        else if (c == '[') result = ParseGroup('[', ']');
        else if (c == '{') result = ParseGroup('{', '}');
        else if (c == '\\') result = ParseCommand();
        else if (char.IsAsciiLetter(c)) result = ParseLetter();
        else throw new MathParseException($"unexpected '{c}'");
        _depth--;
        return result;
    }

    private MathExpression ParseGroup(char open, char close)
    {
        if (Peek != open) throw new MathParseException($"expected '{open}'");
        _pos++;
        var inner = ParseSum();
        SkipSpaces();
        if (Peek != close) throw new MathParseException($"expected '{close}'");
        _pos++;
        return inner;
    }

    private MathExpression ParseCommand()
    {
        string name = CommandNameAt(_pos);
        if (name.Length == 0) throw new MathParseException("unexpected '\\'");
        _pos += name.Length + 1;
        switch (name)
        {
            case "frac":
                var numerator = ParseArgument();
                var denominator = ParseArgument();
                return new ProductExpression([(false, numerator), (true, denominator)]);
            case "binom":
                var n = ParseArgument();
                return new BinomialExpression(n, ParseArgument());
            case "sqrt":
                MathExpression? index = null;
                SkipSpaces();
                if (Peek == '[') index = ParseGroup('[', ']');
                return new RootExpression(ParseArgument(), index);
            case "pi":
                return new NumberExpression(NumericValue.Of(System.Math.PI));
            case "log":
                MathExpression? logBase = null;
                if (Peek == '_')
                {
                    _pos++;
                    logBase = ParseArgument();
                }
                return new FunctionExpression(name, ParseFunctionArgument(), logBase);
            case "ln" or "exp" or "sin" or "cos" or "tan" or "cot" or "sec" or "csc" or "arcsin" or "arccos" or "arctan":
                return new FunctionExpression(name, ParseFunctionArgument(), null);
            default:
                if (GreekLetters.Contains(name)) return new VariableExpression(@"\" + name + Subscript());
                throw new MathParseException($"unsupported command \\{name}");
        }
    }

    /// <summary>A command argument: a braced group, or one digit / letter / command (<c>\frac12</c>, <c>\sqrt x</c>).</summary>
    private MathExpression ParseArgument()
    {
        SkipSpaces();
        char c = Peek;
        if (c == '{') return ParseGroup('{', '}');
        if (char.IsAsciiDigit(c))
        {
            _pos++;
            return new NumberExpression(NumericValue.Of(c - '0'));
        }
        if (char.IsAsciiLetter(c)) return ParseLetter();
        if (c == '\\') return ParseCommand();
        throw new MathParseException("missing argument");
    }

    /// <summary>A function argument: a group, or one signed power-level operand (<c>\ln 2</c>, <c>\sin^2</c> is refused).</summary>
    private MathExpression ParseFunctionArgument()
    {
        SkipSpaces();
        if (Peek == '^') throw new MathParseException("powers of functions are not supported");
        if (Peek == '(') return ParseGroup('(', ')');
        if (Peek == '{') return ParseGroup('{', '}');
        return ParseUnary();
    }

    private MathExpression ParseLetter()
    {
        char c = _s[_pos++];
        if (c == 'e' && Peek != '_') return new NumberExpression(NumericValue.Of(System.Math.E));
        return new VariableExpression(c + Subscript());
    }

    private string Subscript()
    {
        if (Peek != '_') return "";
        int start = _pos;
        _pos++;
        if (Peek == '{')
        {
            int close = _s.IndexOf('}', _pos);
            if (close < 0 || close - _pos > 16) throw new MathParseException("bad subscript");
            string inner = _s[(_pos + 1)..close];
            if (!inner.All(char.IsAsciiLetterOrDigit)) throw new MathParseException("bad subscript");
            _pos = close + 1;
            return "_" + inner;
        }
        if (!char.IsAsciiLetterOrDigit(Peek)) throw new MathParseException("bad subscript");
        _pos++;
        return _s[start.._pos];
    }

    /// <summary>
    /// The digits of a repeating block right after a decimal: <c>0.\overline{3}</c> or <c>0.1\overline{6}</c>
    /// (also <c>0.\dot{3}</c>); consumes it. <paramref name="afterDecimals"/>: digits after the point were read.
    /// </summary>
    private string RepeatingDigits(bool afterDecimals)
    {
        int at = _pos;
        if (!afterDecimals)
        {
            if (Peek != '.') return "";
            at++;
        }
        foreach (string command in new[] { @"\overline{", @"\dot{" })
        {
            if (string.CompareOrdinal(_s, at, command, 0, command.Length) != 0) continue;
            int start = at + command.Length;
            int close = _s.IndexOf('}', start);
            if (close <= start || close - start > _maxDigits || _s.AsSpan(start, close - start).ContainsAnyExceptInRange('0', '9'))
                return "";
            _pos = close + 1;
            return _s[start..close];
        }
        return "";
    }

    private MathExpression ParseNumber()
    {
        int start = _pos;
        while (char.IsAsciiDigit(Peek)) _pos++;
        string integer = _s[start.._pos];
        string fraction = "";
        if (Peek == '.' && _pos + 1 < _s.Length && char.IsAsciiDigit(_s[_pos + 1]))
        {
            int fracStart = ++_pos;
            while (char.IsAsciiDigit(Peek)) _pos++;
            fraction = _s[fracStart.._pos];
        }
        else if (integer.Length == 0) throw new MathParseException("lone '.'");
        string repeating = RepeatingDigits(fraction.Length > 0);
        if (integer.Length + fraction.Length + repeating.Length > _maxDigits) throw new MathParseException("number too long");
        if (repeating.Length > 0)
        {
            // 0.1\overline{6} = 0.1 + 0.0666... = (16 - 1) / 90.
            var whole = BigInteger.Parse(integer + fraction + repeating, NumberStyles.None, CultureInfo.InvariantCulture);
            var head = BigInteger.Parse(integer + fraction, NumberStyles.None, CultureInfo.InvariantCulture);
            var denominator = (BigInteger.Pow(10, repeating.Length) - 1) * BigInteger.Pow(10, fraction.Length);
            return new NumberExpression(NumericValue.Of(new Rational(whole - head, denominator)));
        }

        int exponent = 0;
        if (Peek is 'e' or 'E')
        {
            int e = _pos + 1;
            if (e < _s.Length && _s[e] is '+' or '-') e++;
            int digitsStart = e;
            while (e < _s.Length && char.IsAsciiDigit(_s[e])) e++;
            if (e > digitsStart)
            {
                if (e - digitsStart > 6) throw new MathParseException("exponent too large");
                exponent = int.Parse(_s.AsSpan(_pos + 1, e - _pos - 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
                _pos = e;
            }
        }

        var mantissa = BigInteger.Parse(integer + fraction, NumberStyles.None, CultureInfo.InvariantCulture);
        int scale = exponent - fraction.Length;
        if (System.Math.Abs(scale) > 4000)
        {
            double approx = double.Parse($"{integer}.{(fraction.Length > 0 ? fraction : "0")}e{exponent}", CultureInfo.InvariantCulture);
            return new NumberExpression(NumericValue.Of(approx));
        }
        var power = BigInteger.Pow(10, System.Math.Abs(scale));
        var value = scale >= 0 ? new Rational(mantissa * power) : new Rational(mantissa, power);
        return new NumberExpression(NumericValue.Of(value));
    }
}
