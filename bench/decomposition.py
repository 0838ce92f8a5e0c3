"""Covariance calibration + CKPD decomposition of ViT-B/16-sized linears: the reference's way vs ours.

For each layer size (default: attn.proj 768x768, attn.qkv out 2304 x in 768, mlp.fc2 out 768 x in
3072, as in ViT-B/16) and the same calibration activations (default 200 images x 197 tokens), measures
side by side, each variant in a fresh child process:
  (a) reference: the official CKPD-FSCIL code (github.com/xiaojieli0903/CKPD-FSCIL @ 6a390a3,
      `ckpdlib/act_aware_utils.py::calib_cov_distribution` and `ckpdlib/decomposition.py::
      decompose_to_adapter`, which follow CorDA, github.com/iboing/CorDA `cordalib/`), re-written
      here: a forward hook sees one image (batch of 1) per call, scales it by 1/|max|, adds
      X^T X / 256 into a float32 sum; then, in float32, damp = 0.01 and repeat
      {C_f = C + damp * mean(diag C) * I; C_f^-1 = torch.linalg.inv(C_f); stop if
      ||C_f C_f^-1 - I||_F < 0.05, else damp *= 2}, SVD of W C_f, right factor mapped back through
      the explicit C_f^-1, last `rank` directions -> adapter, W_res = W - A B (with the reference's
      NaN/Inf checks);
  (b) ours: `ckpd_core.collect_statistics` (batched hooks: each batch's X^T X in float32, summed in
      float64; batches of 256 images as `ckpd_core.training.calibration_batches` makes them) plus
      `decompose_linear(mode="ckpd")` (float64, Cholesky of C + lambda I, damping raised only if the
      factorisation fails, triangular solves instead of an inverse; for a layer at least twice as
      wide as tall or tall as wide, QR first (Cholesky-QR when accurate) and only the adapter's
      singular vectors formed).
The layer's own forward pass is the model's work, not the method's: both variants need it to
produce the next layer's inputs, so it is timed on its own (each variant at its batch size: one image
per call in the reference, batches in ours) and the method's steps (covariance + decomposition) are
timed by feeding the same activations to each variant's hook through a stand-in module that does
nothing else. Each child runs the forward and then the method's steps twice: the first (cold) run
gives the peak memory, one-time allocations of the libraries included; the second (warm) gives the
time, as every layer after the first of a model sees it (a ViT-B/16 calibrates 36 such layers).
Printed per layer: seconds of the forward, the covariance, the decomposition and the method
(covariance + decomposition), each the fastest of `--repeats` children; ratio a/b; peak memory of
the method's steps and of the forward (VmHWM of the child minus its RSS just before the measured
code, so torch's CPU tensors count; the calibration activations are loaded before that baseline);
the reconstruction error
||W - (W_res + A B)||_F / ||W||_F of the parts each variant stores, before any training; and a
diagnostic "tail error" ||A B C_d - T_r||_F / ||T_r||_F with T_r the last `rank` SVD components of
W C_d computed in float64 with the variant's own damped C_d: the reconstruction error is exact by
construction in both (W_res is defined as W - A B), the tail error shows whether the adapter really
holds the smallest directions (an inaccurate inverse or a float32 SVD moves it off them; where the
small singular values lie closer together than float32's error, much of that is mixing with the
directions just above the rank cut, which carry about as little energy).

Target (issue 7): the method's steps at least 2x faster in ours, with an equal or smaller
reconstruction error. The end-to-end ratio with the layer's forward included is printed beside it.

Inputs are synthetic but shaped like ViT token activations (seeded): a per-channel mean plus
Gaussian tokens with a power-law spectrum in a random basis, a random per-image scale, and GELU for
the MLP hidden activations that fc2 reads; weights have a decaying singular spectrum.

    python bench/decomposition.py                   # ~4 minutes on 2 CPU cores
    python bench/decomposition.py --quick           # smoke run, seconds
    python bench/decomposition.py --images 60 --layers 768x768,768x3072
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ckpd_core import collect_statistics, decompose_linear
from ckpd_core.decomposition import damped_covariance

DEFAULT_LAYERS = "768x768,2304x768,768x3072"  # out x in
LAYER_NAMES = {(768, 768): "attn.proj", (2304, 768): "attn.qkv", (768, 3072): "mlp.fc2"}
SPEED_TARGET = 2.0


# -- the reference variant (a) ------------------------------------------------------------------
class ReferenceCovarianceHook:
    """Per-call float32 Gram sum as the reference hook computes it (one image per call there)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
        x = x / x.max().abs()
        if torch.isnan(x).any() or torch.isinf(x).any():
            raise RuntimeError("NaN/Inf in calibration input")
        gram = x.T @ x
        if torch.isnan(gram).any() or torch.isinf(gram).any():
            raise RuntimeError("NaN/Inf in covariance")
        self.total += gram / 256  # in place after the first call, as in the reference


