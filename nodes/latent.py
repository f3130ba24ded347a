"""Latent nodes: sample points of a generator's latent space, pick some,
walk between them, and do arithmetic on them.

A `Latent` is a batch of points, z [N, nz], kept on the CPU. These nodes
are cheap, exact and deterministic (`latent.sample` draws from the node's
seed only); they never run a generator, except `latent.interpolate` with
pace 'even', which measures how fast the pictures change along the walk.

The experiments are those of Radford, Metz, Chintala, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial
Networks" (2015): walks through the latent space (smooth transitions mean
the generator has not memorised), and vector arithmetic on averaged
exemplars ("smiling woman - neutral woman + neutral man"). Spherical
interpolation follows White, "Sampling Generative Networks" (2016).

`latent.arithmetic` parses its expression itself (names, numbers, + - * /,
parentheses): nothing of the recipe is ever evaluated as Python.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

import torch

from dreamnodes import Context, NodeError, Range, node
from dreamnodes.types import Generator, Latent

Distribution = Literal["normal", "uniform", "truncated"]


def draw(count: int, nz: int, distribution: str, gen: torch.Generator, truncation: float = 2.0) -> torch.Tensor:
    """count x nz latents from the prior: N(0, 1), U(-1, 1), or N(0, 1) redrawn outside +-truncation."""
    if distribution == "uniform":
        return torch.rand(count, nz, generator=gen) * 2 - 1
    z = torch.randn(count, nz, generator=gen)
    if distribution == "truncated":
        # redraw the entries outside the bounds: an exact truncated normal, deterministic per seed
        for _ in range(1000):
            bad = z.abs() > truncation
            if not bad.any():
                break
            z[bad] = torch.randn(int(bad.sum()), generator=gen)
    return z


@node("latent.sample", random=True)
def sample(ctx: Context, generator: Optional[Generator] = None,
           count: Annotated[int, Range(1, 100000)] = 16,
           nz: Annotated[int, Range(1, 4096)] = 100,
           distribution: Distribution = "normal",
           truncation: Annotated[float, Range(0.1, 10)] = 2.0,
           seed: Optional[int] = None) -> Latent:
    """Draw random points of the latent space (seeded: the same seed gives the same points).

    'normal' is the prior the PyTorch DCGAN tutorial (and the face generator) was trained with;
    'uniform' in [-1, 1] the DCGAN paper's; 'truncated' a normal with every entry kept within
    +-truncation, which trades variety for cleaner pictures. Radford et al., "Unsupervised
    Representation Learning with Deep Convolutional Generative Adversarial Networks", 2015.

    Args:
        generator: when wired, the latent size is taken from it (and nz is ignored).
        count: how many points.
        nz: latent size, when no generator is wired.
        distribution: normal, uniform or truncated (normal).
        truncation: the bound of the truncated normal.
        seed: fixes the draw; null derives it from the recipe's seed.
    """
    size = generator.nz if generator is not None else nz
    z = draw(count, size, distribution, ctx.generator(), truncation)
    what = {"normal": "N(0, 1)", "uniform": "U(-1, 1)",
            "truncated": f"N(0, 1) truncated at +-{truncation:g}"}[distribution]
    ctx.drew(f"{count} latents of size {size} from {what}, seed {ctx.seed}")
    return Latent(z)


@node("latent.pick")
def pick(latents: Latent, ctx: Context, indices: list[int]) -> Latent:
    """Choose members of a batch by index, in the given order (repeats allowed).

    Lay the batch out with gan.generate and image.grid (labels show the indices), then pick the
    ones you want: the exemplars of a concept for latent.arithmetic, keypoints of a walk.

    Args:
        latents: the batch to choose from.
        indices: positions in the batch, from 0; negative ones count from the end.
    """
    n = latents.z.shape[0]
    if not indices:
        raise NodeError("give at least one index to pick")
    bad = [i for i in indices if not -n <= i < n]
    if bad:
        raise NodeError(f"the batch has {n} latents (indices 0..{n - 1}); {bad} are out of range")
    return Latent(latents.z[torch.tensor(indices, dtype=torch.long)].clone())


# ---------------------------------------------------------------------------------------------
# interpolation


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line: a + t (b - a). a, b [nz], t [T] -> [T, nz]."""
    t = t.view(-1, 1)
    return a * (1 - t) + b * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Along the great circle: the direction turns at a constant rate, the norm goes linearly.

    a, b [nz], t [T] -> [T, nz]. Points of a high-dimensional Gaussian lie near a sphere, and a
    straight line between two of them cuts through its inside, where the generator was never
    trained (the middle of a lerp is ~30% shorter); slerp stays at their norm. When the norms
    are equal the norm is exactly constant. Endpoints are returned exactly.
    """
    t64 = t.to(torch.float64).view(-1, 1)
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    na, nb = a64.norm(), b64.norm()
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    ua, ub = a64 / na, b64 / nb
    omega = torch.arccos((ua * ub).sum().clamp(-1, 1))
    if omega < 1e-6:  # (nearly) the same direction: the great circle is a line
        direction = ua.expand(t64.shape[0], -1)
    else:
        so = torch.sin(omega)
        direction = (torch.sin((1 - t64) * omega) / so) * ua + (torch.sin(t64 * omega) / so) * ub
    out = (direction * (na * (1 - t64) + nb * t64)).to(a.dtype)
    out[t.view(-1) == 0] = a
    out[t.view(-1) == 1] = b
    return out


def _even_times(n: int, cum: torch.Tensor, t_fine: torch.Tensor) -> torch.Tensor:
    """n parameters t in [0, 1) at equal steps of the cumulative picture change `cum` over `t_fine`."""
    targets = torch.arange(n, dtype=torch.float64) * (cum[-1] / n)
    idx = torch.searchsorted(cum, targets, right=True).clamp(1, len(cum) - 1)
    lo, hi = cum[idx - 1], cum[idx]
    w = ((targets - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
    t = t_fine[idx - 1] + w * (t_fine[idx] - t_fine[idx - 1])
    t[0] = 0.0  # each segment starts exactly on its keypoint
    return t.float()


def _allocate(total: int, lengths: list[float]) -> list[int]:
    """Split `total` frames over segments in proportion to their lengths (at least 1 each)."""
    s = sum(lengths) or 1.0
    raw = [total * ln / s for ln in lengths]
    n = [max(1, int(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    for i in order:
        if sum(n) >= total:
            break
        n[i] += 1
    while sum(n) > total and max(n) > 1:
        n[n.index(max(n))] -= 1
    return n


def _check_walk(segments: int, frames: int, loop: bool, ctx: Context) -> None:
    """Refuse, before anything of it is made, a walk with more points than the `frames` limit allows
    (the bound of interpolate's own `frames`): each point becomes a frame of whatever follows."""
    total = frames * segments + (0 if loop else 1)
    problem = ctx.limits.over("frames", total, interpolate.spec.param("frames").range.hi)
    if problem:
        raise NodeError(f"a walk of {total:,} points ({frames} frames x {segments:,} segments"
                        + ("" if loop else " + 1") + f"): {problem} (or walk through fewer keypoints, "
                        "or fewer frames each)")


@node("latent.interpolate")
def interpolate(keypoints: list[Latent], ctx: Context, generator: Optional[Generator] = None,
                method: Literal["slerp", "lerp"] = "slerp",
                frames: Annotated[int, Range(1, 10000)] = 24, loop: bool = False,
                pace: Literal["latent", "even"] = "latent") -> Latent:
    """A walk through the latent space: `frames` points from each keypoint to the next.

    The keypoints are every member of every wired latent batch, in order (two for a simple
    transition, N for a tour). Each segment starts exactly on its keypoint; without loop the
    walk ends exactly on the last keypoint, with loop it returns towards the first and stops one
    step short of it, so a looping video has no repeated frame.
    Pace 'latent' moves at a constant speed in the latent space, but the pictures do not change
    at a constant speed: a face can hold still for a while, then turn in a few frames. Pace
    'even' (with the generator wired) spaces the frames so that the picture changes by the same
    amount from each frame to the next, and shares the frames (frames x segments in all) among
    the segments in proportion to how much their pictures change.
    Walks show that the generator's space is smooth: Radford et al., "Unsupervised
    Representation Learning with Deep Convolutional Generative Adversarial Networks", 2015.
    Slerp: White, "Sampling Generative Networks", 2016.

    Args:
        keypoints: latents to pass through, in order (all members of each, concatenated).
        generator: the generator, needed for pace 'even'.
        method: slerp (along the sphere the prior's mass lies on) or lerp (straight lines).
        frames: points per segment, the segment's start included (on average, with pace 'even').
        loop: walk back from the last keypoint to the first.
        pace: 'latent' (equal steps in the latent space) or 'even' (equal changes of the picture).
    """
    if not keypoints:
        raise NodeError("wire the latents to walk through into 'keypoints'")
    sizes = {k.z.shape[1] for k in keypoints}
    if len(sizes) > 1:
        raise NodeError(f"the keypoints have different latent sizes {sorted(sizes)}")
    pts = torch.cat([k.z for k in keypoints])  # [K, nz]
    if pts.shape[0] < 2:
        raise NodeError("a walk needs at least two keypoints; wire a batch of 2 or more, or several latents")
    _check_walk(pts.shape[0] - (0 if loop else 1), frames, loop, ctx)
    path = torch.cat([pts, pts[:1]]) if loop else pts
    fn = slerp if method == "slerp" else lerp
    segments = [(path[i], path[i + 1]) for i in range(path.shape[0] - 1)]
    if pace == "even":
        if generator is None:
            raise NodeError("pace 'even' measures how much the pictures change: wire the generator into "
                            "'generator' (or use pace 'latent')")
        if generator.nz != pts.shape[1]:
            raise NodeError(f"the keypoints have size {pts.shape[1]} but the generator takes {generator.nz}")
        from .gan import run_generator  # only this pace runs a generator

        fine = 8 * frames  # sub-steps per segment to measure the picture change on
        t_fine = torch.linspace(0, 1, fine + 1, dtype=torch.float64)
        cums = []
        for i, (a, b) in enumerate(segments):
            pics = run_generator(generator.module, fn(a, b, t_fine.float()))  # [fine+1, 3, S, S]
            step = (pics[1:] - pics[:-1]).abs().mean((1, 2, 3)).to(torch.float64)  # [fine]
            cums.append(torch.cat([torch.zeros(1, dtype=torch.float64), step.cumsum(0)]))
            ctx.progress(i + 1, len(segments), "measuring the walk")
        counts = _allocate(frames * len(segments), [float(c[-1]) for c in cums])
        times = [_even_times(n, c, t_fine) for n, c in zip(counts, cums)]
    else:
        times = [torch.arange(frames, dtype=torch.float32) / frames for _ in segments]  # 0 in, 1 out
    walk = [fn(a, b, t) for (a, b), t in zip(segments, times)]
    if not loop:
        walk.append(pts[-1:].clone())
    return Latent(torch.cat(walk).contiguous())


# ---------------------------------------------------------------------------------------------
# arithmetic: a small recursive-descent parser, so that no expression is ever evaluated as Python

NAMES = ("a", "b", "c", "d")
MAX_TOKENS = 400  # names, numbers and operators: a tree this size stays far from Python's recursion limit
MAX_DEPTH = 40  # parentheses and signs inside each other, as deep as a recipe may nest
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_]\w*)|(.))")


