"""The exercise checks of notebooks 01-05 (vaelib/lessons/exercises.py): right with the reference solution, which
lives outside the package (instructor/solutions.py, loaded here by its path), wrong with typical mistakes; the
stored expected values (vaelib/lessons/expected.json, of every notebook's exercises) are what
instructor/write_expected.py writes now and agree with vaelib's own functions; and the package holds no solution."""

import ast
import importlib.util
import inspect
import json
import math
from pathlib import Path

import pytest
import torch

from vaelib.config import BetaSchedule
from vaelib.data.datasets import ImageSplit, data_mean_baseline
from vaelib.evaluation.plots import interpolate_latents
from vaelib.lessons import exercises as E
from vaelib.lessons import vae_from_scratch as V
from vaelib.lessons.failure_gallery import distance_to_mean
from vaelib.losses import elbo, kl_per_dim
from vaelib.models.vae import VAE
from vaelib.schedules import beta_at

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    """A file of instructor/ (no package of vaelib, not in the wheel), loaded by its path."""
    spec = importlib.util.spec_from_file_location(f"instructor_{name}", ROOT / "instructor" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOLUTIONS = _load("solutions")


def _stub(*_):
    raise NotImplementedError("exercise")


WRONG = {  # a plausible mistake per exercise: each must be caught, with the reason
    "data_mean_sse": (lambda train, test: (test.double() - train.double().mean(0)).pow(2).flatten(1).sum(1).mean()
                      .item(), "were the pixel values scaled"),  # forgot to scale pixels to [0, 1]
    "conv_out": (lambda size, kernel, stride, padding: size // stride,  # ignores kernel and padding
                 "gives 2 for size 5, kernel 3, stride 2, padding 1; torch gives 3"),
    "cyclic_beta": (lambda step, total, cycles, ratio, beta: beta * min(step / total, 1.0),  # one ramp, no cycles
                    "gives 0.04000000000000001 at step 5 of 100 (4 cycles, ratio 0.5); expected 0.32"),
    "pull": (lambda images, recon, mean: 0.0, "gives 0.0; expected -0.168115"),
    "straight_through": (lambda z_e, z_q: z_q,  # the codes as they are: no gradient reaches the encoder
                         "sends the decoder's gradient to z_q instead of z_e"),
    "flow_pair": (lambda x0, x1, t: ((1 - t) * x0 + t * x1, x0 - x1),  # the velocity backwards
                  "at t = 0: v is off by up to"),
    "noise_sigma": (lambda x, x_hat: (x - x_hat).pow(2).mean().item(),  # the variance
                    "(that is sigma^2, the variance; the function returns sigma)"),
    "gaussian_kl": (lambda mu, logvar, s: 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1),  # the N(0, 1) formula
                    "gives 0.3181 where q is the prior itself (mu 0, sigma 0.5), where the KL is 0"),
    "slerp": (lambda z_a, z_b, t: (1 - t) * z_a + t * z_b,  # linear, not spherical
              "at t = 0.25 gives a code of norm"),
    "reparameterise": (lambda mu, logvar, eps: mu + torch.exp(logvar) * eps,  # the variance, not the sd
                       "this z multiplies eps by exp(logvar), the variance sigma^2, not by sigma"),
    "best_for": (lambda beta, rates, dists: max(i for i in range(len(rates)) if dists[i] + beta * rates[i] == min(
        d + beta * r for r, d in zip(rates, dists))),  # a tie goes to the highest index
                 "gives 1 at beta' = 0.5 for rates [8.0, 4.0, 2.0] and distortions [10.0, 12.0, 13.5] (a tie "
                 "between runs 0 and 1, which goes to the lowest index); expected 0"),
    "traverse": (lambda z, dim, span, n: _sweep(z, dim, torch.linspace(-span, span, n)),  # around 0, not z[dim]
                 "sweeps z[2] from -3 to 3; expected z[2] - span = -3.558 to z[2] + span = 2.442 (the sweep is "
                 "centred on the code's own value z[dim], not on 0)"),
}


def _sweep(z, dim, values):
    """len(values) copies of z with dimension dim set to values."""
    codes = z.repeat(len(values), 1)
    codes[:, dim] = values
    return codes


