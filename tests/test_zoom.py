"""Moving pictures: the infinite zoom resumes after an interruption with the same pixels,
its MP4 decodes with the right number of frames, in-between frames follow the zoom, and a
dreamed video is steadier with blending than without."""
from __future__ import annotations

import pytest
import torch

from dreamnodes import Context, events as ev
from dreamnodes.errors import Cancelled, NodeError
from dreamnodes.graphs import parse_recipe
from dreamnodes.nodes import image as image_nodes
from dreamnodes.nodes import model as model_nodes
from dreamnodes.nodes import render, video
from dreamnodes.nodes.kernel.motion import Motion, in_between, warp
from dreamnodes.runtime import Cache, Runner

ZOOM = """
dreamnodes: 1
name: tiny zoom
seed: 5
nodes:
  photo: {type: image.load, params: {source: 'sample:chelsea', size: 64}}
  net: {type: model.load, params: {arch: mobilenet_v2, weights: IMAGENET1K_V1}}
  layer: {type: model.layer, inputs: {model: net}, params: {path: features.6}}
  jitter: {type: transform.jitter, params: {pixels: 8}}
  zoom:
    type: render.zoom
    inputs: {image: photo, objective: layer, transforms: [jitter]}
    params: {frames: 5, zoom: 1.1, rotate: 2.0, octaves: 1, steps: 2, step_size: 3.0, between: 1, fps: 8}
  out: {type: video.save, inputs: {frames: zoom.frames}, params: {path: zoom.mp4}}
"""


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = render._dream_frame

    def counting(*args, **kw):
        calls.append(kw.get("salt", args[3] if len(args) > 3 else None))
        return real(*args, **kw)

    monkeypatch.setattr(render, "_dream_frame", counting)
    return calls


def frame_count(path) -> int:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    n = sum(1 for _ in reader)
    return n if meta["size"] else 0


def test_an_interrupted_zoom_resumes_from_the_last_finished_frame(tmp_path, counted):
    whole = Runner(cache=Cache(tmp_path / "c1"), out_dir=tmp_path / "o1").run(parse_recipe(ZOOM))
    assert len(counted) == 5
    counted.clear()

    cache_dir = tmp_path / "c2"
    runner = Runner(cache=Cache(cache_dir), out_dir=tmp_path / "o2")

    def stop_at_frame_3(e):
        if isinstance(e, ev.Progress) and e.node == "zoom" and e.label.startswith("frame 3/"):
            runner.cancel()

    runner.listeners.append(stop_at_frame_3)
    with pytest.raises(Cancelled):
        runner.run(parse_recipe(ZOOM))
    assert counted == [0, 1, 2]  # frame 3 (index 2) started, then was stopped
    assert not (tmp_path / "o2" / "zoom.mp4").exists()
    counted.clear()

    # a new process would have only the disk: a fresh cache object on the same folder
    again = Runner(cache=Cache(cache_dir), out_dir=tmp_path / "o2").run(parse_recipe(ZOOM))
    assert counted == [2, 3, 4]  # frames 0 and 1 were not dreamed again
    assert torch.equal(again.output("zoom", "frames").pixels, whole.output("zoom", "frames").pixels)
    assert (tmp_path / "o2" / "zoom.mp4").read_bytes() == (tmp_path / "o1" / "zoom.mp4").read_bytes()


def test_the_zoom_mp4_plays_with_every_frame(tmp_path):
    result = Runner(cache=Cache(tmp_path / "c"), out_dir=tmp_path / "o").run(parse_recipe(ZOOM))
    frames = result.output("zoom", "frames")
    assert frames.pixels.shape[0] == 5 + 4 * 1 and frames.fps == 8
    assert frame_count(tmp_path / "o" / "zoom.mp4") == 9
    # frames move: the last dreamed frame is not the first
    assert (frames.pixels[-1] - frames.pixels[0]).abs().mean() > 0.02


