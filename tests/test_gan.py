"""GAN toolbox: gan.load / generate, latent sample / pick / interpolate /
arithmetic, filter dropout and find_filters, param.latent, video.save.

The real face generator (gan-face-generate, 3.5M parameters) is small enough
for every test; batches stay small. Nothing here reaches the network.
"""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import torch

from dreamnodes import Context, NodeError
from dreamnodes.events import Drew
from dreamnodes.graphs import load_recipe
from dreamnodes.nodes import gan as G
from dreamnodes.nodes import param as P
from dreamnodes.nodes.kernel.hooks import layer_outputs
from dreamnodes.nodes.kernel.masks import Box, coverage
from dreamnodes.nodes import latent as L
from dreamnodes.nodes import video as V
from dreamnodes.nodes.weights import PACKAGED, sha256_of, verify
from dreamnodes.runtime import Runner
from dreamnodes.types import Frames, Generator, Image, Latent, Parameterization

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(node_id="n", seed=5, out_dir=tmp_path)


@pytest.fixture(scope="module")
def faces() -> Generator:
    return G.load(Context(node_id="gen"))


def params_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# gan.load, gan.generate


def test_face_generator_loads_verified_and_makes_faces(faces, ctx):
    path = G.packaged(G.FACES)
    assert sha256_of(path) == PACKAGED[G.FACES].sha256
    assert (faces.nz, faces.size) == (100, 64)
    assert faces.weights_id.startswith("dcgan_faces:" + PACKAGED[G.FACES].sha256[:16])
    assert not faces.module.training
    assert not any(p.requires_grad for p in faces.module.parameters())
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    img = G.generate(faces, Latent(z), ctx, batch_size=2)
    assert img.pixels.shape == (3, 3, 64, 64)
    assert 0 <= img.pixels.min() and img.pixels.max() <= 1
    assert img.pixels.std() > 0.1  # pictures, not a constant
    # batching does not change the result
    whole = G.generate(faces, Latent(z), ctx, batch_size=64)
    assert torch.allclose(img.pixels, whole.pixels, atol=1e-5)


def test_damaged_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "weights.tar"
    shutil.copy(G.packaged(G.FACES), bad)
    with open(bad, "r+b") as f:
        f.seek(2000)
        f.write(b"\x00" * 16)
    monkeypatch.setattr(G, "packaged", lambda key: verify(bad, PACKAGED[key].sha256))
    with pytest.raises(NodeError, match="damaged"):
        G.load(Context(node_id="gen"))


def test_user_checkpoint_architecture_is_read_and_checked(tmp_path):
    torch.manual_seed(0)
    small = G.DCGANGenerator(nz=16, ngf=8, size=32)
    torch.save({"netG_state_dict": small.state_dict()}, tmp_path / "mine.pth")
    c = Context(node_id="gen", input_roots=(tmp_path,))
    gen = G.load(c, checkpoint="mine.pth")
    assert (gen.nz, gen.size) == (16, 32)
    out = G.generate(gen, Latent(torch.randn(2, 16)), c)
    assert out.pixels.shape == (2, 3, 32, 32)
    with pytest.raises(NodeError, match="nz=16, not 100"):
        G.load(c, checkpoint="mine.pth", nz=100)
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(NodeError, match="main"):
        G.load(c, checkpoint="other.pth")


def test_generate_refuses_latents_of_the_wrong_size(faces, ctx):
    with pytest.raises(NodeError, match=r"\[N, 100\]"):
        G.generate(faces, Latent(torch.zeros(2, 64)), ctx)


# ---------------------------------------------------------------------------------------------
# latent.sample, latent.pick


def test_same_seed_same_latents_and_it_is_reported(ctx):
    drew = []
    c1 = Context(node_id="s", seed=42, emit=drew.append)
    a = L.sample(c1, count=4, nz=100)
    b = L.sample(Context(node_id="s", seed=42), count=4, nz=100)
    c = L.sample(Context(node_id="s", seed=43), count=4, nz=100)
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, c.z)
    assert a.z.shape == (4, 100)
    assert any(isinstance(e, Drew) and "seed 42" in e.what for e in drew)


def test_sample_distributions(faces):
    c = Context(node_id="s", seed=1)
    u = L.sample(c, count=200, nz=100, distribution="uniform").z
    assert u.min() >= -1 and u.max() <= 1
    t = L.sample(c, count=200, nz=100, distribution="truncated", truncation=1.5).z
    assert t.abs().max() <= 1.5 and t.std() > 0.5
    assert L.sample(c, generator=faces, count=2, nz=7).z.shape == (2, 100)  # nz from the generator


