"""Feature visualization: objectives, priors, parameterizations, render.optimize.

Behavioural tests on a tiny network made here (no weights): every objective,
prior and parameterization lowers its loss in a few steps; exact values for
the region masks, the priors and the grid; the Student-t prior's value and
gradient against a hand-computed case. Two small tests use the real
MobileNetV2 weights (marked slow): the class map equals the logits, and the
split-target recipe puts each class's evidence in its own half.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dreamnodes import Context, NodeError
from dreamnodes.events import Drew, Preview, Progress
from dreamnodes.nodes import image as G
from dreamnodes.nodes import objective as O
from dreamnodes.nodes import render as R
from dreamnodes.nodes import param as P
from dreamnodes.nodes import prior as PR
from dreamnodes.nodes import transform as T
from dreamnodes.nodes.kernel.masks import Box, coverage
from dreamnodes.nodes.kernel.network import LOGITS, capture
from dreamnodes.types import Frames, Image, Model, Objective, Parameterization

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class TinyNet(nn.Module):
    """features -> global average pool -> classifier, shaped like MobileNetV2."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 5))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@pytest.fixture(scope="module")
def tiny() -> Model:
    torch.manual_seed(0)
    return Model(TinyNet().eval().requires_grad_(False), "tiny", categories=("ant", "bee", "cat", "dog", "eel"))


@pytest.fixture
def ctx() -> Context:
    return Context(node_id="n", seed=3)


