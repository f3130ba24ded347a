"""Tiled DeepDream: tiles agree with the whole picture, leave no seams, and the runtime
refuses (with a suggested tile) a dream that would not fit in memory. Small pictures,
the real ImageNet MobileNetV2."""
from __future__ import annotations

import pytest
import torch

from dreamnodes import Context
from dreamnodes.errors import NodeError
from dreamnodes.graphs import parse_recipe
from dreamnodes.nodes import image as image_nodes
from dreamnodes.nodes import model as model_nodes
from dreamnodes.nodes import render
from dreamnodes.nodes.kernel import memory, steps, tiles
from dreamnodes.nodes.kernel.network import capture
from dreamnodes.runtime import Cache, Runner
from dreamnodes.types import Image


@pytest.fixture(scope="module")
def net():
    return model_nodes.load(Context(node_id="net"), arch="mobilenet_v2", weights="IMAGENET1K_V1")


@pytest.fixture(scope="module")
def objective(net):
    return model_nodes.layer(net, Context(), path="features.10")


@pytest.fixture(scope="module")
def photo():
    return image_nodes.load(Context(), source="sample:chelsea", width=192, height=192).pixels


def whole_gradient(objective, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(capture(objective.model, x, objective.layers)).sum(), x)
    return g


def tiled(objective, x, tile, overlap, shift):
    g, _ = steps.ObjectiveGradient(objective.model, objective.fn, objective.layers, steps.Pipeline([]),
                                   torch.Generator(), torch.Generator(), tile, overlap).at(x, shift)
    return g


def run_dream(objective, x, tile=0, tile_overlap=64, move_tiles=True, **settings):
    s = steps.DreamSettings(**{"octaves": 1, "steps": 4, "step_size": 2.0, **settings})
    gradient = steps.ObjectiveGradient(objective.model, objective.fn, objective.layers, steps.Pipeline([]),
                                       torch.Generator().manual_seed(0), torch.Generator().manual_seed(1),
                                       tile, tile_overlap, move_tiles)
    return steps.dream(x, gradient, s)


def test_tile_cores_partition_the_side_and_start_on_the_stride_grid():
    for length, tile, overlap, shift in [(192, 64, 64, 0), (192, 64, 32, 32), (1000, 512, 64, 448), (70, 64, 0, 32)]:
        spans = tiles.tile_spans(length, tile, overlap, shift)
        cores = [(c0, c1) for c0, c1, _, _ in spans]
        assert cores[0][0] == 0 and cores[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))  # no gap, no double
        for c0, c1, i0, i1 in spans:
            assert i0 == max(0, c0 - overlap) and i1 == min(length, c1 + overlap)
            assert i0 % tiles.ALIGN == 0 and c1 - c0 <= tile
    assert tiles.effective_tile(0, 512, 512) == 0  # automatic: small octaves whole
    assert tiles.effective_tile(0, 5400, 5400) == tiles.AUTO_TILE
    assert tiles.effective_tile(100, 1000, 1000) == 128  # rounded up to the stride
    assert tiles.effective_tile(1024, 1000, 1000) == 0  # a tile as large as the picture: whole


def test_the_tiled_gradient_is_the_whole_pictures_gradient(objective, photo):
    g0 = whole_gradient(objective, photo)
    err = {ov: ((tiled(objective, photo, 64, ov, (32, 96)) - g0).norm() / g0.norm()).item() for ov in (0, 64, 96)}
    assert err[96] < 0.01 and err[64] < 0.05  # only the receptive field cut at the margins differs
    assert err[0] > 0.3  # without context the tiles' gradients are wrong near their borders
    cos = torch.nn.functional.cosine_similarity(tiled(objective, photo, 64, 64, (0, 0)).flatten(), g0.flatten(), 0)
    assert cos > 0.999


def test_a_tiled_dream_differs_from_the_whole_one_no_more_than_chaos_does(objective, photo):
    # a dream is chaotic: a 1e-4 nudge of the photo changes the result after a few steps; tiling
    # must not change it more than that, and must raise the objective as much
    whole = run_dream(objective, photo)
    nudged = run_dream(objective, photo + 1e-4 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(5)))
    tiles = run_dream(objective, photo, tile=64, tile_overlap=64)
    change = (whole - photo).abs().mean()
    assert (tiles - whole).abs().mean() <= 1.2 * (nudged - whole).abs().mean()
    assert (tiles - photo).abs().mean() == pytest.approx(change.item(), rel=0.05)
    score = lambda x: objective(capture(objective.model, x, objective.layers)).item()
    assert score(tiles) == pytest.approx(score(whole), rel=0.05) and score(tiles) > 1.5 * score(photo)