def test_pick_by_index(ctx):
    z = torch.arange(12.0).view(4, 3)
    got = L.pick(Latent(z), ctx, indices=[2, 0, -1])
    assert torch.equal(got.z, z[[2, 0, 3]])
    got.z.add_(1)
    assert torch.equal(z, torch.arange(12.0).view(4, 3))  # a copy
    with pytest.raises(NodeError, match="out of range"):
        L.pick(Latent(z), ctx, indices=[4])


# ---------------------------------------------------------------------------------------------
# latent.interpolate


def test_slerp_endpoints_exact_and_norm_kept():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(100, generator=g), torch.randn(100, generator=g)
    b = b * (a.norm() / b.norm())  # equal norms
    t = torch.linspace(0, 1, 11)
    path = L.slerp(a, b, t)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    norms = path.norm(dim=1)
    assert torch.allclose(norms, a.norm().expand(11), rtol=1e-5)
    # the lerp midpoint of two such points is much shorter
    assert L.lerp(a, b, torch.tensor([0.5])).norm() < 0.85 * a.norm()
    # unequal norms: the norm goes linearly from one to the other
    c = 2 * torch.randn(100, generator=g)
    n = L.slerp(a, c, t).norm(dim=1)
    assert torch.allclose(n, a.norm() * (1 - t) + c.norm() * t, rtol=1e-5)


def test_slerp_of_equal_directions_is_defined():
    a = torch.ones(10)
    out = L.slerp(a, 3 * a, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.isfinite(out).all() and torch.allclose(out[1], 2 * a)


def test_interpolate_frames_and_loop(ctx):
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(1))
    walk = L.interpolate([Latent(z)], ctx, method="slerp", frames=5, loop=False).z
    assert walk.shape == (2 * 5 + 1, 100)
    assert torch.equal(walk[0], z[0]) and torch.equal(walk[5], z[1]) and torch.equal(walk[-1], z[2])
    loop = L.interpolate([Latent(z[:1]), Latent(z[1:])], ctx, method="lerp", frames=4, loop=True).z
    assert loop.shape == (3 * 4, 100)  # back towards the start, without repeating it
    assert torch.equal(loop[8], z[2]) and not torch.equal(loop[-1], z[0])
    assert torch.allclose(loop[-1], 0.25 * z[2] + 0.75 * z[0], atol=1e-6)
    with pytest.raises(NodeError, match="at least two"):
        L.interpolate([Latent(z[:1])], ctx)


def test_even_pace_evens_out_the_picture_change(faces, ctx):
    keys = Latent(torch.randn(3, 100, generator=torch.Generator().manual_seed(4)))

    def changes(walk):
        pics = G.generate(faces, walk, ctx).pixels
        return (pics[1:] - pics[:-1]).abs().mean((1, 2, 3))

    plain = L.interpolate([keys], ctx, frames=12, pace="latent")
    even = L.interpolate([keys], ctx, generator=faces, frames=12, pace="even")
    assert even.z.shape == plain.z.shape == (2 * 12 + 1, 100)
    assert torch.equal(even.z[0], keys.z[0]) and torch.equal(even.z[-1], keys.z[2])
    assert any(torch.equal(row, keys.z[1]) for row in even.z)  # the middle keypoint is a frame
    d_plain, d_even = changes(plain), changes(even)
    assert d_even.max() / d_even.min() < 1.5 < d_plain.max() / d_plain.min()
    with pytest.raises(NodeError, match="wire the generator"):
        L.interpolate([keys], ctx, pace="even")


def test_allocate_frames_in_proportion():
    assert L._allocate(10, [1.0, 1.0]) == [5, 5]
    assert L._allocate(12, [3.0, 1.0]) == [9, 3]
    assert sum(L._allocate(7, [0.0, 5.0, 1e-9])) == 7 and min(L._allocate(7, [0.0, 5.0, 1e-9])) >= 1


# ---------------------------------------------------------------------------------------------
# latent.arithmetic


def ev(text: str, **env) -> torch.Tensor | float:
    return L.evaluate(L.parse(text), {k: torch.tensor(v, dtype=torch.float64) for k, v in env.items()})