MISTAKES = [  # more typical mistakes of the new exercises: (exercise, answer, what the check must say)
    ("straight_through", lambda z_e, z_q: z_e, "(forward, the decoder must see the codes z_q, not the encoder's z_e)"),
    ("straight_through", lambda z_e, z_q: z_q + (z_e - z_q).detach(),  # the detach on the wrong term
     "is off by up to"),
    ("straight_through", lambda z_e, z_q: (z_e + (z_q - z_e)).detach(), "sends no gradient to z_e"),
    ("straight_through", lambda z_e, z_q: z_e + (z_q - z_e),  # no detach: the gradient goes to z_q alone
     "sends the decoder's gradient to z_q instead of z_e: the encoder must get it, the codes none"),
    ("straight_through", lambda z_e, z_q: z_e + z_q - z_q.detach() + (z_q - z_e).detach(),  # both get it
     "sends the decoder's gradient to z_q as well: only z_e gets it (detach the right term)"),
    ("flow_pair", lambda x0, x1, t: ((1 - t) * x0 + t * x1, x0 - x1),
     "(the velocity points from the noise to the data)"),
    ("flow_pair", lambda x0, x1, t: (t * x0 + (1 - t) * x1, x1 - x0),  # the line run backwards
     "at t = 0: z_t is off by up to"),
    ("flow_pair", lambda x0, x1, t: (1 - t) * x0 + t * x1, "at t = 0 returned Tensor; expected a pair (z_t, v)"),
    ("noise_sigma", lambda x, x_hat: (x - x_hat).pow(2).flatten(1).sum(1).mean().sqrt().item(),  # per image
     "(is the squared error divided by the number of images only, not by every pixel value?)"),
    ("noise_sigma", lambda x, x_hat: (x - x_hat).abs().mean().item(),  # the mean absolute error
     "gives 0.34185367822647095; expected 0.399815"),
    ("noise_sigma", lambda x, x_hat: (x - x_hat).pow(2).mean(),  # a tensor, and the variance
     "(that is sigma^2, the variance; the function returns sigma)"),
    ("gaussian_kl", lambda mu, logvar, s: math.log(s) - 0.5 * logvar + (mu.pow(2) + logvar.exp()) / (2 * s**2),
     "gives 0.5 where q is the prior itself (mu 0, sigma 1), where the KL is 0 (is a constant term missing?)"),
    ("gaussian_kl", lambda mu, logvar, s: math.log(s) - logvar + (mu.pow(2) + logvar.pow(2)) / (2 * s**2) - 0.5,
     "gives -0.5 where q is the prior itself (mu 0, sigma 1), where the KL is 0 (a KL is never negative)"),
    ("gaussian_kl", lambda mu, logvar, s: (math.log(s) - 0.5 * logvar + (mu.pow(2) + logvar.exp()) / (2 * s**2)
                                           - 0.5).sum(1),
     "returned shape (4,), expected (4, 3)"),  # summed over the dimensions
    ("reparameterise", lambda mu, logvar, eps: mu + torch.exp(logvar / 2) * torch.randn_like(mu),  # fresh noise
     "gives another z on a second call with the same mu, logvar and eps: build z from the eps passed in and draw no "
     "noise inside"),
    ("reparameterise", lambda mu, logvar, eps: torch.distributions.Normal(mu, torch.exp(logvar / 2)).rsample(),
     "gives another z on a second call with the same mu, logvar and eps"),  # its own noise, though differentiable
    ("reparameterise", lambda mu, logvar, eps: (mu + torch.exp(logvar / 2) * eps).detach(),
     "returns a z without a gradient path (z.requires_grad is False): was it detached"),
    ("reparameterise", lambda mu, logvar, eps: mu + torch.exp(logvar.detach() / 2) * eps,
     "sends no gradient to logvar (was it detached?)"),
    ("reparameterise", lambda mu, logvar, eps: mu.detach() + torch.exp(logvar / 2) * eps,
     "sends no gradient to mu (was it detached?)"),
    ("reparameterise", lambda mu, logvar, eps: 2 * mu + torch.exp(logvar / 2) * eps,
     "gives dz/dmu off by up to 1 from 1: z moves one for one with mu"),
    ("reparameterise", lambda mu, logvar, eps: (mu + torch.exp(logvar / 2) * eps)[0], "returned shape (3,)"),
    ("best_for", lambda beta, rates, dists: min(range(len(rates)), key=lambda i: dists[i] + rates[i] / beta),
     "gives 2 at beta' = 0.01 for rates [30.0, 12.0, 3.0] and distortions [20.0, 35.0, 60.0] (a beta' near 0, "
     "where rate is almost free); expected 0"),  # beta on the wrong term
    ("best_for", lambda beta, rates, dists: min(range(len(rates)), key=lambda i: dists[i]),  # ignores beta
     "gives 0 at beta' = 1 for rates [30.0, 12.0, 3.0] and distortions [20.0, 35.0, 60.0] (a sweep of three "
     "runs); expected 1"),
    ("best_for", lambda beta, rates, dists: min(range(len(rates)),  # each term scaled by its largest value
                                                key=lambda i: dists[i] / max(dists) + beta * rates[i] / max(rates)),
     "gives 1 at beta' = 1 for rates [30.0, 12.0, 3.0] and distortions [20.0, 35.0, 60.0] but 2 when 1024 is added "
     "to every distortion: that adds the same amount to every run's D + beta' R, so the best run cannot change"),
    ("best_for", lambda beta, rates, dists: min(d + beta * r for r, d in zip(rates, dists)),  # the value, no index
     "returned 47.0 (float) at beta' = 1 for rates [30.0, 12.0, 3.0] and distortions [20.0, 35.0, 60.0]; expected "
     "the index of a run, an int from 0 to 2"),
    # n - 1 codes
    ("traverse", lambda z, dim, span, n: _sweep(z, dim, torch.linspace(z[dim] - span, z[dim] + span, n - 1)),
     "for dim 2, span 3, n 7 returned shape (6, 6), expected (7, 6): n codes, both ends included (is one missing?)"),
    ("traverse", lambda z, dim, span, n: z + torch.linspace(-span, span, n)[:, None],  # every dimension moves
     "for dim 2, span 3, n 7 changes dimension(s) [0, 1, 3, 4, 5] as well: only z[2] moves, every other "
     "coordinate stays at z's"),
    ("traverse", lambda z, dim, span, n: _sweep(z, dim, z[dim] - span + torch.arange(n) * 2 * span / n),
     "for dim 2, span 3, n 7 sweeps z[2] from -3.558 to 1.585; expected z[2] - span = -3.558 to z[2] + span = "
     "2.442"),  # steps of 2 span / n: the far end is never reached
    ("traverse", lambda z, dim, span, n: _sweep(z, dim, z[dim] + torch.linspace(-span, span, n) ** 3 / span**2),
     "for dim 2, span 3, n 7 moves z[2] in uneven steps (2.111, 0.7778, 0.1111, 0.1111, 0.7778, 2.111); expected 6 "
     "equal steps"),
]
ALL = [(nb, name, check) for nb, ex in E.EXERCISES.items() for name, check in ex.items()]


