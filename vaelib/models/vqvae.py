"""A VQ-VAE (van den Oord et al., 2017), `kind = "vq"`: the VAE's encoder body, a 1x1 convolution to codes of
`latent_dim` values at every position of its feature map, each replaced by its nearest entry of a learned codebook
of `codebook_size` codes, and the VAE's transposed convolutions back to an image.

The quantisation has no gradient, so the decoder's gradient is copied to the encoder's output (the straight-through
estimator); the encoder is held near its codes by the commitment term `commitment` * ||z_e - sg(e)||^2, and the
codebook term ||sg(z_e) - e||^2 measures how far the codes are from the vectors they replace (both summed over
positions and values, averaged over the batch, like every vaelib term). With `codebook_decay` > 0 (the default,
Razavi et al., 2019) the codes are not trained by that term's gradient but updated in every training step as
exponential moving averages of the vectors assigned to them, and a code that has fallen out of use (its EMA count
below `dead_code_threshold`, unused in the batch) restarts at one of the batch's worst-quantised vectors (Dhariwal
et al., 2020), chosen deterministically, so that the codebook does not shrink to a few codes; with 0 the codebook
term trains them (van den Oord et al., 2017). There is no KL term: the code is discrete and the prior over it is not
trained with the model. `sample` draws every position's code uniformly, the prior the model implicitly assumes; a
prior learned over the codes (a PixelCNN, or a latent diffusion model) is what makes its samples good.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelib.config import Config
from vaelib.losses import Loss, reconstruction
from vaelib.models.base import Family, eval_mode, model_device
from vaelib.models.perceptual import perceptual_distance
from vaelib.models.vae import Decoder, conv_stack, refuse_kl_settings
from vaelib.runtime import to_float


class VQVAE(Family):
    """x (B, C, H, W) in [0, 1] -> codes (B, H', W') of the codebook -> reconstruction logits."""

    gaussian_posterior = False  # the code is discrete: no (mu, logvar)
    TERMS = ("recon", "codebook", "commitment")
    RATE = None  # no KL term: beta has nothing to weigh
    EPOCH_STATS = ("codebook_used_share", "codebook_perplexity")  # fit records them on the validation split

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        refuse_kl_settings(config, "a VQ-VAE")
        m = config.model
        self.codebook_size = m.codebook_size
        self.convs, self.feature_shape = conv_stack(config)
        channels = self.feature_shape[0]
        self.to_code = nn.Conv2d(channels, m.latent_dim, 1)
        self.codebook = nn.Embedding(m.codebook_size, m.latent_dim)
        nn.init.uniform_(self.codebook.weight, -1 / m.codebook_size, 1 / m.codebook_size)
        self.ema = m.codebook_decay > 0
        if self.ema:  # the codes follow their assigned vectors, not a gradient
            self.codebook.weight.requires_grad_(False)
            self.register_buffer("ema_count", torch.zeros(m.codebook_size))  # assignments per step, averaged
            self.register_buffer("ema_sum", torch.zeros(m.codebook_size, m.latent_dim))  # their vectors' sum
            self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # codes restarted so far
        self.from_code = nn.Conv2d(m.latent_dim, channels, 1)
        self.decoder = Decoder(config, self.feature_shape)
        self.use_perceptual(perceptual_distance(config))

    @property
    def code_shape(self) -> tuple[int, int]:
        """(H', W'): the positions of one image's code."""
        return tuple(self.feature_shape[1:])

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """z_e: the encoder's output before quantisation, (B, latent_dim, H', W')."""
        self.check_input(x)
        return self.to_code(self.convs(x))

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices (B, H', W') of the nearest codes, their vectors (B, latent_dim, H', W'))."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.latent_dim)  # (B H' W', D)
        book = self.codebook.weight  # (K, D)
        d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.T + book.pow(2).sum(1)  # squared distances
        idx = d2.argmin(1)
        b, _, h, w = z_e.shape
        return idx.view(b, h, w), self.codebook(idx).view(b, h, w, self.latent_dim).permute(0, 3, 1, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x -> the code: one codebook index per position, (B, H', W') int64."""
        return self.quantize(self.encode_continuous(x))[0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook indices (B, H', W') -> probabilities (B, C, H, W) in [0, 1]."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.code_shape:
            raise ValueError(f"codes of shape {tuple(codes.shape)} are invalid: allowed (B, {self.code_shape[0]}, "
                             f"{self.code_shape[1]}) indices")
        e = self.codebook(codes).permute(0, 3, 1, 2)
        return torch.sigmoid(self.decoder.from_features(self.from_code(e)))

    def noise(self, n: int, generator: torch.Generator, device: torch.device) -> None:
        return None  # deterministic: fit draws nothing

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (recon_logits, z_e, e): the logits decoded through the straight-through estimator, the encoder's
        output and the codes it was quantised to. generator and eps are accepted, like the VAE's, and unused."""
        z_e = self.encode_continuous(x)
        idx, e = self.quantize(z_e)
        if self.ema and self.training and torch.is_grad_enabled():  # a training step, not an evaluation
            self._ema_update(z_e.detach(), idx)
        z_q = z_e + (e - z_e).detach()  # forward: the codes; backward: the decoder's gradient reaches the encoder
        return self.decoder.from_features(self.from_code(z_q)), z_e, e

    @torch.no_grad()
    def _ema_update(self, z_e: torch.Tensor, idx: torch.Tensor) -> None:
        """One EMA step of the codebook from this batch's assignments, then the restart of dead codes. Across
        processes the counts and sums are summed first and the restart vectors are rank 0's, so every rank keeps
        the same codebook."""
        m, book = self.config.model, self.codebook.weight
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.latent_dim).float()  # (B H' W', D)
        idx = idx.flatten()
        err = (flat - book[idx].float()).pow(2).sum(1)  # each vector's distance to the code it was given
        counts = torch.bincount(idx, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(m.codebook_decay).add_(counts, alpha=1 - m.codebook_decay)
        self.ema_sum.mul_(m.codebook_decay).add_(sums, alpha=1 - m.codebook_decay)
        live = self.ema_count > 1e-12
        book[live] = (self.ema_sum[live] / self.ema_count[live, None]).to(book.dtype)
        dead = ((self.ema_count < m.dead_code_threshold) & (counts == 0)).nonzero().flatten()
        if len(dead):
            worst = err.topk(min(len(dead), len(flat))).indices
            fresh = flat[worst]
            if distributed:
                torch.distributed.broadcast(fresh, 0)
            dead = dead[:len(fresh)]
            book[dead] = fresh.to(book.dtype)
            self.ema_sum[dead], self.ema_count[dead] = fresh, 1.0  # as if each had one vector, its own
            self.restarts += len(dead)

    def loss(self, x: torch.Tensor, outputs: tuple[torch.Tensor, ...], beta: float, recon: str | None = None,
             free_bits: float | None = None) -> Loss:
        """recon (the likelihood's nll) + codebook + commitment terms, each summed over an image and averaged over
        the batch; beta has no term to weigh."""
        logits, z_e, e = outputs
        nll = reconstruction(logits.float(), x.float(), self.config.train.recon if recon is None else recon,
                             self.perceptual).mean()
        codebook = (z_e.detach().float() - e.float()).pow(2).flatten(1).sum(1).mean()
        commit = self.config.model.commitment * (z_e.float() - e.detach().float()).pow(2).flatten(1).sum(1).mean()
        return Loss(total=nll + codebook + commit, terms={"recon": nll, "codebook": codebook, "commitment": commit})

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from codes drawn uniformly at every position: the prior a VQ-VAE leaves untrained
        (temperature is accepted, like the VAE's, and has no meaning here)."""
        if n < 1:
            raise ValueError(f"n={n!r} is invalid: allowed an integer >= 1")
        codes = torch.randint(self.codebook_size, (n, *self.code_shape), generator=generator,
                              device=model_device(self))
        return self.decode(codes)

    def epoch_stats(self, images: torch.Tensor) -> dict[str, float]:
        """What fit records after each epoch (EPOCH_STATS), on the validation images: codebook_usage."""
        with eval_mode(self):  # a BatchNorm's running statistics stay as training left them
            usage = codebook_usage(self, images)
        return {"codebook_used_share": usage["used_share"], "codebook_perplexity": usage["perplexity"]}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@torch.no_grad()
def codebook_usage(model: VQVAE, images: torch.Tensor, batch_size: int = 512) -> dict[str, float]:
    """How much of the codebook the images use: the share of codes used at least once and the perplexity of the
    code frequencies (exp of their entropy: K when every code is used equally often, 1 when one code is all)."""
    counts = torch.zeros(model.codebook_size, dtype=torch.float64)
    device = model_device(model)
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size], device)
        counts += torch.bincount(model.encode(x).flatten().cpu(), minlength=model.codebook_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"used_share": float((counts > 0).double().mean()), "perplexity": math.exp(entropy)}

