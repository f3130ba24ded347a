"""Hostile model files and the sizes they declare.

A checkpoint is a few kilobytes of pickle and tensor records, and what it declares can be far
bigger than what it holds: a tensor whose strides are 0 has a million rows and one number; a
pickle can declare a storage larger than its record, or a record can be compressed (a zip bomb).
Each case here is a small file made by the test. Every one is refused before the model, the
storage or the latents it declares are allocated, with the `--limit` that would allow it named
where one is involved (see nodes/weights.py `read_checkpoint` and `check_model_size`).
check_case measures each case's peak memory: none may add a gigabyte, whatever its file declares.
"""
from __future__ import annotations

import io
import struct
import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from hostile import Case, PeakMemory, Sandbox, check_case  # noqa: E402

from dreamnodes.errors import NodeError  # noqa: E402

MIB = 1 << 20


# ----------------------------------------------------------------------------
# crafted files

def _hollow(shape, dtype=torch.float32) -> torch.Tensor:
    """A tensor of `shape` that holds one number: every stride 0 (torch.save keeps the view)."""
    return torch.zeros((), dtype=dtype).expand(shape)


def million_classes(path: Path) -> None:
    """A shufflenet_v2_x0_5 state_dict whose classifier has a million classes, every tensor hollow."""
    import torchvision

    state = torchvision.models.shufflenet_v2_x0_5(num_classes=2).state_dict()
    state = {k: _hollow(v.shape, v.dtype) for k, v in state.items()}
    state["fc.weight"], state["fc.bias"] = _hollow((1_000_000, 1024)), _hollow((1_000_000,))
    torch.save(state, path)


def dcgan_state(nz: int, ngf: int, convs: int) -> dict[str, torch.Tensor]:
    """The whole state_dict of a DCGAN generator of `convs` transposed convolutions (picture side
    4 x 2**(convs - 1)), every tensor hollow: a few kilobytes, whatever it declares."""
    from dreamnodes.nodes.gan import DCGANGenerator

    with torch.device("meta"):
        state = DCGANGenerator(nz, ngf, 4 * 2 ** (convs - 1)).state_dict()
    return {k: _hollow(v.shape, v.dtype) for k, v in state.items()}


