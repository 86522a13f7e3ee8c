"""The cut MobileNetV2 of bench/eval_finetune.py (issue 12, item 1): cached activations entering block K
plus the top blocks reproduce the whole network's pooled feature, and the top's BatchNorms stay
frozen while it trains.

Random-initialised weights with randomised BatchNorm statistics (no download): the cut is a
property of the architecture, not of the ImageNet weights.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import eval_finetune as ef  # noqa: E402

from models.export.mobilenet import feature_and_logits  # noqa: E402
from models.training.finetune import features_of, split_mobilenet  # noqa: E402
from models.image_encoder import preprocess  # noqa: E402

SPEC = {"resize": 72, "interpolation": "bilinear", "center_crop": 64, "rescale": 1 / 255,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = torchvision.models.mobilenet_v2(weights=None)
    g = torch.Generator().manual_seed(1)
    for bn in m.modules():   # running statistics far from (0, 1), so train-mode BN would show
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return m.eval()


@pytest.fixture(scope="module")
def pixels():
    return torch.from_numpy(np.random.default_rng(2).normal(size=(3, 3, 96, 96)).astype(np.float32))


@pytest.mark.parametrize("k", [1, 14, 15, 18])
def test_cut_reproduces_the_full_models_feature(model, pixels, k):
    with torch.no_grad():
        full, _ = feature_and_logits(copy.deepcopy(model))(pixels)
        bottom, top = split_mobilenet(copy.deepcopy(model), k)
        cached = bottom(pixels).numpy()        # what the benchmark stores
        cut = top(torch.from_numpy(cached))
    assert cut.shape == full.shape == (3, 1280)
    assert float((cut - full).abs().max()) < 1e-4


def test_a_lower_cache_feeds_a_higher_cut(model, pixels):
    """Activations cached at block 14 and pushed through block 14 give block 15's input."""
    with torch.no_grad():
        low, _ = split_mobilenet(copy.deepcopy(model), 14)
        b15, top15 = split_mobilenet(copy.deepcopy(model), 15)
        direct = b15(pixels).numpy()
        derived = features_of(b15[14:], low(pixels).numpy(), chunk=2)
        full, _ = feature_and_logits(copy.deepcopy(model))(pixels)
        cut = top15(torch.from_numpy(derived))
    assert np.abs(derived - direct).max() < 1e-4
    assert float((cut - full).abs().max()) < 1e-4


def test_top_trains_with_batchnorm_frozen(model, pixels):
    bottom, top = split_mobilenet(copy.deepcopy(model), 15)
    acts = bottom(pixels).detach()
    bns = [m for m in top.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [(bn.running_mean.clone(), bn.running_var.clone(), bn.weight.detach().clone()) for bn in bns]
    with torch.no_grad():
        before = top.eval()(acts)
    top.train()
    assert bns and all(not bn.training for bn in bns)
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    assert all(not p.requires_grad for p in bottom.parameters())
    trainable = [p for p in top.parameters() if p.requires_grad]
    assert trainable   # the convolutions train
    with torch.no_grad():   # train mode computes what eval mode does: BN uses its running statistics
        assert float((top(acts) - before).abs().max()) < 1e-6
    opt = torch.optim.SGD(trainable, lr=0.1)
    top(acts).pow(2).mean().backward()
    opt.step()
    for bn, (mean, var, weight) in zip(bns, stats):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert torch.equal(bn.weight, weight)
    with torch.no_grad():
        assert float((top.eval()(acts) - before).abs().max()) > 1e-6   # ... and the step did change the tower


@pytest.mark.parametrize("k", [0, 19])
def test_cut_outside_the_blocks_is_refused(model, k):
    with pytest.raises(ValueError, match=f"block {k} is outside"):
        split_mobilenet(copy.deepcopy(model), k)


def test_activation_cache_is_computed_once(model, tmp_path):
    paths = []
    for i, colour in enumerate([(200, 30, 30), (20, 160, 220), (240, 240, 240)]):
        p = tmp_path / f"p{i}.png"
        Image.new("RGB", (90, 80), colour).save(p)
        paths.append(str(p))
    bottom, _ = split_mobilenet(copy.deepcopy(model), 15)
    out = tmp_path / "acts.npy"
    acts = ef.cache_activations(bottom, paths, SPEC, out, batch=2)
    with torch.no_grad():
        want = bottom(torch.from_numpy(np.stack([preprocess(Image.open(p), SPEC) for p in paths]))).numpy()
    assert acts.shape == want.shape and np.abs(acts - want).max() < 1e-5
    np.save(out, np.full_like(acts, 7.0))   # a second call reads the file instead of recomputing
    assert (ef.cache_activations(bottom, paths, SPEC, out) == 7.0).all()
    assert ef.cache_activations(bottom, paths[:2], SPEC, out).shape[0] == 2   # other photos: recomputed
