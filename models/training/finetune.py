"""Fine-tuning MobileNetV2's top blocks with the image head (`cmsearch train --tune-blocks K`).

With many photos per product (Grocery with its shelf photos: 2,712 photos of 81 products),
training blocks K..18 of the tower together with the image head finds products better than the
head alone on the frozen tower; with one photo per product it over-fits and loses (BENCHMARKS.md,
"Fine-tuning the top blocks"). So it is an option, off by default, for catalogs whose own val
set says it pays.

- The cut: everything below block K stays frozen, so its output for a photo never changes; the
  activations *entering* block K are computed once per photo (torch, eval mode, the space's own
  decode and preprocessing), and an epoch is a pass through blocks K..17 and the final 1x1 conv
  only, at 7x7 for K >= 14.
- BatchNorm stays frozen (eval mode, running statistics and affine parameters fixed): batches
  are a few hundred photos of one catalog, often many shots of one product, so batch statistics
  would drift from the ImageNet ones, and the tower would behave differently at query time
  (single photos, running statistics) than in training. Frozen, the cut tower starts exactly
  at the frozen backbone's features.
- The tuned tower becomes part of the catalog's space: :func:`export_tuned` writes the whole
  network (frozen bottom, tuned top, its ImageNet classifier) as one ONNX file into the heads
  folder, which the heads manifest names (``image_encoder``: variant ``tuned-catalog``, file,
  sha256) and :class:`models.space.Space` runs for products and queries alike, so an index built
  with the plain tower is never searched with tuned vectors (the space identity differs).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .pairs import PairData
from .trainer import TrainConfig, TrainResult, _Trainer, _val_score, evaluate_pairs, head_params

LAST_BLOCK = 18   # torchvision MobileNetV2: features[1..17] inverted residuals, features[18] the final 1x1 conv
TUNED_FILE, TUNED_VARIANT = "image.tuned.onnx", "tuned-catalog"

Log = Callable[[str], None]


class TuneError(ValueError):
    """Fine-tuning cannot run with these models or settings (the message says why)."""


@dataclass(frozen=True)
class TuneConfig:
    blocks_from: int = 15         # the first block trained (15: blocks 15-18, 1.5 M parameters)
    backbone_lr: float = 1e-4     # 10x below the head's: the pretrained blocks move slowly
    epochs_max: int = 30
    chunk: int = 256              # photos per forward pass when projecting

    def __post_init__(self):
        if not 1 <= self.blocks_from <= LAST_BLOCK:
            raise ValueError(f"block {self.blocks_from} is outside 1..{LAST_BLOCK} of MobileNetV2's features")


def frozen_batchnorm(module):
    """Every BatchNorm of ``module`` in eval mode with its parameters frozen; returns ``module``."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
    return module


def split_mobilenet(model, k: int):
    """(bottom, top) of a torchvision MobileNetV2 cut before ``features[k]``.

    ``bottom`` maps pixels to the activations entering block ``k`` (frozen, eval mode); ``top``
    maps those activations to the pooled 1280-d feature through blocks k..18, its BatchNorms kept
    in eval mode and frozen even while the rest of it trains. Both share their weights with
    ``model`` (deep-copy first to keep the original), so tuning ``top`` tunes ``model``.
    """
    import torch

    if not 1 <= k <= LAST_BLOCK:
        raise ValueError(f"block {k} is outside 1..{LAST_BLOCK} of MobileNetV2's features")
    bottom = model.features[:k].eval()
    for p in bottom.parameters():
        p.requires_grad_(False)

    class Top(torch.nn.Module):
        def __init__(self, blocks):
            super().__init__()
            self.blocks = blocks
            frozen_batchnorm(self)

        def train(self, mode: bool = True):
            super().train(mode)
            return frozen_batchnorm(self)

        def forward(self, x):
            return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.blocks(x), 1), 1)

    return bottom, Top(model.features[k:])


def activations(bottom, pixels_of: Callable[[str], np.ndarray], keys: Sequence[str], batch: int = 32,
                log: Log | None = None) -> np.ndarray:
    """``bottom``'s output for every photo (``pixels_of(key)`` -> preprocessed [3, H, W]), in order."""
    import torch

    rows, t0, last = [], time.perf_counter(), time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(keys), batch):
            px = np.stack([pixels_of(k) for k in keys[s:s + batch]])
            rows.append(bottom(torch.from_numpy(px)).numpy())
            if log and time.perf_counter() - last >= 5:
                last = time.perf_counter()
                log(f"  activations: {s + len(px)}/{len(keys)} photos ({last - t0:.0f}s)")
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0,), np.float32)