@pytest.mark.parametrize("notebook,name,check", ALL, ids=[f"{nb}-{n}" for nb, n, _ in ALL])
def test_every_exercise_check_passes_its_solution_and_catches_a_mistake(notebook, name, check):
    assert check(getattr(SOLUTIONS, f"solution_{name}")) == f"right: {name} matches the expected values"
    assert check(_stub) == f"not done yet: {name} still raises NotImplementedError"
    wrong, why = WRONG[name]
    got = check(wrong)
    assert got.startswith(f"wrong: {name} ") and why in got, got


@pytest.mark.parametrize("name,wrong,why", MISTAKES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MISTAKES)])
def test_typical_mistakes_are_judged_wrong_with_the_reason(name, wrong, why):
    got = E.EXERCISES[next(nb for nb, ex in E.EXERCISES.items() if name in ex)][name](wrong)
    assert got.startswith(f"wrong: {name} ") and why in got, got


def test_a_right_answer_in_another_form_is_right():
    """The checks judge the answer, not its form: torch's argmin (it keeps the first of equal values), numpy's
    argmin (a numpy index), sigma written as exp(0.5 logvar), a traversal built with arange."""
    import numpy as np

    assert E.check_best_for(lambda beta, rates, dists: torch.tensor(dists).add(torch.tensor(rates), alpha=beta)
                            .argmin()).startswith("right")
    assert E.check_best_for(lambda beta, rates, dists: np.argmin(np.add(dists, np.multiply(beta, rates))
                                                                 )).startswith("right")
    assert E.check_reparameterise(lambda mu, logvar, eps: mu + logvar.mul(0.5).exp() * eps).startswith("right")
    assert E.check_traverse(lambda z, dim, span, n: _sweep(z, dim, z[dim] - span + torch.arange(n) * (2 * span / (
        n - 1)))).startswith("right")


