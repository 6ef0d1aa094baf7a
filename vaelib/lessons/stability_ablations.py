"""Helpers of notebook 03 (stability ablations): the config sets of each ablation, their settings table,
per-step traces and curves. Training, caching and failed runs are the job of experiments.cache and experiments.runs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from vaelib.config import BetaSchedule, Config, with_overrides
from vaelib.data.datasets import STAND_IN
from vaelib.experiments import planning
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.claims import Claim, ClaimSpec, judge_best, judge_rows
from vaelib.experiments.evidence import MIN_EPOCHS, estimate
from vaelib.experiments.measures import per_seed, summarize
from vaelib.experiments.runs import Run, with_epochs
from vaelib.schedules import beta_at, layout_epochs
from vaelib.training.steps import steps_per_epoch


def check_parameters(at_least_zero: dict[str, float] | None = None, above_zero: dict[str, float] | None = None
                     ) -> None:
    """Refuse notebook parameters out of range, naming the parameter: {name: value} per rule."""
    for values, ok, allowed in ((at_least_zero, lambda v: v >= 0, "a value >= 0"),
                                (above_zero, lambda v: v > 0, "a value > 0")):
        for name, value in (values or {}).items():
            if not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")


def ablation_base(config: Config, epochs: int = 0, logvar_max: float | None = None) -> Config:
    """The config every ablation run starts from: at most `epochs` passes (0 = the config's own), and the encoder's
    log-variance bounded at `logvar_max` (models.vae.bound_logvar; None or 0: unbounded). The studies bound every run
    at the same value: a beta = 0 warmup needs the bound (its log-variance runs away until exp overflows), and a run
    at a small beta passes the bound's knee in its first steps too (measured on shapes at beta 0.1, docs/findings.md
    §8), so a bound on some arms only would change more than the setting each claim compares."""
    if logvar_max:
        config = with_overrides(config, **{"model.logvar_max": float(logvar_max)})
    return with_epochs(config, min(epochs, config.train.epochs)) if epochs > 0 else config


def short_runs(configs: dict[str, Config], epochs: int) -> dict[str, Config]:
    """Each config cut to `epochs` epochs (at most its own) and trained no further: for claims that read only the
    first steps of a run, which are the same steps in a short run as in a long one (same seed, same batches, no
    learning-rate schedule, and the beta schedule kept in steps: a warmup switches at the same step, not at the same
    share of the shorter run; tests/test_designs.py checks both), so training on would cost time and change nothing
    they measure. A cyclic schedule is laid out over the whole run, so its first steps depend on the length: refused."""
    if cyclic := [label for label, c in configs.items() if c.train.schedule.kind == "cyclic"]:
        raise ValueError(f"configs {cyclic} are invalid: allowed schedules other than cyclic (its cycles span the run, "
                         "so a shorter run takes other first steps)")
    return {label: with_overrides(c, **{"train.epochs": min(epochs, c.train.epochs)}) if epochs < c.train.epochs
            else c for label, c in configs.items()}


def until_converged(configs: dict[str, Config], tol: float, cap: float = 2.0) -> dict[str, Config]:
    """Each config trained for its epochs and on until it has converged (train.stop_tol = tol), for at most `cap`
    times its epochs. A run never stops before its own epochs (train.min_epochs): stopping earlier would compare
    runs at different lengths (a ramp forces its runs to train longer than a static beta does), and the rule,
    judged over a window of one or two epochs early on, holds long before the curve has flattened.

    The configs are built at their nominal length first, so a ramp or warmup keeps its place in the run (the
    first half, the first 30%) and cyclic annealing its cycles (laid over the first min_epochs epochs,
    schedules.layout_epochs); the cap only adds epochs at the final beta, and a run is judged on its epochs at the
    final beta only (evidence.settled_epoch). A run flat at the level of the model that ignores its input by its own
    epochs trains no further (evidence.stopped): it reports derailed at that length.
    A run shorter than evidence.MIN_EPOCHS even at the cap could never be judged converged: it keeps its length.
    tol = 0 leaves every config as it is.
    """
    if tol < 0 or cap < 1:
        raise ValueError(f"tol={tol!r}, cap={cap!r} are invalid: allowed tol >= 0 and cap >= 1")

    def extend(c: Config) -> bool:  # a run too short to be judged even at the cap keeps its length
        return math.ceil(cap * c.train.epochs) >= MIN_EPOCHS

    if not tol:
        return dict(configs)
    return {label: c if not extend(c) else with_overrides(
        c, **{"train.stop_tol": tol, "train.min_epochs": c.train.epochs,
              "train.epochs": math.ceil(cap * c.train.epochs)})
        for label, c in configs.items()}


def switch_step(config: Config, n_train: int) -> int:
    """The first optimiser step at the schedule's final beta, within rounding (0 for a constant beta; after a warmup,
    its switch; after a ramp, its end)."""
    spe = steps_per_epoch(config, n_train)
    total = spe * layout_epochs(config.train)
    s = config.train.schedule
    return next((t for t in range(total) if math.isclose(beta_at(s, t, spe, total), s.beta)), total)


def schedule_config(base: Config, schedule: BetaSchedule, **overrides: Any) -> Config:
    """base with another beta schedule and any dotted-path overrides."""
    return with_overrides(base, **{"train.schedule": dataclasses.asdict(schedule), **overrides})


def clipping_configs(base: Config, clips: tuple[float | None, ...] = (None, 1.0, 0.5, 0.1),
                     lr: float | None = None) -> dict[str, Config]:
    """The same run without clipping and with each max gradient norm, optionally at another lr."""
    lr = base.train.lr if lr is None else lr
    return {("no clip" if c is None else f"clip {c:g}"): with_overrides(base, **{"train.grad_clip": c, "train.lr": lr})
            for c in clips}


def annealing_configs(base: Config, beta: float, n_train: int, cycles: int = 4) -> dict[str, Config]:
    """Static beta vs a linear ramp 0 -> beta over the first half of the run vs cyclic annealing (Fu et al., 2019)."""
    half = max(1, steps_per_epoch(base, n_train) * base.train.epochs // 2)
    return {"static": schedule_config(base, BetaSchedule("constant", beta=beta)),
            "linear": schedule_config(base, BetaSchedule("linear", beta=beta, anneal_steps=half)),
            "cyclic": schedule_config(base, BetaSchedule("cyclic", beta=beta, cycles=cycles, ratio=0.5))}


def ramp_epochs(config: Config, n_train: int) -> int:
    """The epochs a config's schedule takes before it holds its final beta for good, counted to the end of the epoch
    that holds its last step below it: 0 for a constant beta, a warmup's epochs, a linear ramp's (anneal_steps, even
    past the run's end), and for cyclic annealing the epochs up to the end of its last cycle's ramp (within the
    epochs its cycles are laid over). A step counts as at the final beta when it is within rounding of it."""
    spe = steps_per_epoch(config, n_train)
    s = config.train.schedule
    if s.kind == "constant" or math.isclose(s.beta_start, s.beta):
        return 0
    if s.kind == "warmup":
        last = math.ceil(s.warmup_epochs * spe) - 1
    elif s.kind == "linear":
        last = s.anneal_steps - 1
    else:  # cyclic: the last step of its last ramp, within the epochs its cycles are laid over
        total = spe * layout_epochs(config.train)
        last = next((step for step in range(total - 1, -1, -1)
                     if not math.isclose(beta_at(s, step, spe, total), s.beta)), -1)
    return 0 if last < 0 else last // spe + 1


def held_at_target(configs: dict[str, Config], epochs: int, n_train: int) -> dict[str, Config]:
    """Each config trained for `epochs` epochs at its final beta once its schedule has settled: the ramp, warmup or
    cycles keep their place (laid over the config's own epochs) and the run goes on at the final beta until it has
    had `epochs` of them (ramp_epochs + epochs in all; a constant beta: `epochs`). A claim read where the runs end
    (a collapse, prevented or not) then compares them after the same training at the target beta: an annealed run
    stopped at the static run's length would have had fewer epochs at it, and a collapse only delayed would pass
    for one prevented."""
    out = {}
    for label, c in configs.items():
        ramp = ramp_epochs(c, n_train)
        layout = {"train.min_epochs": layout_epochs(c.train)} if c.train.schedule.kind == "cyclic" else {}
        out[label] = with_overrides(c, **{"train.epochs": ramp + epochs, **layout})
    return out


def early_collapse_configs(base: Config, beta: float, n_train: int) -> dict[str, Config]:
    """The early-collapse test's runs at beta: static, a linear ramp from 0 over the first half of base's epochs
    (the CelebA report's proposal, §6) and cyclic annealing laid over them (annealing_configs), each trained for
    base's epochs at beta after its schedule (held_at_target)."""
    return held_at_target(annealing_configs(base, beta, n_train), base.train.epochs, n_train)


def beta_sweep_configs(base: Config, betas: tuple[float, ...]) -> dict[str, Config]:
    """One static-beta run per beta."""
    return {f"beta {b:g}": schedule_config(base, BetaSchedule("constant", beta=b)) for b in betas}


def warmup_configs(base: Config) -> dict[str, Config]:
    """The reports' recipes at this run's length: CIFAR-10 (30% of epochs at 0, then 0.1), CelebA (10%, then 0.9),
    each beside the static beta it ends at."""
    e = base.train.epochs
    return {"static 0.1": schedule_config(base, BetaSchedule("constant", beta=0.1)),
            "CIFAR-10 warmup": schedule_config(base, BetaSchedule("warmup", beta=0.1, warmup_epochs=round(0.3 * e, 2))),
            "static 0.9": schedule_config(base, BetaSchedule("constant", beta=0.9)),
            "CelebA warmup": schedule_config(base, BetaSchedule("warmup", beta=0.9, warmup_epochs=round(0.1 * e, 2)))}


def collapse_configs(base: Config, beta: float, free_bits: float) -> dict[str, Config]:
    """A static high beta (collapse) and the same with free bits (the annealed runs to that beta: annealing_configs)."""
    static = schedule_config(base, BetaSchedule("constant", beta=beta))
    return {f"beta {beta:g}": static, "+ free bits": with_overrides(static, **{"train.free_bits": free_bits})}


def background_configs(budget: str, seed: int, epochs: int = 0, image_size: int | None = None,
                       data_root: str = "data", fix_beta: float = 0.1, fix_latent: int = 32,
                       logvar_max: float | None = None) -> dict[str, Config]:
    """shapes on a gradient background at this budget: the preset, and one factor changed at a time: more latent
    units (at the preset's beta), a lower beta (at the preset's latent size); the log-variance bounded at
    `logvar_max` as in ablation_base (None: unbounded).

    The gradient (a colour ramp set by 7 numbers per image) and not the texture (27 random numbers per image): a
    code of the preset's size can hold the ramp, so how much of it a model keeps depends on what it spends its
    code on, which the claims ask; the texture was beyond every setting's reach, and a floor decided them."""
    c = with_overrides(notebook_config("shapes", budget, seed, image_size=image_size, data_root=data_root),
                       **{"data.background": "gradient"})
    c = ablation_base(c, epochs, logvar_max)
    wide = with_overrides(c, **{"model.latent_dim": max(fix_latent, c.model.latent_dim)})
    low = schedule_config(c, BetaSchedule("constant", beta=fix_beta))
    name = lambda x: f"latent {x.model.latent_dim}, beta {x.train.schedule.beta:g}"  # noqa: E731
    return {name(c): c, name(wide): wide, name(low): low}


def lr_sweep_configs(base: Config, lrs: tuple[float, ...], **overrides: Any) -> dict[str, Config]:
    """The same run at each Adam learning rate (and any dotted-path overrides, e.g. model.batch_norm)."""
    return {f"lr {lr:g}": with_overrides(base, **{"train.lr": lr, **overrides}) for lr in lrs}


def highest_stable_lr(rows: dict[str, list[dict[str, Any]]], lrs: dict[str, float]) -> list[dict[str, Any]]:
    """Per seed, log10 of the highest learning rate whose run did not derail (rows carry `derailed`, from
    failure_gallery.mark_derailed; `lrs` maps each setting to its lr): rows for evidence.estimate. A seed whose
    every run derailed gets the log10 of half the lowest lr, below the sweep."""
    seeds = [r["seed"] for r in next(iter(rows.values()))]
    out = []
    for s in seeds:
        ok = [lrs[label] for label, rs in rows.items() for r in rs if r["seed"] == s and r.get("derailed") == 0.0]
        out.append({"seed": s, "converged": True, "state": "converged", "failure": "",
                    "log10_max_lr": math.log10(max(ok) if ok else min(lrs.values()) / 2)})
    return out


def settings(configs: dict[str, Config], n_train: int, at: tuple[float, ...] = (0, 0.25, 0.5, 0.75, 1)
             ) -> list[dict[str, Any]]:
    """One row per config: lr, clip, free bits, epochs, schedule, and beta at fractions `at` of the run."""
    rows = []
    for label, c in configs.items():
        spe = steps_per_epoch(c, n_train)
        total, laid = spe * c.train.epochs, spe * layout_epochs(c.train)
        row = {"run": label, "latent": c.model.latent_dim, "lr": c.train.lr, "clip": c.train.grad_clip,
               "free_bits": c.train.free_bits,
               "epochs": c.train.epochs, "steps": total, "schedule": c.train.schedule.kind,
               "stop": f"converged at {c.train.stop_tol:g}, from epoch {c.train.min_epochs}" if c.train.stop_tol
               else "-"}
        for f in at:
            step = min(int(f * laid), laid - 1)  # fractions of the length the schedule is laid over
            row[f"beta@{step}"] = beta_at(c.train.schedule, step, spe, laid)
        rows.append(row)
    return rows


# --- seeds, tables and claims ---------------------------------------------------------------------------

SOURCES = {"ablation": "Fashion-MNIST/CIFAR-10/CelebA ablation report", "celeba": "CelebA technical report"}
SOURCE_DATA = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "celeba": "CelebA"}


def stand_in(config: Config, source_data: str) -> str:
    """What stands in for the source's data and model in a claim: 'embedded mnist 1x32x32 (hidden [32, 64],
    latent 32) for Fashion-MNIST', 'Fashion-MNIST itself (...)' when the run trained on the source's data, 'embedded
    shapes for CelebA, not this report's data' for a claim that runs on the other embedded stand-in
    (planning.runs_here), and '... (a secondary stand-in)' on data that stands in for none of the sources'."""
    if source_data not in SOURCE_DATA:
        raise ValueError(f"source_data={source_data!r} is invalid: allowed {', '.join(SOURCE_DATA)}")
    c, h, w = config.input_shape
    model = f"{c}x{h}x{w} (hidden {list(config.model.hidden_dims)}, latent {config.model.latent_dim})"
    if config.data.dataset == "shapes" and config.data.background != "plain":
        model = f"{config.data.background} background, {model}"
    if config.data.dataset == source_data:
        return f"{SOURCE_DATA[source_data]} itself, {model}"
    if not planning.runs_here(config.data.dataset, source_data):
        return f"embedded {planning.runs_on(source_data)} for {SOURCE_DATA[source_data]}, not this report's data"
    if config.data.dataset not in STAND_IN.values():
        return f"{config.data.dataset} {model} for {SOURCE_DATA[source_data]} (a secondary stand-in)"
    return f"embedded {config.data.dataset} {model} for {SOURCE_DATA[source_data]}"


def away(config: Config) -> dict[str, str]:
    """The claims that do not run on this config's data (planning.runs_here), as `planning.powered` reads them: the
    stand-in text their ClaimSpec carries (stand_in) -> the embedded dataset they run on."""
    return {stand_in(config, src): planning.runs_on(src) for src in SOURCE_DATA
            if not planning.runs_here(config.data.dataset, src)}


def seed_rows(runs: dict[str, list[Run]], test: Any, last: int, tol: float,
              extra: Any = None, first: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """summarize() every seed of every setting (early noise over the first `first` steps, None: `last`); `extra(run)`
    may add columns (e.g. sharpness)."""
    return per_seed(runs, lambda run: {**summarize(run, test, last=last, tol=tol, first=first),
                                       **(extra(run) if extra and run.model is not None else {})})


def seeds_table(rows: dict[str, list[dict[str, Any]]], keys: list[str]) -> list[dict[str, Any]]:
    """One row per setting: seeds, how many converged (a run on a plateau among its seeds not counted,
    evidence.plateaus), and each key as 'mean ± std' over the seeds."""
    return [{"run": label, "seeds": len(rs), "converged": f"{estimate(rs, 'seed').converged}/{len(rs)}",
             **{k: str(estimate(rs, k)) for k in keys}} for label, rs in rows.items()]


EARLY_METRICS = ("early_volatility", "early_kl_volatility", "kl_volatility_at_final_beta", "kl_spike")  # early steps
# Whether a run derailed (failure_gallery.mark_derailed): a derailed run never converges, and a failed one has its
# final value (derailed); a run still unconverged at its cap that has not beaten the trivial model has derailed
# within its length. Judged on every run, settled or not.
END_METRICS = ("derailed",)


def judged(rows: dict[str, list[dict[str, Any]]], specs: Sequence[ClaimSpec]) -> list[Claim]:
    """Each declared claim judged on the per-seed rows of its settings (claims.judge_rows), in one call. A claim on
    a metric of the first steps (EARLY_METRICS) or of how a run ended (END_METRICS) must be declared with
    needs_convergence=False, and one on derailing with binary=True: refused otherwise, before any test."""
    for spec in specs:
        if spec.key in EARLY_METRICS + END_METRICS and spec.needs_convergence:
            raise ValueError(f"claim {spec.statement!r} reads {spec.key!r}, a metric of the first steps or of how a "
                             "run ended: allowed needs_convergence=False")
        if spec.key in END_METRICS and not spec.binary:
            raise ValueError(f"claim {spec.statement!r} reads {spec.key!r}, 0 or 1 per seed: allowed binary=True")
    return [judge_rows(spec, rows) for spec in specs]


def first_seed(runs: dict[str, list[Run]]) -> dict[str, Run]:
    """The run of the first seed of every setting: what the curves and sample figures show."""
    return {label: seeds[0] for label, seeds in runs.items()}


def tradeoff_claim(rows: dict[str, list[dict[str, Any]]], spec: ClaimSpec, slack: float,
                   recon_key: str = "test_recon") -> Claim:
    """"`spec.arms[0]` is the best trade-off of the sweep", by a criterion declared before the runs: the best
    trade-off is the setting with the lowest `spec.key` (sample Fréchet distance) among those whose mean
    `recon_key` (test reconstruction term, lower is better) lies within `slack` (a share) of the sweep's best.

    The candidate is out of the running (contradicted) only when its reconstruction term misses the slack on every
    seed, against that seed's best; when it misses on some seeds only, the criterion cannot place it
    (inconclusive). Otherwise it is tested against every other eligible setting on `spec.key` (judge_best: an
    intersection-union test over them)."""
    candidate, sample_key = spec.arms[0], spec.key
    if not 0 <= slack < 1:
        raise ValueError(f"slack={slack!r} is invalid: allowed a share in [0, 1)")
    if candidate not in rows:
        raise ValueError(f"candidate={candidate!r} is invalid: allowed one of {', '.join(rows)}")
    means = {label: estimate(rs, recon_key).mean for label, rs in rows.items()}
    means = {label: m for label, m in means.items() if math.isfinite(m)}
    best = min(means.values(), default=float("nan"))
    eligible = [label for label, m in means.items() if m <= best + slack * abs(best)]
    rivals = [(label, estimate(rows[label], sample_key)) for label in eligible if label != candidate]
    within = f"within {slack:.0%} of the sweep's best reconstruction term"
    by_sample = lambda labels: min(labels, key=lambda label: estimate(rows[label], sample_key).mean)  # noqa: E731

    def decided(other: str, decision: str, reason: str) -> Claim:  # no test: the criterion alone decides
        c = judge_rows(dataclasses.replace(spec, arms=(candidate, other), needs_convergence=False, bounds=None),
                       rows)
        return dataclasses.replace(c, test=None, estimate=None, ci95=None, p=None, min_p=None, pairs=None,
                                   decision=decision, verdict=decision, reason=reason)

    if candidate not in eligible:
        seeds = sorted({r["seed"] for rs in rows.values() for r in rs if "seed" in r})
        per_seed = {s: {label: r.get(recon_key, float("nan")) for label, rs in rows.items() for r in rs
                        if r.get("seed") == s} for s in seeds}
        misses = [per_seed[s][candidate] > min(v for v in per_seed[s].values() if math.isfinite(v)) * (1 + slack)
                  for s in seeds if math.isfinite(per_seed[s].get(candidate, float("nan")))]
        return decided(by_sample(eligible), "contradicted" if misses and all(misses) else "inconclusive",
                       f"by the declared criterion it is out of the running: its {recon_key} "
                       f"({estimate(rows[candidate], recon_key)}) is not {within} ({best:.4g}) on "
                       f"{sum(misses)} of {len(misses)} seeds; eligible: {', '.join(eligible)}")
    if not rivals:
        return decided(by_sample([label for label in rows if label != candidate]), "supported",
                       f"by the declared criterion nothing competes: it is the only setting {within}")
    c = judge_best(spec, estimate(rows[candidate], sample_key), rivals)
    c.detail["eligible"] = eligible
    return c
