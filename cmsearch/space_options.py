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


def open_space(client: Any, index: str, models_dir: Path | None, heads: str | None, *, ocr: bool = False):
    """(space, ocr reader or None) for searching ``index``, as :func:`query_builder.space_for_index`
    loads it; a missing heads set or unreadable models is a usage error, not a traceback."""
    from models.heads_registry import HeadsNotFound
    from models.space import SpaceError
    from query_builder import space_for_index

    try:
        space = space_for_index(client, index, models_dir, heads)
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
