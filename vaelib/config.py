"""Frozen configuration dataclasses, the per-dataset presets, and their validation.

A `Config` is three parts: what data (`DataConfig`), what network (`ModelConfig`)
and how to train it (`TrainConfig`, with its `BetaSchedule`). Override fields with
`dataclasses.replace` or `with_overrides`; every constructor validates itself and
refuses bad values with a one-line `ValueError` that names the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from vaelib.config_checks import (
    MAX_BETA,
    MAX_EPOCHS,
    MAX_FREE_BITS,
    MAX_LAYERS,
    MAX_SEED,
    MAX_WIDTH,
    SEEDS,
    check_ranges,
    check_types,
    choice,
    normalise_numbers,
    refuse,
    refuse_argument,
)
from vaelib.losses import LIKELIHOODS

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a config's name: a run folder's, never a path
DATASETS = ("fashion_mnist", "cifar10", "celeba", "mnist", "digits", "shapes")
SCHEDULES = ("constant", "warmup", "linear", "cyclic")
RECON_LOSSES = tuple(LIKELIHOODS)  # the names of vaelib.losses' one likelihood registry
BACKGROUNDS = ("plain", "textured", "gradient")
MAX_TARGET_RATE = 1e6  # train.target_rate at most, nats per image
LOGVAR_MAX = 80.0  # model.logvar_max at most: exp(88.7) overflows float32, and the KL holds exp(logvar)
OUTPUT_BIASES = ("zero", "data_mean")  # model.output_bias: how the decoder's last bias starts
MODEL_KINDS = ("vae", "ae", "vq")  # model families, each built by vaelib.models.registry.MODELS[kind]
PRECISIONS = ("fp32", "bf16")
ADAM_IMPLS = ("auto", "foreach", "fused", "for")
# Upper bounds: beyond them a value is a typo or an overflow waiting to happen, never a setting.
@dataclass(frozen=True)
class DataConfig:
    """Which dataset, at what size, from where."""

    dataset: str = "digits"  # one of DATASETS
    image_size: int = 32  # pixels per side after preprocessing
    channels: int = 1  # 1 (grey) or 3 (RGB)
    root: str = "data"  # folder holding torchvision's files
    download: bool = False  # let torchvision fetch missing files
    max_train: int | None = None  # keep only the first N training images (small budgets)
    shapes_train: int = 10_000  # shapes: images generated for the training split
    background: str = "plain"  # shapes: plain black, textured (random waves) or gradient (a colour ramp)

    def __post_init__(self) -> None:
        check_types("data", self)
        choice("data", "dataset", self.dataset, DATASETS)
        if self.channels not in (1, 3):
            refuse("data", "channels", self.channels, "1 or 3")
        check_ranges("data", self)
        choice("data", "background", self.background, BACKGROUNDS)
        normalise_numbers(self)


@dataclass(frozen=True)
class ModelConfig:
    """The convolutional encoder/decoder shape."""

    hidden_dims: tuple[int, ...] = (32, 64)  # channels of each stride-2 conv layer
    latent_dim: int = 32  # size of z
    batch_norm: bool = False  # BatchNorm after each conv
    kernel_size: int = 3  # conv kernel, padding kernel_size // 2
    leaky_slope: float = 0.2  # LeakyReLU negative slope
    res_blocks: int = 0  # residual blocks (two 3x3 convs and a skip) after each stride-2 stage, in both directions
    kind: str = "vae"  # the model family, built by vaelib.models.registry.MODELS: "vae" (Gaussian conv VAE), "ae", "vq"
    codebook_size: int = 512  # kind "vq": codes in the codebook (latent_dim: each code's dimension)
    commitment: float = 0.25  # kind "vq": weight of the commitment term (van den Oord et al., 2017: 0.25)
    codebook_decay: float = 0.99  # kind "vq": EMA decay of the codebook's updates (Razavi et al., 2019); 0: the
    #   codebook learns from its loss term instead
    dead_code_threshold: float = 1.0  # kind "vq", with codebook_decay > 0: a code whose EMA count of assignments
    #   per step falls below this, and that no vector of the batch chose, restarts at a badly quantised vector; 0: never
    logvar_max: float | None = None  # kind "vae": the encoder's log-variance bends smoothly below this bound above
    #   logvar_max - 1 and is unchanged below it (models.vae.bound_logvar); None: unbounded. A run that leaves it None
    #   keeps its cache key
    output_bias: str = "zero"  # how the decoder's last bias starts: "zero" (PyTorch's default draw, every output
    #   near 0.5) or "data_mean" (each channel's logit of the training images' mean, set by fit before the first
    #   step: the output starts at the data's mean colour instead of mid-grey; models.base.init_output_bias). A run
    #   that leaves it "zero" keeps its cache key

    def __post_init__(self) -> None:
        check_types("model", self)
        choice("model", "kind", self.kind, MODEL_KINDS)
        choice("model", "output_bias", self.output_bias, OUTPUT_BIASES)
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        check_ranges("model", self)
        if not 1 <= len(self.hidden_dims) <= MAX_LAYERS:
            refuse("model", "hidden_dims", self.hidden_dims, f"at least one layer and at most {MAX_LAYERS}")
        for c in self.hidden_dims:
            if not 1 <= c <= MAX_WIDTH:
                refuse("model", "hidden_dims", self.hidden_dims, f"positive integer channel counts <= {MAX_WIDTH}")
        if self.kernel_size not in (3, 4, 5):
            refuse("model", "kernel_size", self.kernel_size, "3, 4 or 5")
        if self.logvar_max is not None and not 1 <= self.logvar_max <= LOGVAR_MAX:
            refuse("model", "logvar_max", self.logvar_max, f"None or a number >= 1 and <= {LOGVAR_MAX:g}")
        if not 0 <= self.leaky_slope < 1:
            refuse("model", "leaky_slope", self.leaky_slope, "a value in [0, 1)")
        if not 0 <= self.commitment <= MAX_BETA:
            refuse("model", "commitment", self.commitment, f"a number >= 0 and <= {MAX_BETA:g}")
        if not 0 <= self.codebook_decay < 1:
            refuse("model", "codebook_decay", self.codebook_decay, "a number in [0, 1) (0: no EMA)")
        if not 0 <= self.dead_code_threshold <= MAX_BETA:
            refuse("model", "dead_code_threshold", self.dead_code_threshold, f"a number >= 0 and <= {MAX_BETA:g}")
        normalise_numbers(self)


@dataclass(frozen=True)
class BetaSchedule:
    """beta as a function of the training step; see vaelib.schedules for the formulas."""

    kind: str = "constant"  # constant | warmup | linear | cyclic
    beta: float = 1.0  # the target (final) weight of the KL term
    warmup_epochs: float = 0.0  # warmup: epochs at beta_start before jumping to beta
    beta_start: float = 0.0  # warmup/linear/cyclic: the value before (or at the start of) the ramp
    anneal_steps: int = 1000  # linear: steps of the ramp from beta_start to beta
    cycles: int = 4  # cyclic: number of cycles over the whole run (Fu et al., 2019: M)
    ratio: float = 0.5  # cyclic: fraction of each cycle spent ramping (Fu et al., 2019: R)

    def __post_init__(self) -> None:
        check_types("schedule", self)
        choice("schedule", "kind", self.kind, SCHEDULES)
        if not 0 <= self.beta <= MAX_BETA:  # also refuses nan
            refuse("schedule", "beta", self.beta, f"a value >= 0 and <= {MAX_BETA:g}")
        if not 0 <= self.beta_start <= MAX_BETA:
            refuse("schedule", "beta_start", self.beta_start, f"a value >= 0 and <= {MAX_BETA:g}")
        if not 0 <= self.warmup_epochs <= MAX_EPOCHS:
            refuse("schedule", "warmup_epochs", self.warmup_epochs, f"a value >= 0 and <= {MAX_EPOCHS}")
        check_ranges("schedule", self)
        if not 0 < self.ratio <= 1:
            refuse("schedule", "ratio", self.ratio, "a value in (0, 1]")
        normalise_numbers(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 30  # passes over the training set
    batch_size: int = 128  # images per step
    lr: float = 1e-3  # Adam learning rate
    grad_clip: float | None = None  # max global grad norm; None disables clipping
    recon: str = "mse"  # mse (sum over pixels) or bernoulli (BCE, sum over pixels)
    free_bits: float = 0.0  # KL floor per latent dimension, nats (0 disables)
    schedule: BetaSchedule = field(default_factory=BetaSchedule)
    seed: int = 0  # seeds weights, shuffling and sampling
    precision: str = "fp32"  # fp32 or bf16 autocast (loss always accumulated in fp32)
    channels_last: bool = False  # NHWC memory format
    sync_every: int = 50  # steps between reads of the on-device scalars (every step is still recorded)
    adam_impl: str = "auto"  # auto | foreach | fused | for (torch.optim.Adam implementation)
    compile: bool = False  # opt-in torch.compile of the model
    stop_tol: float = 0.0  # > 0: stop once the run has converged by evidence.convergence at this tol (epochs = cap)
    min_epochs: int = 0  # with stop_tol: never stop before this many epochs (train on, not stop early)
    target_rate: float | None = None  # kind "vae": nats per image the KL term is held at, charged as
    #   beta * |KL - target_rate| instead of beta * KL (Burgess et al., 2018), so runs of two likelihoods can be
    #   trained to the same rate; None: the ELBO's KL. A run that leaves it None keeps its run key

    def __post_init__(self) -> None:
        check_types("train", self)
        if isinstance(self.schedule, dict):
            object.__setattr__(self, "schedule", BetaSchedule(**self.schedule))
        check_ranges("train", self)
        if not 0 < self.lr < math.inf:  # also refuses nan
            refuse("train", "lr", self.lr, "a value > 0 and finite")
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            refuse("train", "grad_clip", self.grad_clip, "None or a value > 0 and finite")
        choice("train", "recon", self.recon, RECON_LOSSES)
        if not 0 <= self.free_bits <= MAX_FREE_BITS:
            refuse("train", "free_bits", self.free_bits, f"a value >= 0 and <= {MAX_FREE_BITS:g} (nats per dimension)")
        if not 0 <= self.seed < MAX_SEED:
            refuse("train", "seed", self.seed, SEEDS)
        choice("train", "precision", self.precision, PRECISIONS)
        choice("train", "adam_impl", self.adam_impl, ADAM_IMPLS)
        if not 0 <= self.stop_tol < 1:
            refuse("train", "stop_tol", self.stop_tol, "0 (train every epoch) or a value in (0, 1)")
        if self.stop_tol and self.schedule.kind == "cyclic" and not self.min_epochs:
            refuse("train", "stop_tol", self.stop_tol, "0 with a cyclic schedule laid over the whole run (its beta "
                    "never settles), or train.min_epochs > 0: the cycles are laid over those epochs and beta holds "
                    "after them")
        if self.target_rate is not None and not 0 < self.target_rate <= MAX_TARGET_RATE:
            refuse("train", "target_rate", self.target_rate, f"None or a number > 0 and <= {MAX_TARGET_RATE:g} "
                   "(nats per image)")
        if self.target_rate is not None and self.free_bits > 0:
            refuse("train", "target_rate", self.target_rate, "None with free_bits > 0 (each shapes the KL term: "
                   "choose one)")
        if not 0 <= self.min_epochs <= self.epochs:
            refuse("train", "min_epochs", self.min_epochs, f"an integer >= 0 and <= train.epochs ({self.epochs})")
        normalise_numbers(self)


@dataclass(frozen=True)
class Config:
    """A complete experiment: data + model + training, under a preset name."""

    name: str = "digits"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_types("config", self)
        if not NAME.fullmatch(self.name) or ".." in self.name:
            refuse("config", "name", self.name, "a folder name of letters, digits, '_', '-' and '.' (not first, "
                   "no '..'), at most 64 characters: it names the run's folder")
        for part, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            value = getattr(self, part)
            if isinstance(value, dict):
                object.__setattr__(self, part, cls(**value))
        layers = len(self.model.hidden_dims)
        if self.data.image_size >> layers < 1 or self.data.image_size < 2**layers:
            refuse(
                "model", "hidden_dims", self.model.hidden_dims,
                f"at most {self.data.image_size.bit_length() - 1} stride-2 layers "
                f"for {self.data.image_size}x{self.data.image_size} images",
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.data.channels, self.data.image_size, self.data.image_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"]["hidden_dims"] = list(self.model.hidden_dims)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}: allowed {sorted(allowed)}")
        parts = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        kwargs = {}
        for key, value in d.items():
            if key in parts and isinstance(value, dict):
                value = _build(parts[key], value, key)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Config:
        try:
            d = json.loads(text)
        except RecursionError:  # json.loads recurses once per level: a config has three
            raise ValueError(f"text={text[:20]!r}... is nested too deep to parse: allowed a config's JSON "
                             "(Config.to_json)") from None
        return cls.from_dict(d)


def _build(cls: type, d: dict[str, Any], where: str) -> Any:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(f"unknown {where} keys {sorted(unknown)}: allowed {sorted(allowed)}")
    d = dict(d)
    if cls is TrainConfig and isinstance(d.get("schedule"), dict):
        d["schedule"] = _build(BetaSchedule, d["schedule"], "train.schedule")
    return cls(**d)


def check_config(config: Any, name: str = "config") -> None:
    """Refuse, in one line naming the argument, a value that is not a Config (a dict of its fields, most often)."""
    if not isinstance(config, Config):
        refuse_argument(name, config, "a vaelib Config (Config.from_dict(d) converts a dict of its fields, "
                                      "get_preset(name) gives a preset)")


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Return a copy with dotted-path overrides, e.g. `with_overrides(c, **{"train.epochs": 3})`."""
    check_config(config)
    d = config.to_dict()
    for path, value in overrides.items():
        keys = path.replace("__", ".").split(".")
        node = d
        for k in keys[:-1]:
            if not isinstance(node, dict) or k not in node:
                raise ValueError(f"unknown config field {path!r}")
            node = node[k]
        if not isinstance(node, dict) or keys[-1] not in node:
            raise ValueError(f"unknown config field {path!r}")
        node[keys[-1]] = value
    return Config.from_dict(d)


