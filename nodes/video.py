"""Video nodes: read a video, turn a batch of pictures into frames, and save
frames as an animated GIF, an animated WebP or an MP4.

GIF and WebP are encoded in memory with Pillow; MP4 with the ffmpeg binary
that the PyPI package imageio-ffmpeg ships (the `video` extra), straight into
a temporary file in the output (staging) folder. Every file reaches the output
folder through `ctx.write_file` or `ctx.writing`, so it appears whole or not
at all, and nothing is left in the system's temporary folder.
"""
from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dreamnodes import Context, InPath, NodeError, OutPath, Range, node
from dreamnodes.files import sample_name
from dreamnodes.limits import Limits
from dreamnodes.meta import embedded_comment
from dreamnodes.pictures import Header, check_size, open_picture, picture_format, refuse_size, video_format
from dreamnodes.types import Frames, Image

from .image import fit_size, load as load_image
from .kernel.memory import available_bytes, gb

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


def encode_animation(arr: np.ndarray, fmt: str, fps: float, loop: bool, quality: int, comment: str = "") -> bytes:
    """[T, H, W, 3] uint8 -> the bytes of an animated GIF or WebP; a GIF carries `comment` (the
    recipe, meta.embedded_comment) in a comment extension."""
    from PIL import Image as PILImage

    ims = [PILImage.fromarray(a) for a in arr]
    buf = io.BytesIO()
    kwargs = {"save_all": True, "append_images": ims[1:], "duration": round(1000 / fps)}
    if loop:
        kwargs["loop"] = 0  # forever
    if fmt == "gif":
        # one adaptive palette per frame; disposal 1 keeps each frame whole
        if comment:
            kwargs["comment"] = comment.encode("utf-8")
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


#: the longest comment ffmpeg is given on its command line (Linux takes at most 128 KiB in one argument)
MAX_MP4_COMMENT = 120_000


def encode_mp4(arr: np.ndarray, fps: float, quality: int, path: Path, comment: str = "") -> None:
    """[T, H, W, 3] uint8 -> an H.264 MP4 (yuv420p, so every player shows it) written by ffmpeg to
    `path`, whatever its name ends in (a temporary file of `ctx.writing`, in the staging folder);
    `comment` (the recipe, meta.embedded_comment) goes into its metadata (moov/udta/meta/ilst/©cmt)."""
    if ffmpeg_exe() is None:
        raise NodeError("saving MP4 needs the ffmpeg of the package imageio-ffmpeg: "
                        "pip install 'dreamnodes[video]' (or save a .gif)")
    import imageio_ffmpeg

    h, w = arr.shape[1:3]
    if h % 2 or w % 2:  # yuv420p needs even sides: repeat the last row / column
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = arr.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
        quality=quality / 10, ffmpeg_log_level="error",
        output_params=[*(["-metadata", f"comment={comment}"] if comment else []), "-movflags", "+faststart", "-f", "mp4"])
    writer.send(None)  # start ffmpeg
    try:
        for frame in arr:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


