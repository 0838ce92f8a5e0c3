"""Peak memory and time of the PyTorch selective scan's forward+backward, chunked against unchunked.

Chunked = the sequence is scanned in chunks that are recomputed in backward (only chunk-start states
are kept); unchunked = one piece, every step's state kept for backward. The inputs follow the Mamba
neck's SS2D call: grouped B/C (4 directions), D, delta_bias and softplus, float32. On CUDA the default
is the paper's size (batch 64, 1024 channels, 196 tokens, d_state 256); without CUDA a CPU-feasible
size is the default (the paper's unchunked scan would need tens of GB there). Each variant runs in
its own process so that peak memory is measured cleanly (CUDA: max allocated; CPU: peak RSS).

    python bench/selective_scan.py                                   # default size for this machine
    python bench/selective_scan.py --batch 8 --channels 256 --chunks 14 7 28
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

PAPER = dict(batch=64, channels=1024, length=196, d_state=256)
CPU_DEFAULT = dict(batch=4, channels=256, length=196, d_state=64)


def make_inputs(spec: dict, device: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed(0)
    b, d, length, n, g = spec["batch"], spec["channels"], spec["length"], spec["d_state"], spec["groups"]

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, device=device) * scale).requires_grad_()

    return dict(
        u=rand(b, d, length),
        delta=rand(b, d, length, scale=0.5),
        A=(-torch.rand(d, n, generator=gen, device=device) * 3).requires_grad_(),
        B=rand(b, g, n, length),
        C=rand(b, g, n, length),
        D=rand(d),
        delta_bias=rand(d, scale=0.5),
    )


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def worker(spec: dict) -> dict:
    """Run one variant: the first forward+backward gives the peak memory, the next ones the time."""
    from ckpd_core.models.selective_scan import selective_scan

    device = spec["device"]
    tiny = dict(spec, batch=1, channels=spec["groups"], length=2, d_state=2)
    selective_scan(
        **make_inputs(tiny, device), chunk_size=1, backend="pytorch"
    ).sum().backward()  # lazy inits
    inputs = make_inputs(spec, device)

    def step() -> None:
        selective_scan(
            **inputs, delta_softplus=True, chunk_size=spec["chunk"], backend="pytorch"
        ).sum().backward()
        for t in inputs.values():
            t.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = current_rss()
    try:
        step()
    except torch.OutOfMemoryError:
        return {"error": "out of memory"}
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_bytes": peak}


def run_variant(spec: dict) -> dict:
    # A fixed mmap threshold makes glibc return every large freed block at once, so peak RSS tracks
    # the tensors alive instead of heap left over from earlier chunks.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "worker failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch", type=int)
    parser.add_argument("--channels", type=int)
    parser.add_argument("--length", type=int, help="tokens (L)")
    parser.add_argument("--d-state", type=int)
    parser.add_argument("--groups", type=int, default=4, help="B/C groups (the neck's scan directions)")
    parser.add_argument("--chunks", type=int, nargs="+", help="chunk sizes to compare (default: sqrt(L))")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the first (best is shown)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    base = PAPER if args.device == "cuda" else CPU_DEFAULT
    size = {k: getattr(args, k) or v for k, v in base.items()}
    paper = size == PAPER
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    note = "paper size" if paper else "NOT the paper size (64, 1024, 196, 256)"
    if not paper and args.device == "cpu" and size == CPU_DEFAULT:
        note += ": a CPU-feasible default, no CUDA here"
    print(
        f"batch {size['batch']}, channels {size['channels']}, L {size['length']}, d_state {size['d_state']}, "
        f"groups {args.groups} ({note})"
    )
    full = size["batch"] * size["channels"] * size["length"] * size["d_state"] * 4
    print(f"one (batch, channels, L, d_state) float32 tensor: {full / 2**20:.0f} MiB")
    chunks = args.chunks or [max(1, math.isqrt(size["length"]))]
    rows = [("unchunked", size["length"])] + [("chunked", c) for c in chunks]
    results = []
    for name, chunk in rows:
        spec = dict(size, groups=args.groups, chunk=chunk, repeats=args.repeats, device=args.device)
        results.append((name, chunk, run_variant(spec)))
    reference = results[0][2]
    header = ("variant", "chunk", "fwd+bwd s", "peak MiB", "time ratio", "mem ratio")
    print("{:10s} {:>5s} {:>10s} {:>9s} {:>10s} {:>9s}".format(*header))
    for name, chunk, res in results:
        if "error" in res:
            print(f"{name:10s} {chunk:5d} {res['error']}")
            continue
        ratios = ("", "")
        if "error" not in reference:
            ratios = (
                f"{res['seconds'] / reference['seconds']:.2f}",
                f"{res['peak_bytes'] / reference['peak_bytes']:.3f}",
            )
        print(
            f"{name:10s} {chunk:5d} {res['seconds']:10.3f} {res['peak_bytes'] / 2**20:9.0f} "
            f"{ratios[0]:>10s} {ratios[1]:>9s}"
        )
    print("ratios: chunked / unchunked (time ratio > 1 is the cost of recomputation)")


if __name__ == "__main__":
    main()
