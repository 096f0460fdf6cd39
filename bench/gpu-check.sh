#!/usr/bin/env bash
# gpu-check.sh — one run on a lent GPU (H100/H200, CUDA 13, PyTorch and transformers there; no .NET, no network)
# that tells how far each kernel and the whole step are from the references, in phases with their own time limits
# (8 minutes in all): the device table; the Gpu test category; compute-sanitizer memcheck and racecheck over one
# tiny call per kernel family; this machine's roofline measured by PyTorch (copy of 1 GiB, bf16 GEMM 8192^3); the
# kernels side by side (bench/compare/gpu_cases.json: ours by OR1.Tests.dll, PyTorch's by gpu_kernels.py); the
# whole 1.5B model (a bf16 training step at 16K tokens and 64 x 1K generated tokens, ours and Hugging Face's); the
# proof of path (no GEMM off cuBLAS). bench/compare/gpu_report.py writes gpu-check.json and gpu-check.md.
# Builds nothing heavy: the tests are a prebuilt OR1.Tests.dll run by its own entry point
# (`dotnet OR1.Tests.dll --gpu-check`, NUnit in-process: no SDK, no network), kernels load from the
# prebuilt PTX next to OR1.Native.dll, or are compiled by NVRTC at run time where there is none.
#
#   bench/gpu-check.sh --pack [FILE]   on a development machine (SDK, cmake; nvcc optional): builds
#                                      Release and writes FILE (default gpu-check-bundle.tar.gz, at most 64 MiB):
#                                      the test output (Linux x64 only) and a .NET runtime to carry.
#   bench/gpu-check.sh [--quick]       on the GPU machine, in the repository root: unpacks the bundle if
#                                      present (or uses tests/OR1.Tests/bin/Release/net10.0 and the
#                                      `dotnet` on PATH), runs the phases, writes gpu-check.md, gpu-check.json,
#                                      gpu-check.log and gpu-tests.xml to $OUT (the device tool's output folder)
#                                      or bench/gpu-check-results.
#   bench/gpu-check.sh --bdn [FILTER]  the BenchmarkDotNet kernel families (bench/OR1.Bench, carried in the
#                                      same bundle) on the GPU backends, quick job, default filter
#                                      '*.Kernels.*'; results (markdown, CSV) under $OUT/bdn. About 1-2 s
#                                      a case: narrow FILTER (e.g. '*Attention*') when device time is short.
# The first phase prints the backend table of `or1 info` (every backend: starts or why not, the device's facts, a
# tiny op checked against the Cpu backend).
# Exit code 0: every phase finished in time, every Gpu test passed, the sanitizers found nothing, every kernel
# case ran on our side and no GEMM left cuBLAS (gpu_report.py's "problems" list says what failed otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "${1:-}" = "--pack" ]; then
    bundle=${2:-gpu-check-bundle.tar.gz}
    case "$bundle" in /*) ;; *) bundle="$root/$bundle" ;; esac
    dotnet build tests/OR1.Tests -c Release -nologo -v q
    built=tests/OR1.Tests/bin/Release/net10.0
    [ -f "$built/libor1_emu.so" ] || echo "gpu-check: note: libor1_emu.so was not built (cmake missing?); the GPU check does not need it"
    ls "$built"/kernels/sm_90/*.ptx >/dev/null 2>&1 || echo "gpu-check: note: no prebuilt PTX (nvcc missing): the GPU machine will compile the kernels with NVRTC"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/.gpu-check/tests" "$stage/.gpu-check/dotnet"
    # The test output without other platforms' native libraries (runtimes/<rid>, and the Windows-only msdia140.dll
    # folders of BenchmarkDotNet's disassembler: 3 MiB of the bundle's 64) and the emulator under AddressSanitizer
    # (CI's memcheck of the Emu kernels; the GPU machine runs compute-sanitizer instead).
    (cd "$built" && tar cf - --exclude='./runtimes/*' --exclude='./arm64' --exclude='./amd64' --exclude='./x86' \
        --exclude='./libor1_emu_memcheck.*' .) \
        | (cd "$stage/.gpu-check/tests" && tar xf -)
    [ -d "$built/runtimes/linux-x64" ] && mkdir -p "$stage/.gpu-check/tests/runtimes" && cp -r "$built/runtimes/linux-x64" "$stage/.gpu-check/tests/runtimes/"
    # A runtime-only .NET layout from the SDK's installation: the host, hostfxr and Microsoft.NETCore.App.
    dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
    version=$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" && $2 ~ /^10\./ {v = $2} END {print v}')
    [ -n "$version" ] || { echo "gpu-check: no Microsoft.NETCore.App 10.x runtime found" >&2; exit 1; }
    cp "$dotnet_root/dotnet" "$stage/.gpu-check/dotnet/"
    cp -r "$dotnet_root/host" "$stage/.gpu-check/dotnet/"
    mkdir -p "$stage/.gpu-check/dotnet/shared/Microsoft.NETCore.App"
    cp -r "$dotnet_root/shared/Microsoft.NETCore.App/$version" "$stage/.gpu-check/dotnet/shared/Microsoft.NETCore.App/"
    tar czf "$bundle" -C "$stage" .gpu-check
    # The device tool carries at most 64 MiB with the repository: a bundle above that would be refused on the day
    # the GPU is lent, so it is refused here, where there is time to slim it.
    bytes=$(stat -c %s "$bundle")
    limit=$((64 * 1024 * 1024))
    if [ "$bytes" -gt "$limit" ]; then
        echo "gpu-check: $bundle is $bytes bytes, above the 64 MiB ($limit bytes) a run can carry with the repository;" \
            "the largest parts:" >&2
        (cd "$stage/.gpu-check" && du -ak . | sort -nr | head -12) >&2
        rm -f "$bundle"
        exit 1
    fi
    echo "gpu-check: wrote $bundle ($(du -h "$bundle" | cut -f1), $((bytes * 100 / limit))% of the 64 MiB a run can carry);" \
        "carry it with the repository and run bench/gpu-check.sh there"
    exit 0
fi

# ---------------------------------------------------------------- on the GPU machine
bundle=${OR1_GPU_BUNDLE:-$root/gpu-check-bundle.tar.gz}
if [ -f "$bundle" ] && [ ! -d "$root/.gpu-check" ]; then
    tar xzf "$bundle" -C "$root"
fi
if [ -x "$root/.gpu-check/dotnet/dotnet" ]; then
    dotnet_cmd="$root/.gpu-check/dotnet/dotnet"
    export DOTNET_ROOT="$root/.gpu-check/dotnet"
elif command -v dotnet >/dev/null; then
    dotnet_cmd=$(command -v dotnet)
else
    echo "gpu-check: no .NET runtime: carry the bundle of 'bench/gpu-check.sh --pack' or put dotnet on PATH" >&2
    exit 1
fi
if [ -f "$root/.gpu-check/tests/OR1.Tests.dll" ]; then
    tests="$root/.gpu-check/tests/OR1.Tests.dll"
elif [ -f "$root/tests/OR1.Tests/bin/Release/net10.0/OR1.Tests.dll" ]; then
    tests="$root/tests/OR1.Tests/bin/Release/net10.0/OR1.Tests.dll"
else
    echo "gpu-check: no built OR1.Tests.dll: run 'bench/gpu-check.sh --pack' on a development machine and carry gpu-check-bundle.tar.gz" >&2
    exit 1
fi

python=$(command -v python3 || true)
# NVRTC, cuBLAS and NCCL may live outside the loader's path: a CUDA toolkit in /usr/local/cuda, or PyTorch's pip wheels
# (site-packages/nvidia/*/lib, torch/lib), which may sit in a virtual environment anywhere: python3 says where its
# torch and nvidia packages are without importing them.
python_roots=()
if [ -n "$python" ]; then
    mapfile -t python_roots < <("$python" - 2>/dev/null <<'PY' || true
import importlib.util
for name in ("torch", "nvidia"):
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a broken installation: the directories below still serve
        continue
    for location in (spec.submodule_search_locations or []) if spec else []:
        print(location)
PY
)
fi
libdirs=$( (find /usr/local /usr/lib /opt "${python_roots[@]}" -maxdepth 9 \( -name 'libnvrtc.so*' -o -name 'libcublas.so*' -o -name 'libnccl.so*' \) 2>/dev/null || true) \
    | grep -v /stubs/ | xargs -r -n1 dirname | sort -u | paste -sd: -)
