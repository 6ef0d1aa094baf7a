import os

import matplotlib
import pytest
import torch

from vaelib.config import Config, DataConfig, ModelConfig, TrainConfig

matplotlib.use("Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
# Under pytest-xdist (make test runs 2 workers) the cores are shared: each worker, and every process it starts (a
# notebook's kernel, the command line), takes its share of them instead of all of them at once.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
torch.set_num_threads(_THREADS)

# The test file that builds a whole report (minutes, tests/test_install.py) is collected first, and `make test`
# keeps that order (--no-loadscope-reorder; pytest-xdist would otherwise start the files with the most tests
# first), so that it starts on a worker at once and the two workers finish together instead of one waiting on a
# late report build.
SLOW_FIRST = ("test_install.py",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: getattr(item, "path", None) is None or item.path.name not in SLOW_FIRST)  # stable


@pytest.fixture(autouse=True)
def _close_figures():
    """Every test's figures are closed after it: pyplot keeps each open figure (and warns past 20) otherwise."""
    yield
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg") above
    plt.close("all")


@pytest.fixture
def tiny_config() -> Config:
    """A 1x16x16 VAE small enough to train in a second."""
    return Config(name="tiny", data=DataConfig(dataset="digits", image_size=16, channels=1),
                  model=ModelConfig(hidden_dims=(8, 16), latent_dim=4),
                  train=TrainConfig(epochs=2, batch_size=16, sync_every=3))


@pytest.fixture
def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic uint8 images (train 64, val 16) with structure a VAE can learn."""
    g = torch.Generator().manual_seed(0)
    base = torch.zeros(80, 1, 16, 16)
    rows = torch.randint(2, 14, (80,), generator=g)
    for i, r in enumerate(rows):
        base[i, 0, r - 2:r + 2, 3:13] = 1.0
    images = (base * 255).to(torch.uint8)
    return images[:64], images[64:]
