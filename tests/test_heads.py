"""Run-time heads (models.heads): ONNX graphs vs torch, the manifest, classify / fuse formats.

Heads are built from small torch modules with random weights here, exported by the training
code, and loaded back the way ingest and the query builder load them (onnxruntime only).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.heads import Heads, HeadsError  # noqa: E402
from models.training.export import write_heads  # noqa: E402
from models.training.trainer import Head, feature_stats, head_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CATS = ["Fruit > Apple > Pink Lady", "Fruit > Apple > Royal Gala", "Fruit > Banana > Banana",
        "Packages > Milk > Arla Standard Milk", "Vegetables > Tomato > Vine Tomato"]


def random_head(kind: str, in_dim: int, out_dim: int, seed: int) -> Head:
    torch.manual_seed(seed)
    x = np.abs(np.random.default_rng(seed).normal(size=(64, in_dim))).astype(np.float32)
    mean, std = feature_stats(x)
    head = Head(kind, in_dim, out_dim, mean, std, hidden=48, dropout=0.1)
    head.eval()
    return head


def torch_forward(head: Head, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x)).numpy()


@pytest.fixture(params=["linear", "mlp"])
def built(request, tmp_path):
    kind = request.param
    img = random_head(kind, 40, 16, 0)
    txt = random_head("linear", 24, 16, 1)
    cls = random_head("linear", 40, len(CATS), 2)
    write_heads(tmp_path, image_head=head_params(img), text_head=head_params(txt), image_feature_dim=40,
                text_dim=24, classifier=head_params(cls), categories=CATS, metadata={"training": {"seed": 0}})
    return tmp_path, img, txt, cls


def features(n: int, d: int, seed: int = 9) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32) * 3.0


def test_onnx_heads_match_torch(built):
    d, img, txt, _ = built
    heads = Heads.load(d)
    x, t = features(7, 40), features(7, 24, seed=3)
    np.testing.assert_allclose(heads.project_image(x), torch_forward(img, x), atol=2e-5)
    np.testing.assert_allclose(heads.project_text(t), torch_forward(txt, t), atol=2e-5)
    assert np.allclose(np.linalg.norm(heads.project_image(x), axis=1), 1.0, atol=1e-5)
    assert heads.project_image(np.zeros((0, 40))).shape == (0, 16)


def test_classifier_graph_matches_torch_softmax(built):
    d, _, _, cls = built
    heads = Heads.load(d)
    x = features(5, 40)
    with torch.no_grad():
        xt = torch.nn.functional.normalize(torch.from_numpy(x), dim=-1)
        logits = cls.net((xt - cls.mean) / cls.std)
        want = torch.softmax(logits, dim=-1).numpy()
    names, probs = heads.category_probs(x)
    assert names == CATS
    np.testing.assert_allclose(probs, want, atol=1e-5)


def test_classify_returns_top_k_paths_with_probabilities(built):
    heads = Heads.load(built[0])
    x = features(3, 40)
    out = heads.classify(x, k=2)
    assert len(out) == 3 and all(len(row) == 2 for row in out)
    for row in out:
        assert all(isinstance(c, str) and c in CATS and isinstance(p, float) for c, p in row)
        assert row[0][1] >= row[1][1]
    top = heads.classify(x, k=10, level="top")
    assert all(len(row) == 3 for row in top)  # capped at the 3 top-level categories
    assert {c for c, _ in top[0]} == {"Fruit", "Packages", "Vegetables"}
    assert sum(p for _, p in top[0]) == pytest.approx(1.0, abs=1e-5)
    # A top-level probability is the sum of its leaves' probabilities.
    _, leaf = heads.category_probs(x)
    fruit = dict(top[0])["Fruit"]
    assert fruit == pytest.approx(float(leaf[0, :3].sum()), abs=1e-5)
    mid = heads.classify(x, k=5, level=2)
    assert {c for c, _ in mid[0]} <= {"Fruit > Apple", "Fruit > Banana", "Packages > Milk", "Vegetables > Tomato"}


def test_manifest_gives_index_dims_and_records_files(built):
    from mappings import VectorDims

    heads = Heads.load(built[0])
    dims = VectorDims.from_manifest(heads.manifest)
    assert (dims.shared, dims.image_feature) == (16, 40)
    assert set(heads.manifest["files"]) == {"image_head.onnx", "text_head.onnx", "classifier.onnx"}
    assert heads.manifest["training"] == {"seed": 0}
    assert heads.manifest["spaces"]["shared"]["space_type"] == "cosinesimil"


def test_identity_text_head_keeps_the_text_space(tmp_path):
    img = random_head("linear", 40, 24, 0)
    ident = random_head("identity", 24, 24, 1)
    write_heads(tmp_path, image_head=head_params(img), text_head=head_params(ident), image_feature_dim=40, text_dim=24)
    heads = Heads.load(tmp_path)
    assert heads.text_head_is_identity and heads.dim == 24 and not heads.has_classifier
    t = features(4, 24)
    np.testing.assert_allclose(heads.project_text(t), t / np.linalg.norm(t, axis=1, keepdims=True), atol=1e-6)
    assert not (tmp_path / "text_head.onnx").exists()
    with pytest.raises(HeadsError, match="no category classifier"):
        heads.classify(features(1, 40))


def test_fuse_is_normalised_and_falls_back_to_the_present_side(built):
    heads = Heads.load(built[0])
    img = heads.project_image(features(2, 40))
    txt = heads.project_text(features(2, 24, seed=4))
    fused = heads.fuse(img, txt, w_img=0.3, w_txt=0.7)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    want = 0.3 * img + 0.7 * txt
    np.testing.assert_allclose(fused, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)
    no_image = heads.fuse(np.zeros_like(img), txt)
    np.testing.assert_allclose(no_image, txt, atol=1e-6)
    with pytest.raises(ValueError):
        heads.fuse(img, txt[:1])


def test_wrong_input_shape_is_a_clear_error(built):
    heads = Heads.load(built[0])
    with pytest.raises(ValueError, match=r"\[n, 40\]"):
        heads.project_image(features(2, 41))


def test_tampered_or_missing_files_fail_on_load(built, tmp_path):
    d = built[0]
    (d / "image_head.onnx").write_bytes((d / "image_head.onnx").read_bytes() + b"x")
    with pytest.raises(HeadsError, match="sha256"):
        Heads.load(d)
    with pytest.raises(HeadsError, match="cmsearch train"):
        Heads.load(tmp_path / "nothing")


def test_runtime_does_not_import_torch(built):
    code = ("import sys, numpy as np; from models.heads import Heads; "
            f"h = Heads.load({str(built[0])!r}); h.project_image(np.ones((2, 40), np.float32)); "
            "h.classify(np.ones((1, 40), np.float32)); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_head_graphs_stop_spinning_when_a_run_returns(built):
    """A pool worker left spinning after a head's run took a core from the next model of the
    query (models.runtime): every head graph stops its workers when the run returns."""
    heads = Heads.load(built[0], threads=2)
    for graph in (heads._image, heads._text, heads._classifier):
        opts = graph.session.get_session_options()
        assert opts.get_session_config_entry("session.force_spinning_stop") == "1"
        assert opts.intra_op_num_threads == 2


def test_real_heads_dir_if_trained():
    """The user's trained heads (if any) load and agree with their manifest's dims."""
    from models.heads import default_heads_dir

    d = default_heads_dir()
    if not (d / "manifest.json").is_file():
        pytest.skip(f"no trained heads at {d} (run `cmsearch train CATALOG`)")
    heads = Heads.load(d)
    x = np.abs(np.random.default_rng(0).normal(size=(2, heads.image_feature_dim))).astype(np.float32)
    assert heads.project_image(x).shape == (2, heads.dim)
    assert json.loads((d / "manifest.json").read_text())["format"] == "cmsearch-heads"
