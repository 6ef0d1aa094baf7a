"""The 128x128 residual preset (`celeba128`, the CelebA report's next step): its shapes through every layer, the
genuine-format CelebA loader at 128 px, and one training step on a fixture and on shapes at 128 px. Trained to
convergence on a GPU only: a CPU run here is a smoke test of the architecture, not a result."""

import pytest
import torch
from test_data import celeba_root  # noqa: F401  (the fixture: CelebA's genuine files, written small)

from vaelib.config import PRESETS, with_overrides
from vaelib.data.datasets import load_dataset
from vaelib.models.vae import VAE, ResBlock
from vaelib.training.trainer import fit


def test_the_128_preset_keeps_the_image_shape_through_every_layer_and_has_its_residual_blocks():
    c = PRESETS["celeba128"]
    assert c.input_shape == (3, 128, 128) and c.model.res_blocks == 1 and len(c.model.hidden_dims) == 5
    model = VAE(c).eval()
    x = torch.rand(2, 3, 128, 128)
    shapes = []
    h = x
    for stage in model.encoder.convs:
        h = stage(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(32, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert sum(isinstance(m, ResBlock) for m in model.encoder.modules()) == 5
    assert sum(isinstance(m, ResBlock) for m in model.decoder.modules()) == 4  # none after the output layer
    with torch.no_grad():
        logits, mu, logvar = model(x, generator=torch.Generator().manual_seed(0))
    assert logits.shape == x.shape and mu.shape == logvar.shape == (2, 256)


def test_a_residual_block_starts_near_the_identity_path_and_passes_gradients():
    torch.manual_seed(0)
    block = ResBlock(8, batch_norm=False, slope=0.2)
    with torch.no_grad():
        for p in block.f.parameters():
            p.zero_()
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    out = block(x)
    assert torch.allclose(out, torch.nn.functional.leaky_relu(x, 0.2))  # f = 0: the skip alone
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def test_the_celeba_loader_reads_its_genuine_files_at_128_px(celeba_root):  # noqa: F811
    out = load_dataset("celeba", "train", root=celeba_root[0], image_size=128)
    assert out.images.shape == (3, 3, 128, 128) and out.images.dtype == torch.uint8
    config = with_overrides(PRESETS["celeba128"], **{"train.epochs": 1, "train.batch_size": 3,
                                                     "model.hidden_dims": (8, 8, 16, 16, 16), "model.latent_dim": 8})
    model, history = fit(config, out.images, out.images, device="cpu", quiet=True)
    assert len(history.steps) == 1 and all(torch.isfinite(torch.tensor(s["total"])) for s in history.steps)


def test_one_training_step_on_shapes_at_128_px():
    shapes = load_dataset("shapes", "train", image_size=128, n=8)
    assert shapes.images.shape == (8, 3, 128, 128)
    config = with_overrides(PRESETS["celeba128"], **{"data.dataset": "shapes", "train.epochs": 1,
                                                     "train.batch_size": 4, "model.hidden_dims": (8, 8, 16, 16, 16),
                                                     "model.latent_dim": 8})
    before = VAE(config).state_dict()
    model, history = fit(config, shapes.images, shapes.images[:4], device="cpu", quiet=True)
    assert len(history.steps) == 2 and torch.isfinite(torch.tensor(history.epochs[0]["val_total"]))
    moved = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(".f." in k for k in moved)  # the residual convolutions were trained


def test_res_blocks_out_of_range_are_refused():
    with pytest.raises(ValueError, match="model.res_blocks=-1 is invalid: allowed"):
        with_overrides(PRESETS["celeba128"], **{"model.res_blocks": -1})
