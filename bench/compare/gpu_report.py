#!/usr/bin/env python3
"""gpu_report.py - the GPU check's report: merges what each phase of bench/gpu-check.sh left in its work folder
into gpu-check.json (every figure, with the device) and gpu-check.md (the tables).

Inputs (any may be missing: a phase that did not run or ran out of time is reported as such, never as clean):
  phases.jsonl             one {"phase", "rc", "seconds", "limit", "timed_out"} per phase (gpu-check.sh)
  info.txt                 `or1 info`-style device table printed by the check (raw text)
  gpu-tests.xml            NUnit results of the Gpu test category
  sanitizer-memcheck.log   compute-sanitizer --tool memcheck over the GpuSanitize subset
  sanitizer-racecheck.log  compute-sanitizer --tool racecheck over the same
  roofline.json            PyTorch's copy_ of 1 GiB and bf16 matmul 8192^3 (gpu_roofline.py)
  torch-kernels.json       PyTorch's side of bench/compare/gpu_cases.json (gpu_kernels.py)
  ours-kernels.json        ours (dotnet OR1.Tests.dll --gpu-check --bench-only)
  torch-model.json         Hugging Face Qwen2 step and generate (gpu_model.py)
  ours-model.json          ours (--model-only)
Record files hold a JSON array of records, or an object with a "records" array; a record has at least "key" and
"side", and the figures it measured: "ms", "gbps", "tflops", "tokens_per_s", "peak_bytes" (see
tests/OR1.Tests/GpuCheck/GpuCheckRecord.cs). Records of the two sides with the same key are the same work.

Usage: gpu_report.py --work DIR --out DIR
Plain Python 3 (no third-party modules): it runs on the GPU machine as it is and in CI on synthetic inputs.
"""
import argparse
import json
import os
import re
import sys
import xml.etree.ElementTree as ElementTree

ROOFLINE_COPY = "roofline/copy_1GiB"
ROOFLINE_GEMM = "roofline/matmul_bf16_8192"


# The rollout engine's log-probs may differ from the trainer's by at most this much per token on average (bf16 on a GPU).
MISMATCH_GOAL = 1e-3


def read_records(path):
    """The records of a side's JSON file: [] when the file is missing; an "error" record when it is unreadable."""
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return [{"key": "error/" + os.path.basename(path), "side": "?", "error": f"unreadable: {e}"}]
    device = None
    if isinstance(data, dict):
        if isinstance(data.get("device"), dict):
            device = data["device"].get("name")  # refbench.py's documents name the device once, at the top
        data = data.get("records", data.get("measurements", []))
    records, seen = [], set()
    for r in data:
        if not isinstance(r, dict):
            continue
        if "key" not in r:
            # A PyTorch-only row (no case of gpu_cases.json): kept as context under its own name.
            key = "%s/%s/%s" % (r.get("side", "torch"), r.get("name", "?"), r.get("dtype") or "")
            n = 2
            while key in seen:
                key = "%s/%s/%s#%d" % (r.get("side", "torch"), r.get("name", "?"), r.get("dtype") or "", n)
                n += 1
            r = dict(r, key=key)
        seen.add(r["key"])
        if device and not r.get("device"):
            r = dict(r, device=device)
        if "peak_bytes" not in r and r.get("peak_memory_bytes") is not None:
            r = dict(r, peak_bytes=r["peak_memory_bytes"])
        records.append(r)
    return records


def read_phases(path):
    """phases.jsonl: the phases in the order they ran."""
    if not os.path.exists(path):
        return []
    phases = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    phases.append(json.loads(line))
                except ValueError:
                    phases.append({"phase": "?", "error": f"unreadable line: {line[:80]}"})
    return phases


def read_tests(path):
    """Pass/fail/skip counts and the failed tests' names from NUnit's result XML."""
    if not os.path.exists(path):
        return {"status": "not run"}
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        return {"status": "unreadable", "error": str(e)}
    counts = {k: int(root.get(k, "0")) for k in ("passed", "failed", "skipped", "inconclusive", "total")}
    failed = [c.get("fullname") for c in root.iter("test-case") if c.get("result") == "Failed"]
    status = "failed" if counts["failed"] else ("passed" if counts["passed"] else "nothing passed")
    return dict(counts, status=status, failed_tests=failed[:50])