def comparable(config: Config) -> Config:
    """The config with the fields that cannot change a trained model set to their defaults: the run cache's key.

    Blanked: data.root and data.download (where the files are), train.sync_every (how often the loop reads its
    scalars; every step is recorded either way, tests/test_train.py checks the history is identical),
    data.shapes_train and data.background unless the dataset is shapes (they do not touch an mnist run), the
    codebook's fields unless the model is a VQ-VAE (they do not touch another family), and model.logvar_max unless
    it is the Gaussian VAE (no other family has a log-variance).
    Kept, though they are speed options: channels_last and adam_impl="fused" change the rounding of the
    convolutions and of Adam's update (the validation loss differs in the 5th digit after 2 epochs), so a cached
    run made with them is not the run made without.
    """
    shapes = config.data.dataset == "shapes"
    data = dataclasses.replace(config.data, root="", download=False,
                               shapes_train=config.data.shapes_train if shapes else DataConfig.shapes_train,
                               background=config.data.background if shapes else DataConfig.background)
    model = config.model if config.model.kind == "vq" else dataclasses.replace(
        config.model, **{f: getattr(ModelConfig, f) for f in VQ_FIELDS})
    if model.kind != "vae":  # only the Gaussian VAE has a log-variance to bound
        model = dataclasses.replace(model, logvar_max=ModelConfig.logvar_max)
    return dataclasses.replace(config, data=data, model=model,
                               train=dataclasses.replace(config.train, sync_every=TrainConfig.sync_every))