def test_changing_a_parameter_does_not_reuse_another_zooms_frames(tmp_path, counted):
    cache = Cache(tmp_path / "c")
    Runner(cache=cache, out_dir=tmp_path / "o").run(parse_recipe(ZOOM))
    counted.clear()
    recipe = parse_recipe(ZOOM)
    recipe.nodes["zoom"].params["zoom"] = 1.2
    Runner(cache=Cache(tmp_path / "c"), out_dir=tmp_path / "o", overwrite=True).run(recipe)
    assert counted == [0, 1, 2, 3, 4]


def test_motion_powers_compose_and_in_betweens_follow_the_zoom():
    m = Motion(1.2, 5.0, 3.0, -2.0)

    def compose(p, q):
        a1, b1, c1, d1, x1, y1 = p
        a2, b2, c2, d2, x2, y2 = q
        return (a1 * a2 + b1 * c2, a1 * b2 + b1 * d2, c1 * a2 + d1 * c2, c1 * b2 + d1 * d2,
                a1 * x2 + b1 * y2 + x1, c1 * x2 + d1 * y2 + y1)

    for s, t in [(0.25, 0.75), (0.5, 0.5), (1.0, -0.4)]:
        assert compose(m.power(s), m.power(t)) == pytest.approx(m.power(s + t), abs=1e-9)
    a = image_nodes.load(Context(), source="sample:astronaut", size=96).pixels
    b, _ = warp(a, m.power(1))  # what the next frame looks like before it is dreamed
    assert torch.allclose(in_between(a, b, m, 1e-6), a, atol=1e-3)
    assert torch.allclose(in_between(a, b, m, 1 - 1e-6), b, atol=1e-3)
    mid, want = in_between(a, b, m, 0.5), warp(a, m.power(0.5))[0]
    core = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    naive = (a + b) / 2  # a plain crossfade: ghosts, not a zoom
    assert (mid - want)[core].abs().mean() < 0.5 * (naive - want)[core].abs().mean()


def test_video_load_reads_back_an_mp4_and_makes_sample_clips(tmp_path):
    clip = video.load(Context(), source="sample:coffee", frames=6, size=96)
    assert clip.pixels.shape[0] == 6 and max(clip.pixels.shape[2:]) == 96
    step = (clip.pixels[1:] - clip.pixels[:-1]).abs().mean()
    assert 0.005 < step < 0.2  # a slow, smooth pan
    ctx = Context(out_dir=tmp_path, input_roots=(tmp_path,))
    video.save(clip, ctx, path="clip.mp4", quality=90)
    back = video.load(ctx, source="clip.mp4", frames=100, size=96)
    assert back.pixels.shape == clip.pixels.shape and back.fps == 12
    assert (back.pixels - clip.pixels).abs().mean() < 0.03
    assert video.load(ctx, source="clip.mp4", frames=100, size=96, every=2).pixels.shape[0] == 3


def test_blending_keeps_a_dreamed_video_steady(tmp_path):
    net = model_nodes.load(Context(), arch="mobilenet_v2", weights="IMAGENET1K_V1")
    objective = model_nodes.layer(net, Context(), path="features.6")
    clip = video.load(Context(), source="sample:chelsea", frames=4, size=80)
    from dreamnodes.nodes import transform

    def flicker(blend):
        out = render.video_dream(clip, objective, Context(seed=3), transforms=[transform.jitter(pixels=8)],
                               blend=blend, octaves=1, steps=4, step_size=4.0).pixels
        assert out.shape == clip.pixels.shape
        return (out[1:] - out[:-1]).abs().mean().item(), (out - clip.pixels).abs().mean().item()

    alone, dreamed_alone = flicker(0.0)
    blended, dreamed_blended = flicker(0.6)
    assert blended < 0.8 * alone  # consecutive frames closer
    assert dreamed_blended > 0.5 * dreamed_alone  # and still dreamed


