#!/usr/bin/env python3
"""The two ceilings every other number of the GPU check is read against, measured by PyTorch on the device
itself: device-to-device copy bandwidth (Tensor.copy_ of 1 GiB: what a memory-bound kernel can reach) and
bf16 GEMM throughput (torch.matmul at 8192^3: what cuBLAS gets from the tensor cores). Datasheet peaks are
recorded beside them where the device is known, but the measured ones are the fair ceiling: clocks, power
limits and ECC move the real numbers.

    python3 bench/compare/gpu_roofline.py --out $OUT/torch-roofline.json          # on the GPU machine
    python3 bench/compare/gpu_roofline.py --device cpu --tiny --out /tmp/r.json    # what CI runs

Writes refbench's JSON (see refbench.py and bench/README.md); prints the device, its clocks and each number.
"""
import sys

import torch

import refbench

# Vendor datasheet figures (dense, no sparsity) for the GPUs this project is checked on; matched on the
# name torch reports. Only for reference beside the measured ceilings.
STATED_PEAKS = [
    ("H200", {"bandwidth_gbps": 4800.0, "bf16_tflops": 989.0}),
    ("H100 80GB HBM3", {"bandwidth_gbps": 3350.0, "bf16_tflops": 989.0}),
    ("H100 NVL", {"bandwidth_gbps": 3900.0, "bf16_tflops": 835.0}),
    ("H100 PCIe", {"bandwidth_gbps": 2000.0, "bf16_tflops": 756.0}),
    ("A100-SXM4-80GB", {"bandwidth_gbps": 2039.0, "bf16_tflops": 312.0}),
]


def stated_peaks(name):
    """The datasheet peaks for a device name, or None for a device not in the table."""
    for key, peaks in STATED_PEAKS:
        if key in name:
            return dict(peaks, source="vendor datasheet (dense bf16), matched on %r" % key)
    return None


def copy_bandwidth(report):
    """dst.copy_(src) of 1 GiB (fp32): bytes = 2 x the size (one read, one write), as our Copy row counts."""
    size = (4 << 20) if report.args.tiny else (1 << 30)
    elements = size // 4
    src = torch.full((elements,), 0.5, dtype=torch.float32, device=report.device)
    dst = torch.empty_like(src)
    report.measure("copy", "%d MiB" % (size >> 20), torch.float32, lambda: dst.copy_(src), ours="Copy", key="roofline/copy_1GiB",
                   implementation="Tensor.copy_ (device to device)", nbytes=2.0 * size,
                   bytes_counting="read + written: 2 x %d bytes" % size)


def gemm_throughput(report):
    """torch.matmul of two n x n bf16 matrices: 2 n^3 flops (one multiply and one add per multiply-accumulate)."""
    n = 128 if report.args.tiny else 8192
    a = torch.randn(n, n, device=report.device).to(torch.bfloat16)
    b = torch.randn(n, n, device=report.device).to(torch.bfloat16)
    report.measure("matmul_bf16", "%d^3" % n, torch.bfloat16, lambda: torch.matmul(a, b), key="roofline/matmul_bf16_8192",
                   implementation="torch.matmul",
                   flops=2.0 * n ** 3, flops_counting="2*M*N*K")


def main(argv=None):
    args = refbench.parse_args(__doc__.split("\n\n")[0], argv=argv)
    report = refbench.Report("gpu_roofline.py", args)
    if report.device.type == "cuda" and torch.cuda.is_available():
        report.document["stated_peak"] = stated_peaks(torch.cuda.get_device_name(report.device.index or 0))
    return report.run([copy_bandwidth, gemm_throughput])


if __name__ == "__main__":
    sys.exit(main())
