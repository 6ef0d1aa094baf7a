"""History: what `fit` records, typed. One row per optimiser step, one per epoch, and the run's options.

All losses are nats per image (sums over pixels and latent dimensions, means over the batch). A history is
saved as plain JSON (history.json and inside checkpoint.pt) through `to_dict` and read back by `from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from vaelib.io.refusals import MISSING, is_int, is_number, need, refuse


class Step(TypedDict):
    """One optimiser step, as the training loop saw it (before the step's update)."""

    step: int  # global step, from 0
    epoch: int
    beta: float  # the KL weight used at this step
    lr: float
    total: float  # recon + beta * kl (with free bits, if any)
    recon: float
    kl: float
    grad_norm: float  # global gradient norm before clipping


class Epoch(TypedDict):
    """One epoch: the mean of its steps (train_*) and the validation split at the epoch's last beta (val_*)."""

    epoch: int
    beta: float
    seconds: float
    images_per_sec: float
    train_total: float
    train_recon: float
    train_kl: float
    val_total: float
    val_recon: float
    val_kl: float
    val_kl_used: NotRequired[float]  # runs with free bits or a target rate only: the KL term as optimised
    threads: NotRequired[int]  # torch's CPU threads during the epoch (a resumed run may use others); absent in
    #   histories of an earlier vaelib, which recorded only options["threads"], the count the run started with


DEFAULT_TERMS, DEFAULT_RATE = ("recon", "kl"), "kl"  # the VAE's: a history without options["terms"] is a VAE's


def step_fields(terms: tuple[str, ...] = DEFAULT_TERMS) -> tuple[str, ...]:
    """The fields of a step row of a family whose loss has these named terms (Step shows the VAE's)."""
    return ("step", "epoch", "beta", "lr", "total", *terms, "grad_norm")


def epoch_fields(terms: tuple[str, ...] = DEFAULT_TERMS, stats: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The fields of every epoch row (Epoch shows the VAE's); `stats`: the family's EPOCH_STATS, measured on the
    validation split after each epoch (a VQ-VAE's codebook usage), recorded as val_<name>."""
    return ("epoch", "beta", "seconds", "images_per_sec", "train_total", *(f"train_{t}" for t in terms),
            "val_total", *(f"val_{t}" for t in terms), *(f"val_{t}" for t in stats))


def optional_epoch_fields(rate: str | None = DEFAULT_RATE) -> tuple[str, ...]:
    """The epoch fields of runs with free bits or a target rate only: the rate as optimised (val_kl_used)."""
    return (f"val_{rate}_used",) if rate is not None else ()


RECORD_FIELDS = ("threads",)  # epoch fields on how the epoch ran, not what it measured: in every epoch row fit
#   writes, missing from histories of an earlier vaelib (which are read as they are)
STEP_FIELDS = step_fields()
OPTIONAL_EPOCH_FIELDS = optional_epoch_fields() + RECORD_FIELDS  # the NotRequired ones (TypedDict cannot tell them
#   apart here)
EPOCH_FIELDS = epoch_fields()  # in every epoch row of a VAE (tests check Step and Epoch list these)


@dataclass
class History:
    """fit's record of a run: `steps` and `epochs` rows (see Step and Epoch), `options` (device, precision...)."""

    steps: list[Step] = field(default_factory=list)
    epochs: list[Epoch] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def terms(self) -> tuple[str, ...]:
        """The named terms of the run's loss (its family's TERMS), which each step and epoch row records."""
        return tuple(self.options.get("terms", DEFAULT_TERMS))

    @property
    def stats(self) -> tuple[str, ...]:
        """The family's statistics measured after each epoch (its EPOCH_STATS; none for a VAE)."""
        return tuple(self.options.get("epoch_stats", ()))

    @property
    def rate(self) -> str | None:
        """The term beta weighed (the VAE's "kl"), None for a family without one."""
        return self.options.get("rate", DEFAULT_RATE)

    def column(self, key: str, per: Literal["step", "epoch"] = "epoch") -> list[float]:
        """One field over the run, e.g. column("val_total") or column("kl", per="step")."""
        if per == "epoch":
            rows = self.epochs
            fields = epoch_fields(self.terms, self.stats) + optional_epoch_fields(self.rate) + RECORD_FIELDS
        else:
            rows, fields = self.steps, step_fields(self.terms)
        if key not in fields:
            raise ValueError(f"history {per} field {key!r} is invalid: allowed {', '.join(fields)}")
        if any(key not in row for row in rows):
            raise ValueError(f"history {per} field {key!r} is invalid for this run: it is recorded only "
                             + ("by a later vaelib (this history was written before)" if key in RECORD_FIELDS
                                else "for runs with free bits"))
        return [row[key] for row in rows]

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "epochs": list(self.epochs), "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "history", key: str = "") -> History:
        """A History from its JSON form. A missing part, a row that is not a dict, a missing field or one of the
        wrong type is refused in one line naming source (the file) and the key (MalformedFile).

        key: where the history sits in the file ("history" inside a checkpoint, "" for history.json).
        """
        _check(d, source, key)
        return cls(steps=list(d["steps"]), epochs=list(d["epochs"]), options=dict(d.get("options", {})))


def _check(d: Any, source: str, key: str) -> None:
    where = f"{key}." if key else ""
    if not isinstance(d, dict):
        refuse(source, key or "the top level", d, "a dict with 'steps', 'epochs' and 'options' (History.to_dict)")
    options = d.get("options", {})
    if not isinstance(options, dict):
        refuse(source, f"{where}options", options, "a dict of the run's options")
    terms = options.get("terms", DEFAULT_TERMS)
    if not (isinstance(terms, (list, tuple)) and terms and all(isinstance(t, str) and t for t in terms)):
        refuse(source, f"{where}options.terms", terms, "a list of the loss's term names (the family's TERMS)")
    rate = options.get("rate", DEFAULT_RATE)
    if rate is not None and rate not in terms:
        refuse(source, f"{where}options.rate", rate, f"null or one of the terms ({', '.join(terms)})")
    stats = options.get("epoch_stats", ())
    if not (isinstance(stats, (list, tuple)) and all(isinstance(t, str) and t for t in stats)):
        refuse(source, f"{where}options.epoch_stats", stats, "a list of the family's statistic names (EPOCH_STATS)")
    terms = tuple(terms)
    for part, fields, optional in (("steps", step_fields(terms), ()),
                                   ("epochs", epoch_fields(terms, tuple(stats)), optional_epoch_fields(rate))):
        rows = need(d, part, lambda v: isinstance(v, list), f"a list of {part[:-1]} rows", source, where)
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                refuse(source, f"{where}{part}[{i}]", row, f"a dict of the {part[:-1]}'s fields ({', '.join(fields)})")
            for name in fields + tuple(f for f in optional if f in row):
                value = row.get(name, MISSING)
                if not (is_int(value) if name in ("step", "epoch") else is_number(value)):
                    refuse(source, f"{where}{part}[{i}].{name}", value,
                           "an integer" if name in ("step", "epoch") else "a number")
            if part == "epochs" and "threads" in row and not (is_int(row["threads"]) and row["threads"] >= 1):
                refuse(source, f"{where}epochs[{i}].threads", row["threads"], "an integer >= 1 (torch's CPU threads)")
