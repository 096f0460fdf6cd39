namespace OR1.Grpo.Rewards.Code;

/// <summary>
/// The Python side of the call-based, LeetCode and assert formats (stdin/stdout programs run bare). The
/// harness reads a nonce line and a JSON spec from stdin, points the solution's stdout at stderr, runs
/// solution.py and the test, and writes one verdict line "NONCE {json}" to the original stdout, then exits
/// with os._exit(0). Exceptions propagate (traceback on stderr, exit 1: a runtime error); a program that
/// exits early (sys.exit, os._exit, ctypes) leaves no verdict and fails. This guards against accidents, not
/// against a solution that inspects the harness on purpose: it shares the interpreter with the tests, as in
/// the reference implementation; the sandbox is what contains it.
/// </summary>
internal static class PythonHarness
{
    public const string FileName = "harness.py";
    public const string SolutionFile = "solution.py";

    public const string Source = """
        import io, json, linecache, math, os, sys, traceback


        def _or1_run():
            nonce = sys.stdin.readline().strip()
            spec = json.loads(sys.stdin.read())
            sys.stdin = io.StringIO("")
            report_fd = os.dup(1)
            os.dup2(2, 1)

            def report(status, detail=""):
                try:
                    sys.stdout.flush()
                except Exception:
                    pass
                line = nonce + " " + json.dumps({"status": status, "detail": str(detail)[:2000]}) + "\n"
                os.write(report_fd, line.encode("utf-8", "replace"))
                os._exit(0)

            def short(value, limit=300):
                try:
                    text = repr(value)
                except Exception:
                    text = "<unprintable>"
                return text if len(text) <= limit else text[: limit - 3] + "..."

            def failed_line(error):
                frames = traceback.extract_tb(error.__traceback__)
                line = (frames[-1].line or "") if frames else ""
                message = str(error)
                return line + (": " + message if message else "")

            def compiled(text, name, mode="exec"):
                # Registered with linecache so that tracebacks and failed asserts show the source line.
                linecache.cache[name] = (len(text), None, text.splitlines(True), name)
                return compile(text, name, mode)

            with open("solution.py", encoding="utf-8") as f:
                source = f.read()
            kind = spec["format"]
            namespace = {"__name__": "__main__" if kind in ("leetcode", "assert") else "solution", "__builtins__": __builtins__}
            code = compile(source, "solution.py", "exec")

            if kind == "leetcode":
                prefix = spec.get("import_prefix") or ""
                if prefix:
                    exec(compiled(prefix, "import_prefix"), namespace)
                exec(code, namespace)
                exec(compiled(spec["test_code"], "test_code"), namespace)
                entry = spec["entry_point"]
                target = eval(compiled(entry, "entry_point", "eval"), namespace)
                try:
                    namespace["check"](target)
                except AssertionError as error:
                    report("fail", "check(" + entry + ") failed: " + failed_line(error))
                report("pass")

            if kind == "assert":
                exec(code, namespace)
                for index, case in enumerate(spec["asserts"]):
                    try:
                        exec(compiled(case, "assert_case[%d]" % index), namespace)
                    except AssertionError as error:
                        report("fail", "assert_case[%d] failed: %s" % (index, case.strip()[:300]))
                report("pass")

            if kind == "call":
                exec(code, namespace)
                name = spec["fn_name"]
                solution = namespace.get("Solution")
                if isinstance(solution, type) and hasattr(solution, name):
                    function = getattr(solution(), name)
                elif callable(namespace.get(name)):
                    function = namespace[name]
                else:
                    report("missing", "the code defines no function or Solution method '%s'" % name)
                given = spec["input"]
                if isinstance(given, list):
                    args = given
                elif isinstance(given, str):
                    args = []
                    for text in given.split("\n"):
                        if text.strip():
                            try:
                                args.append(json.loads(text))
                            except ValueError:
                                args.append(text)
                else:
                    args = [given]
                expected = spec["output"]
                if isinstance(expected, str):
                    try:
                        expected = json.loads(expected)
                    except ValueError:
                        pass
                result = function(*args)
                try:
                    plain = json.loads(json.dumps(result))
                except (TypeError, ValueError, RecursionError):
                    plain = result

                def equal(a, b):
                    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                    if isinstance(a, list) and isinstance(b, list):
                        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
                    if isinstance(a, dict) and isinstance(b, dict):
                        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
                    return a == b

                if equal(plain, expected) or (isinstance(expected, list) and len(expected) == 1 and equal(plain, expected[0])):
                    report("pass")
                report("fail", "expected %s, got %s" % (short(expected), short(plain)))

            report("missing", "unknown test format %r" % kind)


        _or1_run()

        """;
}