def test_every_solution_has_a_check_and_every_check_a_solution():
    checks = {name for ex in E.EXERCISES.values() for name in ex} | set(V.EXERCISES)
    solutions = {n.removeprefix("solution_") for n, _ in inspect.getmembers(SOLUTIONS, inspect.isfunction)
                 if n.startswith("solution_")}
    assert checks == solutions and len(checks) == 15


def test_a_check_reports_an_error_and_a_wrong_shape_in_one_line():
    assert E.check_slerp(lambda z_a, z_b, t: z_a[:3]).startswith("wrong: slerp at t = 0: returned shape (3,)")
    assert E.check_conv_out(lambda *a: 1 / 0) == "wrong: conv_out raised ZeroDivisionError: division by zero"
    assert E.number_problem(torch.tensor(2.0), 2.0, "") is None
    assert "expected a number" in E.number_problem("2", 2.0, "")
    assert E.number_problem(float("nan"), 2.0, "") == "gives nan; expected 2"


def test_slerp_is_judged_by_its_properties_first():
    def unit_slerp(z_a, z_b, t):  # the right direction, the wrong norm
        z = SOLUTIONS.solution_slerp(z_a, z_b, t)
        return z / z.norm()

    assert E.check_slerp(unit_slerp).startswith("wrong: slerp at t = 0 does not return z_a")
    too_slow = E.check_slerp(lambda z_a, z_b, t: SOLUTIONS.solution_slerp(z_a, z_b, t ** 2))  # on the circle, late
    assert too_slow.startswith("wrong: slerp at t = 0.25 gives a code 0.") and "expected t times the angle" in too_slow


# --- the stored expected values -------------------------------------------------------------------

