"""Image category classifier: a linear softmax layer on frozen image features (torch).

The query builder boosts the categories a photo most likely shows, so a photo of oat milk ranks
oat milks first even where nearest-neighbour image similarity is fooled by a similar carton.
One classifier over *leaf* category paths serves every level: the run-time side sums leaf
probabilities per ancestor ("top" level, depth 2, ...), so levels never contradict each other.
Like the projection heads it stops early on validation images and is reproducible from its seed.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .pairs import PairData
from .trainer import Head, HeadParams, feature_stats, head_params

SEP = " > "


@dataclass(frozen=True)
class ClassifierConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    batch_size: int = 256
    epochs_max: int = 200
    patience: int = 10
    seed: int = 0
    threads: int = 1   # see TrainConfig.threads


@dataclass
class ClassifierResult:
    params: HeadParams
    categories: list[str]         # leaf paths "A > B > C", one per output
    best_epoch: int
    epochs_run: int
    best_val: dict
    seconds: float
    config: dict


def leaf_labels(data: PairData, categories: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(category list, label per image row; -1 where the product's category is not in the list)."""
    paths = [SEP.join(c) for c in data.categories]
    if categories is None:
        categories = sorted({paths[p] for p in np.unique(data.image_product) if paths[p]})
    index = {c: i for i, c in enumerate(categories)}
    labels = np.array([index.get(paths[p], -1) for p in data.image_product], dtype=np.int64)
    return categories, labels


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """Share of rows whose label is in the top k; label -1 (unknown class) counts as a miss."""
    order = np.argsort(-probs, axis=1, kind="stable")
    out = {}
    for k in ks:
        hit = (order[:, :k] == labels[:, None]).any(axis=1)
        out[f"top{k}"] = float(hit.mean()) if len(labels) else float("nan")
    out["n"] = int(len(labels))
    return out


class _Classifier(nn.Module):
    """normalise -> standardise (fixed training statistics) -> linear logits."""

    def __init__(self, in_dim: int, n_classes: int, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, x):
        return self.linear((F.normalize(x, dim=-1) - self.mean) / self.std)


def train_classifier(train: PairData, val: PairData | None, cfg: ClassifierConfig = ClassifierConfig(),
                     log=None) -> ClassifierResult | None:
    """Train on the train products' images; None when the catalog has fewer than 2 categories."""
    t0 = time.perf_counter()
    categories, y = leaf_labels(train)
    if len(categories) < 2:
        return None
    keep = y >= 0
    feats, labels = train.image_features[keep], y[keep]
    if train.n_views:  # augmented views are more examples of their photo's category
        vk = keep[train.view_of]
        feats = np.concatenate([feats, train.view_features[vk]])
        labels = np.concatenate([labels, y[train.view_of[vk]]])
    x = torch.from_numpy(np.ascontiguousarray(feats))
    y_t = torch.from_numpy(labels)
    vx = vy = None
    if val is not None and val.n_pairs:
        _, vy = leaf_labels(val, categories)
        vx = torch.from_numpy(val.image_features)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        mean, std = feature_stats(train.image_features[keep])
        model = _Classifier(x.shape[1], len(categories), mean, std)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_epoch, best_state, best_val, since = -math.inf, 0, None, {}, 0
        epochs = 0
        for epoch in range(1, cfg.epochs_max + 1):
            epochs = epoch
            model.train()
            order = rng.permutation(len(y_t))
            for idx in np.array_split(order, max(1, round(len(order) / cfg.batch_size))):
                loss = F.cross_entropy(model(x[idx]), y_t[idx], label_smoothing=cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if vx is None:
                continue
            model.eval()
            with torch.no_grad():
                probs = torch.softmax(model(vx), dim=-1).numpy()
            acc = topk_accuracy(probs, vy)
            score = acc["top1"] + 0.5 * acc["top5"]
            if log:
                log(f"classifier epoch={epoch} val_top1={acc['top1']:.4f} val_top5={acc['top5']:.4f}")
            if score > best + 1e-6:
                best, best_epoch, best_val, since = score, epoch, acc, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since += 1
                if since >= cfg.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = epochs
        # Express the classifier as a one-layer HeadParams (standardisation folded in).
        head = Head("linear", x.shape[1], len(categories), mean, std)
        head.net.load_state_dict(model.linear.state_dict())
        return ClassifierResult(head_params(head), categories, best_epoch, epochs, best_val,
                                time.perf_counter() - t0, asdict(cfg))
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
