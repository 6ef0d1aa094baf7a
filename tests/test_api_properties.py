"""Properties of the public API's boundary: a call with any arguments either works or is refused with a ValueError,
TypeError or FileNotFoundError whose message is one line naming the argument (by its name, or a path by the path
itself, as every refusal of a file does). Nothing is trained; the datasets asked for are small."""

import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vaelib.config import Config, get_preset, with_overrides
from vaelib.data.datasets import ImageSplit, load_dataset
from vaelib.models.registry import build_model
from vaelib.training.checkpoint import checkpoint_state, load_checkpoint, save_checkpoint
from vaelib.training.history import History

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
REFUSALS = (ValueError, TypeError, FileNotFoundError)


def _names(message: str, names: list[str], paths: list = ()) -> bool:
    """Whether message names one of the arguments: a name as a word, or a path as it is shown (str or repr, the
    first 40 characters: a long one is cut)."""
    if any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", message) for n in names):
        return True
    return any(isinstance(p, (str, Path)) and (str(p)[:40] in message or repr(str(p))[1:41] in message)
               for p in paths)


def _refused_in_one_line(err: Exception, names: list[str], paths: list = ()) -> None:
    message = str(err)
    assert message.strip() and "\n" not in message, message
    assert _names(message, names, paths), f"{message!r} names none of {names} {paths}"


def _mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    """valid four times in five: with several arguments, some calls must get through every check."""
    return st.integers(0, 4).flatmap(lambda i: invalid if i == 0 else valid)


# --- load_dataset --------------------------------------------------------------------------------------------------

NOT_INTS = st.sampled_from([None, 1.5, "8", True, b"8", [8], float("nan")])
SIZES = _mostly(st.sampled_from([8, 16, 32]), st.one_of(st.integers(-10, 7), st.integers(1025, 10**30), NOT_INTS))
SEEDS = _mostly(st.integers(0, 2**32 - 1), st.one_of(st.integers(-(2**40), -1), st.integers(2**32, 2**70), NOT_INTS))
COUNTS = _mostly(st.sampled_from([1, 3, 16]), st.one_of(st.integers(-5, 0), st.integers(10**7, 10**40), NOT_INTS))


EXTRAS = st.dictionaries(st.sampled_from(["n", "background", "colour"]),
                         st.one_of(COUNTS, st.sampled_from(["plain", "textured", "noisy"])), max_size=2)


@PROPERTY
@given(name=_mostly(st.sampled_from(["digits", "shapes", "shapes", "mnist", "fashion_mnist", "cifar10", "celeba"]),
                    st.one_of(st.text(max_size=8), st.sampled_from([None, 3, ["digits"], b"digits"]))),
       split=_mostly(st.sampled_from(["train", "val", "test"]), st.one_of(st.text(max_size=6), st.none())),
       seed=SEEDS, image_size=SIZES, extra=_mostly(st.just({}), EXTRAS), n=COUNTS)
def test_load_dataset_works_or_names_the_argument(tmp_path_factory, name, split, seed, image_size, extra, n):
    root = tmp_path_factory.getbasetemp() / "no-data"  # the torchvision datasets are not there: refused, naming it
    if name == "shapes":
        extra = {"n": n, **extra}  # its default is 10,000 images: a few instead
    try:
        out = load_dataset(name, split, root=root, seed=seed, image_size=image_size, **extra)
    except REFUSALS as err:
        _refused_in_one_line(err, ["name", "split", "seed", "image_size", *extra], [root, name])
        event(f"refused: {type(err).__name__}")
        return
    assert isinstance(out, ImageSplit) and out.images.dtype == torch.uint8 and len(out) >= 1
    assert out.images.shape[-2:] == (image_size, image_size)
    event("loaded")


# --- load_checkpoint -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A good checkpoint, and what else a path may point at: a folder, an empty and a garbage file, a missing one."""
    base = tmp_path_factory.mktemp("paths")
    config = get_preset("digits")
    model = build_model(config)
    state = checkpoint_state(model, torch.optim.Adam(model.parameters()), config, History(), 0,
                             torch.Generator().manual_seed(0))
    save_checkpoint(base / "good.pt", state)
    (base / "folder").mkdir()
    (base / "empty.pt").write_bytes(b"")
    (base / "garbage.pt").write_bytes(b"garbage" * 40)
    torch.save({"config": {"name": 3}, "model": {}}, base / "bad-config.pt")
    return {"good": base / "good.pt", "folder": base / "folder", "empty": base / "empty.pt",
            "garbage": base / "garbage.pt", "bad-config": base / "bad-config.pt", "missing": base / "missing.pt",
            "base": base}