def pictures(n=2, size=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def ascend(score_fn, param: Parameterization, steps=6, lr=0.05, size=16, batch=2) -> tuple[float, float]:
    """Score of the starting picture and after `steps` Adam steps on score_fn(picture) ([N])."""
    params, image_fn = param.make(batch, size, size, torch.device("cpu"), torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(params, lr=lr)
    with torch.no_grad():
        before = score_fn(image_fn()).sum().item()
    for _ in range(steps):
        opt.zero_grad()
        (-score_fn(image_fn()).sum()).backward()
        opt.step()
    with torch.no_grad():
        after = score_fn(image_fn()).sum().item()
    return before, after


def objective_score(obj: Objective):
    return lambda x: obj(capture(obj.model, x, obj.layers))


# --------------------------------------------------------------------------------------------
# objectives


def test_every_objective_rises_in_a_few_steps(tiny, ctx):
    guide_img = Image(pictures(1, 16, seed=5))
    objs = {
        "channel": O.channel(tiny, ctx, path="features.2", channel=3),
        "neuron": O.neuron(tiny, ctx, path="features.2", channel=1),
        "neuron_xy": O.neuron(tiny, ctx, path="features.2", channel=1, x=2, y=3),
        "channels": O.channels(tiny, ctx, path="features.2", channels=[0, 5]),
        "class_logit": O.class_logit(tiny, ctx, label="cat"),
        "class_map": O.class_map(tiny, ctx, labels=["ant", "bee"], regions=["top", "bottom"]),
        "class_map_contrast": O.class_map(tiny, ctx, labels=["ant", "bee"], regions=["left", "right"],
                                          contrast=1.0),
        "guide_dot": O.guide(tiny, guide_img, ctx, path="features.2", mode="dot"),
        "guide_gram": O.guide(tiny, guide_img, ctx, path="features.2", mode="gram"),
        "guide_mean": O.guide(tiny, guide_img, ctx, path="features.2", mode="mean"),
        "diversity": O.diversity(tiny, ctx, path="features.1"),
    }
    objs["sum"] = O.sum_([objs["channel"], objs["class_logit"]], ctx, weights=[1.0, 0.5])
    objs["negate"] = O.negate(objs["channel"])
    for name, obj in objs.items():
        before, after = ascend(objective_score(obj), P.pixels(sd=0.5))
        assert after > before, f"{name}: {before} -> {after}"


def test_sum_and_negate_are_exact(tiny, ctx):
    a = O.channel(tiny, ctx, path="features.2", channel=3)
    b = O.class_logit(tiny, ctx, class_index=2)
    total = O.sum_([a, b], ctx, weights=[2.0, -0.5])
    x = pictures()
    acts = capture(tiny, x, total.layers)
    assert torch.allclose(total(acts), 2.0 * a(acts) - 0.5 * b(acts))
    assert torch.equal(O.negate(a)(acts), -a(acts))
    assert set(total.layers) == {"features.2", LOGITS}
    with pytest.raises(NodeError, match="one weight per objective"):
        O.sum_([a, b], ctx, weights=[1.0])


def test_channels_gives_each_picture_its_channel(tiny, ctx):
    obj = O.channels(tiny, ctx, path="features.2", channels=[4, 7])
    x = pictures(3)
    a = capture(tiny, x, ("features.2",))["features.2"]
    expected = torch.stack([a[0, 4].mean(), a[1, 7].mean(), a[2, 4].mean()])
    assert torch.allclose(obj({"features.2": a}), expected)
    with pytest.raises(NodeError, match="16 channels"):
        O.channels(tiny, ctx, path="features.2", channels=[16])


def test_region_masks_are_exact():
    top = coverage(Box(*O.REGIONS["top"]), 7, 3)
    assert torch.equal(top[:, 0], torch.tensor([1, 1, 1, 0.5, 0, 0, 0]))
    assert torch.equal(top[:, 0], top[:, 2])
    bottom = coverage(Box(*O.REGIONS["bottom"]), 7, 3)
    assert torch.equal(top + bottom, torch.ones(7, 3))
    box = coverage(Box(*O.parse_region("0,0.5,0.25,0.75")), 2, 4)
    assert torch.equal(box, torch.tensor([[0.0, 1, 1, 0], [0, 0, 0, 0]]))
    with pytest.raises(NodeError, match="not one of"):
        O.parse_region("middle")


def test_class_map_is_the_classifier_at_every_position(tiny, ctx):
    x = pictures(2, 32)
    maps = O.class_logit_maps(tiny, x)  # [2, 5, 16, 16]
    assert maps.shape == (2, 5, 16, 16)
    logits = tiny.module(tiny.normalize(x))
    # one linear layer after average pooling: the mean of the map is exactly the logits
    assert torch.allclose(maps.mean((2, 3)), logits, atol=1e-5)
    whole = O.class_map(tiny, ctx, class_indices=[1, 3], weights=[1.0, 2.0])
    acts = capture(tiny, x, whole.layers)
    assert torch.allclose(whole(acts), logits[:, 1] + 2 * logits[:, 3], atol=1e-5)
    halves = O.class_map(tiny, ctx, labels=["bee", "dog"], regions=["top", "bottom"])
    expected = maps[:, 1, :8].mean((1, 2)) + maps[:, 3, 8:].mean((1, 2))
    assert torch.allclose(halves(acts), expected, atol=1e-5)


def test_class_map_masks_weigh_positions(tiny, ctx):
    mask = torch.zeros(1, 3, 32, 32)
    mask[:, :, :, 16:] = 1.0  # the right half
    obj = O.class_map(tiny, ctx, labels=["eel"], masks=[Image(mask)])
    x = pictures(1, 32)
    maps = O.class_logit_maps(tiny, x)
    assert torch.allclose(obj(capture(tiny, x, obj.layers)), maps[:, 4, :, 8:].mean((1, 2)), atol=1e-5)
    assert mask.sum() == 3 * 32 * 16  # the mask picture is untouched


def test_class_map_refuses_mismatched_targets(tiny, ctx):
    with pytest.raises(NodeError, match="one region per target"):
        O.class_map(tiny, ctx, labels=["ant", "bee"], regions=["top"])
    with pytest.raises(NodeError, match="not a class"):
        O.class_map(tiny, ctx, labels=["zebra"])
    with pytest.raises(NodeError, match="at least one class"):
        O.class_map(tiny, ctx)


def test_diversity_prefers_different_pictures(tiny, ctx):
    obj = O.diversity(tiny, ctx, path="features.1")
    same = pictures(1).repeat(2, 1, 1, 1)
    different = torch.cat([pictures(1, seed=0), torch.zeros(1, 3, 16, 16) + 0.5 * pictures(1, seed=9)])
    score = lambda x: obj(capture(tiny, x, obj.layers)).sum().item()
    assert score(same) == pytest.approx(-2.0, abs=1e-5)  # identical Gram matrices: cosine 1
    assert score(different) > score(same)
    assert obj(capture(tiny, pictures(1), obj.layers)).item() == 0.0


# --------------------------------------------------------------------------------------------
# priors


def test_every_prior_falls_in_a_few_steps():
    priors = [PR.l2(), PR.tv(), PR.tv(beta=2.0), PR.student_t(patch=4),
              PR.multiscale(PR.student_t(patch=4), Context(), scales=[1.0, 0.5])]
    for prior in priors:
        before, after = ascend(lambda x: -prior(x), P.pixels(sd=2.0), steps=5, lr=0.1)
        assert -after < -before, f"{prior.name}: {-before} -> {-after}"


def test_l2_and_tv_values_are_exact():
    x = torch.zeros(1, 3, 3, 3)
    x[0, :, :, 2] = 1.0  # a vertical edge between columns 1 and 2
    assert PR.l2(weight=2.0)(x).item() == pytest.approx(2.0 * 0.25)
    # dx is 1 on the 2 of the 4 (H-1)x(W-1) positions next to the edge; dy is 0 everywhere
    assert PR.tv()(x).item() == pytest.approx(0.5, abs=1e-4)
    assert PR.tv(beta=2.0)(x).item() == pytest.approx(0.5)


def test_student_t_value_and_gradient_match_a_hand_computed_case():
    dof, s, a = 3.0, 0.05, 0.1
    x = torch.full((1, 3, 8, 8), 0.5)
    checker = (torch.arange(8).view(-1, 1) + torch.arange(8).view(1, -1)) % 2 * 2 - 1  # +-1
    x[0, 0] += a * checker  # one patch; red deviates by +-a from its mean 0.5
    x.requires_grad_(True)
    value = PR.student_t(dof=dof, scale=s, patch=8)(x)
    d = 192
    r2 = 64 * a * a
    expected = 0.5 * (dof + d) * math.log(1 + r2 / (dof * s * s)) / d
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.sum().backward()
    # d/dx_i of (dof + d)/2 log(1 + r2/(dof s^2)) / d, with dr2/dx_i = 2 (x_i - mean_c)
    coef = 0.5 * (dof + d) / (1 + r2 / (dof * s * s)) / (dof * s * s) / d
    expected_grad = torch.zeros(1, 3, 8, 8)
    expected_grad[0, 0] = coef * 2 * a * checker
    assert torch.allclose(x.grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_student_t_covers_every_patch_position():
    x = torch.full((1, 3, 10, 10), 0.5)
    x[0, 1, 9, 9] = 1.0  # a single bright pixel in the corner: inside 1 of the 3x3 patch positions
    r2 = PR.patch_deviation(x, 8)
    assert r2.shape == (1, 3, 3)
    assert r2[0, 2, 2].item() == pytest.approx(0.25 * 63 / 64, rel=1e-4)
    assert torch.count_nonzero(r2[0] > 1e-6) == 1


def test_multiscale_sums_the_prior_over_scales():
    x = pictures(2, 16)
    inner = PR.tv()
    ms = PR.multiscale(inner, Context(), scales=[1.0, 0.5], weights=[1.0, 3.0], weight=2.0)
    half = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(ms(x), 2.0 * (inner(x) + 3.0 * inner(half)))
    with pytest.raises(NodeError, match="one weight per scale"):
        PR.multiscale(inner, Context(), scales=[1.0, 0.5], weights=[1.0])
    with pytest.raises(NodeError, match="fractions"):
        PR.multiscale(inner, Context(), scales=[2.0])


# --------------------------------------------------------------------------------------------
# parameterizations


@pytest.mark.parametrize("param", [P.pixels(), P.pixels(decorrelate=False), P.fft(), P.fft(decay=1.5),
                                   P.fft(decorrelate=False)], ids=lambda p: p.name)
def test_parameterizations_make_pictures_that_an_objective_can_raise(param, tiny, ctx):
    params, image_fn = param.make(2, 17, 24, torch.device("cpu"), torch.Generator().manual_seed(0))
    x = image_fn()
    assert x.shape == (2, 3, 17, 24) and x.min() > 0 and x.max() < 1
    assert all(p.requires_grad for p in params)
    before, after = ascend(objective_score(O.class_logit(tiny, ctx, label="dog")), param)
    assert after > before


@pytest.mark.parametrize("param", [P.pixels(), P.fft(), P.fft(decorrelate=False)], ids=lambda p: p.name)
def test_parameterizations_take_a_picture_back(param):
    _, image_fn = param.make(2, 12, 15, torch.device("cpu"), torch.Generator().manual_seed(0))
    target = 0.1 + 0.8 * pictures(2, 12)[..., :15].expand(2, 3, 12, 12)
    target = F.pad(target, (0, 3), value=0.3)  # 12 x 15, an odd width
    image_fn.assign(target)
    assert torch.allclose(image_fn(), target, atol=1e-4)


def test_parameterizations_start_from_a_picture_without_changing_it():
    start = pictures(1, 20)
    copy = start.clone()
    for param in (P.pixels(init=Image(start), sd=0.0), P.fft(init=Image(start), sd=0.0)):
        _, image_fn = param.make(2, 20, 20, torch.device("cpu"), torch.Generator().manual_seed(0))
        assert torch.allclose(image_fn(), start.clamp(P.EPS, 1 - P.EPS).expand(2, -1, -1, -1), atol=1e-4)
    assert torch.equal(start, copy)


def test_spectrum_scale_is_one_over_frequency():
    s = P.spectrum_scale(8, 8, 1.0)
    assert s.shape == (8, 5)
    assert s[0, 0].item() == pytest.approx(8.0)  # DC clamped to one cycle per picture
    assert s[0, 1].item() == pytest.approx(8.0)  # f = 1/8
    assert s[0, 4].item() == pytest.approx(2.0)  # f = 1/2, Nyquist
    assert s[2, 2].item() == pytest.approx(1 / math.hypot(0.25, 0.25))
    assert torch.allclose(P.correlate(P.decorrelate(pictures())), pictures(), atol=1e-5)


# --------------------------------------------------------------------------------------------
# render.optimize


def test_optimize_raises_the_objective_and_reports(tiny):
    events = []
    obj = O.class_logit(tiny, Context(), label="bee")
    ctx = Context(node_id="vis", seed=11, emit=events.append)
    out = R.optimize(obj, ctx, transforms=[T.jitter(2)], priors=[PR.tv(0.1)], steps=12, step_size=0.1,
                     batch=2, width=24, height=20, preview_every=5, frames_at=[1, 6], frames_every=4)
    assert isinstance(out.image, Image) and out.image.pixels.shape == (2, 3, 20, 24)
    assert isinstance(out.frames, Frames) and out.frames.pixels.shape == (5, 3, 20, 24)  # steps 1, 4, 6, 8, 12
    progress = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in progress] == list(range(1, 13)) and progress[-1].total == 12
    assert len([e for e in events if isinstance(e, Preview)]) == 3  # steps 5, 10 and the last
    assert any(isinstance(e, Drew) for e in events)
    first = R.optimize(obj, Context(seed=11), steps=1, step_size=0.1, width=24, height=20)
    score = lambda img: obj(capture(tiny, img.pixels, obj.layers)).mean().item()
    assert score(R.optimize(obj, Context(seed=11), steps=12, step_size=0.1, width=24, height=20).image) \
        > score(first.image)


def test_optimize_frames_hold_the_chosen_steps(tiny):
    obj = O.class_logit(tiny, Context(), label="ant")
    run = lambda n, **kw: R.optimize(obj, Context(seed=2), steps=n, width=16, height=16, **kw)
    out = run(6, frames_at=[2, 6])
    assert torch.equal(out.frames.pixels[0], run(2).image.pixels[0])
    assert torch.equal(out.frames.pixels[1], out.image.pixels[0])
    assert run(3).frames.pixels.shape[0] == 1  # no frames asked: the final picture
    with pytest.raises(NodeError, match="outside 1..6"):
        run(6, frames_at=[7])


def test_optimize_replays_with_the_same_seed(tiny):
    obj = O.class_logit(tiny, Context(), label="eel")
    ts = [T.pad(2), T.jitter(3), T.scale(0.8, 1.2), T.rotate(10)]
    run = lambda seed: R.optimize(obj, Context(seed=seed), transforms=ts, steps=4, width=16, height=16,
                                  default_param="pixels").image.pixels
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_optimize_blurs_the_picture_between_steps(tiny):
    obj = O.class_logit(tiny, Context(), label="eel")
    blur = T.blur(sigma=2.0, target="image", every=3)
    sharp = R.optimize(obj, Context(seed=1), steps=3, step_size=0.5, width=16, height=16,
                       default_param="pixels").image.pixels
    soft = R.optimize(obj, Context(seed=1), transforms=[blur], steps=3, step_size=0.5, width=16, height=16,
                      default_param="pixels").image.pixels
    assert torch.allclose(soft, T.gaussian_blur(sharp, 2.0).clamp(P.EPS, 1 - P.EPS), atol=1e-4)
    grad_blur = T.blur(sigma=1.0, target="gradient")
    R.optimize(obj, Context(seed=1), transforms=[grad_blur], steps=2, width=16, height=16)


def test_a_generator_latent_plugs_in_as_a_parameterization(tiny):
    """The interface the GAN nodes use: params are a latent, the picture comes from a generator."""
    torch.manual_seed(0)
    gen_net = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Tanh()).requires_grad_(False)

    def make(batch, height, width, device, gen):
        z = torch.randn(batch, 4, generator=gen).to(device).requires_grad_(True)
        render = lambda: F.interpolate((gen_net(z).view(-1, 3, 8, 8) + 1) / 2, size=(height, width))
        return [z], P.ImageFunction(render)

    latent = Parameterization("latent(test)", make)
    obj = O.class_logit(tiny, Context(), label="cat")
    score = lambda img: obj(capture(tiny, img.pixels, obj.layers)).item()
    one = R.optimize(obj, Context(seed=4), latent, steps=1, step_size=0.1, width=16, height=16)
    many = R.optimize(obj, Context(seed=4), latent, steps=15, step_size=0.1, width=16, height=16)
    assert score(many.image) > score(one.image)
    with pytest.raises(NodeError, match="cannot take back"):
        R.optimize(obj, Context(seed=4), latent, transforms=[T.blur(1.0, "image")], steps=2,
                   width=16, height=16)


# --------------------------------------------------------------------------------------------
# image.grid


def test_grid_lays_pictures_out_in_rows():
    a = torch.zeros(2, 3, 4, 5)
    a[1] = 1.0
    b = torch.full((1, 3, 8, 10), 0.5)  # resized to 4 x 5
    sheet = G.grid([Image(a), Image(b)], Context(), columns=2, padding=1, background="#ff0000").pixels
    assert sheet.shape == (1, 3, 1 + 2 * (4 + 1), 1 + 2 * (5 + 1))
    assert torch.equal(sheet[0, :, 1:5, 1:6], torch.zeros(3, 4, 5))
    assert torch.equal(sheet[0, :, 1:5, 7:12], torch.ones(3, 4, 5))
    assert torch.allclose(sheet[0, :, 6:10, 1:6], torch.full((3, 4, 5), 0.5))
    assert torch.equal(sheet[0, :, 6:10, 7:12], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 4, 5))
    labelled = G.grid([Image(a)], Context(), labels=["zero", "one"], label_height=12, padding=0).pixels
    assert labelled.shape == (1, 3, 4 + 12, 2 * 5)
    assert labelled[0, :, 4:].min() < 0.5  # the caption drew something dark on white