def border_ratio(grad, tile, shift):
    """Gradient energy on the tile borders' rows and columns over the energy inside the tiles."""
    e = grad.pow(2).sum(dim=(0, 1))
    h, w = e.shape

    def lines(n, s):
        m = torch.zeros(n, dtype=torch.bool)
        for c0, c1, _, _ in tiles.tile_spans(n, tile, 0, s):
            m[c0], m[c1 - 1] = True, True
        m[:2] = m[-2:] = False  # the picture's own border is no seam
        return m

    border = lines(h, shift[0])[:, None] | lines(w, shift[1])[None, :]
    inside = ~border
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = False, False, False, False
    return (e[border].mean() / e[inside].mean()).item()


def test_no_seams_gradient_energy_on_tile_borders_matches_the_interior(objective, photo):
    # the network's own stride grid makes some lines weaker, so each ratio is compared with the
    # whole picture's gradient measured on the same lines
    dreamed = run_dream(objective, photo, steps=2)
    for x in (photo, dreamed):
        g0 = whole_gradient(objective, x)
        for shift in [(0, 0), (32, 96), (64, 32)]:
            ref = border_ratio(g0, 64, shift)
            assert border_ratio(tiled(objective, x, 64, 64, shift), 64, shift) / ref == pytest.approx(1, abs=0.03)
            assert border_ratio(tiled(objective, x, 64, 0, shift), 64, shift) / ref < 0.75  # a visible seam


def test_moving_tiles_leave_no_seam_in_the_picture(objective, photo):
    """In the dreamed picture: the energy of its pixel differences next to the lines where tiles can meet
    (multiples of 64 for a fixed grid), against elsewhere, relative to the untiled dream."""
    def line_energy(x):
        d = x - photo
        gx = (d[..., 1:] - d[..., :-1]).pow(2).mean(dim=(0, 1, 2))  # index k: between columns k, k+1
        gy = (d[:, :, 1:] - d[:, :, :-1]).pow(2).mean(dim=(0, 1, 3))
        g = (gx + gy) / 2
        idx = torch.arange(1, g.numel() + 1)
        near = torch.minimum(idx % 64, 64 - idx % 64) <= 1
        return (g[near].mean() / g[~near].mean()).item()

    ref = line_energy(run_dream(objective, photo, steps=8, step_size=3.0))
    moving = line_energy(run_dream(objective, photo, steps=8, step_size=3.0, tile=64, tile_overlap=32))
    fixed = line_energy(run_dream(objective, photo, steps=8, step_size=3.0, tile=64, tile_overlap=0,
                                  move_tiles=False))
    assert moving / ref == pytest.approx(1, abs=0.08)
    assert fixed / ref < 0.9  # the metric does see seams when there are some


def recipe(side: int, tile: int) -> str:
    return f"""
dreamnodes: 1
seed: 1
nodes:
  photo: {{type: image.solid, params: {{width: {side}, height: {side}}}}}
  net: {{type: model.load, params: {{arch: mobilenet_v2, weights: IMAGENET1K_V1}}}}
  layer: {{type: model.layer, inputs: {{model: net}}, params: {{path: features.10}}}}
  dream:
    type: render.deepdream
    inputs: {{image: photo, objective: layer}}
    params: {{octaves: 1, steps: 1, tile: {tile}}}
"""


def test_a_dream_that_would_not_fit_is_refused_with_a_suggested_tile(tmp_path, monkeypatch, net, objective):
    monkeypatch.setenv("DREAMNODES_MEMORY_LIMIT_MB", "2000")
    ran = []
    monkeypatch.setattr(render, "dream", lambda *a, **k: ran.append(1))
    runner = Runner(cache=Cache(tmp_path / "c", disk=False), out_dir=tmp_path / "o")
    with pytest.raises(NodeError) as err:
        runner.run(parse_recipe(recipe(2048, 2048)))
    msg = str(err.value)
    assert "node 'dream'" in msg and "2048x2048 picture whole (untiled)" in msg and "GB is available" in msg
    assert "DREAMNODES_MEMORY_LIMIT_MB" in msg
    suggested = int(msg.split("set `tile` to ")[1].split()[0])
    assert ran == []  # refused before the dream started
    assert memory.check_dream_memory("x", torch.device("cpu"), 1, 2048, 2048, suggested, 64, net,
                                     objective.layers) <= 2000 * 1024**2
    # a picture that cannot fit whatever the tile says so
    monkeypatch.setenv("DREAMNODES_MEMORY_LIMIT_MB", "1000")
    with pytest.raises(NodeError, match="even small tiles do not fit"):
        runner.run(parse_recipe(recipe(4096, 512)))