@node("video.save", writes=True)
def save(frames: Frames, ctx: Context, path: OutPath = "walk.gif",
         fps: Optional[Annotated[float, Range(0.1, 120)]] = None,
         scale: Annotated[int, Range(1, 16)] = 1, loop: bool = True,
         hold: Annotated[int, Range(0, 10000)] = 0,
         quality: Annotated[int, Range(1, 100)] = 80) -> None:
    """Save frames as an animation: GIF, WebP or MP4, chosen by the file name.

    GIFs and WebPs are made with Pillow; MP4 (H.264) with the ffmpeg binary of imageio-ffmpeg.
    GIFs and MP4s carry the recipe and provenance in their comment, as PNGs do: `dreamnodes show`
    prints them and `dreamnodes run` makes the file again. Generator pictures are small (64 px): `scale` enlarges them smoothly.

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
        raise NodeError(f"cannot save {path!r}: the name must end in .gif, .webp or .mp4")
    p = frames.pixels
    if p.dim() != 4 or p.shape[1] != 3 or p.shape[0] == 0:
        raise NodeError(f"the frames are {tuple(p.shape)}, not [T, 3, H, W] with at least one frame")
    refuse_size(f"the animation would be {p.shape[0] + hold} frames of {p.shape[3] * scale} x {p.shape[2] * scale}",
                p.shape[3] * scale, p.shape[2] * scale, ctx.limits, p.shape[0] + hold,
                "lower `hold` or `scale`, or save fewer frames")
    if hold:
        p = torch.cat([p, p[-1:].expand(hold, -1, -1, -1)])
    rate = fps or frames.fps
    arr = to_uint8(p, scale)
    comment = embedded_comment(ctx.recipe_text, ctx.provenance) if ctx.recipe_text and fmt != "webp" else ""
    if fmt == "mp4":
        if len(comment.encode("utf-8")) > MAX_MP4_COMMENT:
            warnings.warn(f"{path}: the recipe is too large to embed in an MP4 ({len(comment):,} characters, at most "
                          f"{MAX_MP4_COMMENT:,}); the video is saved without it (a .gif carries any size)")
            comment = ""
        with ctx.writing(path) as tmp:  # ffmpeg writes the file itself: in the output (staging) folder
            encode_mp4(arr, rate, quality, tmp, comment)
    else:
        ctx.write_file(path, encode_animation(arr, fmt, rate, loop, quality, comment))


def _pan(photo: torch.Tensor, count: int, zoom: float = 1.25) -> torch.Tensor:
    """A slow camera move over a still photo [1, 3, H, W]: `count` frames panning left to right
    (and a little up and down) across it, enlarged by `zoom` so the frame stays inside."""
    from .kernel.motion import warp

    h, w = photo.shape[2:]
    reach_x, reach_y = 0.9 * w / 2 * (1 - 1 / zoom) * zoom, 0.9 * h / 2 * (1 - 1 / zoom) * zoom
    out = []
    for k in range(count):
        t = k / max(1, count - 1)
        dx = reach_x * (1 - 2 * t)  # the picture moves left: the camera pans right
        dy = reach_y * 0.5 * math.sin(2 * math.pi * t)
        out.append(warp(photo, (zoom, 0.0, 0.0, zoom, dx, dy))[0][0])
    return torch.stack(out).clamp_(0, 1)


# ffmpeg follows playlists (HLS .m3u8) and concat lists to other files: a hostile "video" in the
# recipe's folder could read any video on the machine. Only plain containers, from local files; the
# demuxer is the one the file's first bytes name (`-f`, dreamnodes.pictures.video_format), never guessed.
_SAFE_INPUT = ("-protocol_whitelist", "file",
               "-format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpeg,mpegts,ogg,flv")


def _check_frame_memory(path: Path, width: int, height: int, count: int, size: int | None) -> None:
    """Refuse, before decoding, frames that would not fit in memory (as float pictures)."""
    scale = 1.0 if size is None else size / max(width, height)  # as fit_size scales the longer side
    # the scaled frames twice (the list and the joined result) and one frame being decoded and scaled
    need = 2 * count * 3 * 4 * (width * scale) * (height * scale) + 2 * 3 * 4 * width * height
    limit, source = available_bytes(torch.device("cpu"))
    if need > limit:
        at = f"at size {size}" if size is not None else "at their own size"
        raise NodeError(f"{count} frames of {path.name} ({width}x{height}) {at} need about {gb(need)} of "
                        f"memory, but only {gb(limit)} is available ({source}); lower `frames` or `size`, or "
                        "raise `every`")


def _read_video(path: Path, limit: int, every: int, size: int | None,
                limits: Limits) -> tuple[list[torch.Tensor], float]:
    """Frames [1, 3, h, w] of an animated GIF/WebP (or any picture: Pillow) or a video (ffmpeg,
    told the one demuxer its content names), and the rate. The file's content decides, not its name.

    Each frame is scaled to `size` as soon as it is decoded, so memory follows `size` and not
    the video's own resolution; what would not fit, or what the file declares over the run's
    limits, is refused before decoding.
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if picture_format(head) is not None:
        return _read_animation(path, limit, every, size, limits)
    container = video_format(head)
    if container is None:
        raise NodeError(f"{path.name} could not be read as a video: it is not a video container dreamnodes reads; "
                        "dreamnodes reads video files (MP4, MOV, MKV, WebM, AVI, MPEG, Ogg, FLV) and animated GIF "
                        "or WebP pictures, not playlists or lists of other files")
    return _read_ffmpeg(path, container, limit, every, size, limits)


