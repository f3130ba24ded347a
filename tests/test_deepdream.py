"""DeepDream end to end on the real ImageNet MobileNetV2 weights (small pictures),
and the offline weight resolution."""
from __future__ import annotations

import shutil

import pytest
import torch

from dreamnodes import Context
from dreamnodes.errors import NodeError
from dreamnodes.graphs import parse_recipe
from dreamnodes.nodes import image as image_nodes
from dreamnodes.nodes import model as model_nodes
from dreamnodes.nodes import render, transform
from dreamnodes.nodes.kernel.guide import dream_target
from dreamnodes.nodes.kernel.network import capture, module_for
from dreamnodes.nodes.kernel.steps import octave_sizes
from dreamnodes.nodes.weights import PACKAGED, WeightsMissing, packaged, verify
from dreamnodes.runtime import Cache, Runner


@pytest.fixture(scope="module")
def net():
    return model_nodes.load(Context(node_id="net"), arch="mobilenet_v2", weights="IMAGENET1K_V1")


@pytest.fixture(scope="module")
def photo():
    return image_nodes.load(Context(node_id="photo"), source="sample:chelsea", size=96)


def score(objective, img):
    with torch.no_grad():
        return objective(capture(objective.model, img.pixels, objective.layers)).item()


def dream(img, objective, seed=0, **kw):
    params = dict(octaves=2, octave_scale=1.4, steps=4, step_size=3.0)
    params.update(kw)
    jit = transform.jitter(pixels=8)
    return render.deepdream(img, objective, Context(node_id="dream", seed=seed), transforms=[jit], **params)


def test_packaged_weights_are_found_offline_and_verified(net):
    path = packaged(("mobilenet_v2", "IMAGENET1K_V1"))
    assert path is not None and path.name == "mobilenet_v2-b0353104.pth"
    assert verify(path, PACKAGED[("mobilenet_v2", "IMAGENET1K_V1")].sha256).startswith("b0353104")
    assert net.weights_id.startswith("mobilenet_v2:IMAGENET1K_V1:b0353104")
    assert len(net.categories) == 1000 and net.categories[1] == "goldfish"
    assert not any(p.requires_grad for p in net.module.parameters()) and not net.module.training


def test_a_damaged_weights_file_is_refused(tmp_path):
    src = packaged(("mobilenet_v2", "IMAGENET1K_V1"))
    bad = tmp_path / src.name
    shutil.copy(src, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(NodeError, match="damaged or not the expected one"):
        verify(bad, PACKAGED[("mobilenet_v2", "IMAGENET1K_V1")].sha256)


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsMissing) as err:
        model_nodes.load(Context(node_id="net"), arch="resnet18", weights="IMAGENET1K_V1")
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg


def test_unknown_architecture_and_weights_suggest_names():
    with pytest.raises(NodeError, match="did you mean mobilenet_v2"):
        model_nodes.load(Context(), arch="mobilenetv2")
    with pytest.raises(NodeError, match="IMAGENET1K_V1"):
        model_nodes.load(Context(), arch="mobilenet_v2", weights="IMAGENET")


def test_unknown_layer_path_is_a_clear_error(net):
    with pytest.raises(NodeError, match=r"no layer 'features\.100'.*did you mean.*dreamnodes layers"):
        model_nodes.layer(net, Context(node_id="layer"), path="features.100")
    with pytest.raises(NodeError, match="has 64 channels; 64 is out of range"):
        model_nodes.layer(net, Context(node_id="layer"), path="features.10", channel=64)


def test_the_dream_raises_the_layer_activation(net, photo):
    objective = model_nodes.layer(net, Context(), path="features.10")
    before = score(objective, photo)
    out = dream(photo, objective)
    assert out.pixels.shape == photo.pixels.shape
    assert 0 <= out.pixels.min() and out.pixels.max() <= 1
    assert score(objective, out) > 1.5 * before


def test_a_channel_objective_raises_that_channel_more_than_the_others(net, photo):
    objective = model_nodes.layer(net, Context(), path="features.6", channel=5)
    whole = model_nodes.layer(net, Context(), path="features.6")
    out = dream(photo, objective)
    gain = score(objective, out) / score(objective, photo)
    assert gain > 2 and gain > score(whole, out) / score(whole, photo)


def test_a_class_logit_objective_raises_that_logit(net, photo):
    objective = model_nodes.layer(net, Context(), label="tree frog")
    assert objective.layers == ("logits",) and "tree frog" in objective.name
    before = score(objective, photo)
    after = score(objective, dream(photo, objective, steps=6))
    assert after > before + 5


def test_the_forward_pass_stops_at_the_needed_layer(net, photo):
    seen = []
    run = module_for(net, ("features.10",))
    assert run is module_for(net, ("logits",))
    handle = run.classifier.register_forward_hook(lambda *a: seen.append(1))
    try:
        capture(net, photo.pixels, ("features.10",))
        assert seen == []
        capture(net, photo.pixels, ("logits",))
        assert seen == [1]
    finally:
        handle.remove()


