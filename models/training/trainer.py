"""Projection heads trained with symmetric InfoNCE on frozen, cached backbone features (torch).

Why this shape:
- Frozen backbones + cached features: an epoch is a few matrix products, so a catalog of 10,000
  pairs trains in well under a minute on two cores and can be retrained per catalog.
- Small heads (linear, or a 2-layer MLP) because catalogs are small: a few thousand pairs
  over-fit anything larger, and even a linear head over-fits if trained too long (IKEA: text->image
  R@10 0.66 at ~20 epochs, 0.18 at 300). Hence early stopping on validation *products*, with the
  best epoch's weights restored.
- A text head that can be the identity: the image head then maps photos into the multilingual
  e5 text space itself, so text->text search keeps e5's full quality in every language.
- Multi-positive InfoNCE: all images of a product are positives for its text (and any of its
  text views for each image), so two photos of one product are never pushed apart as negatives.
- Reproducible: a fixed seed fixes the initialisation, the batch order, the text view drawn and
  dropout; deterministic algorithms are switched on. Same data + seed + thread count = same heads.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .metrics import normalize, retrieval_metrics
from .pairs import PairData

HEAD_KINDS = ("identity", "linear", "mlp")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the alignment heads; recorded verbatim in the heads manifest."""

    image_head: str = "mlp"         # mlp | linear (IKEA, 2 seeds: MLP +0.03 R@10 text->image, +0.06 zh P@10)
    text_head: str = "identity"     # identity | linear | mlp
    dim: int = 256                  # shared dim when the text head is trained (else = text dim)
    hidden: int = 1024              # MLP hidden width
    dropout: float = 0.1            # MLP dropout
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    epochs_max: int = 200
    patience: int = 10              # epochs without a better validation score before stopping
    min_delta: float = 1e-4
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    seed: int = 0
    # One thread: these matrices are small, and on a shared 2-core machine two OpenMP threads
    # spin-wait each other (measured 0.02 s vs 0.3 s per step under load).
    threads: int = 1
    # Batches made of whole categories (products of one leaf category together), so each product
    # is told apart from its own kind (the white chair from the other chairs), not only from lamps.
    hard_negatives: bool = False

    def __post_init__(self):
        if self.image_head not in ("linear", "mlp"):
            raise ValueError(f"image_head must be linear or mlp, not {self.image_head!r}")
        if self.text_head not in HEAD_KINDS:
            raise ValueError(f"text_head must be one of {HEAD_KINDS}, not {self.text_head!r}")