def test_big_prints_are_estimated_within_bounds(net, objective):
    act = memory.activation_bytes_per_pixel(net, objective.layers)
    whole = memory.dream_peak_bytes(1, 5400, 5400, 8192, 64, act)
    tiles = memory.dream_peak_bytes(1, 5400, 5400, 0, 64, act)  # automatic: 512 px tiles
    assert whole > 20 * 1024**3 and tiles < 4 * 1024**3


def test_render_optimize_tiles_any_parameterization(objective):
    from dreamnodes.nodes import param

    def first_step(kind, tile, overlap=0):
        p = param.pixels() if kind == "pixels" else param.fft()
        run = lambda lr: render.optimize(objective, Context(seed=2), parameterization=p, steps=1, step_size=lr,
                                           width=192, height=160, tile=tile, tile_overlap=overlap).image.pixels
        return run(0.05) - run(0.0)

    # Adam's first step is the sign of each parameter's gradient, so it shows any error in the
    # gradient the tiles push back into the pixels or the spectrum
    for kind in ("pixels", "fft"):
        whole = first_step(kind, 0).flatten()
        cos = {ov: torch.nn.functional.cosine_similarity(whole, first_step(kind, 64, ov).flatten(), 0).item()
               for ov in (0, 96)}
        assert cos[96] > 0.99, (kind, cos)
        assert cos[0] < 0.5, (kind, cos)  # without context the tiles would be wrong


def test_objectives_tied_to_positions_are_not_tiled(net, photo):
    """A neuron at (x, y) or a class aimed at a region means something else on each tile: a
    tiled render refuses it before the first step, naming the tile to set; whole, it runs."""
    from dreamnodes.nodes import objective as objectives, param
    from dreamnodes.types import Image

    neuron = model_nodes.layer(net, Context(), path="features.6", channel=3, x=2, y=2)
    regions = objectives.class_map(net, Context(), labels=["bee", "spider web"], regions=["top", "bottom"])
    plain = model_nodes.layer(net, Context(), path="features.6")
    assert neuron.positional and regions.positional and (plain + 2 * neuron).positional
    assert not plain.positional
    with pytest.raises(NodeError, match=r"depends on positions in the whole picture.*set `tile` to 128 or more"):
        render.optimize(neuron, Context(node_id="vis"), param.pixels(), steps=1, width=128, height=128, tile=64)
    with pytest.raises(NodeError, match="class map.*cannot be computed in tiles"):
        render.deepdream(Image(photo), regions, Context(node_id="dream"), octaves=1, steps=1, tile=64)
    out = render.optimize(neuron, Context(node_id="vis"), param.pixels(), steps=1, width=128, height=128)
    assert out.image.pixels.shape == (1, 3, 128, 128)


def test_a_positional_objective_that_does_not_fit_whole_is_not_told_to_tile(tmp_path, monkeypatch, net):
    """The memory check does not offer tiles to an objective that cannot be tiled: it asks for a
    smaller picture instead; a guided dream (which scores the guide) may still be tiled."""
    neuron = model_nodes.layer(net, Context(), path="features.6", channel=3, x=2, y=2)
    monkeypatch.setenv("DREAMNODES_MEMORY_LIMIT_MB", "2500")  # whole: about 4 GB; in tiles: fits
    with pytest.raises(NodeError, match="cannot be tiled: lower the picture's size") as err:
        memory.deepdream_memory(Context(node_id="dream"), Image(torch.zeros(1, 3, 1536, 1536)), neuron, tile=2048)
    assert "set `tile`" not in str(err.value)
    with pytest.raises(NodeError, match="set `tile` to"):
        memory.deepdream_memory(Context(node_id="dream"), Image(torch.zeros(1, 3, 1536, 1536)), neuron, tile=2048,
                                 guide=Image(torch.zeros(1, 3, 64, 64)))
