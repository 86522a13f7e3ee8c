"""Training speed: projection heads on 10,000 image-text pairs at the real dims (1280 / 384).

Prints seconds per epoch and the projected time for a typical early-stopped run; asserts nothing.
The pairs are synthetic (a shared latent per product plus noise): this measures speed only, never
quality.  Usage: python bench/bench_training.py [--pairs 10000] [--epochs 20] [--head mlp|linear]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import numpy as np

from models.training.pairs import PairData, split_products
from models.training.trainer import TrainConfig, train_heads


def synthetic(n_products: int, images_per_product: int, seed: int = 0) -> PairData:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_products, 32))
    owner = np.repeat(np.arange(n_products), images_per_product)
    img = np.maximum(z[owner] @ rng.normal(size=(32, 1280)) + 6 * rng.normal(size=(len(owner), 1280)), 0)
    txt = z @ rng.normal(size=(32, 384)) + 6 * rng.normal(size=(n_products, 384))
    cats = [("Top", f"Leaf{c}") for c in np.argmax(z[:, :6], axis=1)]
    return PairData(img.astype(np.float32), owner, txt.astype(np.float32), np.arange(n_products),
                    [f"p{i}" for i in range(n_products)], cats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--head", choices=["mlp", "linear"], default=None, help="image head (default: TrainConfig's)")
    args = ap.parse_args()
    data = synthetic(args.pairs // 2, 2)
    split = split_products(data.products_with_images(), val=300, test=0, seed=0)
    cfg = replace(TrainConfig(), epochs_max=args.epochs, patience=10 ** 6)
    if args.head:
        cfg = replace(cfg, image_head=args.head)
    t0 = time.perf_counter()
    res = train_heads(data.subset(split.train), data.subset(split.val), cfg)
    per_epoch = (time.perf_counter() - t0) / res.epochs_run
    print(f"machine: {platform.node()} cores={os.cpu_count()} date={time.strftime('%Y-%m-%d')} runs=1")
    print(f"pairs (train) {data.subset(split.train).n_pairs}, image head {cfg.image_head}, text head {cfg.text_head}")
    print(f"seconds per epoch {per_epoch:.2f}; 40 epochs (a typical early stop) ≈ {40 * per_epoch:.0f} s "
          f"(target: under 120 s)")


if __name__ == "__main__":
    main()
