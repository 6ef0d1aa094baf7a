"""Pictures of the ideas, drawn from the models themselves (notebook 02 shows them): the architecture as boxes,
posteriors as ellipses against the prior, how much of the prior they cover, and what an autoencoder and a VAE
decode from codes of real images and from codes drawn from the prior. Two teaching figures need no model: the
reparameterisation trick as two computation graphs, and log p(x) = ELBO + KL on a 1-D toy model where all three
are exact (elbo_gap_numbers gives the numbers it draws)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.lines
import matplotlib.patches
import matplotlib.path
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from vaelib.evaluation.plots import example_indices, tile
from vaelib.lessons.architecture import layer_rows
from vaelib.models.base import model_device, posterior_stats
from vaelib.models.vae import VAE
from vaelib.runtime import to_float

_LINE = 1.2 / 72  # inches one line of text takes per point of font size (matplotlib's line spacing, 1.2)
_COLOURS = {"image": "0.6", "encoder": "tab:blue", "heads": "tab:purple", "sample": "tab:green",
            "decoder": "tab:orange", "reshape": "0.9"}


class _Node:
    """A box or circle drawn in an axes whose data units are inches (_inch_axes): where arrows start and end."""

    def __init__(self, patch: matplotlib.patches.Patch, cx: float, cy: float, w: float, h: float,
                 circle: bool = False) -> None:
        self.patch, self.cx, self.cy, self.w, self.h, self.circle = patch, cx, cy, w, h, circle

    def contains(self, x: float, y: float) -> bool:
        if self.circle:
            return math.hypot(x - self.cx, y - self.cy) <= self.w / 2
        return abs(x - self.cx) <= self.w / 2 and abs(y - self.cy) <= self.h / 2


def _inch_axes(fig: Figure, left: float, bottom: float, width: float, height: float) -> plt.Axes:
    """An axes without frame at (left, bottom, width, height) inches of fig, whose data units are inches: sizes
    and font sizes (points / 72) can be laid out together."""
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return ax


def _node(ax: plt.Axes, cx: float, cy: float, w: float, h: float, gid: str, shape: str = "rect", label: str = "",
          fontsize: float = 13, textcolour: str = "black", **style: Any) -> _Node:
    """A node centred at (cx, cy): shape "rect" (a Rectangle), "round" (a rounded box, not a Rectangle) or
    "circle" (diameter w), with an optional label inside; its patch carries gid for the tests."""
    style = {"facecolor": "white", "edgecolor": "black", "lw": 1.5, **style}
    if shape == "circle":
        patch: matplotlib.patches.Patch = plt.Circle((cx, cy), w / 2, **style)
    elif shape == "round":
        patch = matplotlib.patches.FancyBboxPatch((cx - w / 2, cy - h / 2), w, h,
                                                  boxstyle="round,pad=0,rounding_size=0.08", **style)
    else:
        patch = plt.Rectangle((cx - w / 2, cy - h / 2), w, h, **style)
    patch.set_gid(gid)
    ax.add_patch(patch)
    if label:
        ax.text(cx, cy, label, ha="center", va="center", fontsize=fontsize, color=textcolour)
    return _Node(patch, cx, cy, w, h, circle=shape == "circle")


def _boundary(node: _Node, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """The point where the segment from `inside` (in node) to `outside` (not in it) leaves the node (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if node.contains(*(inside + mid * (outside - inside))) else (lo, mid)
    return inside + lo * (outside - inside)


def _arrow(ax: plt.Axes, a: _Node, b: _Node, gid: str, a_at: tuple[float, float] | None = None,
           b_at: tuple[float, float] | None = None, offset: float = 0.0, dashed: bool = False,
           colour: str = "0.25", lw: float = 1.5) -> Any:
    """An arrow from node a's edge to node b's edge, along the line from a_at to b_at (default: the centres),
    moved sideways by `offset` inches (a gradient beside its forward arrow). Its head lies on b's edge, so
    annotation.xy is inside b's extents; the annotation carries gid."""
    pa = np.array(a_at if a_at is not None else (a.cx, a.cy), dtype=float)
    pb = np.array(b_at if b_at is not None else (b.cx, b.cy), dtype=float)
    d = pb - pa
    shift = np.array([-d[1], d[0]]) / math.hypot(*d) * offset
    pa, pb = pa + shift, pb + shift
    start, end = _boundary(a, pa, pb), _boundary(b, pb, pa)
    ann = ax.annotate("", xy=(float(end[0]), float(end[1])), xytext=(float(start[0]), float(start[1])),
                      arrowprops={"arrowstyle": "-|>", "shrinkA": 0, "shrinkB": 0, "color": colour, "lw": lw,
                                  "mutation_scale": 16, "linestyle": (0, (4, 2.5)) if dashed else "-"})
    ann.set_gid(gid)
    return ann


def _module_lines(modules: str) -> list[str]:
    """A layer's modules ("Conv2d 1->32 k3 s2 + LeakyReLU"), one short line each: a conv's kernel and stride on a
    line of their own, repeated modules counted ("2 x ResBlock")."""
    parts: list[list[Any]] = []
    for part in modules.split(" + "):
        if parts and parts[-1][0] == part:
            parts[-1][1] += 1
        else:
            parts.append([part, 1])
    lines = []
    for part, n in parts:
        if n > 1:
            lines.append(f"{n} x {part}")
        elif part.endswith(" s2") and " k" in part:
            lines += part.rsplit(" k", 1)[0], "k" + part.rsplit(" k", 1)[1]
        else:
            lines.append(part)
    return lines


def architecture_diagram(model: VAE) -> Figure:
    """The model as a picture, drawn from the model itself: one box per layer of VAE.layer_shapes (height by the
    layer's spatial size, width by its channels, both on a log scale), labelled with its output shape above and
    its name and modules below. The encoder runs left to right along the top row: the flatten step (with its
    shapes), the two heads mu and log sigma^2 (an arrow into each), and the sample z = mu + sigma * eps with its
    own random input eps ~ N(0, I); the decoder runs back right to left along the bottom row, from its linear
    layer through the reshape step to the image. Nothing is hand-drawn: another preset or latent size gives
    another picture. Text is 10 pt or more at the figure's size; the layer boxes are the figure's only
    Rectangles (the reshape steps and z are rounded boxes, eps a circle), and every patch and arrow carries a
    gid ("mu", "logvar", "z", "eps", "flatten", "reshape", the layer names; "arrow A->B")."""
    rows = layer_rows(model)
    latent = model.config.model.latent_dim

    def stage(row: dict[str, Any], part: str) -> bool:
        return row["layer"].startswith(part + ".") and row["layer"].split(".")[1].isdigit()

    by_name = {r["layer"]: r for r in rows}
    enc = [r for r in rows if stage(r, "encoder")]
    dec = [r for r in rows if stage(r, "decoder")]
    heads = next(r for r in rows if r["layer"].startswith("encoder.fc_mu"))
    flat = model.encoder.fc_mu.in_features
    unflat = "x".join(map(str, model.decoder.feature_shape))
    side = max(_shape(r)[-1] for r in rows if len(_shape(r)) == 4)
    fs, line, gap, pitch = 10, 10 * _LINE, 0.08, 1.75

    def size(shape: tuple[int, ...]) -> tuple[float, float]:
        if len(shape) == 4:  # (1, C, H, W): width by channels, height by spatial size
            return (0.2 + 0.05 * math.log2(shape[1]),
                    0.45 + 1.3 * math.log2(1 + shape[2]) / math.log2(1 + side))
        return 0.2 + 0.05 * math.log2(shape[-1]), 0.3  # a flat vector: a low, wide box

    def layer(row: dict[str, Any], colour: str, name: str | None = None, what: str | None = None
              ) -> dict[str, Any]:
        w, h = size(_shape(row))
        below = [name or row["layer"]] + _module_lines(row["modules"] if what is None else what)
        return {"gid": row["layer"], "w": w, "h": h, "shape": "rect", "colour": colour,
                "above": [row["output shape"].removeprefix("1x")], "below": [t for t in below if t]}

    def reshape(gid: str, src: str, dst: str, name: str) -> dict[str, Any]:
        w, h = size((1, *map(int, dst.split("x"))))
        return {"gid": gid, "w": w, "h": h, "shape": "round", "colour": _COLOURS["reshape"], "above": [dst],
                "below": [name, f"{src} -> {dst}"]}

    last = enc[-1]["output shape"].removeprefix("1x")
    top = ([layer(by_name["input"], _COLOURS["image"], what="")]
           + [layer(r, _COLOURS["encoder"]) for r in enc]
           + [reshape("flatten", last, str(flat), "flatten")])
    bottom = ([layer(by_name["decoder.fc"], _COLOURS["decoder"]),
               reshape("reshape", by_name["decoder.fc"]["output shape"].removeprefix("1x"), unflat,
                       "reshape (view)")]
              + [layer(r, _COLOURS["decoder"]) for r in dec]
              + [layer(by_name["output"], _COLOURS["image"], what="Sigmoid")])
    n_top = len(top) + 2  # + the heads, + z
    head_w, head_h, head_dy = size((1, latent))[0], 0.36, 0.45
    head_what = heads["modules"].removesuffix(" (x2)")
    head_text = {"mu": ["fc_mu", head_what, f"mu ({latent})"],
                 "logvar": [f"log sigma^2 ({latent})", "fc_logvar", head_what]}
    z_w, z_h, eps_dy, eps_d = 0.6, 0.5, 1.05, 0.44
    z_text = [r"$z = \mu + \sigma \odot \epsilon$", r"$\sigma = \exp(\log\sigma^2 / 2)$",
              f"sample z ({latent})"]
    z_line = 0.27  # the mathtext lines are taller than plain ones

    def extent(items: list[dict[str, Any]]) -> tuple[float, float]:
        return (max(i["h"] / 2 + gap + len(i["above"]) * line for i in items),
                max(i["h"] / 2 + gap + len(i["below"]) * line for i in items))

    up1, down1 = extent(top)
    up1 = max(up1, head_dy + head_h / 2 + gap + 3 * line, eps_dy + eps_d / 2 + 0.05)
    down1 = max(down1, head_dy + head_h / 2 + gap + 3 * line, z_h / 2 + gap + len(z_text) * z_line)
    up2, down2 = extent(bottom)
    title_h, row_gap = 0.45, 0.35
    width = n_top * pitch + 1.1  # the right margin holds eps's label and the arrow from z down to the decoder
    height = title_h + up1 + down1 + row_gap + up2 + down2 + 0.1
    y1 = height - title_h - up1
    y2 = y1 - down1 - row_gap - up2
    fig = plt.figure(figsize=(width, height))
    ax = _inch_axes(fig, 0, 0, width, height)

    def draw(item: dict[str, Any], col: int, y: float) -> _Node:
        cx = (col + 0.5) * pitch
        node = _node(ax, cx, y, item["w"], item["h"], item["gid"], item["shape"], facecolor=item["colour"],
                     edgecolor="0.2", lw=1.0)
        ax.text(cx, y + item["h"] / 2 + gap, "\n".join(item["above"]), ha="center", va="bottom", fontsize=fs)
        ax.text(cx, y - item["h"] / 2 - gap, "\n".join(item["below"]), ha="center", va="top", fontsize=fs)
        return node

    nodes = [draw(item, col, y1) for col, item in enumerate(top)]
    for a, b in zip(nodes[:-1], nodes[1:]):
        _arrow(ax, a, b, f"arrow {a.patch.get_gid()}->{b.patch.get_gid()}")
    hx, flatten = (len(top) + 0.5) * pitch, nodes[-1]
    for gid, dy, va in (("mu", head_dy, "bottom"), ("logvar", -head_dy, "top")):
        head = _node(ax, hx, y1 + dy, head_w, head_h, gid, facecolor=_COLOURS["heads"], edgecolor="0.2", lw=1.0)
        ax.text(hx, y1 + dy + (1 if dy > 0 else -1) * (head_h / 2 + gap), "\n".join(head_text[gid]),
                ha="center", va=va, fontsize=fs)
        _arrow(ax, flatten, head, f"arrow flatten->{gid}")
        nodes.append(head)
    zx = (len(top) + 1.5) * pitch
    z = _node(ax, zx, y1, z_w, z_h, "z", "round", r"$z$", fontsize=14, textcolour="white",
              facecolor=_COLOURS["sample"], edgecolor="0.2", lw=1.0)
    for head, dy in zip(nodes[-2:], (0.1, -0.1)):
        _arrow(ax, head, z, f"arrow {head.patch.get_gid()}->z", b_at=(zx, y1 + dy))
    for k, text in enumerate(z_text):
        ax.text(zx, y1 - z_h / 2 - gap - k * z_line, text, ha="center", va="top", fontsize=fs)
    eps = _node(ax, zx, y1 + eps_dy, eps_d, eps_d, "eps", "circle", r"$\epsilon$", fontsize=14,
                edgecolor=_COLOURS["sample"], lw=2.0)
    ax.text(zx + eps_d / 2 + 0.1, y1 + eps_dy, r"$\epsilon \sim \mathcal{N}(0, I)$" + f" ({latent})",
            ha="left", va="center", fontsize=fs + 1)
    _arrow(ax, eps, z, "arrow eps->z")
    back = [draw(item, n_top - 1 - k, y2) for k, item in enumerate(bottom)]  # right to left
    for a, b in zip(back[:-1], back[1:]):
        _arrow(ax, a, b, f"arrow {a.patch.get_gid()}->{b.patch.get_gid()}")
    fc = back[0]
    bar_x = zx + max(z_w, fc.w) / 2 + 0.4  # z -> right -> down -> into the decoder's linear layer
    elbow = matplotlib.patches.FancyArrowPatch(
        path=matplotlib.path.Path([(zx + z_w / 2, y1), (bar_x, y1), (bar_x, y2), (fc.cx + fc.w / 2, y2)]),
        arrowstyle="-|>", mutation_scale=16, color="0.25", lw=1.5, shrinkA=0, shrinkB=0)
    elbow.set_gid("arrow z->decoder.fc")
    ax.add_patch(elbow)
    legend = [matplotlib.patches.Patch(facecolor=_COLOURS["image"], label="image (in, out)"),
              matplotlib.patches.Patch(facecolor=_COLOURS["encoder"], label="encoder layer"),
              matplotlib.patches.Patch(facecolor=_COLOURS["heads"], label="posterior heads"),
              matplotlib.patches.Patch(facecolor=_COLOURS["sample"], label="sample z"),
              matplotlib.lines.Line2D([], [], ls="none", marker="o", ms=12, mfc="white", mec=_COLOURS["sample"],
                                      mew=2, label="random input"),
              matplotlib.patches.Patch(facecolor=_COLOURS["decoder"], label="decoder layer"),
              matplotlib.patches.Patch(facecolor=_COLOURS["reshape"], edgecolor="0.2",
                                       label="reshape (no weights)")]
    ax.legend(handles=legend, loc="lower left", bbox_to_anchor=(0.02 / width, 0.05 / height), fontsize=fs,
              frameon=False, handlelength=1.4, borderaxespad=0)
    params = sum(p.numel() for p in model.parameters())
    ax.set_title(f"{model.config.name}: one image's tensor shapes through the VAE, {params:,} parameters",
                 fontsize=12, y=(height - 0.12) / height, va="top", pad=0)
    return fig


def _shape(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in row["output shape"].split("x"))


def reparameterisation_graph() -> Figure:
    """The reparameterisation trick as two computation graphs side by side, from an image x through the encoder
    (weights phi) to mu and log sigma^2, sigma = exp(log sigma^2 / 2), the code z and the loss. Left: z drawn
    from N(mu, sigma^2) is a random node (a circle): the gradient of the loss (dashed, drawn backwards) reaches
    z and stops there. Right: z = mu + sigma * eps is a deterministic node (a rectangle) with the noise
    eps ~ N(0, I) as an outside random input: the gradient flows from the loss through z to mu and sigma, on
    to log sigma^2 and the encoder, and not into eps, which has nothing to learn. Nodes and arrows carry gids
    ("z", "eps", "mu", ...; "forward A->B", "grad A->B") in each of the two axes."""
    pw, ph, bottom = 6.4, 7.0, 0.75
    fig = plt.figure(figsize=(2 * pw + 0.3, ph + bottom + 0.1))
    grad = {"dashed": True, "colour": "tab:red", "lw": 1.8, "offset": 0.14}
    for k, reparameterised in enumerate((False, True)):
        ax = _inch_axes(fig, 0.1 + k * (pw + 0.1), bottom, pw, ph)
        n = {"x": _node(ax, 3.0, 0.45, 1.4, 0.55, "x", label=r"image $x$"),
             "enc": _node(ax, 3.0, 1.65, 2.9, 0.55, "enc", label=r"encoder, weights $\phi$"),
             "mu": _node(ax, 1.3, 2.9, 1.0, 0.6, "mu", label=r"$\mu$"),
             "logvar": _node(ax, 4.6, 2.9, 1.5, 0.6, "logvar", label=r"$\log\sigma^2$"),
             "sigma": _node(ax, 4.6, 4.15, 3.0, 0.7, "sigma",
                            label=r"$\sigma = \exp\left(\dfrac{1}{2}\log\sigma^2\right)$"),
             "loss": _node(ax, 3.0, 6.4, 3.4, 0.6, "loss", label=r"decoder and loss $\mathcal{L}$")}
        if reparameterised:
            n["z"] = _node(ax, 2.6, 5.3, 2.6, 0.6, "z", label=r"$z = \mu + \sigma \odot \epsilon$")
            n["eps"] = _node(ax, 5.3, 5.3, 0.7, 0.7, "eps", "circle", r"$\epsilon$", facecolor="0.93")
            ax.text(5.3, 5.3 + 0.45, r"$\epsilon \sim \mathcal{N}(0, I)$", ha="center", va="bottom", fontsize=13)
        else:
            n["z"] = _node(ax, 3.0, 5.3, 0.8, 0.8, "z", "circle", r"$z$", facecolor="0.93")
            ax.text(3.0 - 0.55, 5.3, r"$z \sim \mathcal{N}(\mu, \sigma^2)$", ha="right", va="center", fontsize=13)
        forward = [("x", "enc"), ("enc", "mu"), ("enc", "logvar"), ("logvar", "sigma"), ("mu", "z"),
                   ("sigma", "z"), ("z", "loss")] + ([("eps", "z")] if reparameterised else [])
        for a, b in forward:
            _arrow(ax, n[a], n[b], f"forward {a}->{b}")
        backward = [("loss", "z")] + ([("z", "mu"), ("z", "sigma"), ("sigma", "logvar"), ("mu", "enc"),
                                       ("logvar", "enc")] if reparameterised else [])
        for a, b in backward:
            _arrow(ax, n[a], n[b], f"grad {a}->{b}", **grad)
        if reparameterised:
            ax.set_title(r"Reparameterised: $z = \mu + \sigma \odot \epsilon$, the gradient reaches $\mu, \sigma$",
                         fontsize=12, y=(ph - 0.05) / ph, va="top", pad=0)
            note = "eps is an outside input with\nno parameters: no gradient\nis needed, none flows to it"
        else:
            ax.set_title(r"Sampling $z \sim \mathcal{N}(\mu, \sigma^2)$: the gradient stops at $z$",
                         fontsize=12, y=(ph - 0.05) / ph, va="top", pad=0)
            for a in ("mu", "sigma"):  # a cross on each path the gradient cannot take
                t = 0.5
                ax.text(n[a].cx + t * (n["z"].cx - n[a].cx), n[a].cy + t * (n["z"].cy - n[a].cy), r"$\times$",
                        ha="center", va="center", fontsize=22, color="tab:red")
            note = "no gradient flows past z:\na random draw is not a\ndifferentiable function\nof mu and sigma"
        ax.text(pw - 0.1, 0.1, note, ha="right", va="bottom", fontsize=10.5, color="0.2")
    handles = [matplotlib.patches.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black",
                                            label="deterministic node"),
               matplotlib.lines.Line2D([], [], ls="none", marker="o", ms=15, mfc="0.93", mec="black",
                                       label="random node"),
               matplotlib.lines.Line2D([], [], color="0.25", lw=1.5, label="forward pass"),
               matplotlib.lines.Line2D([], [], color="tab:red", lw=1.8, ls=(0, (4, 2.5)),
                                       label="gradient of the loss (backward)"),
               matplotlib.lines.Line2D([], [], ls="none", marker="x", ms=11, mew=2, color="tab:red",
                                       label="no gradient path")]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=11, frameon=False,
               bbox_to_anchor=(0.5, 0.1 / fig.get_size_inches()[1]))
    return fig


