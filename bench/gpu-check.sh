#!/usr/bin/env bash
# gpu-check.sh — the Cuda backend on a real GPU: the tests of category "Gpu" (every op test and the
# model tests on the Cuda backend, against the same references as Cpu and Emu) and a short kernel
# benchmark (GB/s for memory-bound ops, TFLOP/s for attention with FlashAttention's counting).
# Builds nothing heavy: the tests are a prebuilt OR1.Tests.dll run by its own entry point
# (`dotnet OR1.Tests.dll --gpu-check`, NUnit in-process: no SDK, no network), kernels load from the
# prebuilt PTX next to OR1.Native.dll, or are compiled by NVRTC at run time where there is none.
#
#   bench/gpu-check.sh --pack [FILE]   on a development machine (SDK, cmake; nvcc optional): builds
#                                      Release and writes FILE (default gpu-check-bundle.tar.gz, ~40 MB):
#                                      the test output (Linux x64 only) and a .NET runtime to carry.
#   bench/gpu-check.sh                 on the GPU machine, in the repository root: unpacks the bundle if
#                                      present (or uses tests/OR1.Tests/bin/Release/net10.0 and the
#                                      `dotnet` on PATH), runs the check, writes results to $OUT (the
#                                      device tool's output folder) or bench/gpu-check-results.
#                                      Options after the mode are passed on: --quick, --tests-only, --bench-only.
#   bench/gpu-check.sh --bdn [FILTER]  the BenchmarkDotNet kernel families (bench/OR1.Bench, carried in the
#                                      same bundle) on the GPU backends, quick job, default filter
#                                      '*.Kernels.*'; results (markdown, CSV) under $OUT/bdn. About 1-2 s
#                                      a case: narrow FILTER (e.g. '*Attention*') when device time is short.
# It prints the backend table of `or1 info` first (saved as info.json).
# Exit code 0: a device opened, every backend that starts passed the table's op check, every Gpu test
# passed, the benchmark ran. Finishes in under 8 minutes on an H200 (the test run is bounded by `timeout`).
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
    # The test output without other platforms' native libraries.
    (cd "$built" && tar cf - --exclude='./runtimes/*' .) | (cd "$stage/.gpu-check/tests" && tar xf -)
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
    echo "gpu-check: wrote $bundle ($(du -h "$bundle" | cut -f1)); carry it with the repository and run bench/gpu-check.sh there"
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

# NVRTC and cuBLAS may live outside the loader's path (a CUDA toolkit in /usr/local/cuda, pip wheels).
libdirs=$( (find /usr/local /usr/lib /opt -maxdepth 9 \( -name 'libnvrtc.so*' -o -name 'libcublas.so*' \) 2>/dev/null || true) \
    | grep -v /stubs/ | xargs -r -n1 dirname | sort -u | paste -sd: -)
if [ -n "$libdirs" ]; then
    export OR1_CUDA_LIBRARY_PATH="$libdirs${OR1_CUDA_LIBRARY_PATH:+:$OR1_CUDA_LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
out=${OUT:-$root/bench/gpu-check-results}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/nvidia-smi.txt" || true
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
echo "gpu-check: $dotnet_cmd $tests --gpu-check (CUDA libraries: ${libdirs:-loader default})"
set +e
timeout 450 "$dotnet_cmd" "$tests" --gpu-check --out "$out" "$@" 2>&1 | tee "$out/gpu-check.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 124 ] && echo "gpu-check: stopped after 450 s" >&2
echo "gpu-check: exit $rc; results in $out"
exit "$rc"
