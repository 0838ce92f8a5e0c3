"""One paper-scale CKPD trial on a CUDA GPU: seconds and peak GPU memory of every session.

The trial settings are those of a paper spec (default search_spaces/paper/variants.yaml, peft_mode
ckpd): the official recipe, i.e. CLIP ViT-B/16 at 224 px, candidates qkv / proj / fc2 of all 12
blocks, rank 128, top-6 layers by ASR, 1000 steps per incremental session of 32 images and 32
feature maps, float32 (``--precision bf16`` to compare). Data: the spec's benchmark under --data-root, or,
when none is given, a synthetic dataset written in the real on-disk format (distinct JPEGs of
CUB-like size, so decoding costs what it would). Weights: --checkpoint FILE, else random (timings
do not depend on them). On a machine without CUDA it prints why and exits.

    python bench/paper_trial.py                                  # synthetic CUB-200, 3 sessions
    python bench/paper_trial.py --data-root /data/fscil --sessions 11 --checkpoint vit_b16_clip.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ckpd_core import TrialConfig, run_trial
from ckpd_core.data.fake import write_cub200, write_mini_imagenet
from sweeps.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "search_spaces" / "paper" / "variants.yaml"
FAKE_WRITERS = {
    "cub200": lambda root: write_cub200(root, image_size=300, distinct=True),
    "mini_imagenet": lambda root: write_mini_imagenet(root, image_size=84, distinct=True),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="paper spec whose trial: settings are used")
    parser.add_argument("--peft-mode", default="ckpd")
    parser.add_argument("--data-root", help="dataset folder; default: write a synthetic one to a temp dir")
    parser.add_argument("--checkpoint", help="backbone weights (.pth / .safetensors); default: random")
    parser.add_argument("--sessions", type=int, default=3, help="sessions to run, base included")
    parser.add_argument("--base-epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, help="steps per incremental session (default: the spec's)")
    parser.add_argument("--precision", help="fp32 / bf16 / fp16 (default: the spec's)")
    return parser.parse_args()


def config_for(args: argparse.Namespace, data_root: str) -> TrialConfig:
    values = dict(load_spec(args.spec).trial)
    values.update(
        peft_mode=args.peft_mode,
        data_root=data_root,
        pretrained=False,
        backbone_checkpoint=args.checkpoint,
        base_epochs=args.base_epochs,
        benchmark_kwargs={**values.get("benchmark_kwargs", {}), "num_sessions": args.sessions},
    )
    values.update({k: v for k, v in (("steps", args.steps), ("precision", args.precision)) if v is not None})
    return TrialConfig.from_dict(values)


def report(row: dict) -> None:
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"session {row['session']:2d}  {row['seconds']:8.1f} s  peak GPU memory {peak:6.2f} GiB  "
        f"acc_all {row['acc_all']:.3f}  adapted {row['n_adapted']}  trainable {row['trainable_params']}",
        flush=True,
    )
    torch.cuda.reset_peak_memory_stats()


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        print("paper_trial.py needs a CUDA GPU (none found): skipped")
        return
    benchmark = load_spec(args.spec).trial.get("benchmark", "cub200")
    with tempfile.TemporaryDirectory(prefix="ckpd-paper-") as scratch:
        data_root = args.data_root
        if data_root is None:
            start = time.perf_counter()
            FAKE_WRITERS[benchmark](Path(scratch))
            data_root = scratch
            print(f"synthetic {benchmark} written in {time.perf_counter() - start:.1f} s", flush=True)
        config = config_for(args, data_root)
        print(
            f"{torch.cuda.get_device_name()}: {config.backbone}, {config.benchmark}, rank {config.rank}, "
            f"top_n {config.top_n}, {config.steps} steps, {config.precision}, neck {config.neck}, "
            f"weights {args.checkpoint or 'random'}",
            flush=True,
        )
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = run_trial(config, on_session=report)
        print(f"total {time.perf_counter() - start:.1f} s; last_acc {result.summary['last_acc']:.3f}")


if __name__ == "__main__":
    main()