if [ -n "$libdirs" ]; then
    export OR1_CUDA_LIBRARY_PATH="$libdirs${OR1_CUDA_LIBRARY_PATH:+:$OR1_CUDA_LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
out=${OUT:-$root/bench/gpu-check-results}
mkdir -p "$out"
if [ "${1:-}" = "--bdn" ]; then
    filter=${2:-*.Kernels.*}
    echo "gpu-check: BenchmarkDotNet '$filter' on cuda, ilgpu-cuda (CUDA libraries: ${libdirs:-loader default})"
    set +e
    timeout 560 "$dotnet_cmd" "$(dirname "$tests")/OR1.Bench.dll" --quick --backends cuda,ilgpu-cuda \
        --filter "$filter" --artifacts "$out/bdn" 2>&1 | tee "$out/bdn.log" | grep -E '^\||^// \*|Exception'
    rc=${PIPESTATUS[0]}
    set -e
    if grep -q "backend cuda cannot start" "$out/bdn.log" && grep -q "backend ilgpu-cuda cannot start" "$out/bdn.log"; then
        echo "gpu-check: neither cuda nor ilgpu-cuda could start: no GPU cases ran" >&2
        rc=3
    fi
    echo "gpu-check: BenchmarkDotNet exit $rc; results in $out/bdn"
    exit "$rc"