def read_sanitizer(path, tool):
    """compute-sanitizer's verdict: clean only when its summary says 0 errors; unsupported devices said so."""
    if not os.path.exists(path):
        return {"tool": tool, "status": "not run"}
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if re.search(r"not supported|unsupported device|Device not supported", text, re.IGNORECASE):
        return {"tool": tool, "status": "unsupported", "detail": first_line_matching(text, r"support")}
    summary = re.search(r"(ERROR|RACECHECK) SUMMARY:\s*(\d+)", text)
    if not summary:
        return {"tool": tool, "status": "no summary (interrupted?)", "detail": text.strip().splitlines()[-1:] if text.strip() else []}
    errors = int(summary.group(2))
    # Kernel names follow "at " or "in " on the sanitizer's report lines.
    kernels = sorted(set(re.findall(r"(?:at|in) (?:0x[0-9a-f]+ in )?([A-Za-z_][A-Za-z0-9_]*(?:_bf16|_f32|_d\d+)?)\(", text)))
    return {"tool": tool, "status": "clean" if errors == 0 else "errors", "errors": errors, "kernels": kernels[:30]}


def first_line_matching(text, pattern):
    for line in text.splitlines():
        if re.search(pattern, line, re.IGNORECASE):
            return line.strip()
    return ""


def rate(record):
    """The record's throughput figure and its unit: TFLOP/s, GB/s or tokens/s."""
    for field, unit in (("tflops", "TFLOP/s"), ("gbps", "GB/s"), ("tokens_per_s", "tokens/s")):
        if record.get(field) is not None:
            return record[field], unit
    return None, ""


def pair(ours, torch, roofline):
    """Ours and PyTorch's records side by side, keyed; percentages against this machine's measured roofline."""
    by_key = {}
    for side, records in (("ours", ours), ("torch", torch)):
        for r in records:
            by_key.setdefault(r["key"], {})[side] = r
    rows = []
    for key, sides in by_key.items():
        o, t = sides.get("ours"), sides.get("torch")
        any_side = o or t
        row = {
            "key": key,
            "name": any_side.get("name", key),
            "shape": any_side.get("shape", ""),
            "dtype": any_side.get("dtype", ""),
            "counting": (o or {}).get("counting") or (t or {}).get("counting"),
            "ours": o,
            "torch": t,
        }
        ours_rate, unit = rate(o) if o else (None, "")
        torch_rate, torch_unit = rate(t) if t else (None, "")
        if ours_rate and torch_rate and unit == torch_unit:
            row["ratio_to_torch"] = ours_rate / torch_rate
        ceiling = roofline.get("gbps") if unit == "GB/s" else roofline.get("tflops") if unit == "TFLOP/s" else None
        if ours_rate and ceiling:
            row["ours_percent_of_roofline"] = 100 * ours_rate / ceiling
        if torch_rate and ceiling and torch_unit == unit:
            row["torch_percent_of_roofline"] = 100 * torch_rate / ceiling
        if o is None:
            row["missing"] = "ours"
        elif t is None and not key.startswith("ours/"):
            row["missing"] = "torch"
        if o is None and key.startswith("torch/"):
            row.pop("missing", None)  # PyTorch-only context, not a case
        rows.append(row)
    return rows


def roofline_of(records):
    """This machine's measured copy bandwidth (GB/s) and bf16 GEMM rate (TFLOP/s) from PyTorch's roofline records."""
    result = {}
    for r in records:
        if isinstance(r.get("device"), dict):
            r = dict(r, device=r["device"].get("name"))
        if r["key"] == ROOFLINE_COPY and r.get("gbps"):
            result["gbps"] = r["gbps"]
        if r["key"] == ROOFLINE_GEMM and r.get("tflops"):
            result["tflops"] = r["tflops"]
        for field in ("device", "clocks"):
            if r.get(field):
                result[field] = r[field]
    return result


