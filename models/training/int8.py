"""An int8 image tower calibrated on the catalog's own photos, used only where it keeps the bar.

Static int8 quantization needs activation ranges, and ranges measured on synthetic images do
not fit real product photos (the build's int8 lost too much, so the tower runs fp32). At train
time the catalog's photos are at hand: calibrate on some of them, compare int8 with fp32 on
*other* photos of the catalog, and use int8 only when both hold:

- the backbone features agree: cosine >= ``min_cosine`` on every held-out photo, and
- the photo search agrees: each held-out photo's nearest other catalog photo (through the
  trained image head, the way a photo query is answered) belongs to the same product under
  int8 as under fp32 for at least ``min_top1`` of the photos.

The outcome, passed or not, is recorded in the heads manifest (``image_encoder``); when int8
passes, its file sits in the heads directory and is part of the space's identity, so products
and queries are encoded by the same file and an index made with fp32 is never searched with
int8 vectors.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..manifest import entry_variants, sha256_file
from .metrics import normalize

__all__ = ["Int8Gate", "Int8Result", "INT8_FILE", "INT8_VARIANT", "quantize", "parity", "calibrate"]

INT8_FILE = "image.int8.onnx"
INT8_VARIANT = "int8-catalog"


@dataclass(frozen=True)
class Int8Gate:
    """The quality bar int8 must keep on held-out catalog photos, and the photos to use."""

    min_cosine: float = 0.99
    min_top1: float = 0.97
    calibration_photos: int = 128
    held_out_photos: int = 256
    pool_photos: int = 512       # catalog photos the held-out photos are searched among
    # None: min/max ranges. Percentile ranges (slower to collect, ~10x) measured no better on IKEA.
    percentile: float | None = None


@dataclass
class Int8Result:
    used: bool
    record: dict              # what goes into the heads manifest's image_encoder.int8
    path: Path | None = None  # the int8 file (written only when used)


def _kept_fp32(model_path: Path) -> list[str]:
    """Nodes left in fp32: the stem convolution and the last convolution with what follows it.

    The first layer sees raw pixels and the last one writes the feature that everything is
    compared by; keeping both in fp32 measured the best cosine to fp32 (IKEA photos, MobileNetV2)
    at little cost in speed. Found by position, so any backbone of this shape is handled.
    """
    import onnx

    nodes = list(onnx.load(str(model_path)).graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return []
    return [nodes[convs[0]].name] + [n.name for n in nodes[convs[-1]:] if n.op_type != "Constant"]


def quantize(fp32: Path, out: Path, calib: np.ndarray, input_name: str, percentile: float | None = None) -> dict:
    """Static QDQ int8: per-channel int8 weights, uint8 activations (min/max ranges, or a percentile)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, arrays):
            self._it = iter([{input_name: a[None]} for a in arrays])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="cmsearch-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        keep = _kept_fp32(pre)
        method = CalibrationMethod.MinMax if percentile is None else CalibrationMethod.Percentile
        extra = {} if percentile is None else {"CalibPercentile": float(percentile)}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantize_static(str(pre), str(out), Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, extra_options=extra, nodes_to_exclude=keep)
    for leftover in Path.cwd().glob("augmented_model*.onnx"):  # older onnxruntime leaves this behind
        leftover.unlink(missing_ok=True)
    return {"format": "QDQ", "per_channel": True, "activation_type": "QUInt8", "weight_type": "QInt8",
            "calibration": "min/max" if percentile is None else f"percentile {percentile:g}",
            "calibration_photos": int(len(calib)), "fp32_nodes": keep}


def _features(path: Path, space, sources: Sequence, input_name: str, output: str, threads: int,
              batch: int = 32) -> np.ndarray:
    """Features of photos (decoded and preprocessed by the space, a batch at a time) with one ONNX file."""
    from ..runtime import onnx_session

    sess = onnx_session(path, threads)
    out = []
    for i in range(0, len(sources), batch):
        px = np.stack([space.preprocess(space.decode(s)) for s in sources[i:i + batch]])
        out.append(sess.run([output], {input_name: px})[0])
    return normalize(np.concatenate(out)) if out else np.zeros((0, 0), np.float32)