def _rezip(path: Path, payload: dict, edit) -> None:
    """torch.save(payload) into `path`, each zip entry passed through edit(name, data) -> (data, compress)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data, compress = edit(info.filename, src.read(info))
            out = zipfile.ZipInfo(info.filename, info.date_time)
            out.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            with dst.open(out, "w", force_zip64=True) as w:
                for piece in (data if isinstance(data, list) else [data]):
                    w.write(piece)


def storage_larger_than_record(path: Path) -> None:
    """A zip checkpoint whose pickle says storage 0 holds 2**30 bytes; its record holds 16."""
    def edit(name, data):
        if name.endswith("data.pkl"):  # the numel of the one storage: BININT1 4 -> BININT 2**28
            data = data.replace(b"cpuq\x06K\x04t", b"cpuq\x06J" + struct.pack("<i", 1 << 28) + b"t", 1)
        return data, False
    _rezip(path, {"fc.weight": torch.zeros(4)}, edit)


def compressed_record(path: Path, mib: int = 256) -> None:
    """A zip checkpoint of one 256 MiB tensor of zeros whose record is deflated: about 250 KB on disk."""
    chunk = bytes(MIB)
    def edit(name, data):
        if name.endswith("/data/0"):
            return [chunk] * mib, True
        if name.endswith("data.pkl"):  # the storage and the tensor: 4 floats -> mib MiB of floats
            n = struct.pack("<i", mib * MIB // 4)
            data = data.replace(b"cpuq\x06K\x04t", b"cpuq\x06J" + n + b"t", 1)
            data = data.replace(b"K\x00K\x04\x85", b"K\x00J" + n + b"\x85", 1)
        return data, False
    _rezip(path, {"fc.weight": torch.zeros(4)}, edit)


def legacy_storage_larger_than_file(path: Path) -> None:
    """The format of torch before 1.6 (torchvision's own older weights use it): the pickle declares
    each storage's size, then the data follows. Here 2**28 floats (1 GiB) are declared, 16 bytes held."""
    buf = io.BytesIO()
    torch.save({"fc.weight": torch.zeros(4)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    declared = b"cpuq\x06\x8a\x04" + (1 << 28).to_bytes(4, "little") + b"N"
    assert data.count(b"cpuq\x06K\x04N") == 1
    path.write_bytes(data.replace(b"cpuq\x06K\x04N", declared))


# ----------------------------------------------------------------------------
# recipes around them

def _model_recipe(save):
    def make(box: Sandbox) -> Path:
        save(box.recipes / "model.pt")
        return box.write("m.yaml", "dreamnodes: 1\nnodes:\n  net: {type: model.load, params: "
                                   "{arch: shufflenet_v2_x0_5, checkpoint: model.pt}}\n")
    return make


def _gan_recipe(state: dict, count: int = 16):
    def make(box: Sandbox) -> Path:
        torch.save(state, box.recipes / "netG.pt")
        return box.write("g.yaml", "dreamnodes: 1\nnodes:\n  gen: {type: gan.load, params: {checkpoint: netG.pt}}\n"
                                   f"  z: {{type: latent.sample, inputs: {{generator: gen}}, params: {{count: {count}}}}}\n"
                                   "  pics: {type: gan.generate, inputs: {generator: gen, latents: z}}\n")
    return make


def _walk_recipe(count: int, frames: int, loop: bool = False) -> Callable:
    def make(box: Sandbox) -> Path:
        return box.write("walk.yaml", "dreamnodes: 1\nnodes:\n"
                         f"  keys: {{type: latent.sample, params: {{count: {count}, nz: 64}}}}\n"
                         f"  walk: {{type: latent.interpolate, inputs: {{keypoints: [keys]}}, "
                         f"params: {{frames: {frames}, loop: {str(loop).lower()}, method: lerp}}}}\n")
    return make


TOO_MANY_NUMBERS = ("over the limit of 1,000,000,000 numbers in a model's weights",)
HOLDS_LESS = ("declares", "bytes of tensor data but holds", "damaged or crafted")

CASES = [
    Case("checkpoint_million_classes", _model_recipe(million_classes), NodeError,
         ("model.pt declares shufflenet_v2_x0_5 with 1,000,000 classes", *TOO_MANY_NUMBERS,
          "--limit parameters=1025")),
    Case("checkpoint_storage_larger_than_record", _model_recipe(storage_larger_than_record), NodeError,
         ("model.pt", *HOLDS_LESS, "1,073,741,824")),
    Case("checkpoint_compressed_record", _model_recipe(compressed_record), NodeError,
         ("model.pt", "compressed", "torch.save never compresses")),
    Case("checkpoint_legacy_storage_larger_than_file", _model_recipe(legacy_storage_larger_than_file), NodeError,
         ("model.pt", *HOLDS_LESS, "1,073,741,824")),
    Case("gan_million_wide_latent", _gan_recipe(dcgan_state(nz=1_000_000, ngf=8, convs=2), count=256), NodeError,
         ("netG.pt declares a generator with nz=1000000", "1000000 is out of range [1, 4096]")),
    Case("gan_huge_generator", _gan_recipe(dcgan_state(nz=100, ngf=4096, convs=9)), NodeError,
         ("netG.pt declares a generator with nz=100, ngf=4096, size=1024", *TOO_MANY_NUMBERS,
          "--limit parameters=")),
    Case("gan_huge_picture_side", _gan_recipe(dcgan_state(nz=4, ngf=1, convs=14)), NodeError,
         ("netG.pt declares a generator with size=32768", "over the limit of 1,024 px on a side",
          "--limit side=32768")),
    Case("gan_storage_larger_than_record", lambda b: (storage_larger_than_record(b.recipes / "netG.pt"),
         b.write("g.yaml", "dreamnodes: 1\nnodes:\n  gen: {type: gan.load, params: {checkpoint: netG.pt}}\n"))[1],
         NodeError, ("netG.pt", *HOLDS_LESS)),
    Case("interpolate_huge_keypoint_list", _walk_recipe(count=100_000, frames=24), NodeError,
         ("a walk of 2,399,977 points (24 frames x 99,999 segments + 1)",
          "over the limit of 10,000 frames", "--limit frames=2399977")),
    Case("interpolate_looped_walk_over_frames", _walk_recipe(count=500, frames=10_000, loop=True), NodeError,
         ("a walk of 5,000,000 points (10000 frames x 500 segments)", "--limit frames=5000000")),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_model_files(case, sandbox, capsys):
    check_case(case, sandbox, capsys)


# ----------------------------------------------------------------------------
# the mechanism, directly

def test_real_checkpoints_still_load(sandbox):
    """A plain state_dict, in both of torch's formats, loads and gives the same network."""
    import torchvision

    from dreamnodes.graphs import load_recipe
    from dreamnodes.runtime import Runner

    torch.manual_seed(0)
    net = torchvision.models.shufflenet_v2_x0_5(num_classes=3).eval()
    x = torch.rand(1, 3, 32, 32)
    for legacy in (False, True):
        path = _model_recipe(lambda p: torch.save(net.state_dict(), p, _use_new_zipfile_serialization=not legacy))(
            sandbox)
        model = Runner(use_cache=False, device="cpu", out_dir=sandbox.out).run(load_recipe(path)).output("net")
        with torch.no_grad():
            assert torch.allclose(model.module(x), net(x), atol=1e-5)


def test_read_checkpoint_declares_nothing_it_does_not_hold(tmp_path):
    from dreamnodes.nodes.weights import declared, read_checkpoint

    path = tmp_path / "ok.pt"
    shared = torch.arange(10.0)
    torch.save({"a": shared[:4], "b": shared[2:], "n": torch.tensor(3)}, path)
    meta = declared(path, "ok.pt")
    assert meta["a"].is_meta and meta["b"].shape == (8,)
    state = read_checkpoint(path, "ok.pt")
    assert state["b"].tolist() == list(range(2, 10)) and int(state["n"]) == 3
    for craft in (storage_larger_than_record, legacy_storage_larger_than_file):
        craft(tmp_path / "bad.pt")
        with pytest.raises(NodeError, match="bytes of tensor data but holds"):
            read_checkpoint(tmp_path / "bad.pt", "bad.pt")


def test_the_parameters_limit_raises_and_lowers(sandbox):
    from dreamnodes.graphs import load_recipe
    from dreamnodes.limits import Limits
    from dreamnodes.runtime import Runner

    path = _gan_recipe(dcgan_state(nz=100, ngf=4096, convs=9))(sandbox)
    with pytest.raises(NodeError, match="--limit parameters="):
        Runner(use_cache=False, device="cpu", out_dir=sandbox.out).run(load_recipe(path), only=["gen"])
    with pytest.raises(NodeError, match="over the limit of 1,000 numbers"):  # a real, small one, lowered
        net = _model_recipe(lambda p: torch.save(__import__("torchvision").models.shufflenet_v2_x0_5(
            num_classes=2).state_dict(), p))(sandbox)
        Runner(use_cache=False, device="cpu", out_dir=sandbox.out, limits=Limits({"parameters": 1000})).run(
            load_recipe(net))


def test_default_limit_allows_the_big_torchvision_classifiers():
    """VGG-16 (138M), ResNet-50 and the largest torchvision classifier (regnet_y_128gf, 645M) fit the
    default; they are measured with their weights on the meta device, so this allocates nothing."""
    import torchvision

    from dreamnodes.limits import DEFAULT_LIMITS, Limits
    from dreamnodes.nodes.weights import check_model_size

    for arch in ("vgg16", "resnet50", "mobilenet_v2", "regnet_y_128gf", "vit_h_14"):
        with PeakMemory() as peak:
            check_model_size(lambda: torchvision.models.get_model(arch, weights=None), arch, DEFAULT_LIMITS)
        assert peak.grown is None or peak.grown < 200 * MIB, (arch, peak.grown)
    with pytest.raises(NodeError, match=r"vgg16: its weights would hold 138,\d{3},\d{3} numbers; .*"
                                        r"--limit parameters=138"):
        check_model_size(lambda: torchvision.models.get_model("vgg16", weights=None), "vgg16",
                         Limits({"parameters": 100_000_000}))


def test_walk_within_the_limit_still_runs(sandbox, capsys):
    from dreamnodes.runtime.cli import main

    path = _walk_recipe(count=3, frames=4)(sandbox)
    assert main(["run", str(path), "--out", str(sandbox.out), "-q"]) == 0
    path = _walk_recipe(count=101, frames=100)(sandbox)  # 10,001 points: one over
    assert main(["run", str(path), "--out", str(sandbox.out), "-q"]) == 1
    assert "--limit frames=10001" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(sandbox.out), "-q", "--limit", "frames=10001"]) == 0
