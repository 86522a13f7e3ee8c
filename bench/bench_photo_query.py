"""Photo query encode time, fp32 vs int8 calibrated on the catalog's own photos (issue 12, item 5).

Quantizes the image tower on ``--calibration`` photos of a catalog (what `cmsearch train` does),
checks it on other photos of the same catalog against the gate (min cosine, top-1 agreement of
photo search among the checked photos), and times one photo query at a time on ``--threads``
threads: decode, preprocess (the space's fit), tower fp32 / int8, and the whole
``Space.embed_query`` with each tower.

With ``--spin``, instead: the whole query (photo, text, text + photo) through ``Space.embed_query``
with real heads (``--heads``), the shipped sessions (:mod:`models.runtime`) against the same models
reopened as before (pool workers left spinning after each run, heads on ``--threads`` threads).

Usage: python bench/bench_photo_query.py --catalog W/ikea.jsonl [--models DIR] [--threads 2]
       python bench/bench_photo_query.py --catalog W/ikea.jsonl --spin --heads H [--rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models.space import Space
from models.training.catalog import read_catalog
from models.training.int8 import INT8_FILE, INT8_VARIANT, Int8Gate, _features, quantize
from models.training.metrics import normalize


def _median_ms(fn, items, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        for it in items:
            t = time.perf_counter()
            fn(it)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibration", type=int, default=128)
    ap.add_argument("--check", type=int, default=200)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--fit", default="center_crop")
    ap.add_argument("--spin", action="store_true", help="the whole query: shipped sessions vs spinning ones")
    ap.add_argument("--heads", type=Path, default=None, help="heads for --spin (default: none)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    if args.spin:
        return _spin(args)
    products, _ = read_catalog(args.catalog)
    photos = [i for p in products for i in p.images]
    owner = np.array([k for k, p in enumerate(products) for _ in p.images])
    if len(photos) < args.calibration + args.check:
        print(f"skipped: {args.catalog} has {len(photos)} photos, fewer than {args.calibration + args.check}",
              file=sys.stderr)
        return 2
    order = np.random.default_rng(0).permutation(len(photos))
    calib, check = order[:args.calibration], order[args.calibration:args.calibration + args.check]
    space = Space.load(args.models, None, threads=args.threads, image_fit=args.fit)
    entry = space.manifest["image"]
    fp32 = space.models_dir / entry["variants"]["fp32"]["file"]
    gate = Int8Gate()
    with tempfile.TemporaryDirectory(prefix="cmsearch-bench-int8-") as tmp:
        int8 = Path(tmp) / INT8_FILE
        t0 = time.perf_counter()
        px = np.stack([space.preprocess(space.decode(photos[i])) for i in calib])
        settings = quantize(fp32, int8, px, entry.get("input", "pixel_values"), gate.percentile)
        t_quant = time.perf_counter() - t0
        srcs = [photos[i] for i in check]
        f32 = _features(fp32, space, srcs, entry.get("input", "pixel_values"), "feature", args.threads)
        i8 = _features(int8, space, srcs, entry.get("input", "pixel_values"), "feature", args.threads)
        cos = np.sum(f32 * i8, axis=1)
        own = owner[check]
        tops = []
        for f in (f32, i8):
            sim = normalize(f) @ normalize(f).T
            np.fill_diagonal(sim, -np.inf)
            tops.append(own[np.argmax(sim, axis=1)])
        agree = float(np.mean(tops[0] == tops[1]))
        print(f"int8 ({settings['calibration']}, {len(calib)} calibration photos, {t_quant:.1f}s): on {len(check)} "
              f"held-out photos cosine mean {cos.mean():.4f} min {cos.min():.4f}; raw-feature top-1 agreement "
              f"{agree:.3f} -> gate (min cosine >= {gate.min_cosine}, top-1 >= {gate.min_top1}): "
              f"{'PASS' if cos.min() >= gate.min_cosine and agree >= gate.min_top1 else 'FAIL'}")

        blobs = [Path(photos[i]).read_bytes() for i in check[:args.queries]]
        decoded = [space.decode(b) for b in blobs]
        pixels = [space.preprocess(im)[None] for im in decoded]
        rows = {"decode (JPEG bytes -> RGB)": _median_ms(space.decode, blobs),
                f"preprocess ({space.image_fit})": _median_ms(space.preprocess, decoded)}
        heads = {}
        for variant, path in (("fp32", fp32), (INT8_VARIANT, int8)):
            hd = Path(tmp) / f"heads-{variant}"
            hd.mkdir()
            tower = {"fit": space.image_fit, "variant": variant}
            if variant != "fp32":
                (hd / INT8_FILE).write_bytes(path.read_bytes())
                tower.update(file=INT8_FILE)
            heads[variant] = _bare_heads(hd, space, tower)
            sp = Space.load(args.models, hd, threads=args.threads)
            enc = sp._part("image")
            enc.encode_arrays(pixels[0])  # warm-up
            rows[f"tower {variant}, batch 1"] = _median_ms(enc.encode_arrays, pixels, repeat=2)
            sp.embed_query(images=[blobs[0]])
            rows[f"whole photo query (decode + preprocess + tower + head), {variant}"] = _median_ms(
                lambda b: sp.embed_query(images=[b]), blobs, repeat=2)
    print(f"\nphoto query encode, median ms over {len(blobs)} photos x 2, {args.threads} threads")
    for k, v in rows.items():
        print(f"  {k:<70} {v:7.2f}")
    print(f"  {'tower int8 / fp32 speed-up':<70} {rows['tower fp32, batch 1'] / rows[f'tower {INT8_VARIANT}, batch 1']:7.2f}x")
    return 0


def _spin(args) -> int:
    """The shipped sessions against the ones before (pool workers left spinning after each run,
    heads on ``--threads`` threads), two spaces in one process, alternated round by round."""
    products, _ = read_catalog(args.catalog)
    shown = [p for p in products if p.images][:args.queries]
    blobs = [Path(p.images[0]).read_bytes() for p in shown]
    texts = [p.title or p.id for p in shown]
    spaces = {"shipped": Space.load(args.models, args.heads, threads=args.threads, image_fit=args.fit),
              "spinning": _spinning(Space.load(args.models, args.heads, threads=args.threads, image_fit=args.fit),
                                    args.threads)}
    kinds = {"photo": lambda sp, i: sp.embed_query(images=[blobs[i]]),
             "text": lambda sp, i: sp.embed_query(texts[i]),
             "text + photo": lambda sp, i: sp.embed_query(texts[i], images=[blobs[i]])}
    for sp in spaces.values():
        for i in range(min(10, len(shown))):    # warm-up: sessions, arenas
            sp.embed_query(texts[i], images=[blobs[i]])
    print(f"whole query (Space.embed_query), {len(shown)} queries per kind, {args.threads} threads, "
          f"heads {args.heads or 'none'}; ms median / p99")
    print(f"  {'sessions':<12} {'round':>5}  " + "  ".join(f"{k:>15}" for k in kinds))
    for r in range(args.rounds):
        for name, sp in spaces.items():
            cells = []
            for fn in kinds.values():
                times = []
                for i in range(len(shown)):
                    t = time.perf_counter()
                    fn(sp, i)
                    times.append((time.perf_counter() - t) * 1000)
                cells.append(f"{statistics.median(times):6.2f} / {float(np.percentile(times, 99)):6.2f}")
            print(f"  {name:<12} {r + 1:>5}  " + "  ".join(cells), flush=True)
    return 0


def _spinning(space, threads: int):
    """``space`` with every session reopened as before models.runtime: workers spin on after a run."""
    import onnxruntime as ort

    def reopen(sess, n):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = n, 1
        return ort.InferenceSession(sess._model_path, so, providers=["CPUExecutionProvider"])

    space.open_all()
    image, text, heads = space._part("image"), space._part("text"), space._part("heads")
    image.session = reopen(image.session, threads)
    text._session = reopen(text._session, threads)
    for graph in filter(None, (heads._image, heads._text, heads._classifier) if heads else ()):
        graph.session = reopen(graph.session, threads)
    return space


def _bare_heads(d: Path, space, tower: dict) -> Path:
    """A heads directory with an identity-sized random image head, for timing only."""
    from models.training.export import write_heads
    from models.training.trainer import HeadParams

    rng = np.random.default_rng(0)
    fi, ft = space.dims.image_feature, int(space.manifest["text"]["dim"])
    img = HeadParams("mlp", fi, ft, [(rng.normal(size=(1024, fi)).astype(np.float32), np.zeros(1024, np.float32)),
                                     (rng.normal(size=(ft, 1024)).astype(np.float32), np.zeros(ft, np.float32))])
    write_heads(d, image_head=img, text_head=HeadParams("identity", ft, ft, []), image_feature_dim=fi, text_dim=ft,
                image_encoder=tower)
    return d


if __name__ == "__main__":
    sys.exit(main())