def toy_posterior(x: float, s: float) -> tuple[float, float]:
    """The exact posterior of the 1-D toy model z ~ N(0, 1), x | z ~ N(z, s^2): p(z|x) = N(x / (1 + s^2),
    s^2 / (1 + s^2)), as (mean, standard deviation)."""
    _check_toy(x, s)
    return x / (1 + s * s), s / math.sqrt(1 + s * s)


def _check_toy(x: float, s: float) -> None:
    if not math.isfinite(x):
        raise ValueError(f"x={x!r} is invalid: allowed a finite number")
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"s={s!r} is invalid: allowed a finite number > 0")


def _toy_qs(x: float, s: float) -> list[tuple[str, float, float]]:
    m, sd = toy_posterior(x, s)
    return [("exact posterior", m, sd), ("shifted mean", m + 2 * sd, sd), ("too narrow", m, 0.4 * sd),
            ("too wide", m, 2.5 * sd)]


def elbo_gap_numbers(x: float = 1.5, s: float = 0.5, qs: list[tuple[str, float, float]] | None = None
                     ) -> list[dict[str, Any]]:
    """For each q = (label, mean, sd), a Gaussian N(mean, sd^2) over z in the toy model z ~ N(0, 1),
    x | z ~ N(z, s^2): log p(x) = log N(x; 0, 1 + s^2), ELBO(q) = E_q[log p(x|z)] - KL(q || p(z)) and
    KL(q || p(z|x)), each in closed form (nats) and computed apart, so log p(x) = ELBO + KL checks them. qs
    defaults to the exact posterior, one with its mean two posterior sds too high, one 0.4 times as wide and one
    2.5 times as wide."""
    _check_toy(x, s)
    qs = _toy_qs(x, s) if qs is None else qs
    post_m, post_sd = toy_posterior(x, s)
    log_px = -0.5 * math.log(2 * math.pi * (1 + s * s)) - x * x / (2 * (1 + s * s))
    rows = []
    for label, m, sd in qs:
        if not (math.isfinite(m) and math.isfinite(sd) and sd > 0):
            raise ValueError(f"q {label!r} = N({m!r}, {sd!r}^2) is invalid: allowed a finite mean and sd > 0")
        v = sd * sd
        expected_loglik = -0.5 * math.log(2 * math.pi * s * s) - ((x - m) ** 2 + v) / (2 * s * s)
        kl_prior = 0.5 * (v + m * m - 1 - math.log(v))
        kl = math.log(post_sd / sd) + (v + (m - post_m) ** 2) / (2 * post_sd ** 2) - 0.5
        rows.append({"q": label, "mean": m, "sd": sd, "log_px": log_px, "elbo": expected_loglik - kl_prior,
                     "kl": kl, "expected_loglik": expected_loglik, "kl_prior": kl_prior})
    return rows


