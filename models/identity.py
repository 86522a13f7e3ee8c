"""What made a set of vectors: the identity of one space, small enough to live in an index's ``_meta``.

Two sets of vectors can only be compared when the same encoder files, the same heads and the
same fusion weights made them. Dimensions alone do not tell: another catalog's heads, a
retrained set or a forgotten ``--heads`` all give vectors of the right size in the wrong place.
So the space that ingest used is written into the index mapping's ``_meta`` and checked by
ingest (before adding to the index) and by search (before asking it anything).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

__all__ = ["SpaceIdentity", "SpaceMismatch", "META_KEY", "digest", "heads_digest"]

META_KEY = "cmsearch_space"   # key of the identity inside the index mapping's _meta
FORMAT = 1


class SpaceMismatch(RuntimeError):
    """Vectors of one space would be mixed with, or searched against, vectors of another."""


def digest(obj: Any, n: int = 12) -> str:
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:n]


def heads_digest(heads_manifest: Mapping[str, Any]) -> str:
    """The heads' identity: the hashes of their graph files (the only thing that shapes vectors)."""
    files = heads_manifest.get("files") or {}
    return digest({"files": sorted(files.items()),
                   "text_head": (heads_manifest.get("text_head") or {}).get("kind"),
                   "image_head": (heads_manifest.get("image_head") or {}).get("kind")}, 16)


@dataclass(frozen=True)
class SpaceIdentity:
    """Everything that decides where a text, a photo or a product lands.

    ``heads`` is the heads digest (None: no heads, the shared space is the text encoder's own).
    :attr:`id` is a short stable digest of all of it, for messages and registries.
    """

    text_model: str
    text_sha256: str
    image_model: str
    image_sha256: str
    heads: str | None
    shared_dim: int
    image_feature_dim: int
    shared_space_type: str
    image_space_type: str
    w_img: float
    w_txt: float
    passage: str

    @property
    def id(self) -> str:
        return digest(asdict(self))

    @property
    def weights(self) -> tuple[float, float]:
        return (self.w_img, self.w_txt)

    def to_meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "id": self.id, **asdict(self)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "SpaceIdentity":
        """Read back :meth:`to_meta`; raises ``ValueError`` naming what is wrong."""
        if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
            raise ValueError(f"not a space identity of format {FORMAT}: {meta!r}"[:300])
        try:
            kw = {f.name: meta[f.name] for f in fields(cls)}
        except KeyError as exc:
            raise ValueError(f"space identity lacks {exc.args[0]!r}") from None
        kw["w_img"], kw["w_txt"] = float(kw["w_img"]), float(kw["w_txt"])
        kw["shared_dim"], kw["image_feature_dim"] = int(kw["shared_dim"]), int(kw["image_feature_dim"])
        return cls(**kw)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "SpaceIdentity | None":
        """The identity an index mapping records; None when it records none (an older index)."""
        meta = (mapping.get("_meta") or {}).get(META_KEY)
        return None if meta is None else cls.from_meta(meta)

    def describe(self) -> str:
        heads = f"heads {self.heads}" if self.heads else "no heads"
        return (f"space {self.id} ({self.text_model} {self.text_sha256[:8]}, {self.image_model} "
                f"{self.image_sha256[:8]}, {heads}, {self.shared_dim}/{self.image_feature_dim}-d, "
                f"fusion w_img={self.w_img:g} w_txt={self.w_txt:g})")

    def differences(self, other: "SpaceIdentity") -> list[str]:
        """What differs, field by field (empty when the two are the same space)."""
        a, b = asdict(self), asdict(other)
        return [f"{k}: {a[k]} vs {b[k]}" for k in a if a[k] != b[k]]


def mismatch_message(index: str, recorded: SpaceIdentity | None, mine: SpaceIdentity, hint: str) -> str | None:
    """The refusal for using ``mine`` on an index that records ``recorded`` (None when they agree)."""
    if recorded is None:
        return (f"index {index!r} records no vector space (it was made before indexes recorded theirs), so "
                f"nothing says its vectors come from {mine.describe()}; {hint}")
    if recorded == mine:
        return None
    return (f"index {index!r} was made with {recorded.describe()}, not with {mine.describe()} "
            f"(differs in {'; '.join(recorded.differences(mine))}); {hint}")