def parity(fp32_feats: np.ndarray, int8_feats: np.ndarray, query_rows: np.ndarray, owner: np.ndarray,
           project: Callable[[np.ndarray], np.ndarray]) -> dict:
    """Feature cosine on the query rows, and top-1 product agreement of photo search.

    ``fp32_feats`` / ``int8_feats`` are the same pool of photos (row-aligned) encoded both ways;
    each query row searches the pool without itself, the pool in the same variant as the query.
    """
    cos = np.sum(normalize(fp32_feats[query_rows]) * normalize(int8_feats[query_rows]), axis=1)
    tops = []
    for feats in (fp32_feats, int8_feats):
        v = project(feats)
        sim = v[query_rows] @ v.T
        sim[np.arange(len(query_rows)), query_rows] = -np.inf
        tops.append(owner[np.argmax(sim, axis=1)])
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "top1_agreement": float(np.mean(tops[0] == tops[1])), "n": int(len(query_rows)),
            "pool": int(len(fp32_feats))}


def calibrate(space, out_dir: Path, calib_pixels: np.ndarray, pool: Sequence, query_rows: np.ndarray,
              pool_owner: np.ndarray, project: Callable[[np.ndarray], np.ndarray], gate: Int8Gate = Int8Gate(),
              threads: int = 2, log: Callable[[str], None] | None = None) -> Int8Result:
    """Quantize the space's fp32 tower on ``calib_pixels``; keep it only if it passes ``gate``.

    ``pool`` are other catalog photos (files or bytes, none of them in the calibration set), of which
    ``query_rows`` are the held-out queries; ``pool_owner`` is each pool photo's product.
    """
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    entry = space.manifest["image"]
    fp32 = space.models_dir / entry_variants(entry)["fp32"]["file"]
    input_name = entry.get("input", "pixel_values")
    output = (entry.get("outputs") or {}).get("feature", "feature")
    bar = {"min_cosine": gate.min_cosine, "min_top1_agreement": gate.min_top1}
    if len(calib_pixels) < 8 or len(query_rows) < 8:
        return Int8Result(False, {"used": False, "reason": f"too few photos to calibrate and check int8 "
                                  f"({len(calib_pixels)} calibration, {len(query_rows)} held-out; need 8 each)",
                                  "bar": bar})
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / INT8_FILE
    tmp = out_dir / (INT8_FILE + ".tmp")
    log(f"int8: calibrating on {len(calib_pixels)} catalog photos ...")
    settings = quantize(fp32, tmp, calib_pixels, input_name, gate.percentile)
    log(f"int8: checking on {len(query_rows)} held-out photos (searched among {len(pool)}) ...")
    f32 = _features(fp32, space, pool, input_name, output, threads)
    i8 = _features(tmp, space, pool, input_name, output, threads)
    par = parity(f32, i8, query_rows, pool_owner, project)
    ok = par["cosine_min"] >= gate.min_cosine and par["top1_agreement"] >= gate.min_top1
    record = {"used": bool(ok), "bar": bar, "parity": par, "quantization": settings,
              "seconds": round(time.perf_counter() - t0, 1)}
    if ok:
        tmp.replace(target)
        record["file"] = INT8_FILE
        record["sha256"] = sha256_file(target)
    else:
        tmp.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        record["reason"] = (f"int8 missed the bar on held-out photos (min cosine {par['cosine_min']:.4f}, "
                            f"top-1 agreement {par['top1_agreement']:.3f}); the fp32 tower is kept")
    log(f"int8: min cosine {par['cosine_min']:.4f}, mean {par['cosine_mean']:.4f}, top-1 agreement "
        f"{par['top1_agreement']:.3f} -> {'used' if ok else 'refused, fp32 kept'} ({record['seconds']}s)")
    return Int8Result(bool(ok), record, target if ok else None)


def pick_photos(n_photos: int, calib: int, held: int, pool: int, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (calibration rows, pool rows, query positions inside the pool)."""
    order = np.random.default_rng(seed).permutation(n_photos)
    c = np.sort(order[:calib])
    rest = order[calib:calib + max(pool, held)]
    q = np.arange(min(held, len(rest)))
    return c, rest, q


__all__ += ["pick_photos"]