# --------------------------------------------------------------------------------------------
# recipes and the real network


def test_every_feature_vis_node_documents_its_arguments_and_cites_its_source():
    from dreamnodes.registry import load_all

    families = ("objective.", "prior.", "param.", "render.optimize")
    specs = [s for name, s in load_all().items() if name.startswith(families)]
    assert len(specs) >= 16
    for spec in specs:
        for item in spec.params + spec.inputs:
            assert item.doc, f"{spec.type_name}: '{item.name}' has no Args: entry"
        assert any(str(y) in spec.doc for y in range(2013, 2020)), f"{spec.type_name} cites no paper"


@pytest.mark.parametrize("name", ["class_vis", "split_targets", "channel_atlas", "student_t"])
def test_example_recipes_validate(name):
    from dreamnodes.graphs.recipe import load_recipe
    from dreamnodes.graphs.validate import validate
    from dreamnodes.registry import load_all

    validate(load_recipe(EXAMPLES / f"{name}.yaml"), load_all())


@pytest.fixture(scope="module")
def mobilenet() -> Model:
    from dreamnodes.nodes.model import load

    try:
        return load(Context(node_id="net"))
    except NodeError as exc:  # the weights package is not installed
        pytest.skip(str(exc))


@pytest.mark.slow
def test_mobilenet_class_map_averages_to_the_logits(mobilenet):
    x = pictures(1, 224)
    maps = O.class_logit_maps(mobilenet, x)
    assert maps.shape == (1, 1000, 7, 7)
    with torch.no_grad():
        logits = mobilenet.module(mobilenet.normalize(x))
    assert torch.allclose(maps.mean((2, 3)), logits, atol=1e-3)


@pytest.mark.slow
def test_split_targets_put_each_class_in_its_half(mobilenet):
    """The split-target recipe's objective, at a small size: A's logits rise in the top half, B's in the bottom."""
    from dreamnodes.graphs.recipe import load_recipe

    recipe = load_recipe(EXAMPLES / "split_targets.yaml")
    target = recipe.nodes["targets"].params
    labels, regions = target["labels"], target["regions"]
    assert regions == ["top", "bottom"]
    ctx = Context(seed=0)
    obj = O.class_map(mobilenet, ctx, labels=labels, regions=regions, contrast=target.get("contrast", 0.0))
    out = R.optimize(obj, ctx, P.fft(), [T.jitter(4), T.scale(0.95, 1.05)], steps=60, step_size=0.08,
                     width=192, height=192)
    maps = O.class_logit_maps(mobilenet, out.image.pixels).detach()  # [1, 1000, 6, 6]
    a, b = O._class_indices(mobilenet, labels, None)
    top, bottom = maps[0, :, :3].mean((1, 2)), maps[0, :, 3:].mean((1, 2))
    assert top[a] > bottom[a] + 1 and bottom[b] > top[b] + 1
    assert top[a] > top[b] and bottom[b] > bottom[a]