def _read_animation(path: Path, limit: int, every: int, size: int | None,
                    limits: Limits) -> tuple[list[torch.Tensor], float]:
    """The frames of an animated GIF/WebP (Pillow decodes every frame, kept or not, on the whole
    canvas: `open_picture` counts them all, up to the last one kept)."""
    from PIL import ImageSequence

    from .image import to_tensor

    frames: list[torch.Tensor] = []
    with open_picture(path, limits, decode=(limit - 1) * every + 1, what="an animation") as (im, header):
        duration = im.info.get("duration") or 100
        _check_frame_memory(path, header.width, header.height, min(limit, -(-header.frames // every)), size)
        for k, fr in enumerate(ImageSequence.Iterator(im)):
            if k % every == 0:
                frames.append(fit_size(to_tensor(fr.convert("RGB")), size, None, None, "cover"))
            if len(frames) >= limit:
                break
    return frames, 1000.0 / duration / every


def _read_ffmpeg(path: Path, container: str, limit: int, every: int, size: int | None,
                 limits: Limits) -> tuple[list[torch.Tensor], float]:
    if ffmpeg_exe() is None:
        raise NodeError("reading videos needs the ffmpeg of the package imageio-ffmpeg: "
                        "pip install 'dreamnodes[video]'")
    import imageio_ffmpeg

    frames: list[torch.Tensor] = []
    try:
        reader = imageio_ffmpeg.read_frames(str(path), input_params=[*_SAFE_INPUT, "-f", container])
        meta = reader.__next__()
        w, h = meta["size"]
        check_size(path.name, Header(container, w, h), limits)  # one frame is read whole before it is scaled
        duration, rate = meta.get("duration"), meta.get("fps")
        known = math.ceil(duration * rate / every) if duration and rate else limit  # the video's own length
        _check_frame_memory(path, w, h, max(1, min(limit, known)), size)
        for k, raw in enumerate(reader):
            if k % every == 0:
                arr = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
                frame = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
                frames.append(fit_size(frame, size, None, None, "cover"))
            if len(frames) >= limit:
                break
        reader.close()
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise NodeError(f"{path.name} could not be read as a video ({exc}); dreamnodes reads video files "
                        "(MP4, MOV, MKV, WebM, AVI, MPEG, Ogg), not playlists or lists of other files") from None
    return frames, float(meta.get("fps") or 24.0) / every


@node("video.load")
def load(ctx: Context, source: InPath = "sample:chelsea",
         frames: Annotated[int, Range(1, 100000)] = 48,
         size: Optional[Annotated[int, Range(16, 8192)]] = 256,
         every: Annotated[int, Range(1, 1000)] = 1,
         fps: Optional[Annotated[float, Range(0.1, 120)]] = None) -> Frames:
    """Read a video's frames: an MP4 (or any video ffmpeg reads), or an animated GIF or WebP.

    `sample:NAME` makes a short clip without any file: a slow camera pan across the bundled
    sample photo NAME (chelsea, astronaut, coffee, ...), `frames` frames long, at 12 fps.

    Args:
        source: the video file (relative to the recipe's folder), or `sample:NAME` for a pan over a sample photo.
        frames: the largest number of frames to read.
        size: scale every frame so its longer side has this many pixels (null keeps the video's size).
        every: keep one frame in this many (2 halves the frame rate).
        fps: the frame rate to give the frames (null: the video's own, divided by `every`).
    """
    if sample_name(source) is not None:
        photo = load_image(ctx, source=source, size=size or 512)
        pixels = _pan(photo.pixels, frames)
        rate = 12.0
    else:
        path = ctx.input_path(source)
        got, rate = _read_video(path, frames, every, size, ctx.limits)
        if not got:
            raise NodeError(f"{path.name} has no frames")
        pixels = torch.cat(got)
    return Frames(pixels.contiguous(), fps or rate)