def test_the_fast_copy_folds_batchnorm_and_keeps_every_layer(net, photo):
    """capture runs a copy with BatchNorms folded into their convolutions, channels-last: same
    layer paths, same activations (to float rounding); a folded convolution's own output is
    still the raw convolution's, read from the original module."""
    fast = module_for(net, ("features.10",))
    assert fast is not net.module
    assert [p for p, _ in fast.named_modules()] == [p for p, _ in net.module.named_modules()]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()) == 0
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.module.modules()) == 52
    with torch.no_grad():
        for path in ("features.3", "features.10", "features.13.conv.0.1", "logits"):
            got = capture(net, photo.pixels, (path,))[path]
            modules = dict(net.module.named_modules())
            ref = {}
            h = modules[path].register_forward_hook(lambda _m, _i, out: ref.setdefault("a", out)) \
                if path != "logits" else None
            out = net.module(net.normalize(photo.pixels))
            want = ref["a"] if h else out
            if h:
                h.remove()
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), path
        conv = "features.13.conv.0.0"
        assert module_for(net, (conv,)) is net.module
        raw = capture(net, photo.pixels, (conv,))[conv]
        ref = {}
        h = dict(net.module.named_modules())[conv].register_forward_hook(lambda _m, _i, out: ref.setdefault("a", out))
        net.module(net.normalize(photo.pixels))
        h.remove()
        # the same module, with the input channels-last: equal up to float rounding
        assert torch.allclose(raw, ref["a"], rtol=1e-5, atol=1e-5 * float(ref["a"].abs().max()))


def test_same_seed_same_pixels(net, photo):
    objective = model_nodes.layer(net, Context(), path="features.10")
    a, b, c = dream(photo, objective, seed=3), dream(photo, objective, seed=3), dream(photo, objective, seed=4)
    assert torch.equal(a.pixels, b.pixels)
    assert not torch.equal(a.pixels, c.pixels)


def test_a_guide_image_pulls_the_dream_towards_its_features(net, photo):
    objective = model_nodes.layer(net, Context(), path="features.10")
    guide = image_nodes.load(Context(), source="sample:coffee", size=96)
    match, layers = dream_target(objective, guide, torch.device("cpu"))
    before = match(capture(net, photo.pixels, layers)).item()
    out = render.deepdream(photo, objective, Context(seed=1), guide=guide, octaves=1, steps=12, step_size=1.0)
    assert match(capture(net, out.pixels, layers)).item() > 1.2 * before


def test_octaves_never_shrink_below_the_minimum():
    assert octave_sizes(512, 512, 4, 1.4)[-1] == (512, 512)
    assert octave_sizes(512, 512, 4, 1.4)[0] == (187, 187)
    assert octave_sizes(40, 40, 8, 2.0) == [(40, 40)]


def test_blur_and_jitter_transforms_are_exact():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(-2, 3, (1,), generator=g).item(), torch.randint(-2, 3, (1,), generator=g).item()
    got = transform.jitter(pixels=2)(x, torch.Generator().manual_seed(0))
    assert torch.equal(got, torch.roll(x, (dy, dx), (2, 3)))
    flat = torch.full((1, 3, 9, 9), 0.25)
    assert torch.allclose(transform.gaussian_blur(flat, 1.5), flat)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1
    blurred = transform.gaussian_blur(impulse, 1.0)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0)) and blurred[0, 0, 4, 4] == blurred.max()
    assert torch.allclose(blurred[0, 0], blurred[0, 0].T)


def test_the_example_recipe_runs_through_the_runtime(tmp_path):
    from dreamnodes.graphs.sources import builtin_recipe_text

    recipe = parse_recipe(builtin_recipe_text())
    recipe.nodes["photo"].params["size"] = 96
    recipe.nodes["dream"].params.update(octaves=2, steps=3)
    result = Runner(cache=Cache(tmp_path / "c"), out_dir=tmp_path / "o").run(recipe)
    assert [p.name for p in result.written] == ["deepdream.png"]


def test_a_model_without_batchnorm_runs_as_it_is_and_is_freed():
    """Nothing to fold: capture runs the model itself, and dropping the model frees it (the
    fast-copy table must not keep a model alive through its own entry)."""
    import gc
    import weakref

    from dreamnodes.types import Model

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval().requires_grad_(False)
    model = Model(module, "tiny")
    assert module_for(model, ("0",)) is module
    acts = capture(model, torch.rand(1, 3, 16, 16), ("0", "logits"))
    assert acts["0"].shape == (1, 4, 14, 14) and acts["logits"].shape == (1, 2)
    gone = weakref.ref(module)
    del model, module, acts
    gc.collect()
    assert gone() is None
