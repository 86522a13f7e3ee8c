"""Run-time multilingual text encoder: ONNX Runtime + ``tokenizers`` + numpy, no torch.

``TextEncoder`` turns product texts and shopper queries (Chinese, English, mixed) into
L2-normalised float32 vectors of multilingual-e5-small, as exported by
``models.export.e5``. e5 was trained with "query: " / "passage: " prefixes, so the
caller says which kind it is encoding; the manifest entry supplies the prefixes, the
512-token limit and how the graph output is pooled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from .runtime import onnx_session


class TextEncoder:
    """One ONNX session and one tokenizer, created once; ``encode`` is batched.

    ``variant`` picks "fp32" or "int8" (default: the manifest's ``default_variant``);
    ``threads`` caps ONNX Runtime's intra-op threads (default: ORT's own choice).
    """

    def __init__(self, model_dir: Path, manifest_entry: dict, variant: str | None = None,
                 threads: int | None = None):
        entry = manifest_entry
        self.model_dir = Path(model_dir)
        self.variant = variant or entry.get("default_variant", "fp32")
        files = {"fp32": entry["onnx"], "int8": entry.get("onnx_int8")}
        if not files.get(self.variant):
            raise ValueError(f"unknown text encoder variant {self.variant!r}; "
                             f"available: {[k for k, v in files.items() if v]}")
        self.max_tokens = int(entry["max_tokens"])
        self.prefixes = dict(entry["prefixes"])
        self._dim = int(entry["dim"])
        self._pooling, self._normalize = entry.get("pooling", "mean"), entry.get("normalize", "l2")

        self._session = onnx_session(self.model_dir / files[self.variant], threads)
        self._output = self._session.get_outputs()[0].name

        self._tok = Tokenizer.from_file(str(self.model_dir / entry["tokenizer"]))
        self._tok.no_padding()  # we pad per length-sorted batch ourselves
        self._tok.enable_truncation(self.max_tokens)
        self._pad_id = self._tok.token_to_id("<pad>") or 0

    @classmethod
    def from_dir(cls, model_dir: Path, **kw) -> "TextEncoder":
        """Open the encoder described by ``model_dir/manifest.json`` (key "text")."""
        manifest = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8"))
        return cls(model_dir, manifest["text"], **kw)

    @property
    def dim(self) -> int:
        return self._dim

    def token_ids(self, texts: Sequence[str], kind: str = "passage") -> list[list[int]]:
        """Token ids the model sees (prefix, specials, truncation to ``max_tokens`` included)."""
        prefix = self._prefix(kind)
        return [e.ids for e in self._tok.encode_batch([prefix + _clean(t) for t in _as_list(texts)])]

    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 32) -> np.ndarray:
        """float32 [len(texts), dim], rows L2-normalised, in input order.

        Texts are sorted by token length and batched (at most ``batch_size`` each) so a batch
        pads to similar lengths: a few 512-token descriptions do not make every short
        title in their batch cost 512 tokens of attention and matmuls.
        """
        ids = self.token_ids(texts, kind)
        out = np.zeros((len(ids), self._dim), np.float32)
        for rows in _length_batches([len(x) for x in ids], max(1, int(batch_size))):
            width = len(ids[rows[-1]])
            batch = np.full((len(rows), width), self._pad_id, np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for r, i in enumerate(rows):
                batch[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1
            out[rows] = self._forward(batch, mask)
        return out

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        y = self._session.run([self._output], {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        if y.ndim == 3:  # graph ends at last_hidden_state: pool here as the manifest says
            if self._pooling != "mean":
                raise ValueError(f"unsupported pooling {self._pooling!r}")
            m = attention_mask[..., None].astype(np.float32)
            y = (y * m).sum(1) / np.maximum(m.sum(1), 1.0)
        if self._normalize == "l2":
            y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32, copy=False)

    def _prefix(self, kind: str) -> str:
        try:
            return self.prefixes[kind]
        except KeyError:
            raise ValueError(f"kind must be one of {sorted(self.prefixes)}, not {kind!r}") from None


def _length_batches(lengths: list[int], batch_size: int, free: int = 32) -> list[list[int]]:
    """Indices in ascending length, cut into batches of at most ``batch_size``.

    A batch also closes before a text more than twice as long as the batch's first one
    (lengths up to ``2 * free`` tokens always share), so padding stays under half a batch.
    """
    batches: list[list[int]] = []
    for i in np.argsort(lengths, kind="stable").tolist():
        if batches and len(batches[-1]) < batch_size and lengths[i] <= 2 * max(lengths[batches[-1][0]], free):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts; wrap a single text in a list")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be str, got {type(t).__name__}")
    return texts


def _clean(text: str) -> str:
    """Replace lone surrogates (not encodable text) so tokenization cannot fail on them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