PATHS = _mostly(st.just("good"), st.one_of(
    st.sampled_from(["folder", "empty", "garbage", "bad-config", "missing"]),
    st.sampled_from(["/dev/null", "", " ", "x" * 300, "a\x00b", "/proc/self"]),
    st.text(max_size=40).map(lambda t: ("under", t)),
    st.sampled_from([None, 5, 1.5, b"good.pt", ["good.pt"]])))
DEVICES = _mostly(st.sampled_from(["cpu", "auto", None, torch.device("cpu"), "cpu:0"]),
                  st.sampled_from(["cuda:x", "tpu", "", "meta", 3, -1, 1.5, ["cpu"]]))


@PROPERTY
@given(which=PATHS, device=DEVICES, as_path=st.booleans())
def test_load_checkpoint_works_or_names_the_argument(files, which, device, as_path):
    if isinstance(which, tuple):  # any text as a name, in a folder that exists
        path = str(files["base"] / "folder" / which[1]) if "\x00" not in which[1] else which[1]
    else:
        path = str(files[which]) if isinstance(which, str) and which in files else which
    if as_path and isinstance(path, str) and path.strip() and "\x00" not in path:
        path = Path(path)
    try:
        model, state = load_checkpoint(path, device=device)
    except REFUSALS as err:
        _refused_in_one_line(err, ["path", "device"], [path])
        event(f"refused: {type(err).__name__}")
        return
    assert isinstance(model, torch.nn.Module) and Config.from_dict(state["config"]).name == "digits"
    event("loaded")


# --- with_overrides ------------------------------------------------------------------------------------------------

VALID = {  # a few values each field takes (alone: some pairs are refused together)
    "name": ["x", "my run"], "data.dataset": ["digits", "shapes", "mnist"], "data.image_size": [16, 32, 64],
    "data.channels": [1, 3], "data.max_train": [None, 64], "data.background": ["plain", "textured"],
    "model.hidden_dims": [[32, 64], (16, 32, 64)], "model.latent_dim": [2, 16], "model.kernel_size": [3, 5],
    "model.res_blocks": [0, 2], "model.kind": ["vae", "ae", "vq"], "model.codebook_size": [16, 512],
    "model.commitment": [0.25, 1], "train.epochs": [1, 10], "train.batch_size": [16, 64], "train.lr": [1e-3, 0.01],
    "train.grad_clip": [None, 1.0], "train.recon": ["mse", "bernoulli"], "train.free_bits": [0.0, 0.5],
    "train.schedule.kind": ["constant", "warmup"], "train.schedule.beta": [0.0, 1.0, 4],
    "train.schedule.warmup_epochs": [0.0, 2.5], "train.schedule.cycles": [1, 4], "train.seed": [0, 2**32 - 1],
    "train.precision": ["fp32"], "train.sync_every": [1, 50], "train.adam_impl": ["auto", "foreach"],
    "train.stop_tol": [0.0, 0.05], "train.min_epochs": [0, 1], "train__lr": [1e-4],
}
BAD_KEYS = ["nope", "train.nope", "train.", "", "train.lr.x", "train.schedule.kind.x", "model"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(), st.text(max_size=6),
                   st.lists(st.integers(-2, 64), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))
OVERRIDES = st.dictionaries(
    _mostly(st.sampled_from(sorted(VALID)), st.sampled_from(BAD_KEYS)), st.none(), min_size=1, max_size=2
).flatmap(lambda d: st.fixed_dictionaries({k: _mostly(st.sampled_from(VALID.get(k, [None])), VALUES) for k in d}))


@PROPERTY
@given(overrides=OVERRIDES)
def test_with_overrides_works_or_names_the_field(overrides):
    config = get_preset("digits")
    try:
        out = with_overrides(config, **overrides)
    except REFUSALS as err:
        names = [part for key in overrides for part in (key, key.replace("__", "."), key.split(".")[-1]) if part]
        _refused_in_one_line(err, names, [k for k in overrides if not k.strip()])
        event(f"refused: {type(err).__name__}")
        return
    assert isinstance(out, Config)
    event("built")