def test_parser_precedence_parentheses_and_unary():
    a, b, c = [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]
    assert torch.equal(ev("a + b * 2", a=a, b=b), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.equal(ev("(a + b) * 2", a=a, b=b), torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert torch.equal(ev("a - b + c", a=a, b=b, c=c), torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert torch.equal(ev("a - (b + c)", a=a, b=b, c=c), torch.tensor([-1.0, -3.0], dtype=torch.float64))
    assert torch.equal(ev("-a + c / 2", a=a, c=c), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(ev("0.5*(a+c)-.25e1*b", a=a, b=b, c=c), torch.tensor([1.5, -1.5], dtype=torch.float64))


@pytest.mark.parametrize("text, message", [
    ("a +", "ends too early"),
    ("(a - b", "expected ')'"),
    ("a - b)", "no matching"),
    ("2a", "'*'"),
    ("a * b", "only a number"),
    ("a + 1", "mixes"),
    ("a / 0", "zero"),
    ("a / b", "divides by a latent"),
    ("a; import os", "unexpected character ';'"),
    ("__import__('os')", "unexpected character"),
    ("", "empty"),
])
def test_parser_errors(text, message):
    with pytest.raises(L.ExpressionError, match=re.escape(message)):
        ev(text, a=[1.0], b=[2.0])


def test_parser_never_evaluates_python(monkeypatch):
    import builtins

    def refuse(*_a, **_k):
        raise AssertionError("eval/exec/compile must not be used")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)
    assert torch.equal(ev("a - a + a", a=[1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_arithmetic_node_averages_and_checks_names(ctx):
    g = torch.Generator().manual_seed(3)
    a = Latent(torch.randn(3, 100, generator=g))
    out = L.arithmetic(ctx, a=a, b=a, c=a, expression="a - b + c")
    assert torch.allclose(out.z[0], a.z.mean(0), atol=1e-6)  # arithmetic of identical inputs is the input
    b = Latent(torch.randn(2, 100, generator=g))
    two = L.arithmetic(ctx, a=a, b=b, expression="(a + b) / 2")
    assert torch.allclose(two.z[0], (a.z.mean(0) + b.z.mean(0)) / 2, atol=1e-6)
    noisy = L.arithmetic(ctx, a=a, b=b, expression="a - b", count=4, noise=0.3)
    assert noisy.z.shape == (4, 100)
    assert torch.allclose(noisy.z[0], a.z.mean(0) - b.z.mean(0), atol=1e-6)
    assert 0.2 < (noisy.z[1:] - noisy.z[0]).std() < 0.4
    with pytest.raises(NodeError, match="unknown name 'smile'.*a, b, c, d"):
        L.arithmetic(ctx, a=a, expression="smile - a")
    with pytest.raises(NodeError, match="nothing is wired into input 'c'"):
        L.arithmetic(ctx, a=a, b=b, expression="a - b + c")
    with pytest.raises(NodeError, match="position 4"):
        L.arithmetic(ctx, a=a, expression="a +* a")


# ---------------------------------------------------------------------------------------------
# filter dropout, find_filters


def change_ratio(before: torch.Tensor, after: torch.Tensor, box) -> float:
    """Mean absolute change per pixel inside the box over the same outside it."""
    m = coverage(Box.from_corners(*box), before.shape[2], before.shape[3])
    d = (after - before).abs().mean(1)  # [N, H, W]
    inside = (d * m).sum() / (m.sum() * d.shape[0])
    outside = (d * (1 - m)).sum() / ((1 - m).sum() * d.shape[0])
    return float(inside / outside)


def test_filter_dropout_copies_and_zeroes(faces, ctx):
    before = params_of(faces.module)
    hooks = len(faces.module.main[11]._forward_hooks)
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    dropped = G.filter_dropout(faces, ctx, layer="main.11", channels=[3, 5])
    assert dropped.module is not faces.module
    acts = layer_outputs(dropped.module, z, "main.11")
    assert acts[:, [3, 5]].abs().max() == 0 and acts.abs().sum() > 0
    orig = layer_outputs(faces.module, z, "main.11")
    assert orig[:, [3, 5]].abs().max() > 0  # the upstream module still draws them
    assert len(faces.module.main[11]._forward_hooks) == hooks
    after = params_of(faces.module)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(NodeError, match="64 filters"):
        G.filter_dropout(faces, ctx, layer="main.11", channels=[64])
    with pytest.raises(NodeError, match="no layer 'main.99'"):
        G.filter_dropout(faces, ctx, layer="main.99", channels=[1])
    with pytest.raises(NodeError, match="nothing to drop"):
        G.filter_dropout(faces, ctx)


def test_find_filters_ranks_a_planted_filter_first(faces, ctx):
    planted = Generator(copy.deepcopy(faces.module), faces.nz, faces.size)
    box = (0.5, 0.0, 1.0, 0.25)  # top-right strip

    def plant(_m, _i, out):  # filter 77 of main.8 fires only inside the box
        out = out.clone()
        out[:, 77] = 3.0 * coverage(Box.from_corners(*box), out.shape[2], out.shape[3]).to(out)
        return out

    planted.module.main[8].register_forward_hook(plant)
    z = Latent(torch.randn(4, 100, generator=torch.Generator().manual_seed(2)))
    found = G.find_filters(planted, z, ctx, layer="main.8", box=list(box), top=5)
    assert found.channels[0] == 77 and found.layer == "main.8"
    assert found.scores[0] == max(found.scores)


def test_found_filters_change_the_region_twice_as_much(faces, ctx):
    """Drop the filters that draw the eyes of faces with glasses: the eyes change, the rest much less.

    The faces are those of examples/filter_dropout.yaml (seed 0 of 96): six with glasses to find
    the filters on, six other faces with glasses to check that the effect carries over.
    """
    box = (0.1, 0.3, 0.9, 0.55)  # x0, y0, x1, y1: the eyes of these aligned faces
    pool = L.sample(Context(node_id="pool", seed=0), count=96, nz=100)
    found_on = L.pick(pool, ctx, indices=[5, 8, 25, 42, 51, 53])
    held_out = L.pick(pool, ctx, indices=[30, 62, 68, 83, 90, 19])
    found = G.find_filters(faces, found_on, ctx, layer="main.8", box=list(box), top=8)
    dropped = G.filter_dropout(faces, ctx, filters=found)
    for lat in (found_on, held_out):
        before = G.generate(faces, lat, ctx).pixels
        after = G.generate(dropped, lat, ctx).pixels
        assert change_ratio(before, after, box) >= 2.0
        assert (after - before).abs().mean() > 0.005  # and the change is visible, not nothing


def test_region_from_mask_equals_box(faces, ctx):
    box = [0.25, 0.5, 0.75, 1.0]
    pic = torch.zeros(1, 3, 64, 64)
    pic[:, :, 32:, 16:48] = 1
    a = G.region_masks(3, 16, 16, box, None)
    b = G.region_masks(3, 16, 16, None, Image(pic))
    assert torch.allclose(a, b)
    with pytest.raises(NodeError, match="not both"):
        G.region_masks(3, 16, 16, box, Image(pic))
    with pytest.raises(NodeError, match="4 numbers|x0 < x1"):
        G.region_masks(3, 16, 16, [0.5, 0, 0.2, 1], None)


# ---------------------------------------------------------------------------------------------
# param.latent (DGN)


def test_latent_parameterization_makes_pictures_and_keeps_the_prior(faces):
    param = P.latent(faces, l2=0.5, clip=1.0)
    assert isinstance(param, Parameterization)
    gen = torch.Generator().manual_seed(0)
    params, image_fn = param.make(2, 96, 80, torch.device("cpu"), gen)
    (z,) = params
    assert z.shape == (2, 100) and z.requires_grad
    x = image_fn()
    assert x.shape == (2, 3, 96, 80) and 0 <= x.min() and x.max() <= 1
    assert z.abs().max() <= 1.0  # clipped to the prior's range before generating
    # the L2 penalty reaches z's gradient: with no objective, a step shrinks z
    before = z.detach().norm()
    (0 * x.sum()).backward()
    assert torch.allclose(z.grad, 2 * 0.5 * z.detach())
    torch.optim.SGD([z], lr=0.1).step()
    assert z.detach().norm() < before
    assert not any(p.requires_grad for p in faces.module.parameters())


def test_latent_parameterization_gradient_reaches_z(faces):
    _, image_fn = P.latent(faces, l2=0.0, clip=None).make(1, 64, 64, torch.device("cpu"),
                                                               torch.Generator().manual_seed(0))
    z = _[0]
    image_fn()[:, 0].mean().backward()  # make it redder
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_dgn_through_render_optimize_raises_the_objective(faces, ctx):
    """param.latent plugs into render.optimize: a few Adam steps on z raise a class score."""
    import torch.nn as nn

    from dreamnodes.nodes.kernel.network import LOGITS
    from dreamnodes.nodes.render import optimize
    from dreamnodes.types import Model, Objective

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 3)).eval().requires_grad_(False)
    model = Model(net, "tiny", categories=("a", "b", "c"))
    objective = Objective(model, (LOGITS,), lambda acts: acts[LOGITS][:, 1], "class b")
    init = Latent(torch.randn(2, 100, generator=torch.Generator().manual_seed(0)))
    param = P.latent(faces, init=init, l2=0.001, clip=3.0)
    out = optimize(objective, ctx, parameterization=param, steps=8, step_size=0.1, batch=2, width=48, height=48)
    start = torch.nn.functional.interpolate(G.generate(faces, init, ctx).pixels, size=(48, 48), mode="bilinear",
                                            align_corners=False)
    with torch.no_grad():
        before = net(model.normalize(start))[:, 1]
        after = net(model.normalize(out.image.pixels))[:, 1]
    assert out.image.pixels.shape == (2, 3, 48, 48)
    assert (after > before).all()
    assert torch.equal(init.z, torch.randn(2, 100, generator=torch.Generator().manual_seed(0)))  # input untouched


# ---------------------------------------------------------------------------------------------
# video


def moving_square(t: int = 6, size: int = 32) -> Frames:
    p = torch.zeros(t, 3, size, size)
    for i in range(t):
        p[i, :, 4:12, 4 + 3 * i:12 + 3 * i] = 1
    return Frames(p, fps=10)


def test_video_save_gif(ctx, tmp_path):
    from PIL import Image as PILImage

    V.save(moving_square(), ctx, path="anim/square.gif", scale=2)
    path = tmp_path / "anim" / "square.gif"
    assert ctx.written == ["anim/square.gif"]
    with PILImage.open(path) as im:
        assert im.size == (64, 64) and im.n_frames == 6
        assert im.info.get("loop") == 0
        im.seek(3)
        assert abs(im.info["duration"] - 100) <= 10


def test_video_save_mp4(ctx, tmp_path):
    if V.ffmpeg_exe() is None:
        pytest.skip("imageio-ffmpeg is not installed")
    V.save(moving_square(t=8, size=33), ctx, path="square.mp4")
    data = (tmp_path / "square.mp4").read_bytes()
    assert data[4:8] == b"ftyp" and len(data) > 500
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "square.mp4"))
    assert frames == 8


def test_video_save_refuses_unknown_formats(ctx):
    with pytest.raises(NodeError, match=".gif, .webp or .mp4"):
        V.save(moving_square(), ctx, path="x.avi")


def test_video_frames_boomerang():
    imgs = Image(torch.rand(4, 3, 8, 8))
    f = V.frames(imgs, fps=5, boomerang=True)
    assert f.pixels.shape[0] == 6 and torch.equal(f.pixels[4], imgs.pixels[2]) and f.fps == 5


# ---------------------------------------------------------------------------------------------
# the example recipes through the runtime


def test_walk_recipe_runs_and_is_smooth(tmp_path):
    r = load_recipe(EXAMPLES / "latent_walk.yaml")
    r.nodes["keys"].params["count"] = 3
    r.nodes["walk"].params["frames"] = 6
    r.nodes["out"].params["path"] = "walk.gif"
    res = Runner(out_dir=tmp_path).run(r)
    faces = res.output("faces").pixels
    assert faces.shape == (18, 3, 64, 64)
    steps = (faces - faces.roll(-1, 0)).abs().mean((1, 2, 3))  # looping: the last frame leads to the first
    assert steps.max() < 2 * steps.min()  # paced evenly
    assert (tmp_path / "walk.gif").exists()


def test_arithmetic_and_dropout_recipes_validate():
    from dreamnodes.graphs.validate import validate
    from dreamnodes.registry import load_all

    for name in ("face_arithmetic.yaml", "filter_dropout.yaml", "dgn_sunglasses.yaml", "latent_walk.yaml"):
        validate(load_recipe(EXAMPLES / name), load_all())


def test_every_gan_node_documents_its_arguments_and_cites_its_source():
    from dreamnodes.registry import load_all

    specs = {name: s for name, s in load_all().items()
             if name.startswith(("gan.", "latent.", "video.")) or name == "param.latent"}
    assert {"gan.load", "gan.generate", "gan.filter_dropout", "gan.find_filters", "param.latent", "latent.sample",
            "latent.pick", "latent.interpolate", "latent.arithmetic", "video.save", "video.frames"} <= set(specs)
    for name, spec in specs.items():
        for item in spec.params + spec.inputs:
            assert item.doc, f"{name}: '{item.name}' has no Args: entry"
        if not name.startswith(("video.", "latent.pick")):
            assert "2015" in spec.doc or "2016" in spec.doc, f"{name} cites no paper"
