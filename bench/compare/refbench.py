"""Shared plumbing of the PyTorch reference scripts (gpu_roofline.py, gpu_kernels.py, gpu_model.py).

The scripts run on a lent GPU machine that has PyTorch but no .NET and no network, and in CI on Debian's
PyTorch 1.13 on the CPU at --tiny shapes. So everything here is plain torch and the standard library,
every feature newer than 1.13 is probed rather than assumed, and every record says which implementation
ran. A run never loses what it measured: the JSON file is rewritten after every measurement, and a
--time-limit stops the run cleanly with "timed_out": true.

JSON document (schema "or1-torch-reference/1"):
  schema, script, argv, tiny, started (UTC ISO 8601), elapsed_s, time_limit_s, timed_out,
  software {python, torch, cuda, cudnn, ...}, device {type, name, ...; on CUDA: properties from
  torch.cuda.get_device_properties and nvidia_smi (clocks, power, temperature) when nvidia-smi exists},
  device_after {nvidia_smi} (the clocks again at the end), and measurements: a list of records
  {name, ours, shape, dtype, implementation, ms (median), ms_min, ms_max, repeats, warmup, timer,
   flops + tflops + flops_counting | bytes + gbps + bytes_counting, notes, ...}
  or, for a measurement that could not run, {name, shape, dtype, skipped: reason} or {..., error: message}.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback

import torch

SCHEMA = "or1-torch-reference/1"


class TimeUp(Exception):
    """Raised between measurements once --time-limit has passed, so the script writes what it has and stops."""


def parse_args(description, add_arguments=None, argv=None):
    """The options every reference script takes; add_arguments(parser) adds a script's own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to run (default: cuda when PyTorch sees a GPU)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny shapes that finish in seconds on a CPU and still take every code path")
    parser.add_argument("--out", default=None, help="JSON file to write (default: <script>-<device>.json here)")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="seconds after which no new measurement starts; what was measured is written "
                             "with \"timed_out\": true and the exit code is 0")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 10; 3 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3; 1 with --tiny)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU (default: PyTorch's)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.tiny else 10
    if args.warmup is None:
        args.warmup = 1 if args.tiny else 3
    return args


def short_error(error):
    """The first line of an exception with its type, for a record."""
    text = str(error).strip()
    return "%s: %s" % (type(error).__name__, text.splitlines()[0] if text else "")


def median(values):
    """The median, not the mean: one preempted call on a shared machine should not move the number."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def synchronize(device):
    """Waits for queued GPU work, so host-side clocks and memory statistics see it finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device, warmup, repeats, budget_s):
    """Milliseconds of each of up to `repeats` calls of fn after `warmup` untimed ones.

    On CUDA each call sits between two CUDA events and the host waits once at the end, so the times are
    device times of back-to-back calls (launch gaps an eager op leaves are part of its cost). On the CPU it
    is time.perf_counter around each call. The timed calls are cut so that they fit in budget_s (one at
    least), judged from the warm-up: a 16K-token model step must not overrun --time-limit tenfold. With
    warmup 0 the caller has warmed fn up some other way (a long generate warmed by a short one).
    """
    if warmup > 0:
        started = time.perf_counter()
        for _ in range(warmup):
            fn()
        synchronize(device)
        per_call = (time.perf_counter() - started) / warmup
        if per_call > 0:
            repeats = max(1, min(repeats, int(budget_s / per_call)))
    if device.type == "cuda":
        pairs = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in pairs]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def nvidia_smi(gpu_id=None):
    """Clocks, power and temperature as nvidia-smi reports them (None without nvidia-smi): the GPU's
    clocks move with load and temperature, and a number is only comparable with its clocks beside it."""
    fields = ["name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
              "clocks.applications.graphics", "power.draw", "power.limit", "temperature.gpu", "memory.total",
              "pstate"]
    command = ["nvidia-smi", "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"]
    for selector in ([["-i", gpu_id]] if gpu_id else []) + [[]]:
        try:
            result = subprocess.run(command + selector, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        if result.returncode == 0 and result.stdout.strip():
            values = [v.strip() for v in result.stdout.strip().splitlines()[0].split(",")]
            return dict(zip(fields, values))
    return None


def cuda_properties(index):
    """Every plain attribute of torch.cuda.get_device_properties (the set differs between versions)."""
    props = torch.cuda.get_device_properties(index)
    out = {}
    for key in dir(props):
        if key.startswith("_"):
            continue
        try:
            value = getattr(props, key)
        except Exception:  # noqa: BLE001 - a property that cannot be read on this build is left out
            continue
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif key == "uuid":
            out[key] = str(value)
    try:
        out["clock_rate_mhz_nvml"] = torch.cuda.clock_rate(index)  # needs pynvml; absent is fine
    except Exception:  # noqa: BLE001
        pass
    return out


def gpu_selector(properties):
    """nvidia-smi's -i argument for the device torch uses: its UUID (indices differ under CUDA_VISIBLE_DEVICES)."""
    uuid = properties.get("uuid")
    if not uuid:
        return None
    return uuid if uuid.startswith("GPU-") else "GPU-" + uuid


def cpu_name():
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device):
    """What ran the measurements: name, properties and clocks on a GPU; model and threads on a CPU."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = cuda_properties(index)
        return {"type": "cuda", "index": index, "name": torch.cuda.get_device_name(index),
                "capability": "%d.%d" % torch.cuda.get_device_capability(index),
                "properties": props, "nvidia_smi": nvidia_smi(gpu_selector(props))}
    return {"type": "cpu", "name": cpu_name(), "threads": torch.get_num_threads(), "cores": os.cpu_count()}


def software_info():
    """Versions and the math settings that change results (TF32 for fp32 GEMMs)."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": getattr(torch.version, "cuda", None), "cudnn": None,
            "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32)}
    try:
        info["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch.nn.attention as attention  # noqa: PLC0415 - absent before torch 2.2
        if hasattr(attention, "current_flash_attention_impl"):
            info["flash_attention_impl"] = str(attention.current_flash_attention_impl())
    except Exception:  # noqa: BLE001
        pass
    return info


def rate_fields(ms, flops=None, flops_counting=None, nbytes=None, bytes_counting=None):
    """TFLOP/s (1e12) and GB/s (1e9) from a time, with the counting they came from, as our benchmark has them."""
    out = {}
    if flops is not None:
        out.update(flops=flops, flops_counting=flops_counting)
        if ms:
            out["tflops"] = flops / (ms * 1e-3) / 1e12
    if nbytes is not None:
        out.update(bytes=nbytes, bytes_counting=bytes_counting)
        if ms:
            out["gbps"] = nbytes / (ms * 1e-3) / 1e9
    return out


def dtype_name(dtype):
    """'bfloat16' rather than 'torch.bfloat16'."""
    return str(dtype).replace("torch.", "")


def free_memory(device):
    """Returns cached blocks between measurements so that the next one's peak starts low."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(error):
    """An allocation failure (a RuntimeError before torch 2.0 had OutOfMemoryError)."""
    return "out of memory" in str(error).lower()


class Report:
    """The measurements of one script run, written to JSON after each one."""

    def __init__(self, script, args):
        self.args = args
        self.script = script
        self.device = torch.device(args.device)
        self.started = time.time()
        self.deadline = self.started + args.time_limit
        self.out = args.out or "%s-%s.json" % (os.path.splitext(script)[0], args.device)
        self.records = []
        self.errors = 0
        self.document = {
            "schema": SCHEMA, "script": script, "argv": sys.argv[1:], "tiny": bool(args.tiny),
            "started": datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "elapsed_s": 0.0, "time_limit_s": args.time_limit, "timed_out": False,
            "repeats": args.repeats, "warmup": args.warmup,
            "software": software_info(), "device": None, "measurements": self.records,
        }

    def remaining(self):
        return self.deadline - time.time()

    def check_time(self):
        """Stops the run (TimeUp) once the limit has passed; called before each measurement."""
        if self.remaining() <= 0:
            raise TimeUp()

    def write(self):
        """Rewrites the whole file, so it is valid JSON even if the process is killed afterwards."""
        self.document["elapsed_s"] = round(time.time() - self.started, 3)
        directory = os.path.dirname(os.path.abspath(self.out))
        os.makedirs(directory, exist_ok=True)
        temporary = self.out + ".tmp"
        with open(temporary, "w") as f:
            json.dump(self.document, f, indent=1, default=str)
            f.write("\n")
        os.replace(temporary, self.out)

    def add(self, record):
        """Keeps a record, prints a line of it and writes the file."""
        record.setdefault("side", "torch")  # gpu_report.py pairs it with ours by "key" (bench/compare/gpu_cases.json)
        self.records.append(record)
        print(summary_line(record), flush=True)
        self.write()
        return record

    def skip(self, name, shape, dtype, reason, **extra):
        """A measurement this PyTorch or device cannot make, with the reason, instead of a crash."""
        return self.add(dict(name=name, shape=shape, dtype=dtype_name(dtype) if dtype is not None else None,
                             skipped=reason, **extra))

    def fail(self, name, shape, dtype, error, **extra):
        """A measurement that raised: recorded, counted (exit code 1), and the run goes on."""
        self.errors += 1
        message = short_error(error)
        traceback.print_exc(file=sys.stderr)
        return self.add(dict(name=name, shape=shape, dtype=dtype_name(dtype) if dtype is not None else None,
                             error=message, **extra))

    def measure(self, name, shape, dtype, fn, ours=None, implementation=None, flops=None, flops_counting=None,
                nbytes=None, bytes_counting=None, repeats=None, warmup=None, **extra):
        """Times fn (median of the timed calls after the warm-up) and records it with its rates."""
        self.check_time()
        repeats = self.args.repeats if repeats is None else repeats
        warmup = self.args.warmup if warmup is None else warmup
        try:
            times = time_calls(fn, self.device, warmup, repeats, max(self.remaining(), 0.0))
        except TimeUp:
            raise
        except Exception as error:  # noqa: BLE001 - one failing op must not lose the others
            return self.fail(name, shape, dtype, error, ours=ours, implementation=implementation)
        ms = median(times)
        record = dict(name=name, ours=ours, shape=shape, dtype=dtype_name(dtype) if dtype is not None else None,
                      implementation=implementation, ms=ms, ms_min=min(times), ms_max=max(times),
                      repeats=len(times), warmup=warmup,
                      timer="cuda_events" if self.device.type == "cuda" else "perf_counter")
        record.update(rate_fields(ms, flops, flops_counting, nbytes, bytes_counting))
        record.update(extra)
        if extra.get("tokens") and ms:
            record["tokens_per_s"] = extra["tokens"] / (ms * 1e-3)
        if record.get("check_failed"):
            self.errors += 1  # a fast path that disagrees with the formula it stands for
        return self.add(record)

    def run(self, sections):
        """Runs each section(report) in order, stops at the time limit, writes the file; returns the exit code."""
        if self.device.type == "cuda" and not torch.cuda.is_available():
            self.document["error"] = "--device cuda but torch.cuda.is_available() is False (torch %s)" % torch.__version__
            self.write()
            print(self.document["error"], file=sys.stderr)
            return 2
        if self.args.threads:
            torch.set_num_threads(self.args.threads)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device.index or 0)
        self.document["device"] = device_info(self.device)
        print_device(self.document["device"], self.document["software"])
        self.write()
        try:
            for section in sections:
                self.check_time()
                try:
                    section(self)
                except TimeUp:
                    raise
                except Exception as error:  # noqa: BLE001 - a section that breaks outside a measurement
                    self.fail(section.__name__, None, None, error)
                free_memory(self.device)
        except TimeUp:
            self.document["timed_out"] = True
            print("time limit of %g s reached: stopped, results so far in %s" % (self.args.time_limit, self.out),
                  flush=True)
        if self.device.type == "cuda":
            self.document["device_after"] = {"nvidia_smi": nvidia_smi(gpu_selector(self.document["device"]["properties"]))}
        self.write()
        print("wrote %s (%d measurements, %d errors, %.1f s)" % (self.out, len(self.records), self.errors,
                                                                 time.time() - self.started), flush=True)
        return 1 if self.errors else 0


def print_device(device, software):
    """One or two lines naming the device and its clocks, for the log beside the JSON."""
    print("torch %s (CUDA %s), Python %s" % (software["torch"], software["cuda"], software["python"]))
    if device["type"] == "cuda":
        props = device["properties"]
        print("GPU: %s, sm_%s, %d SMs, %.1f GiB" % (device["name"], device["capability"].replace(".", ""),
                                                    props.get("multi_processor_count", 0),
                                                    props.get("total_memory", 0) / 2 ** 30))
        smi = device.get("nvidia_smi")
        if smi:
            print("clocks: SM %s MHz (max %s), memory %s MHz (max %s); power %s / %s W; %s C; driver %s" % (
                smi.get("clocks.sm"), smi.get("clocks.max.sm"), smi.get("clocks.mem"), smi.get("clocks.max.mem"),
                smi.get("power.draw"), smi.get("power.limit"), smi.get("temperature.gpu"), smi.get("driver_version")))
        else:
            print("clocks: nvidia-smi not available")
    else:
        print("CPU: %s, %d threads" % (device["name"], device["threads"]))
    sys.stdout.flush()


def summary_line(record):
    """A human-readable line per record for the log."""
    head = "%-34s %-48s %-9s" % (record["name"], str(record.get("shape"))[:48], record.get("dtype") or "")
    if "skipped" in record:
        return head + " skipped: " + record["skipped"]
    if "error" in record:
        return head + " ERROR: " + record["error"]
    rate = ""
    if "tflops" in record:
        rate = "%8.1f TFLOP/s" % record["tflops"]
    elif "gbps" in record:
        rate = "%8.0f GB/s" % record["gbps"]
    elif "tokens_per_s" in record:
        rate = "%8.0f tokens/s" % record["tokens_per_s"]
    ms = record["ms"]
    shown = "%10.3f ms" % ms if ms >= 1 else "%10.1f us" % (ms * 1e3)
    return head + shown + " " + rate