def features_of(net, acts: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``net`` (eval mode, no gradients) applied to ``acts`` in chunks."""
    import torch

    net.eval()
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(np.ascontiguousarray(acts[s:s + chunk]))).numpy()
                               for s in range(0, len(acts), chunk)])


class _TowerTrainer(_Trainer):
    """The trainer's heads, batches, text views and loss, with the cut tower in front of the image head."""

    def __init__(self, train: PairData, acts: np.ndarray, top, cfg: TrainConfig, tune: TuneConfig):
        super().__init__(train, cfg)
        self.top, self.acts, self.tune = top, acts, tune
        self.opt.add_param_group({"params": [p for p in top.parameters() if p.requires_grad],
                                  "lr": tune.backbone_lr, "weight_decay": cfg.weight_decay})

    def _embed_images(self, rows: np.ndarray):
        import torch

        return self.image_head(self.top(torch.from_numpy(self.acts[rows])))

    def epoch(self) -> float:
        self.top.train()     # its BatchNorms stay frozen (split_mobilenet)
        return super().epoch()


def finetune(train: PairData, acts: np.ndarray, val: PairData | None, val_acts: np.ndarray | None, top,
             cfg: TrainConfig, tune: TuneConfig, log: Log | None = None) -> TrainResult:
    """Train ``top`` + the heads jointly with the trainer's early stopping on ``val`` (without val:
    every epoch up to ``tune.epochs_max``); the best epoch's weights are restored into ``top``."""
    import torch

    if train.n_views:
        raise TuneError("fine-tuning takes no augmented views (the cached activations fix each photo's crop)")
    t0 = time.perf_counter()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        tr = _TowerTrainer(train, acts, top, cfg, tune)
        best_score, best_epoch, best_state, since, epochs, history = -math.inf, 0, None, 0, 0, []
        best_val: dict = {}
        for epoch in range(1, tune.epochs_max + 1):
            epochs = epoch
            loss = tr.epoch()
            score, metrics = -float(loss), {}
            if val is not None and val.n_pairs:
                tr.image_head.eval(), tr.text_head.eval()
                with torch.no_grad():
                    vi = tr.image_head(torch.from_numpy(features_of(top, val_acts, tune.chunk))).numpy()
                    vt = tr.text_head(torch.from_numpy(val.first_view())).numpy()
                t2i, i2t = evaluate_pairs(vi, vt, val)
                score, metrics = _val_score(t2i, i2t), {"t2i": t2i, "i2t": i2t}
            history.append({"epoch": epoch, "loss": round(float(loss), 5), "val": round(float(score), 5)})
            if score > best_score + cfg.min_delta:
                best_score, best_epoch, since, best_val = score, epoch, 0, metrics
                best_state = copy.deepcopy((top.state_dict(), tr.image_head.state_dict(),
                                            tr.text_head.state_dict(), tr.logit_scale.detach().clone()))
            else:
                since += 1
            if log:
                log(f"epoch {epoch} loss {loss:.4f} val {score:.4f} ({time.perf_counter() - t0:.0f}s)")
            if val is not None and val.n_pairs and since >= cfg.patience:
                break
        top.load_state_dict(best_state[0])
        tr.image_head.load_state_dict(best_state[1])
        tr.text_head.load_state_dict(best_state[2])
        tr.logit_scale.data.copy_(best_state[3])
        return TrainResult(image_head=head_params(tr.image_head), text_head=head_params(tr.text_head),
                           logit_scale=float(tr.logit_scale.item()), best_epoch=best_epoch, epochs_run=epochs,
                           best_val=best_val, history=history, seconds=time.perf_counter() - t0,
                           config={"tune": {"blocks_from": tune.blocks_from, "backbone_lr": tune.backbone_lr,
                                            "epochs_max": tune.epochs_max}})
    finally:
        torch.set_num_threads(prev_threads)


def export_tuned(model, out_dir: Path, pixels: np.ndarray, expected: np.ndarray) -> dict:
    """The whole tuned network as ``out_dir/image.tuned.onnx`` (the tower's two outputs, as the
    build's), checked against the tuned torch features ``expected`` of ``pixels``; returns the record."""
    from ..export import mobilenet
    from ..runtime import onnx_session

    path = Path(out_dir) / TUNED_FILE
    tmp = path.with_suffix(".part.onnx")
    mobilenet.export_onnx(mobilenet.feature_and_logits(model.eval()), tmp)
    got = onnx_session(tmp, 1).run(["feature"], {"pixel_values": np.ascontiguousarray(pixels, np.float32)})[0]
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    cos = np.sum(unit(got) * unit(expected), axis=1)
    if len(cos) and cos.min() < 0.9999:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"the exported tuned tower disagrees with torch (min cosine {cos.min():.6f})")
    tmp.replace(path)
    return {"parity": {"n": int(len(cos)), "cosine_min": float(cos.min()) if len(cos) else None}}
