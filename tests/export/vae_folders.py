"""Tiny random diffusers VAE folders for tests: an AutoencoderKL and an
AutoencoderTiny (TAESD's architecture), saved with safetensors as diffusers writes
them, so the decoder stage is tested on diffusers' own classes in seconds."""

from __future__ import annotations

from pathlib import Path

# 2 blocks (upscale 2), 8 and 16 channels, GroupNorm of 4 groups, the mid-block attention on
TINY_KL = {"block_out_channels": (8, 16), "down_block_types": ("DownEncoderBlock2D",) * 2,
           "up_block_types": ("UpDecoderBlock2D",) * 2, "layers_per_block": 1,
           "latent_channels": 4, "norm_num_groups": 4, "sample_size": 16}
# 3 stages (upscale 4) of one block of 8 channels each
TINY_TAESD = {"encoder_block_out_channels": (8, 8, 8), "decoder_block_out_channels": (8, 8, 8),
              "num_encoder_blocks": (1, 1, 1), "num_decoder_blocks": (1, 1, 1),
              "latent_channels": 4}


def write_kl(folder: str | Path, seed: int = 0, **config):
    """A random AutoencoderKL (``TINY_KL`` updated by ``config``, e.g. scaling_factor)
    saved into ``folder``; returns the module (eval mode)."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**{**TINY_KL, **config}).eval()
    vae.save_pretrained(folder, safe_serialization=True)
    return vae


def write_tiny(folder: str | Path, seed: int = 0, **config):
    """A random AutoencoderTiny (``TINY_TAESD`` updated by ``config``) saved into
    ``folder``; returns the module (eval mode)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    vae = AutoencoderTiny(**{**TINY_TAESD, **config}).eval()
    vae.save_pretrained(folder, safe_serialization=True)
    return vae
