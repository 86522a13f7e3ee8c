"""Trained heads -> small ONNX graphs and the heads manifest (build time).

The graphs are written with ``onnx.helper`` from the numpy weights rather than traced from torch:
they are three or four ops each, the result does not depend on the torch exporter of the day,
and the same code path serves any head that :class:`HeadParams` can describe. Each graph does
its own input L2-normalisation and (for projection heads) output normalisation, so callers feed
raw backbone outputs and get unit vectors, exactly as in training.

The manifest records dims (so ``mappings.VectorDims.from_manifest`` works on it), the category
list of the classifier, training and evaluation metadata, and a sha256 per file, which
:class:`models.heads.Heads` checks on load.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .trainer import HeadParams
from ..manifest import sha256_file

OPSET = 17
MANIFEST = "manifest.json"
FORMAT = "cmsearch-heads"
FORMAT_VERSION = 1
EPS = 1e-12


class _Graph:
    def __init__(self, prefix: str):
        self.nodes: list = []
        self.inits: list = []
        self.prefix = prefix
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}_{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str) -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), n))
        return n

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def l2_normalize(self, x: str) -> str:
        norm = self.op("ReduceL2", [x], "norm", axes=[-1], keepdims=1)
        norm = self.op("Max", [norm, self.const(np.array(EPS), "eps")], "norm_eps")
        return self.op("Div", [x, norm], "unit")

    def linear(self, x: str, w: np.ndarray, b: np.ndarray) -> str:
        h = self.op("MatMul", [x, self.const(np.ascontiguousarray(w.T), "w")], "mm")
        return self.op("Add", [h, self.const(b, "b")], "lin")

    def gelu(self, x: str) -> str:
        """Exact (erf) GELU, as torch.nn.GELU() computes it."""
        e = self.op("Erf", [self.op("Div", [x, self.const(np.array(math.sqrt(2.0)), "sqrt2")], "xs")], "erf")
        e = self.op("Add", [e, self.const(np.array(1.0), "one")], "erf1")
        return self.op("Mul", [self.op("Mul", [x, e], "xe"), self.const(np.array(0.5), "half")], "gelu")

    def model(self, inp: str, in_dim: int, out: str, out_dim: int, out_name: str, doc: str) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Identity", [out], [out_name], name=f"{self.prefix}_output"))
        graph = helper.make_graph(
            self.nodes, self.prefix,
            [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["n", in_dim])],
            [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["n", out_dim])],
            initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cmsearch.models.training", doc_string=doc)
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def head_model(params: HeadParams, name: str, input_name: str = "input") -> onnx.ModelProto:
    """normalize -> linear [-> GELU -> linear] -> normalize, as a standalone graph."""
    g = _Graph(name)
    h = g.l2_normalize(input_name)
    for i, (w, b) in enumerate(params.layers):
        h = g.linear(h, w, b)
        if i < len(params.layers) - 1:
            h = g.gelu(h)
    if params.layers:
        h = g.l2_normalize(h)
    return g.model(input_name, params.in_dim, h, params.out_dim, "embedding",
                   f"{name}: {params.kind} projection {params.in_dim}->{params.out_dim}, unit output")


def classifier_model(params: HeadParams, name: str = "classifier") -> onnx.ModelProto:
    """normalize -> linear -> softmax: category probabilities from raw image features."""
    g = _Graph(name)
    h = g.l2_normalize("features")
    for i, (w, b) in enumerate(params.layers):
        h = g.linear(h, w, b)
        if i < len(params.layers) - 1:
            h = g.gelu(h)
    p = g.op("Softmax", [h], "softmax", axis=-1)
    return g.model("features", params.in_dim, p, params.out_dim, "probs",
                   f"{name}: category probabilities over {params.out_dim} classes")




def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def write_heads(out_dir: str | Path, *, image_head: HeadParams, text_head: HeadParams,
                image_feature_dim: int, text_dim: int, classifier: HeadParams | None = None,
                categories: list[str] | None = None, logit_scale: float | None = None,
                metadata: dict | None = None, image_encoder: dict | None = None,
                floors: dict | None = None) -> dict:
    """Write the ONNX files and manifest.json into out_dir; return the manifest.

    The text head may be the identity (no file): the shared space is then the e5 text space.
    ``image_encoder`` declares how photos reach the backbone (``fit``) and which image model
    file runs it (``variant``; with ``file``, a file already in out_dir, e.g. the int8 tower
    calibrated on the catalog); :class:`models.space.Space` reads it for products and queries.
    ``floors`` are the no-words k-NN floors calibrated for these heads (:mod:`models.floors`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def save(model: onnx.ModelProto, fname: str) -> str:
        _write_atomic(out / fname, model.SerializeToString())
        files[fname] = sha256_file(out / fname)
        return fname

    if image_head.in_dim != image_feature_dim:
        raise ValueError(f"image head expects {image_head.in_dim}-d input, features are {image_feature_dim}-d")
    dim = image_head.out_dim
    if text_head.out_dim != dim:
        raise ValueError(f"text head outputs {text_head.out_dim}-d, image head {dim}-d")
    img_file = save(head_model(image_head, "image_head", "features"), "image_head.onnx")
    txt_file = None
    if text_head.kind != "identity":
        txt_file = save(head_model(text_head, "text_head", "vectors"), "text_head.onnx")
    else:
        stale = out / "text_head.onnx"
        if stale.exists():
            stale.unlink()
    cls = None
    if classifier is not None:
        if not categories or len(categories) != classifier.out_dim:
            raise ValueError("classifier needs one category path per output")
        cls = {"file": save(classifier_model(classifier), "classifier.onnx"), "in_dim": classifier.in_dim,
               "categories": list(categories), "separator": " > "}
    elif (out / "classifier.onnx").exists():
        (out / "classifier.onnx").unlink()
    tower = dict(image_encoder or {"fit": "center_crop", "variant": "fp32"})
    if tower.get("file"):
        f = out / tower["file"]
        if not f.is_file():
            raise ValueError(f"the image model file {f} named by image_encoder is missing")
        files[tower["file"]] = tower["sha256"] = sha256_file(f)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spaces": {
            "shared": {"dim": int(dim), "space_type": "cosinesimil",
                       "what": ("e5 text space (identity text head)" if text_head.kind == "identity"
                                else "trained shared text-image space")},
            "image_feature": {"dim": int(image_feature_dim), "space_type": "cosinesimil",
                              "what": "raw image backbone feature"},
            "text": {"dim": int(text_dim), "space_type": "cosinesimil", "what": "text encoder output"},
        },
        "image_head": {"file": img_file, "kind": image_head.kind, "in_dim": image_head.in_dim, "out_dim": dim},
        "text_head": {"file": txt_file, "kind": text_head.kind, "in_dim": int(text_dim), "out_dim": dim},
        "classifier": cls,
        "logit_scale": logit_scale,
        "fusion": {"w_img": 0.5, "w_txt": 0.5},
        "image_encoder": tower,
        "floors": dict(floors or {}),
        "files": files,
    }
    manifest.update(_jsonable(metadata or {}))
    _write_atomic(out / MANIFEST, json.dumps(_jsonable(manifest), indent=2, ensure_ascii=False).encode("utf-8"))
    return manifest