def elbo_gap(x: float = 1.5, s: float = 0.5, qs: list[tuple[str, float, float]] | None = None) -> Figure:
    """log p(x) = ELBO(q) + KL(q(z|x) || p(z|x)) on the toy model of elbo_gap_numbers, where all three are
    exact. Left: the densities over z of the prior, the exact posterior and each q. Right: one stacked bar per
    q, its ELBO below and its KL gap above, every bar reaching the line log p(x); the values are negative, so
    the bars start from a common floor below the smallest ELBO (the x-axis label says which)."""
    numbers = elbo_gap_numbers(x, s, qs)
    log_px = numbers[0]["log_px"]
    post_m, post_sd = toy_posterior(x, s)
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(numbers))]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.6), width_ratios=(1.15, 1))
    lo = min([-5.0] + [r["mean"] - 4 * r["sd"] for r in numbers])
    hi = max([3.5] + [r["mean"] + 4 * r["sd"] for r in numbers])
    z = np.linspace(lo, hi, 801)

    def normal(m: float, sd: float) -> np.ndarray:
        return np.exp(-0.5 * ((z - m) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

    left.plot(z, normal(0, 1), color="0.5", lw=2, ls=":", label="prior p(z) = N(0, 1)")
    left.plot(z, normal(post_m, post_sd), color="black", lw=4, alpha=0.35,
              label=f"posterior p(z|x) = N({post_m:.2f}, {post_sd:.2f}²)")
    for r, c in zip(numbers, colours):
        left.plot(z, normal(r["mean"], r["sd"]), color=c, lw=2, ls="--" if r["kl"] < 1e-12 else "-",
                  label=f"q: {r['q']}, N({r['mean']:.2f}, {r['sd']:.2f}²)")
    left.set_xlim(lo, hi)
    peak = max(1 / math.sqrt(2 * math.pi), 1 / (post_sd * math.sqrt(2 * math.pi)),
               *(1 / (r["sd"] * math.sqrt(2 * math.pi)) for r in numbers))
    left.set_ylim(0, 1.6 * peak)  # the legend's room above every curve, wherever the posterior lies
    left.set_xlabel("z", fontsize=11)
    left.set_ylabel("density", fontsize=11)
    left.legend(fontsize=10, loc="upper left", frameon=False)
    left.set_title(f"Toy model: z ~ N(0, 1), x | z ~ N(z, {s:g}²); observed x = {x:g}", fontsize=12)
    elbos = [r["elbo"] for r in numbers]
    spread = max(log_px - min(elbos), 0.5)
    floor = math.floor(2 * (min(elbos) - 0.25 * spread)) / 2
    for i, (r, c) in enumerate(zip(numbers, colours)):
        right.bar(i, r["elbo"] - floor, bottom=floor, width=0.62, color=c)
        right.bar(i, r["kl"], bottom=r["elbo"], width=0.62, facecolor="white", edgecolor=c, hatch="//", lw=1.5)
        right.text(i, r["elbo"] - 0.03 * spread, f"ELBO\n{r['elbo']:.2f}", ha="center", va="top", fontsize=10,
                   color="white", fontweight="bold")
        right.text(i, log_px + 0.03 * spread, f"KL\n{r['kl']:.2f}", ha="center", va="bottom", fontsize=10)
    right.axhline(log_px, color="black", lw=1.5, ls="--")
    right.set_xticks(range(len(numbers)), [r["q"].replace(" ", "\n", 1) for r in numbers], fontsize=10)
    right.tick_params(axis="y", labelsize=10)
    right.set_ylim(floor, log_px + 0.55 * spread)
    right.set_xlim(-0.6, len(numbers) - 0.4)
    right.set_ylabel("nats", fontsize=11)
    right.set_xlabel(f"every bar starts at {floor:g} nats, below the smallest ELBO (all values are negative)",
                     fontsize=10)
    right.legend(handles=[matplotlib.patches.Patch(facecolor="0.5", label="ELBO(q)"),
                          matplotlib.patches.Patch(facecolor="white", edgecolor="0.5", hatch="//",
                                                   label="KL(q || p(z|x)), the gap"),
                          matplotlib.lines.Line2D([], [], color="black", ls="--", label=f"log p(x) = {log_px:.3f}")],
                 fontsize=10, loc="upper right", frameon=False)
    right.set_title(r"$\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q(z|x)\,\|\,p(z|x))$", fontsize=12)
    fig.tight_layout()
    return fig


def posterior_ellipses(model: VAE, images: torch.Tensor, labels: torch.Tensor | None = None, n: int = 40,
                       seed: int = 0) -> Figure:
    """Posteriors as what they are, distributions: for n images of a model with a 2-D latent space, the ellipse of
    one standard deviation of q(z|x) = N(mu, diag(sigma^2)) around each mean (coloured by class), against the
    prior N(0, I)'s circles of 1 and 2 standard deviations. Where the ellipses cover the prior, a code drawn from it
    lands where some image was encoded; where they leave holes, the decoder never learned what to draw there."""
    if model.config.model.latent_dim != 2:
        raise ValueError(f"latent_dim={model.config.model.latent_dim} is invalid for posterior_ellipses: allowed 2 "
                         "(a model with a 2-D latent space)")
    pick = example_indices(labels if labels is not None else torch.zeros(len(images)), min(n, len(images)), seed)
    mu, logvar = (t.cpu().numpy() for t in posterior_stats(model, images[pick]))
    sigma = np.exp(0.5 * logvar)
    fig, ax = plt.subplots(figsize=(6.2, 6))
    cmap = plt.get_cmap("tab10")
    for r in (1, 2):
        ax.add_patch(plt.Circle((0, 0), r, fill=False, ls="--", color="black", lw=1.2))
        ax.text(r * 0.71, r * 0.71, f"prior {r} sd", fontsize=8)
    classes = labels[pick].numpy() if labels is not None else np.zeros(len(pick), dtype=int)
    for (mx, my), (sx, sy), k in zip(mu, sigma, classes):
        ax.add_patch(matplotlib.patches.Ellipse((mx, my), 2 * sx, 2 * sy, color=cmap(int(k) % 10), alpha=0.3))
        ax.plot(mx, my, ".", color=cmap(int(k) % 10), ms=3)
    lim = max(2.5, float(np.abs(mu).max() + 2 * sigma.max()))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    if labels is not None:
        ax.legend(handles=[matplotlib.patches.Patch(color=cmap(int(k) % 10), label=str(int(k)))
                           for k in np.unique(classes)], title="class", fontsize="small", loc="upper right")
    ax.set_title(f"q(z|x) of {len(pick)} test images (1 sd ellipses) against the prior N(0, I)")
    fig.tight_layout()
    return fig


def prior_coverage(model: VAE, images: torch.Tensor, draws: int = 2000, seed: int = 0) -> float:
    """The share of `draws` codes z ~ N(0, I) that fall inside the 1-sd ellipse of at least one posterior
    q(z|x) of `images` (Mahalanobis distance <= 1 under that posterior's diagonal Gaussian): how much of the prior
    the encoded images cover, for a model of any latent size (in many dimensions the share is small)."""
    if draws < 1:
        raise ValueError(f"draws={draws!r} is invalid: allowed an integer >= 1")
    mu, logvar = (t.cpu().double() for t in posterior_stats(model, images))
    z = torch.randn(draws, mu.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    inv_sd = torch.exp(-0.5 * logvar)
    inside = torch.zeros(draws, dtype=torch.bool)
    for part in range(0, len(mu), 256):  # (draws, 256, D) at a time
        d2 = ((z[:, None] - mu[None, part:part + 256]) * inv_sd[None, part:part + 256]).pow(2).sum(-1)
        inside |= (d2 <= 1).any(1)
    return inside.double().mean().item()


def sampling_contrast(models: dict[str, torch.nn.Module], images: torch.Tensor, n: int = 10, seed: int = 0
                      ) -> Figure:
    """For each model (e.g. {"autoencoder": ..., "VAE": ...}): a row of reconstructions of the same n test images
    and a row of n decodes of codes drawn from N(0, I) with the same seed, so the two rows of each model compare
    what it does with codes of real images and with codes from the prior."""
    x = to_float(images[example_indices(torch.zeros(len(images)), n, seed)])
    rows = [("test images", x)]
    for name, model in models.items():
        device = model_device(model)
        with torch.no_grad():
            recon = model.reconstruct(x.to(device)).cpu()
            sample = model.sample(n, generator=torch.Generator(device=device).manual_seed(seed)).cpu()
        rows += [(f"{name}: reconstructions", recon), (f"{name}: samples from N(0, I)", sample)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.1 * n, 1.3 * len(rows)))
    for ax, (title, imgs) in zip(axes, rows):
        ax.imshow(tile(imgs, n, pad=1).squeeze(), cmap="gray" if imgs.shape[1] == 1 else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize="medium", loc="left")
        ax.axis("off")
    fig.tight_layout()
    return fig
