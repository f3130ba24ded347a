"""Video nodes: turn a batch of pictures into frames, and save frames as an
animated GIF, an animated WebP or an MP4.

GIF and WebP are encoded in memory with Pillow; MP4 with the ffmpeg binary
that the PyPI package imageio-ffmpeg ships (the `video` extra), into a
temporary folder, then read back. Every file reaches the output folder
through `ctx.write_file`, so it appears whole or not at all.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dreamnodes import Context, NodeError, OutPath, Range, node
from dreamnodes.types import Frames, Image

FORMATS = {".gif": "gif", ".webp": "webp", ".mp4": "mp4"}


@node("video.frames")
def frames(images: Image, fps: Annotated[float, Range(0.1, 120)] = 24.0,
           boomerang: bool = False) -> Frames:
    """A batch of pictures as the frames of a video, in batch order (e.g. a latent walk).

    Args:
        images: the pictures, one frame each.
        fps: frames per second.
        boomerang: play forwards, then backwards (without repeating the turning frames).
    """
    p = images.pixels
    if boomerang and p.shape[0] > 2:
        p = torch.cat([p, p.flip(0)[1:-1]])
    return Frames(p.contiguous(), fps)


def to_uint8(pixels: torch.Tensor, scale: int) -> np.ndarray:
    """[T, 3, H, W] in [0, 1] -> [T, H*scale, W*scale, 3] uint8 (bilinear when enlarging)."""
    x = pixels.detach().to("cpu", torch.float32)
    if scale != 1:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def encode_animation(arr: np.ndarray, fmt: str, fps: float, loop: bool, quality: int) -> bytes:
    """[T, H, W, 3] uint8 -> the bytes of an animated GIF or WebP."""
    from PIL import Image as PILImage

    ims = [PILImage.fromarray(a) for a in arr]
    buf = io.BytesIO()
    kwargs = {"save_all": True, "append_images": ims[1:], "duration": round(1000 / fps)}
    if loop:
        kwargs["loop"] = 0  # forever
    if fmt == "gif":
        # one adaptive palette per frame; disposal 1 keeps each frame whole
        ims[0].save(buf, format="GIF", optimize=False, disposal=1, **kwargs)
    else:
        ims[0].save(buf, format="WEBP", quality=quality, method=4, **kwargs)
    return buf.getvalue()


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary of imageio-ffmpeg, or None when it is not installed or does not run."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # ImportError, or RuntimeError when no binary is found
        return None


def encode_mp4(arr: np.ndarray, fps: float, quality: int, node_id: str | None = None) -> bytes:
    """[T, H, W, 3] uint8 -> the bytes of an H.264 MP4 (yuv420p, so every player shows it)."""
    if ffmpeg_exe() is None:
        raise NodeError("saving MP4 needs the ffmpeg of the package imageio-ffmpeg: "
                        "pip install 'dreamnodes[video]' (or save a .gif)", node_id)
    import imageio_ffmpeg

    h, w = arr.shape[1:3]
    if h % 2 or w % 2:  # yuv420p needs even sides: repeat the last row / column
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = arr.shape[1:3]
    with tempfile.TemporaryDirectory(prefix="dreamnodes-video-") as tmp:
        path = Path(tmp) / "video.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
            quality=quality / 10, ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])
        writer.send(None)  # start ffmpeg
        try:
            for frame in arr:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
        return path.read_bytes()


@node("video.save", writes=True)
def save(frames: Frames, ctx: Context, path: OutPath = "walk.gif",
         fps: Optional[Annotated[float, Range(0.1, 120)]] = None,
         scale: Annotated[int, Range(1, 16)] = 1, loop: bool = True,
         hold: Annotated[int, Range(0, 10000)] = 0,
         quality: Annotated[int, Range(1, 100)] = 80) -> None:
    """Save frames as an animation: GIF, WebP or MP4, chosen by the file name.

    GIFs and WebPs are made with Pillow; MP4 (H.264) with the ffmpeg binary of imageio-ffmpeg.
    Generator pictures are small (64 px): `scale` enlarges them smoothly.

    Args:
        frames: the frames (video.frames, render.optimize's frames output).
        path: file name inside the output folder: .gif, .webp or .mp4.
        fps: frames per second (null: the frames' own rate).
        scale: enlarge every frame this many times.
        loop: GIF / WebP play forever (MP4 players decide themselves).
        hold: show the last frame this many frames longer (lets a converging animation rest).
        quality: WebP and MP4 quality (GIF is lossless up to its 256-colour palette).
    """
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise NodeError(f"cannot save {path!r}: the name must end in .gif, .webp or .mp4", ctx.node_id)
    p = frames.pixels
    if p.dim() != 4 or p.shape[1] != 3 or p.shape[0] == 0:
        raise NodeError(f"the frames are {tuple(p.shape)}, not [T, 3, H, W] with at least one frame", ctx.node_id)
    if hold:
        p = torch.cat([p, p[-1:].expand(hold, -1, -1, -1)])
    rate = fps or frames.fps
    arr = to_uint8(p, scale)
    if fmt == "mp4":
        data = encode_mp4(arr, rate, quality, ctx.node_id)
    else:
        data = encode_animation(arr, fmt, rate, loop, quality)
    ctx.write_file(path, data)
