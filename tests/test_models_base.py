"""What every model family shares (vaelib/models/base.py): the Family base class, its input check, eval mode."""

import dataclasses

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.models.base import Family, check_images, eval_mode
from vaelib.models.registry import MODELS, build_model


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_family_is_a_family_built_from_its_config(tiny_config, kind):
    config = with_overrides(tiny_config, **{"model.kind": kind})
    model = build_model(config)
    assert isinstance(model, Family) and model.config is config
    assert model.latent_dim == config.model.latent_dim and model.TERMS and model.TERMS[0] == "recon"
    assert model.parameter_count() == sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_family_refuses_an_input_of_another_shape_in_one_line(tiny_config, kind):
    model = build_model(with_overrides(tiny_config, **{"model.kind": kind}))
    with pytest.raises(ValueError, match=r"^input of shape \(2, 3, 16, 16\) is invalid: allowed \(B, 1, 16, 16\) "
                                         r"for preset 'tiny'$"):
        model(torch.zeros(2, 3, 16, 16))


def test_check_images_names_the_split_and_refuses_none(tiny_config):
    check_images(torch.zeros(3, 1, 16, 16, dtype=torch.uint8), tiny_config, "train images")  # the right shape
    with pytest.raises(ValueError, match=r"^val images of shape \(3, 16, 16\) are invalid: allowed \(N, 1, 16, 16\)"):
        check_images(torch.zeros(3, 16, 16), tiny_config, "val images")
    with pytest.raises(ValueError, match="^train images are empty: allowed at least one image$"):
        check_images(torch.zeros(0, 1, 16, 16), tiny_config, "train images")
    check_images(torch.zeros(0, 1, 16, 16), tiny_config, "input", rows="B", empty_ok=True)


def test_eval_mode_restores_the_mode_it_found_even_after_an_error(tiny_config):
    model = build_model(dataclasses.replace(tiny_config))
    for training in (True, False):
        model.train(training)
        with pytest.raises(RuntimeError), eval_mode(model):
            assert not model.training
            raise RuntimeError("inside")
        assert model.training is training