def test_without_a_disk_cache_a_zoom_still_resumes_within_the_process(tmp_path, counted):
    runner = Runner(cache=Cache(tmp_path / "c", disk=False), out_dir=tmp_path / "o")

    def stop_at_frame_4(e):
        if isinstance(e, ev.Progress) and e.node == "zoom" and e.label.startswith("frame 4/"):
            runner.cancel()

    runner.listeners.append(stop_at_frame_4)
    with pytest.raises(Cancelled):
        runner.run(parse_recipe(ZOOM))
    runner.listeners.remove(stop_at_frame_4)
    counted.clear()
    runner.run(parse_recipe(ZOOM))
    assert counted == [3, 4]
    assert not any((tmp_path / "c").rglob("*.dnc"))


@pytest.mark.parametrize("name, sets, outputs", [
    ("infinite_zoom.yaml", {"photo": {"width": 64, "height": 48}, "zoom": {"frames": 3, "steps": 1}},
     ["infinite_zoom.mp4"]),
    ("video_dream.yaml", {"clip": {"frames": 3, "size": 64}, "dream": {"steps": 1}}, ["clip.mp4", "video_dream.mp4"]),
    ("big_print.yaml", {"photo": {"width": 96, "height": 96}, "dream": {"steps": 1, "octaves": 2, "tile": 64}},
     ["big_print.png"]),
])
def test_the_example_recipes_run_small(tmp_path, name, sets, outputs):
    from pathlib import Path

    from dreamnodes.graphs import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "examples" / name)
    for nid, params in sets.items():
        recipe.nodes[nid].params.update(params)
    result = Runner(cache=Cache(tmp_path / "c"), out_dir=tmp_path / "o").run(recipe)
    assert sorted(p.name for p in result.written) == sorted(outputs)
    for out in outputs:
        if out.endswith(".mp4"):
            assert frame_count(tmp_path / "o" / out) == {"infinite_zoom.mp4": 3 + 2 * 3}.get(out, 3)


def test_a_zoom_too_long_to_keep_in_memory_is_refused_before_it_dreams(tmp_path, counted, monkeypatch):
    """Thousands of frames times many in-betweens are refused up front, naming what to lower,
    and a bad memory-limit setting is named too."""
    recipe = ZOOM.replace("frames: 5,", "frames: 10000,").replace("between: 1,", "between: 120,")
    runner = Runner(cache=Cache(tmp_path / "cache"), out_dir=tmp_path / "out")
    with pytest.raises(NodeError, match=r"would keep 1209880 frames of 64x\d+.*make fewer frames"):
        runner.run(parse_recipe(recipe))
    assert counted == [] and not (tmp_path / "out" / "zoom.mp4").exists()
    monkeypatch.setenv("DREAMNODES_MEMORY_LIMIT_MB", "lots")
    with pytest.raises(NodeError, match="DREAMNODES_MEMORY_LIMIT_MB must be a number of megabytes"):
        runner.run(parse_recipe(ZOOM))


def test_video_frames_are_scaled_as_they_are_decoded_and_refused_when_too_many(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    shots = [PILImage.new("RGB", (200, 100), (10 * k, 0, 0)) for k in range(20)]
    shots[0].save(tmp_path / "clip.gif", save_all=True, append_images=shots[1:], duration=50)
    ctx = Context(node_id="clip", input_roots=(tmp_path,))
    got = video.load(ctx, source="clip.gif", frames=20, size=32)
    assert tuple(got.pixels.shape) == (20, 3, 16, 32)
    monkeypatch.setenv("DREAMNODES_MEMORY_LIMIT_MB", "1")  # 20 full-size frames are 4.8 MB, twice
    with pytest.raises(NodeError, match="20 frames of clip.gif .200x100. at their own size need about"):
        video.load(ctx, source="clip.gif", frames=20, size=None)
    assert video.load(ctx, source="clip.gif", frames=20, size=32).pixels.shape[0] == 20