class InputsOnly(nn.Module):
    """Stands in for the layer while the covariance is timed: its hooks see the layer's inputs and
    nothing else runs, so the time is the covariance work alone (the forward is timed apart)."""

    def forward(self, x: torch.Tensor) -> None:
        return None


def image_batches(acts: torch.Tensor, batch: int) -> list[torch.Tensor]:
    return [acts[i : i + batch] for i in range(0, acts.shape[0], batch)]


@torch.no_grad()
def reference_calibrate(acts: torch.Tensor) -> torch.Tensor:
    probe = InputsOnly()
    hook = ReferenceCovarianceHook()
    probe.register_forward_hook(hook)
    for image in image_batches(acts, 1):  # the reference's calibration loader has batch size 1
        probe(image)
    cov = hook.total
    if torch.isnan(cov).any() or torch.isinf(cov).any():
        raise RuntimeError("NaN/Inf in covariance")
    return cov


@torch.no_grad()
def reference_decompose(
    weight: torch.Tensor, cov: torch.Tensor, rank: int, max_doublings: int = 60
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """(W_res, A, B, C_f, info) in float32, with the explicit inverse recomputed in the damping loop."""
    w = weight.float()
    c = cov.float()
    n = c.shape[0]
    eye = torch.eye(n)
    mean_diag = torch.mean(torch.diag(c))
    damp, inverses = 0.01, 0
    for _ in range(max_doublings):
        inverses += 1
        c_fixed = c + torch.diag(torch.ones(n) * mean_diag * damp)
        c_inv = torch.linalg.inv(c_fixed)
        inv_error = float(torch.dist(c_fixed @ c_inv, eye))
        if inv_error < 0.05:
            break
        damp *= 2
    else:
        raise RuntimeError("damping loop did not converge")
    u, s, vh = torch.linalg.svd(w @ c_fixed, full_matrices=False)
    v = (vh @ c_inv).T  # n x k: right singular vectors mapped back through C_f^-1
    for part in (s, u, v):
        if torch.isnan(part).any() or torch.isinf(part).any():
            raise RuntimeError("NaN/Inf in the SVD factors")
    u_r, s_r, v_r = u[:, -rank:], s[-rank:], v[:, -rank:]
    w_res = w - u_r @ torch.diag(s_r) @ v_r.T
    if torch.isnan(w_res).any() or torch.isinf(w_res).any():
        raise RuntimeError("NaN/Inf in the residual weight")
    root = s_r.sqrt()
    a = (u_r * root).contiguous()  # m x r
    b = (v_r.T * root[:, None]).contiguous()  # r x n
    asr = float(s[-rank:].sum() / s.sum())
    info = {"damping": damp, "inverses": inverses, "inv_error": inv_error, "asr": asr}
    return w_res, a, b, c_fixed, info


# -- our variant (b) ----------------------------------------------------------------------------
def ours_calibrate(acts: torch.Tensor, batch: int) -> torch.Tensor:
    probe = InputsOnly()
    return collect_statistics(probe, {"layer": probe}, image_batches(acts, batch))["layer"]


def ours_decompose(layer: nn.Linear, cov: torch.Tensor, rank: int):
    d = decompose_linear(layer, rank=rank, mode="ckpd", covariance=cov)
    info = {"asr": d.asr}
    return d.weight_res.detach(), d.adapter_a.detach(), d.adapter_b.detach(), info


def ours_damped(cov: torch.Tensor) -> torch.Tensor:
    """The C + lambda I that ``decompose_linear`` used (its default damping), for the accuracy check."""
    return damped_covariance(cov, 0.01)[0]


# -- measurement in a child process -------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); without it the baseline would be wrong."""
    Path("/proc/self/clear_refs").write_text("5")


def tail_error(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c_d: torch.Tensor, rank: int) -> float:
    """How far the stored adapter is from what it should be: ||A B C_d - T_r||_F / ||T_r||_F, where
    T_r is the last ``rank`` SVD components of W C_d (float64, with the variant's own C_d). Unlike
    the reconstruction error (exact by construction, W_res = W - A B) it sees an inaccurate inverse."""
    c64 = c_d.to(torch.float64)
    u, s, vh = torch.linalg.svd(weight.to(torch.float64) @ c64, full_matrices=False)
    tail = (u[:, -rank:] * s[-rank:]) @ vh[-rank:]
    got = a.to(torch.float64) @ (b.to(torch.float64) @ c64)
    return float(torch.linalg.matrix_norm(got - tail) / torch.linalg.matrix_norm(tail))


def _start_peak() -> int:
    gc.collect()
    _reset_peak_rss()
    return _status_kb("VmRSS")


def _peak_mb(base_kb: int) -> float:
    return (_status_kb("VmHWM") - base_kb) / 1024


@torch.no_grad()
def time_forward(layer: nn.Linear, acts: torch.Tensor, batch: int) -> float:
    """Seconds of the layer's own forward over the calibration images, ``batch`` images a call."""
    start = time.perf_counter()
    for images in image_batches(acts, batch):
        layer(images)
    return time.perf_counter() - start


def run_method(variant: str, layer: nn.Linear, acts: torch.Tensor, args: argparse.Namespace):
    """The variant's covariance + decomposition: (seconds of each, (cov, W_res, A, B, C_d, info))."""
    start = time.perf_counter()
    if variant == "reference":
        cov = reference_calibrate(acts)
        mid = time.perf_counter()
        w_res, a, b, c_d, info = reference_decompose(layer.weight, cov, args.rank)
    else:
        cov = ours_calibrate(acts, args.batch)
        mid = time.perf_counter()
        w_res, a, b, info = ours_decompose(layer, cov, args.rank)
        c_d = None
    end = time.perf_counter()
    if c_d is None:
        c_d = ours_damped(cov)  # for the tail error only, after the clock stopped
    times = {"calib_s": mid - start, "decomp_s": end - mid, "method_s": end - start}
    return times, (cov, w_res, a, b, c_d, info)


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    blob = torch.load(args.child_data, weights_only=True)
    weight, bias, acts = blob["weight"], blob["bias"], blob["acts"]
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    layer.requires_grad_(False)
    batch = 1 if args.child == "reference" else args.batch
    base_kb = _start_peak()
    time_forward(layer, acts, batch)  # cold: its peak memory counts one-time allocations too
    forward_mb = _peak_mb(base_kb)
    forward_s = time_forward(layer, acts, batch)  # warm: its time
    base_kb = _start_peak()
    run_method(args.child, layer, acts, args)
    peak_mb = _peak_mb(base_kb)
    gc.collect()
    times, (cov, w_res, a, b, c_d, info) = run_method(args.child, layer, acts, args)
    w64 = weight.to(torch.float64)
    rebuilt = w_res.to(torch.float64) + a.to(torch.float64) @ b.to(torch.float64)
    error = float(torch.linalg.matrix_norm(w64 - rebuilt) / torch.linalg.matrix_norm(w64))
    result = {"forward_s": forward_s, **times, "peak_mb": peak_mb, "forward_mb": forward_mb, "error": error}
    result.update(tail_error=tail_error(weight, a, b, c_d, args.rank), **info)
    print(json.dumps(result))


def measure(variant: str, data: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--child-data", str(data)]
    command += ["--rank", str(args.rank), "--batch", str(args.batch), "--threads", str(args.threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- synthetic ViT-like data --------------------------------------------------------------------
def _orthonormal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=gen))
    return q * torch.sign(torch.diagonal(r))


def make_layer_data(out_f: int, in_f: int, images: int, tokens: int, seed: int, path: Path) -> None:
    """Weight, bias and calibration activations (images x tokens x in_f, float32), saved to ``path``."""
    gen = torch.Generator().manual_seed(seed)
    k = min(out_f, in_f)
    sv = (1 + torch.arange(k, dtype=torch.float32) / 16) ** -0.5  # decaying, like trained weights
    weight = (_orthonormal(out_f, k, gen) * sv) @ _orthonormal(in_f, k, gen).T
    weight = weight * (0.02 * (out_f * in_f) ** 0.5 / weight.norm())  # entries ~ N(0, 0.02^2) scale
    bias = 0.02 * torch.randn(out_f, generator=gen)
    basis = _orthonormal(in_f, in_f, gen)
    spectrum = (1 + torch.arange(in_f, dtype=torch.float32)) ** -1.0  # power-law token covariance
    mean = 0.3 * torch.randn(in_f, generator=gen)
    acts = torch.empty(images, tokens, in_f)
    for i in range(images):  # image by image: keeps the temporaries small
        z = torch.randn(tokens, in_f, generator=gen) * spectrum
        x = (mean + z @ basis.T * 3.0) * torch.exp(0.3 * torch.randn(1, generator=gen))
        acts[i] = torch.nn.functional.gelu(x) if in_f > out_f else x  # fc2 reads GELU outputs
    torch.save({"weight": weight, "bias": bias, "acts": acts}, path)


def parse_layers(text: str) -> list[tuple[int, int]]:
    layers = []
    for item in text.split(","):
        out_f, in_f = (int(v) for v in item.lower().strip().split("x"))
        layers.append((out_f, in_f))
    return layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="calibration images")
    parser.add_argument("--tokens", type=int, default=197, help="tokens per image (ViT-B/16 at 224 px: 197)")
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help="comma-separated OUTxIN sizes")
    parser.add_argument("--rank", type=int, default=128, help="adapter rank (the reference's default)")
    parser.add_argument("--batch", type=int, default=256, help="images per calibration batch in ours")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per variant; fastest kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 12 images, rank 32, 1 repeat")
    parser.add_argument("--child", choices=("reference", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--child-data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.images, args.rank, args.repeats = 12, 32, 1
    layers = parse_layers(args.layers)
    print(
        f"{args.images} calibration images x {args.tokens} tokens, rank {args.rank}, "
        f"{args.threads} torch threads, ours in batches of {args.batch} images, "
        f"fastest of {args.repeats} fresh process(es) per variant; "
        f"load average {os.getloadavg()[0]:.2f} (2 cores: above ~0.5 others share them)"
    )
    header = (
        f"{'layer':22s} {'variant':10s} {'forward s':>9s} {'covar s':>8s} {'decomp s':>9s} {'method s':>9s} "
        f"{'peak MB':>8s} {'fwd MB':>7s} {'rel. error':>10s} {'tail err':>9s}  notes"
    )
    print(header)
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (out_f, in_f) in enumerate(layers):
            label = f"{LAYER_NAMES.get((out_f, in_f), 'linear')} {out_f}x{in_f}"
            data = Path(tmp) / f"layer{index}.pt"
            seed = args.seed * 1_000_003 + out_f * 10_007 + in_f  # the same data whatever --layers holds
            make_layer_data(out_f, in_f, args.images, args.tokens, seed, data)
            runs: dict[str, list[dict]] = {"reference": [], "ours": []}
            for _ in range(args.repeats):  # interleaved, so a busy spell hits both alike
                for variant, got in runs.items():
                    got.append(measure(variant, data, args))
            data.unlink()
            results = {}
            for variant, got in runs.items():  # the fastest repeat of each measured part
                results[variant] = min(got, key=lambda r: r["method_s"])
                results[variant]["forward_s"] = min(r["forward_s"] for r in got)
            for variant, r in results.items():
                notes = f"asr {r['asr']:.4f}"
                if variant == "reference":
                    notes += (
                        f", damping {r['damping']:g} after {r['inverses']} inverse(s), "
                        f"inverse error {r['inv_error']:.3f}"
                    )
                print(
                    f"{label if variant == 'reference' else '':22s} {variant:10s} {r['forward_s']:9.2f} "
                    f"{r['calib_s']:8.2f} {r['decomp_s']:9.2f} {r['method_s']:9.2f} {r['peak_mb']:8.1f} "
                    f"{r['forward_mb']:7.1f} {r['error']:10.2e} {r['tail_error']:9.2e}  {notes}"
                )
            ref, ours = results["reference"], results["ours"]
            times = ("forward_s", "calib_s", "decomp_s", "method_s")
            ratios = [ref[key] / max(ours[key], 1e-9) for key in times]
            ratios += [ref[key] / max(ours[key], 1e-3) for key in ("peak_mb", "forward_mb")]
            print(
                f"{'':22s} {'ratio a/b':10s} {ratios[0]:9.2f} {ratios[1]:8.2f} {ratios[2]:9.2f} "
                f"{ratios[3]:9.2f} {ratios[4]:8.2f} {ratios[5]:7.2f}"
            )
            speedup = ratios[3]
            with_forward = (ref["forward_s"] + ref["method_s"]) / (ours["forward_s"] + ours["method_s"])
            met = speedup >= SPEED_TARGET and ours["error"] <= ref["error"]
            verdicts.append(
                f"{label}: method's steps {speedup:.2f}x faster in ours, error {ref['error']:.2e} vs "
                f"{ours['error']:.2e} (reference vs ours); target >= {SPEED_TARGET:g}x with equal or "
                f"smaller error: {'met' if met else 'NOT met'} (tail error {ref['tail_error']:.2e} vs "
                f"{ours['tail_error']:.2e}; with the layer's forward: {with_forward:.2f}x)"
            )
    for line in verdicts:
        print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
