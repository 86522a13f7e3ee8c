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
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .pairs import PairData
from .metrics import normalize
from .trainer import TrainConfig, TrainResult, _Trainer, train_heads

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
    """The trainer's heads, batches, text views and loss, with the cut tower in front of the image
    head; it projects the validation photos from their activations (``val_acts``)."""

    def __init__(self, train: PairData, acts: np.ndarray, val_acts: np.ndarray | None, top, cfg: TrainConfig,
                 tune: TuneConfig):
        super().__init__(train, cfg)
        self.top, self.acts, self.val_acts, self.tune = top, acts, val_acts, tune
        self.opt.add_param_group({"params": [p for p in top.parameters() if p.requires_grad],
                                  "lr": tune.backbone_lr, "weight_decay": cfg.weight_decay})

    def _embed_images(self, rows: np.ndarray):
        import torch

        return self.image_head(self.top(torch.from_numpy(self.acts[rows])))

    def epoch(self) -> float:
        self.top.train()     # its BatchNorms stay frozen (split_mobilenet)
        return super().epoch()

    def state(self):
        return copy.deepcopy(self.top.state_dict()), super().state()

    def restore(self, state) -> None:
        self.top.load_state_dict(state[0])
        super().restore(state[1])

    def project(self, data: PairData) -> tuple[np.ndarray, np.ndarray]:
        if self.val_acts is None or len(self.val_acts) != data.n_pairs:
            raise ValueError("the tower trainer projects the validation photos it was given activations of")
        return super().project(replace(data, image_features=features_of(self.top, self.val_acts, self.tune.chunk)))


def finetune(train: PairData, acts: np.ndarray, val: PairData | None, val_acts: np.ndarray | None, top,
             cfg: TrainConfig, tune: TuneConfig, log: Log | None = None) -> TrainResult:
    """Train ``top`` + the heads jointly with :func:`.trainer.train_heads` (its loop, early stopping on
    ``val`` and restore; without val every epoch up to ``tune.epochs_max``); the best epoch's weights
    end up in ``top``."""
    if train.n_views:
        raise TuneError("fine-tuning takes no augmented views (the cached activations fix each photo's crop)")
    trainer = _TowerTrainer(train, acts, val_acts, top, cfg, tune)
    res = train_heads(train, val, replace(cfg, epochs_max=tune.epochs_max), log, trainer=trainer)
    return replace(res, config={**res.config, "tune": asdict(tune)})


def export_tuned(model, out_dir: Path, pixels: np.ndarray, expected: np.ndarray) -> dict:
    """The whole tuned network as ``out_dir/image.tuned.onnx`` (the tower's two outputs, as the
    build's), checked against the tuned torch features ``expected`` of ``pixels``; returns the record."""
    from ..export import mobilenet
    from ..runtime import onnx_session

    path = Path(out_dir) / TUNED_FILE
    tmp = path.with_suffix(".part.onnx")
    mobilenet.export_onnx(mobilenet.feature_and_logits(model.eval()), tmp)
    got = onnx_session(tmp, 1).run(["feature"], {"pixel_values": np.ascontiguousarray(pixels, np.float32)})[0]
    cos = np.sum(normalize(got) * normalize(expected), axis=1)
    if len(cos) and cos.min() < 0.9999:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"the exported tuned tower disagrees with torch (min cosine {cos.min():.6f})")
    tmp.replace(path)
    return {"parity": {"n": int(len(cos)), "cosine_min": float(cos.min()) if len(cos) else None}}
