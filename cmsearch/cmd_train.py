"""`cmsearch train CATALOG`: align image and text vectors on a catalog's own image-text pairs.

A thin shell over :func:`models.training.train_catalog.run`; torch is imported only when the command
runs, so the rest of the CLI starts without it.
"""
from __future__ import annotations

from pathlib import Path

import click


def _fields(value: str) -> tuple[str, ...]:
    out = tuple(f.strip() for f in value.split(",") if f.strip())
    if not out:
        raise click.BadParameter("needs at least one field name")
    return out


def _size(value: str) -> float | int:
    v = float(value)
    return int(v) if v >= 1 else v


@click.command()
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--models", "models_dir", type=click.Path(path_type=Path), default=None,
              help="Built models directory (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the heads (default: <models>/heads, recorded in the models manifest).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="Feature cache (default: $CMSEARCH_FEATURE_CACHE or ~/.cache/cmsearch/features).")
@click.option("--text-head", type=click.Choice(["identity", "linear", "mlp"]), default="identity", show_default=True,
              help="identity keeps the e5 text space as the shared space (text search keeps e5 quality).")
@click.option("--image-head", type=click.Choice(["linear", "mlp"]), default="mlp", show_default=True,
              help="2-layer MLP (default) or linear image head.")
@click.option("--dim", default=256, show_default=True, help="Shared dim when the text head is trained.")
@click.option("--epochs-max", default=200, show_default=True, help="Upper bound; early stopping usually ends far sooner.")
@click.option("--patience", default=10, show_default=True, help="Epochs without validation gain before stopping.")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Same data + seed = same heads.")
@click.option("--val", "val_size", default="0.1", show_default=True, callback=lambda c, p, v: _size(v),
              help="Validation products (fraction < 1 or a count) for early stopping.")
@click.option("--test", "test_size", default="0.15", show_default=True, callback=lambda c, p, v: _size(v),
              help="Held-out test products for the printed evaluation (0: train on them too).")
@click.option("--text-fields", default="title,brand,category,description", show_default=True,
              callback=lambda c, p, v: _fields(v),
              help="Fields joined into a product's text; attribute names are allowed.")
@click.option("--extra-view", "extra_views", multiple=True, default=("title", "description", "brand,category"),
              show_default=True,
              callback=lambda c, p, v: tuple(_fields(x) for x in v),
              help="Another text view of each product (fields joined), also a positive for its images. "
                   "Repeatable; giving any replaces the defaults.")
@click.option("--no-extra-views", is_flag=True, help="Train on the --text-fields view only.")
@click.option("--no-classifier", is_flag=True, help="Do not train the image category classifier.")
@click.option("--threads", default=2, show_default=True,
              help="Encoder threads for feature extraction (head training itself uses one thread).")
@click.option("--augment-views", type=click.IntRange(min=0), default=0, show_default=True,
              help="Augmented views (random crop, flip, colour, blur) per training photo, their features "
                   "cached; also positives for the product's text. 0: none.")
@click.option("--image-fit", type=click.Choice(["center_crop", "letterbox"]), default="center_crop",
              show_default=True, help="How photos are fitted to the image tower; recorded in the heads, so "
                                      "ingest and search fit product and query photos the same way.")
@click.option("--hard-negatives", is_flag=True,
              help="Batches of whole categories, so each product is contrasted with its own kind.")
@click.option("--no-refit", is_flag=True,
              help="Keep the heads trained on the training split (default: after the validation split chose "
                   "the epoch count, train again on every product for that many epochs).")
@click.option("--no-int8", is_flag=True,
              help="Do not try an int8 image tower calibrated on the catalog's photos (used only where it "
                   "keeps min cosine >= 0.99 and top-1 agreement >= 0.97 on held-out photos).")
@click.option("--tune-blocks", type=click.IntRange(1, 18), default=None, metavar="K",
              help="Fine-tune MobileNetV2's blocks K..18 with the image head (15 is the measured choice); the "
                   "tuned tower is written with the heads and becomes part of the catalog's space. Off by "
                   "default: it pays with many photos per product and loses with one.")
@click.option("--quiet", is_flag=True, help="Only the summary, evaluation and progress, not every epoch.")
def train(catalog: Path, models_dir: Path | None, out_dir: Path | None, cache_dir: Path | None, text_head: str,
          image_head: str, dim: int, epochs_max: int, patience: int, batch_size: int, lr: float, seed: int,
          val_size, test_size, text_fields, extra_views, no_extra_views: bool, no_classifier: bool, threads: int,
          augment_views: int, image_fit: str, hard_negatives: bool, no_refit: bool, no_int8: bool,
          tune_blocks: int | None, quiet: bool) -> None:
    """Train projection heads (and a category classifier) on CATALOG's image-text pairs.

    Every product image and text is encoded once and cached, so retraining takes seconds.
    Prints the evaluation on held-out products against an untrained head.
    """
    from models.heads_registry import register_heads
    from models.manifest import default_models_dir
    from models.space import SpaceError
    from models.training.classifier import ClassifierConfig
    from models.training.models_manifest import record_heads
    from models.training.pairs import NotEnoughPairs
    from models.training.augment import AugmentConfig
    from models.training.finetune import TuneConfig, TuneError
    from models.training.int8 import Int8Gate
    from models.training.progress import throttled
    from models.training.train_catalog import TrainingConfig, run
    from models.training.trainer import TrainConfig

    models_dir = Path(models_dir or default_models_dir())
    out_dir = Path(out_dir or models_dir / "heads")
    cfg = TrainingConfig(
        views=(text_fields,) if no_extra_views else (text_fields, *extra_views), val=val_size, test=test_size,
        train=TrainConfig(image_head=image_head, text_head=text_head, dim=dim, batch_size=batch_size, lr=lr,
                          epochs_max=epochs_max, patience=patience, seed=seed, hard_negatives=hard_negatives),
        classifier=None if no_classifier else ClassifierConfig(seed=seed),
        split_seed=seed, augment=AugmentConfig(views=augment_views), image_fit=image_fit,
        refit=not no_refit, int8=None if no_int8 else Int8Gate(),
        tune=None if tune_blocks is None else TuneConfig(blocks_from=tune_blocks))

    try:
        manifest = run(catalog, models_dir, out_dir, cfg, cache_dir=cache_dir, log=click.echo,
                       encoder_threads=threads, epoch_log=throttled(click.echo, 10.0) if quiet else click.echo)
    except NotEnoughPairs as exc:
        raise click.ClickException(f"refusing to train: {exc}") from None
    except (SpaceError, TuneError) as exc:
        raise click.ClickException(str(exc)) from None
    recorded = record_heads(models_dir, out_dir, manifest)
    if recorded:
        click.echo(f"recorded the heads in {recorded}")
    # kept by identity: an index made with these heads records their digest, and search, eval
    # and tune find them there without --heads
    click.echo(f"registered the heads as {register_heads(models_dir, out_dir)}")