class ExpressionError(ValueError):
    """An expression that cannot be read; the message says where and why."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    name: str
    pos: int


@dataclass(frozen=True)
class Neg:
    arg: "Expr"


@dataclass(frozen=True)
class BinOp:
    op: str  # + - * /
    left: "Expr"
    right: "Expr"
    pos: int


Expr = Union[Num, Name, Neg, BinOp]


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) tokens: num, name, op; ends with ('end', '', len)."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace is left
            break
        num, name, other = m.groups()
        start = m.start(m.lastindex)
        if num is not None:
            out.append(("num", num, start))
        elif name is not None:
            out.append(("name", name, start))
        elif other in "+-*/()":
            out.append(("op", other, start))
        elif not other.isspace():
            raise ExpressionError(f"unexpected character {other!r} at position {start + 1}; use names, "
                                  "numbers, + - * / and parentheses")
        pos = m.end()
        if len(out) > MAX_TOKENS:
            raise ExpressionError(f"the expression has more than {MAX_TOKENS} names, numbers and operators; "
                                  "write it shorter (an expression combines a few latents, e.g. 'a - b + c')")
    out.append(("end", "", len(text)))
    return out


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary)* ;
    unary := ('+'|'-') unary | atom ; atom := number | name | '(' expr ')'"""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Expr:
        if self.peek()[0] == "end":
            raise ExpressionError("the expression is empty; write e.g. 'a - b + c'")
        e = self.expr()
        kind, tok, pos = self.peek()
        if kind != "end":
            raise ExpressionError(f"unexpected {tok!r} at position {pos + 1}"
                                  + ("; write multiplication with '*' (2*a)" if kind in ("name", "num", "op")
                                     and tok != ")" else "; a ')' has no matching '('"))
        return e

    def expr(self) -> Expr:
        return self.left_assoc(self.term, "+-")

    def term(self) -> Expr:
        return self.left_assoc(self.unary, "*/")

    def left_assoc(self, operand, ops: str) -> Expr:
        """operand (op operand)*, for the operators in `ops`, grouped to the left."""
        left = operand()
        while self.peek()[0] == "op" and self.peek()[1] in tuple(ops):
            _, op, pos = self.take()
            left = BinOp(op, left, operand(), pos)
        return left

    def nested(self, parse, pos: int) -> Expr:
        """parse() one level deeper; refused past MAX_DEPTH levels of parentheses and signs."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression is nested deeper than {MAX_DEPTH} levels (parentheses or "
                                  f"signs) at position {pos + 1}; write it flatter")
        try:
            return parse()
        finally:
            self.depth -= 1

    def unary(self) -> Expr:
        kind, tok, pos = self.peek()
        if (kind, tok) == ("op", "-"):
            self.take()
            return Neg(self.nested(self.unary, pos))
        if (kind, tok) == ("op", "+"):
            self.take()
            return self.nested(self.unary, pos)
        return self.atom()

    def atom(self) -> Expr:
        kind, tok, pos = self.take()
        if kind == "num":
            return Num(float(tok))
        if kind == "name":
            return Name(tok, pos)
        if (kind, tok) == ("op", "("):
            e = self.nested(self.expr, pos)
            k2, t2, p2 = self.take()
            if (k2, t2) != ("op", ")"):
                raise ExpressionError(f"expected ')' at position {p2 + 1} to close the '(' at position {pos + 1}")
            return e
        if kind == "end":
            raise ExpressionError("the expression ends too early: an operator needs something after it")
        raise ExpressionError(f"unexpected {tok!r} at position {pos + 1}")


def parse(text: str) -> Expr:
    """Parse an arithmetic expression over names (raises ExpressionError)."""
    return _Parser(text).parse()


def names_in(e: Expr) -> list[str]:
    if isinstance(e, Name):
        return [e.name]
    if isinstance(e, Neg):
        return names_in(e.arg)
    if isinstance(e, BinOp):
        return names_in(e.left) + names_in(e.right)
    return []


def evaluate(e: Expr, env: dict[str, torch.Tensor]) -> Union[float, torch.Tensor]:
    """Evaluate with vectors for names. Vectors add and subtract; numbers scale them."""
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Name):
        if e.name not in env:
            raise ExpressionError(f"unknown name {e.name!r} at position {e.pos + 1}; "
                                  f"the names are {', '.join(sorted(env))}")
        return env[e.name]
    if isinstance(e, Neg):
        return -evaluate(e.arg, env)
    a, b = evaluate(e.left, env), evaluate(e.right, env)
    va, vb = isinstance(a, torch.Tensor), isinstance(b, torch.Tensor)
    at = f"at position {e.pos + 1}"
    if e.op in "+-":
        if va != vb:
            raise ExpressionError(f"'{e.op}' {at} mixes a latent and a number; scale latents with '*' instead")
        return a + b if e.op == "+" else a - b
    if e.op == "*":
        if va and vb:
            raise ExpressionError(f"'*' {at} multiplies two latents; only a number can scale a latent")
        return a * b
    if vb:
        raise ExpressionError(f"'/' {at} divides by a latent; only division by a number is defined")
    if b == 0:
        raise ExpressionError(f"'/' {at} divides by zero")
    return a / b


@node("latent.arithmetic", random=True)
def arithmetic(ctx: Context, a: Optional[Latent] = None, b: Optional[Latent] = None,
               c: Optional[Latent] = None, d: Optional[Latent] = None,
               expression: str = "a - b + c",
               count: Annotated[int, Range(1, 10000)] = 1,
               noise: Annotated[float, Range(0, 10)] = 0.0,
               seed: Optional[int] = None) -> Latent:
    """Vector arithmetic on concepts: e.g. smiling woman - neutral woman + neutral man = smiling man.

    Each input stands for a concept and is averaged over its members (the DCGAN paper averaged
    three exemplars per concept, because single samples were unstable). The expression uses the
    input names a, b, c, d, numbers, + - * / and parentheses: 'a - b + c', '(a + b) / 2',
    'c + 1.5 * (a - b)'. The first result is the expression's value; with count > 1 the others
    add Gaussian noise of standard deviation `noise` to it, as the paper's 3x3 grids did.
    Radford et al., "Unsupervised Representation Learning with Deep Convolutional Generative
    Adversarial Networks", 2015.

    Args:
        a: a concept's exemplars (their mean is used).
        b: another concept's exemplars.
        c: another concept's exemplars.
        d: another concept's exemplars.
        expression: the arithmetic, over a, b, c, d.
        count: how many results: the exact one, then noisy ones around it.
        noise: standard deviation of the noise around the result.
        seed: fixes the noise; null derives it from the recipe's seed.
    """
    wired = {n: v for n, v in zip(NAMES, (a, b, c, d)) if v is not None}
    shown = repr(expression if len(expression) <= 60 else expression[:57] + "...")  # never a flood
    try:
        tree = parse(expression)
    except ExpressionError as exc:
        raise NodeError(f"expression {shown}: {exc}") from None
    used = names_in(tree)
    for n in used:
        if n not in NAMES:
            raise NodeError(f"expression {shown}: unknown name {n!r}; the inputs are called "
                            f"{', '.join(NAMES)}")
        if n not in wired:
            raise NodeError(f"expression {shown} uses {n!r}, but nothing is wired into input "
                            f"'{n}'")
    if not used:
        raise NodeError(f"expression {shown} names no input; use a, b, c or d")
    sizes = {n: v.z.shape[1] for n, v in wired.items()}
    if len(set(sizes.values())) > 1:
        raise NodeError(f"the inputs have different latent sizes: {sizes}")
    env = {n: v.z.to(torch.float64).mean(0) for n, v in wired.items()}  # each concept: its mean [nz]
    try:
        result = evaluate(tree, env)
    except ExpressionError as exc:
        raise NodeError(f"expression {expression!r}: {exc}") from None
    if not isinstance(result, torch.Tensor):
        raise NodeError(f"expression {expression!r} is a number, not a latent")
    z = result.to(torch.float32).unsqueeze(0).repeat(count, 1)  # [count, nz]
    if count > 1 and noise > 0:
        z[1:] += noise * torch.randn(count - 1, z.shape[1], generator=ctx.generator())
        ctx.drew(f"{count - 1} noisy copies (sd {noise:g}) around {expression}, seed {ctx.seed}")
    return Latent(z)