fi

# ---------------------------------------------------------------- the phases, each under its own time limit
# A phase that fails or runs out of time is recorded (phases.jsonl) and the next one still runs; gpu_report.py turns
# everything into gpu-check.json and gpu-check.md. Limits add up to 8 minutes; --quick shortens the measurements.
quick=""
for a in "$@"; do [ "$a" = "--quick" ] && quick="--quick"; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$out/gpu-check.log"
: > "$log"
phase() { # phase NAME LIMIT_SECONDS OUTPUT_FILE COMMAND...: runs it, its output to OUTPUT_FILE and the log
    local name=$1 limit=$2 output=$3 start rc
    shift 3
    echo "gpu-check: phase $name (limit ${limit} s)" | tee -a "$log"
    start=$(date +%s)
    set +e
    timeout --kill-after=10 "$limit" "$@" > "$output" 2>&1
    rc=$?
    set -e
    cat "$output" >> "$log"
    local seconds=$(( $(date +%s) - start )) timed_out=false
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && timed_out=true
    echo "{\"phase\": \"$name\", \"rc\": $rc, \"seconds\": $seconds, \"limit\": $limit, \"timed_out\": $timed_out}" >> "$work/phases.jsonl"
    echo "gpu-check: phase $name: exit $rc after ${seconds} s$([ "$timed_out" = true ] && echo ' (timed out)')" | tee -a "$log"
}
check() { "$dotnet_cmd" "$tests" --gpu-check --out "$work" "$@"; }

phase info 30 "$work/info.txt" check --info-only
phase tests 120 "$work/tests.log" check --tests-only
if command -v compute-sanitizer >/dev/null; then
    # One tiny call per kernel family (category GpuSanitize); a sanitizer error fails the check in gpu_report.py.
    phase memcheck 60 "$work/sanitizer-memcheck.log" compute-sanitizer --tool memcheck --print-limit 20 \
        "$dotnet_cmd" "$tests" --gpu-check --tests-only --where "cat == GpuSanitize" --out "$work/memcheck"
    phase racecheck 40 "$work/sanitizer-racecheck.log" compute-sanitizer --tool racecheck --print-limit 20 \
        "$dotnet_cmd" "$tests" --gpu-check --tests-only --where "cat == GpuSanitize" --out "$work/racecheck"
else
    echo "gpu-check: compute-sanitizer is not on PATH: the memory checks did not run" | tee -a "$log"
fi
if [ -n "$python" ]; then
    phase roofline 25 "$work/roofline.log" "$python" bench/compare/gpu_roofline.py --device cuda --out "$work/roofline.json" --time-limit 20
else
    echo "gpu-check: no python3: the PyTorch side did not run" | tee -a "$log"
fi
phase kernels-ours 55 "$work/kernels-ours.log" check --bench-only $quick
[ -n "$python" ] && phase kernels-torch 55 "$work/kernels-torch.log" "$python" bench/compare/gpu_kernels.py --device cuda \
    --cases bench/compare/gpu_cases.json --out "$work/torch-kernels.json" --time-limit 50 $quick
phase model-ours 70 "$work/model-ours.log" check --model-only $quick
[ -n "$python" ] && phase model-torch 55 "$work/model-torch.log" "$python" bench/compare/gpu_model.py --device cuda \
    --out "$work/torch-model.json" --time-limit 50 $quick
[ -f "$work/gpu-tests.xml" ] && cp "$work/gpu-tests.xml" "$out/"
set +e
if [ -n "$python" ]; then
    "$python" bench/compare/gpu_report.py --work "$work" --out "$out" | tee -a "$log"
    rc=${PIPESTATUS[0]}
else
    rc=5
fi
set -e
echo "gpu-check: exit $rc; results in $out (gpu-check.md, gpu-check.json, gpu-check.log, gpu-tests.xml)"
exit "$rc"