VQ_FIELDS = ("codebook_size", "commitment", "codebook_decay", "dead_code_threshold")  # read by kind "vq" alone


def _preset(name: str, dataset: str, size: int, channels: int, hidden: tuple[int, ...], latent: int,
            schedule: BetaSchedule, epochs: int, batch_norm: bool = False,
            grad_clip: float | None = None, batch_size: int = 128, channels_last: bool = False,
            res_blocks: int = 0, lr: float = 1e-3) -> Config:
    return Config(
        name=name,
        data=DataConfig(dataset=dataset, image_size=size, channels=channels),
        model=ModelConfig(hidden_dims=hidden, latent_dim=latent, batch_norm=batch_norm, res_blocks=res_blocks),
        train=TrainConfig(epochs=epochs, schedule=schedule, grad_clip=grad_clip, batch_size=batch_size,
                          channels_last=channels_last, lr=lr),
    )


# The seed tables of the two source reports (docs/architecture.md), plus the embedded stand-ins.
# channels_last where `python -m vaelib bench --preset all` measured it faster (the figures: reports/benchmarks/
# and the README's Speed section).
PRESETS: dict[str, Config] = {
    "fashion_mnist": _preset("fashion_mnist", "fashion_mnist", 32, 1, (32, 64), 32,
                             BetaSchedule("constant", beta=0.8), epochs=20, channels_last=True),
    "cifar10": _preset("cifar10", "cifar10", 32, 3, (64, 128, 256, 512), 256,
                       BetaSchedule("warmup", beta=0.1, warmup_epochs=15), epochs=50),
    "celeba": _preset("celeba", "celeba", 64, 3, (64, 128, 256, 512), 256,
                      BetaSchedule("warmup", beta=0.9, warmup_epochs=2), epochs=20, channels_last=True),
    "celeba_small": _preset("celeba_small", "celeba", 64, 3, (32, 64, 128, 256), 128,
                            BetaSchedule("constant", beta=1.0), epochs=20,
                            batch_norm=True, grad_clip=1.0, channels_last=True),
    # the CelebA report's next step (its future work): 128x128 faces, one more stage and a residual block per stage
    "celeba128": _preset("celeba128", "celeba", 128, 3, (32, 64, 128, 256, 512), 256,
                         BetaSchedule("warmup", beta=0.9, warmup_epochs=2), epochs=20,
                         batch_norm=True, grad_clip=1.0, batch_size=64, channels_last=True, res_blocks=1),
    "mnist": _preset("mnist", "mnist", 32, 1, (32, 64), 32,  # the fashion_mnist preset on real MNIST digits
                     BetaSchedule("constant", beta=0.8), epochs=20, channels_last=True),
    "digits": _preset("digits", "digits", 32, 1, (32, 64), 32,
                      BetaSchedule("constant", beta=0.8), epochs=100, batch_size=64),  # ~2k steps, ~1 min
    # batch 16 and lr 0.002: a small object on a black background needs many large updates to leave the data-mean
    # image before the sigmoid's output saturates at black, where the squared error's gradient vanishes (measured at
    # the small budget, 2,000 images x 16 epochs, seeds 0-2: 0.21-0.23 of the data-mean error; batch 32 at lr 0.001:
    # 0.62, no colour; docs/findings.md)
    "shapes": _preset("shapes", "shapes", 32, 3, (32, 64, 128), 10,
                      BetaSchedule("constant", beta=1.0), epochs=20, batch_size=16, lr=0.002),
}


def get_preset(name: str) -> Config:
    """The preset called `name`; refuses unknown names with the list of known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: allowed {', '.join(PRESETS)}")
    return PRESETS[name]