# --------------------------------------------------------------------------- modules
class Head(nn.Module):
    """L2-normalise -> standardise (fixed stats from training data) -> linear/MLP (or identity).

    The standardisation is a fixed affine map, so export folds it into the first layer.
    """

    def __init__(self, kind: str, in_dim: int, out_dim: int, mean: np.ndarray, std: np.ndarray,
                 hidden: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.kind = kind
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        if kind == "identity":
            self.net = nn.Identity()
        elif kind == "linear":
            self.net = nn.Linear(in_dim, out_dim)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, out_dim))
        else:
            raise ValueError(kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        if self.kind != "identity":
            x = (x - self.mean) / self.std
        return F.normalize(self.net(x), dim=-1)


def feature_stats(x: np.ndarray, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean/std of L2-normalised features (std floored: dead ReLU units)."""
    xn = normalize(x)
    std = xn.std(axis=0)
    return xn.mean(axis=0).astype(np.float32), np.maximum(std, max(floor * float(std.max()), 1e-6)).astype(np.float32)


@dataclass
class HeadParams:
    """A trained head as numpy arrays, standardisation folded in: what export and runtime need.

    layers: [(W [out, in], b [out]), ...] applied to the L2-normalised input; GELU between layers.
    """

    kind: str
    in_dim: int
    out_dim: int
    layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def head_params(head: Head) -> HeadParams:
    """Fold the fixed standardisation into the first layer and return numpy weights."""
    mean, std = head.mean.numpy().astype(np.float64), head.std.numpy().astype(np.float64)
    if head.kind == "identity":
        d = int(mean.shape[0])
        return HeadParams("identity", d, d, [])
    linears = [m for m in head.net.modules() if isinstance(m, nn.Linear)]
    layers = []
    for i, lin in enumerate(linears):
        w = lin.weight.detach().numpy().astype(np.float64)
        b = lin.bias.detach().numpy().astype(np.float64)
        if i == 0:
            w = w / std[None, :]
            b = b - w @ mean
        layers.append((w.astype(np.float32), b.astype(np.float32)))
    return HeadParams(head.kind, linears[0].in_features, linears[-1].out_features, layers)


# --------------------------------------------------------------------------- loss
def multi_positive_infonce(img: torch.Tensor, txt: torch.Tensor, img_to_txt: torch.Tensor,
                           logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where txt rows are the batch's distinct products.

    img [B, D] and txt [U, D] are L2-normalised; img_to_txt[b] is the row of image b's product.
    image->text: ordinary cross-entropy over the U products. text->image: the probability mass
    on *all* of the product's images in the batch (a product with 3 photos has 3 positives).
    With one image per product this is exactly CLIP's loss.
    """
    logits = logit_scale.exp() * img @ txt.T                      # [B, U]
    i2t = F.cross_entropy(logits, img_to_txt)
    lt = logits.T                                                  # [U, B]
    pos = torch.arange(txt.shape[0])[:, None] == img_to_txt[None, :]
    t2i = (torch.logsumexp(lt, dim=1) - torch.logsumexp(lt.masked_fill(~pos, -math.inf), dim=1)).mean()
    return 0.5 * (i2t + t2i)


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    image_head: HeadParams
    text_head: HeadParams
    logit_scale: float
    best_epoch: int
    epochs_run: int
    best_val: dict
    history: list[dict]
    seconds: float
    config: dict

    @property
    def dim(self) -> int:
        return self.image_head.out_dim


def _val_score(metrics_t2i: dict, metrics_i2t: dict) -> float:
    """Early-stopping criterion: mean MRR of both directions (smoother than R@10 on small splits)."""
    return 0.5 * (metrics_t2i["MRR"] + metrics_i2t["MRR"])


def evaluate_pairs(image_vecs: np.ndarray, text_vecs: np.ndarray, data: PairData) -> tuple[dict, dict]:
    """text->image (query = product text, relevant = its images) and image->text metrics."""
    sim = text_vecs @ image_vecs.T                                    # [P, N]
    rel = np.arange(data.n_products)[:, None] == data.image_product[None, :]
    keep = rel.any(axis=1)
    t2i = retrieval_metrics(sim[keep], rel[keep])
    i2t = retrieval_metrics(sim.T, rel.T)
    return t2i, i2t


class _Trainer:
    def __init__(self, train: PairData, cfg: TrainConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        fi, ft = train.image_features.shape[1], train.text_vectors.shape[1]
        dim = ft if cfg.text_head == "identity" else cfg.dim
        mi, si = feature_stats(train.image_features)
        mt, st = feature_stats(train.text_vectors)
        self.image_head = Head(cfg.image_head, fi, dim, mi, si, cfg.hidden, cfg.dropout)
        self.text_head = Head(cfg.text_head, ft, dim, mt, st, cfg.hidden, cfg.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        params = [{"params": list(self.image_head.parameters()) + list(self.text_head.parameters()),
                   "weight_decay": cfg.weight_decay},
                  {"params": [self.logit_scale], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr)
        self.train = train
        self.views = [[] for _ in range(train.n_products)]
        for j, p in enumerate(train.view_product):
            self.views[p].append(j)
        # Each epoch shows every photo once, as itself or as one of its augmented views
        # (uniformly), so an epoch costs the same with or without views.
        n = train.n_pairs
        x = train.image_features
        self.n_choices = np.ones(n, dtype=np.int64)
        self.choices = np.arange(n, dtype=np.int64)[:, None]
        if train.n_views:
            x = np.concatenate([x, train.view_features])
            per = [[i] for i in range(n)]
            for m, i in enumerate(train.view_of):
                per[i].append(n + m)
            self.n_choices = np.array([len(c) for c in per], dtype=np.int64)
            self.choices = np.zeros((n, int(self.n_choices.max())), dtype=np.int64)
            for i, c in enumerate(per):
                self.choices[i, :len(c)] = c
        self.x_img = torch.from_numpy(np.ascontiguousarray(x))
        self.x_txt = torch.from_numpy(train.text_vectors)
        cats = {c: k for k, c in enumerate(sorted(set(train.categories)))}
        self.cat_of_row = np.array([cats[train.categories[p]] for p in train.image_product], dtype=np.int64)
        self.n_cats = len(cats)

    def _batches(self) -> list[np.ndarray]:
        n = self.train.n_pairs
        n_batches = max(1, round(n / self.cfg.batch_size))
        if not (self.cfg.hard_negatives and self.n_cats > 1):
            return np.array_split(self.rng.permutation(n), n_batches)
        rank = self.rng.permutation(self.n_cats)[self.cat_of_row]
        order = np.lexsort((self.rng.random(n), rank))       # categories in random order, rows shuffled within
        batches = np.array_split(order, n_batches)
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def _embed_images(self, rows: np.ndarray) -> torch.Tensor:
        """The image side of a batch: the head on the rows' features (a subclass may put a tower
        in front of the head, as bench/eval_finetune.py does)."""
        return self.image_head(self.x_img[rows])

    def epoch(self) -> float:
        self.image_head.train(), self.text_head.train()
        n = self.train.n_pairs
        pick = (self.choices[np.arange(n), (self.rng.random(n) * self.n_choices).astype(np.int64)]
                if self.train.n_views else np.arange(n))
        total = 0.0
        for idx in self._batches():
            prods = self.train.image_product[idx]
            uniq, inv = np.unique(prods, return_inverse=True)
            views = np.array([self.views[u][self.rng.integers(len(self.views[u]))] for u in uniq])
            img = self._embed_images(pick[idx])
            txt = self.text_head(self.x_txt[views])
            loss = multi_positive_infonce(img, txt, torch.from_numpy(inv.astype(np.int64)), self.logit_scale)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                self.logit_scale.clamp_(0.0, math.log(self.cfg.max_logit_scale))
            total += loss.item() * len(idx)
        return total / n

    def state(self):
        """A copy of everything training moves, to restore the best epoch's."""
        return copy.deepcopy((self.image_head.state_dict(), self.text_head.state_dict(),
                              self.logit_scale.detach().clone()))

    def restore(self, state) -> None:
        self.image_head.load_state_dict(state[0])
        self.text_head.load_state_dict(state[1])
        self.logit_scale.data.copy_(state[2])

    @torch.no_grad()
    def project(self, data: PairData) -> tuple[np.ndarray, np.ndarray]:
        self.image_head.eval(), self.text_head.eval()
        img = self.image_head(torch.from_numpy(data.image_features)).numpy()
        txt = self.text_head(torch.from_numpy(data.first_view())).numpy()
        return img, txt


def train_heads(train: PairData, val: PairData | None, cfg: TrainConfig = TrainConfig(),
                log: Callable[[str], None] | None = None, trainer: "_Trainer | None" = None) -> TrainResult:
    """Train the heads; stop when validation stops improving and return the best epoch's heads.

    Without a validation set the run lasts exactly cfg.epochs_max epochs (use a small number:
    the heads over-fit). Validation queries are the val products' texts and images.
    ``trainer`` (built on ``train``) replaces the plain one, e.g. with a tower in front of the
    image head (:mod:`.finetune`); the loop, early stopping and restore are the same.
    """
    t0 = time.perf_counter()
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    try:
        tr = trainer or _Trainer(train, cfg)
        history: list[dict] = []
        best_score, best_epoch, best_state, best_val = -math.inf, 0, None, {}
        since_best = 0
        for epoch in range(1, cfg.epochs_max + 1):
            loss = tr.epoch()
            row = {"epoch": epoch, "loss": round(loss, 5),
                   "temperature": round(1.0 / tr.logit_scale.detach().exp().item(), 5)}
            if val is not None:
                t2i, i2t = evaluate_pairs(*tr.project(val), val)
                score = _val_score(t2i, i2t)
                row.update(val_score=round(score, 5), val_t2i_R10=round(t2i["R@10"], 4),
                           val_i2t_R10=round(i2t["R@10"], 4))
                if score > best_score + cfg.min_delta:
                    best_score, best_epoch, since_best = score, epoch, 0
                    best_val = {"text_to_image": t2i, "image_to_text": i2t, "score": score}
                    best_state = tr.state()
                else:
                    since_best += 1
            history.append(row)
            if log:
                log(" ".join(f"{k}={v}" for k, v in row.items()))
            if val is not None and since_best >= cfg.patience:
                break
        if best_state is not None:
            tr.restore(best_state)
        else:
            best_epoch = len(history)
        return TrainResult(
            image_head=head_params(tr.image_head), text_head=head_params(tr.text_head),
            logit_scale=float(tr.logit_scale.detach()), best_epoch=best_epoch,
            epochs_run=len(history), best_val=best_val, history=history,
            seconds=time.perf_counter() - t0, config=asdict(cfg))
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