def proof_of_path(ours_kernels, ours_model):
    """Which GEMMs did not run on cuBLAS, and the launches and synchronisations of one training step."""
    builtin = sum((r.get("counters") or {}).get("builtin_gemms", 0) for r in ours_kernels + ours_model)
    gemms = sum((r.get("counters") or {}).get("gemms", 0) for r in ours_kernels + ours_model)
    step = next((r for r in ours_model if r["key"].startswith("model/train_step")), None)
    result = {"gemms": gemms, "builtin_gemms": builtin, "cublas_only": gemms > 0 and builtin == 0}
    if step and step.get("counters"):
        result["train_step"] = step["counters"]
    return result


def fmt(value, digits=1):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def figure(record):
    if not record:
        return "", ""
    if record.get("error"):
        return "error", ""
    if record.get("skipped"):
        return "skipped", ""
    value, unit = rate(record)
    ms = record.get("ms")
    return (f"{ms:.3f}" if ms is not None else ""), (f"{value:.1f} {unit}" if value is not None else "")


def markdown(report):
    lines = [f"# GPU check: {report.get('device') or 'unknown device'}", ""]
    if report.get("info"):
        lines += ["```", report["info"].rstrip(), "```", ""]
    lines += ["## Phases", "", "| phase | status | seconds | limit |", "| --- | --- | ---: | ---: |"]
    for p in report["phases"]:
        status = "timed out" if p.get("timed_out") else ("ok" if p.get("rc") == 0 else f"exit {p.get('rc')}")
        lines.append(f"| {p.get('phase')} | {status} | {fmt(p.get('seconds'), 0)} | {fmt(p.get('limit'), 0)} |")
    t = report["tests"]
    lines += ["", "## Correctness", "",
              f"Gpu tests: {t.get('status')}" + (f" ({t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped)" if "passed" in t else "")]
    for name in t.get("failed_tests", []):
        lines.append(f"- failed: {name}")
    for s in report["sanitizer"]:
        detail = f", {s['errors']} errors in {', '.join(s.get('kernels') or []) or 'see the log'}" if s.get("status") == "errors" else ""
        lines.append(f"- compute-sanitizer {s['tool']}: {s['status']}{detail}")
    r = report["roofline"]
    lines += ["", "## Roofline of this machine (measured by PyTorch in this run)", "",
              f"copy {fmt(r.get('gbps'), 0)} GB/s, bf16 GEMM {fmt(r.get('tflops'))} TFLOP/s" if r else "not measured"]
    for title, rows in (("Kernels", report["kernels"]), ("Whole model", report["model"])):
        lines += ["", f"## {title}", "",
                  "| key | shape | dtype | ours ms | ours | torch ms | torch | ours / torch | ours % roofline |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in rows:
            ours_ms, ours_rate = figure(row["ours"])
            torch_ms, torch_rate = figure(row["torch"])
            ratio = fmt(row.get("ratio_to_torch"), 2) or ("missing: " + row["missing"] if row.get("missing") else "")
            peak = ""
            if row["ours"] and row["ours"].get("peak_bytes"):
                peak = f" (peak {row['ours']['peak_bytes'] / 2**30:.1f} GiB"
                if row["torch"] and row["torch"].get("peak_bytes"):
                    peak += f" vs {row['torch']['peak_bytes'] / 2**30:.1f} GiB"
                peak += ")"
            lines.append(f"| {row['key']} | {row['shape']} | {row['dtype']} | {ours_ms} | {ours_rate}{peak} | {torch_ms} | {torch_rate} | "
                         f"{ratio} | {fmt(row.get('ours_percent_of_roofline'), 0)} |")
    for row in report["model"]:
        ours = row["ours"] or {}
        if ours.get("logprob_mismatch_tokens"):
            lines += ["", f"On-policy ({row['key']}): the engine's log-probs against the trainer's forward over "
                          f"{ours['logprob_mismatch_tokens']} tokens: mean |diff| {ours['logprob_mismatch_mean']:.3g}, "
                          f"max {ours['logprob_mismatch_max']:.3g} (goal: mean at most {MISMATCH_GOAL:g})"]
    p = report["proof_of_path"]
    lines += ["", "## Proof of path", "",
              f"GEMMs {p['gemms']}, of which on the builtin kernel (not cuBLAS): {p['builtin_gemms']}"]
    if p.get("train_step"):
        lines.append("One training step: " + ", ".join(f"{k} {v}" for k, v in p["train_step"].items()))
    return "\n".join(lines) + "\n"


def build(work):
    j = lambda name: os.path.join(work, name)
    roofline_records = read_records(j("roofline.json"))
    roofline = roofline_of(roofline_records)
    ours_kernels, torch_kernels = read_records(j("ours-kernels.json")), read_records(j("torch-kernels.json"))
    # PyTorch's 1 GiB copy of the roofline is the torch side of the copy case.
    torch_kernels += [dict(r, key="copy/1GiB") for r in roofline_records if r["key"] == ROOFLINE_COPY]
    ours_model, torch_model = read_records(j("ours-model.json")), read_records(j("torch-model.json"))
    info = open(j("info.txt"), encoding="utf-8", errors="replace").read() if os.path.exists(j("info.txt")) else ""
    return {
        "device": roofline.get("device") or first_line_matching(info, r"cuda|nvidia|H100|H200") or None,
        "info": info,
        "phases": read_phases(j("phases.jsonl")),
        "tests": read_tests(j("gpu-tests.xml")),
        "sanitizer": [read_sanitizer(j("sanitizer-memcheck.log"), "memcheck"), read_sanitizer(j("sanitizer-racecheck.log"), "racecheck")],
        "roofline": roofline,
        "kernels": pair(ours_kernels, torch_kernels, roofline),
        "model": pair(ours_model, torch_model, {}),
        "proof_of_path": proof_of_path(ours_kernels, ours_model),
    }


def verdict(report):
    """0 when every phase finished, the tests passed, no sanitizer found an error and every case ran on our side."""
    problems = []
    if any(p.get("timed_out") for p in report["phases"]):
        problems.append("a phase ran out of time")
    if report["tests"].get("status") != "passed":
        problems.append(f"Gpu tests: {report['tests'].get('status')}")
    problems += [f"{s['tool']}: {s['errors']} errors" for s in report["sanitizer"] if s.get("status") == "errors"]
    problems += [f"{row['key']}: {row['ours']['error']}" for row in report["kernels"] + report["model"] if row["ours"] and row["ours"].get("error")]
    problems += [f"{row['key']}: engine vs trainer log-probs differ by {row['ours']['logprob_mismatch_mean']:.3g} on average (goal {MISMATCH_GOAL:g})"
                 for row in report["model"] if row["ours"] and (row["ours"].get("logprob_mismatch_mean") or 0) > MISMATCH_GOAL]
    if report["proof_of_path"]["builtin_gemms"]:
        problems.append(f"{report['proof_of_path']['builtin_gemms']} GEMMs ran on the builtin kernel")
    return problems


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, help="the folder the phases wrote to")
    parser.add_argument("--out", required=True, help="where gpu-check.json and gpu-check.md go")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.work):
        print(f"gpu_report.py: --work {args.work} is not a folder", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    report = build(args.work)
    report["problems"] = verdict(report)
    with open(os.path.join(args.out, "gpu-check.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "gpu-check.md"), "w", encoding="utf-8") as f:
        f.write(markdown(report))
        if report["problems"]:
            f.write("\n## Problems\n\n" + "\n".join(f"- {p}" for p in report["problems"]) + "\n")
    print(f"gpu_report.py: wrote gpu-check.json and gpu-check.md to {args.out}; " +
          ("no problems" if not report["problems"] else "problems: " + "; ".join(report["problems"])))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