def _numbers(value, where=""):
    """{path: number} of a nested structure of dicts and lists."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{where}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{where}/{i}").items()}
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    return {where: value}


def test_expected_json_is_what_write_expected_writes_now():
    """Stored values cannot drift from the solutions or the checks' inputs: after changing either, run
    `.venv/bin/python instructor/write_expected.py`. Numbers agree to rounding (a float32 step may round
    differently on another CPU); the structure exactly."""
    writer = _load("write_expected")
    assert writer.TARGET == E.EXPECTED_FILE
    stored, now = json.loads(E.EXPECTED_FILE.read_text()), writer.expected()
    have, want = _numbers(stored), _numbers(now)
    assert have.keys() == want.keys(), {"stored only": have.keys() - want.keys(), "new": want.keys() - have.keys()}
    off = {k: (have[k], want[k]) for k in want if not math.isclose(have[k], want[k], rel_tol=1e-6, abs_tol=1e-7)}
    assert not off, f"run instructor/write_expected.py: {off}"
    assert json.loads(writer.render(now)) == now  # the file's text reads back exactly
    assert E.expected_values() == stored  # what the checks read


def test_the_stored_values_agree_with_what_vaelib_trains_with():
    """The checks never call vaelib's versions (they would hand the student the answer); the lessons still say the
    exercise computes what vaelib does, so the stored values must agree with it."""
    stored = E.expected_values()
    train, test = E.data_mean_inputs()
    assert stored["data_mean_sse"] == pytest.approx(
        data_mean_baseline(ImageSplit(train, None, None), ImageSplit(test, None, None)), rel=1e-9)
    assert stored["cyclic_beta"] == pytest.approx([
        beta_at(BetaSchedule("cyclic", beta=b, beta_start=0.0, cycles=c, ratio=r), s, 1, n)
        for s, n, c, r, b in E.CYCLIC_CASES], abs=1e-12)
    assert stored["linear_beta"] == pytest.approx([
        beta_at(BetaSchedule("linear", beta=b, beta_start=b0, anneal_steps=n), s) for s, n, b0, b in V.LINEAR_CASES],
        abs=1e-12)
    assert stored["pull"] == pytest.approx(distance_to_mean(*E.pull_inputs())["pull"], rel=1e-5)
    path = interpolate_latents(*E.slerp_inputs(), len(E.SLERP_TS), spherical=True)
    assert torch.allclose(torch.tensor(stored["slerp"]), path, rtol=1e-5, atol=1e-6)
    mu, logvar = E.kl_inputs()
    for std, stored_kl in zip(E.KL_PRIOR_STDS, stored["gaussian_kl"]):  # torch's KL of two Normals
        q, p = torch.distributions.Normal(mu.double(), logvar.double().mul(0.5).exp()), torch.distributions.Normal(
            torch.zeros_like(mu).double(), std)
        assert torch.allclose(torch.tensor(stored_kl, dtype=torch.float64), torch.distributions.kl_divergence(q, p),
                              rtol=1e-5, atol=1e-6), std
    assert torch.allclose(torch.tensor(stored["gaussian_kl"][0]), kl_per_dim(mu, logvar), rtol=1e-5, atol=1e-6)
    x0, x1 = E.flow_inputs()  # the pair vaelib's latent flow trains on (LatentFlow.loss): the line and x1 - x0
    for t, (z_t, v) in zip(E.FLOW_TS, stored["flow_pair"]):
        assert torch.allclose(torch.tensor(z_t), (1 - t) * x0 + t * x1) and torch.allclose(torch.tensor(v), x1 - x0)
    x, x_hat = E.noise_inputs()  # the stored sigma maximises the Gaussian likelihood: any other scores lower
    nll = lambda sigma: -torch.distributions.Normal(x_hat.double(), sigma).log_prob(x.double()).sum()  # noqa: E731
    best = stored["noise_sigma"]
    assert all(nll(best) < nll(best * f) for f in (0.9, 0.99, 1.01, 1.1))
    mu, logvar, eps = E.reparameterise_inputs()
    assert torch.allclose(torch.tensor(stored["reparameterise"]), VAE.reparameterize(mu, logvar, eps=eps),
                          rtol=1e-6, atol=1e-7)


def test_the_stored_train_step_is_the_step_fit_takes():
    def fit_step(model, opt, x, beta, eps, clip, free_bits):  # losses.elbo with free bits, as fit takes it
        logits, mu, logvar = model(x, eps=eps)
        loss = elbo(x, logits, mu, logvar, beta=beta, free_bits=free_bits).total
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss.item()

    stored = E.expected_values()["train_step"]
    assert V.check_train_step(fit_step) == "right: train_step matches the expected values"
    config, x, _ = V.train_step_inputs()
    with torch.no_grad():
        kl = kl_per_dim(*V.train_step_model(config).encode(x)).mean(0)
    assert 0 < int((kl < stored["free_bits"]).sum()) < kl.numel()  # the floor binds on some dimensions only
    assert (kl - stored["free_bits"]).abs().min() > 1e-4  # and none sits on it


# --- the solutions stay out of the package ----------------------------------------------------------

def _imports_solutions(source):
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [a.name for a in node.names]
        if any("solutions" in name.split(".") for name in names):
            return True
    return False


def test_no_module_of_vaelib_holds_or_imports_a_solution():
    files = [p for p in (ROOT / "vaelib").rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix not in (".pt", ".pyc")]
    assert len(files) > 30 and ROOT / "vaelib" / "lessons" / "expected.json" in files
    assert not (ROOT / "vaelib" / "lessons" / "solutions.py").exists()
    holding = [str(p.relative_to(ROOT)) for p in files if "def solution_" in p.read_text(errors="replace")]
    importing = [str(p.relative_to(ROOT)) for p in files if p.suffix == ".py" and _imports_solutions(p.read_text())]
    assert holding == [] and importing == [], {"def solution_": holding, "imports solutions": importing}
    # the test can fail
    assert _imports_solutions("from vaelib.lessons.solutions import solution_slerp")
    assert _imports_solutions("from vaelib.lessons import solutions")
    assert not _imports_solutions("from vaelib.lessons import exercises")


def _solution_bodies():
    """The code lines of every reference solution (its body, without the def line and the docstring)."""
    tree = ast.parse(inspect.getsource(SOLUTIONS))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("solution_"):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body  # without the docstring
            yield node.name, [ast.unparse(stmt).split("\n")[0] for stmt in body]


def test_no_solution_stands_in_a_notebook_or_a_committed_report():
    pages = {p: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
             for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
    pages |= {p: p.read_text() for p in sorted((ROOT / "reports").glob("*/[0-9][0-9]_*.html"))}
    bodies = dict(_solution_bodies())
    assert len(bodies) >= 11 and all(bodies.values())

    def shown(name, lines, text):  # its def line, or its whole body (a lesson may share single lines with it)
        flat = text.replace(" ", "")
        return f"def{name}(" in flat or all(line.replace(" ", "") in flat for line in lines)

    for name, lines in bodies.items():
        for path, text in pages.items():
            assert not shown(name, lines, text), f"{path.name} shows {name}"
    # the check can fail: a page that prints a solution's source (as the notebooks did) is caught
    assert all(shown(name, lines, inspect.getsource(getattr(SOLUTIONS, name))) for name, lines in bodies.items())
