"""``--models`` / ``--heads`` / ``--allow-other-space``, read the same way by every command.

Search, eval and tune ask the index which space made it and load that space's heads from the
registry under the models dir (:mod:`models.heads_registry`), so ``--heads`` is needed only to
point at heads kept somewhere else; ``--heads none`` means no heads for every command alike.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def models_option(fn):
    return click.option("--models", "models_dir", type=click.Path(path_type=Path), default=None,
                        help="Model directory (default: $CMSEARCH_MODELS_DIR or ~/.cache/cmsearch/models).")(fn)


def heads_option(default_help: str):
    return click.option("--heads", "heads_dir", default=None, metavar="DIR|none",
                        help=f"Trained heads directory, or 'none' for no heads (default: {default_help}).")


def space_options(fn):
    """The options of commands that search an index: --models, --heads, --allow-other-space."""
    fn = click.option("--allow-other-space", is_flag=True,
                      help="Search even when the index records another vector space (a warning, not a refusal).")(fn)
    fn = heads_option("the heads the index records, found under <models>/heads/<id>")(fn)
    return models_option(fn)


def index_space(client: Any, index: str) -> Any:
    """The space ``index`` records; None when it records none; ``...`` when the index cannot be read."""
    from opensearchpy.exceptions import NotFoundError

    from models.identity import SpaceIdentity

    try:
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    except NotFoundError:
        return ...
    try:
        return SpaceIdentity.from_mapping(mapping)
    except ValueError:
        return None


def open_space(client: Any, index: str, models_dir: Path | None, heads: str | None, *, ocr: bool = False):
    """(space, ocr reader or None) for searching ``index``: lenient, so what loads is used and the
    rest is said; the heads and fusion weights are the ones the index records."""
    from models.heads_registry import HeadsNotFound, resolve_heads
    from models.manifest import default_models_dir
    from models.space import Space, SpaceError

    mdir = Path(models_dir) if models_dir else default_models_dir()
    recorded = index_space(client, index)
    try:
        if recorded is ...:   # no such index: the searcher says so; load the default space meanwhile
            hdir = resolve_heads(mdir, heads)
        else:
            hdir = resolve_heads(mdir, heads, recorded)
        space = Space.load(mdir, hdir, strict=False,
                           w_img=recorded.w_img if recorded not in (None, ...) else None,
                           w_txt=recorded.w_txt if recorded not in (None, ...) else None)
    except (HeadsNotFound, SpaceError) as exc:
        raise click.ClickException(f"{exc}") from None
    reader = None
    if ocr:
        from models.ocr import OcrReader
        reader = OcrReader().read
    return space, reader


def echo_problems(space: Any) -> None:
    for p in getattr(space, "problems", ()):
        click.echo(f"note: {p}", err=True)
