"""The VQGAN's configuration: the keys of the lab's VQGAN.yml and their checks.

Apart from the model so that params.py can check a config before any work starts
without depending on (and re-running stages on every edit of) the model's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

GN_GROUPS = 32  # the lab's

CONFIG_KEYS = (
    "image_channels",
    "enc_channels",
    "dec_channels",
    "latent_dim",
    "img_resolution",
    "latent_resolution",
    "num_codebook_vectors",
    "beta",
)
OPTIONAL_KEYS = {"norm_groups": GN_GROUPS}


def _is_int(v) -> bool:
    # bool is a subclass of int, but `enc_channels: [true]` is a typo, not a width
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(config: dict) -> None:
    """Validate a VQGAN config; raise ValueError with one line naming the bad key.

    Keys other than CONFIG_KEYS and OPTIONAL_KEYS are ignored, so a config section
    may carry extra settings (e.g. for training) beside the architecture.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"vqgan: config must be a mapping, got {type(config).__name__}")
    for key in CONFIG_KEYS:
        if key not in config:
            raise ValueError(f"vqgan.{key}: missing")

    for key in ("image_channels", "latent_dim", "img_resolution", "latent_resolution", "num_codebook_vectors"):
        v = config[key]
        if not _is_int(v) or v < 1:
            raise ValueError(f"vqgan.{key}: must be a positive integer, got {v!r}")
    groups = norm_groups(config)
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"vqgan.norm_groups: must be a positive integer, got {groups!r}")
    beta = config["beta"]
    if isinstance(beta, bool) or not isinstance(beta, Real) or not beta >= 0:
        raise ValueError(f"vqgan.beta: must be a non-negative number, got {beta!r}")

    for key in ("enc_channels", "dec_channels"):
        chans = config[key]
        if not isinstance(chans, (list, tuple)) or len(chans) == 0:
            raise ValueError(f"vqgan.{key}: must be a non-empty list of channel widths, got {chans!r}")
        for j, c in enumerate(chans):
            if not _is_int(c) or c < 1:
                raise ValueError(f"vqgan.{key}[{j}]: must be a positive integer, got {c!r}")
            # every width passes through a GroupNorm somewhere
            if c % groups != 0:
                raise ValueError(f"vqgan.{key}[{j}]: {c} is not divisible by {groups} (vqgan.norm_groups)")

    d = num_halvings(config)  # raises for a bad resolution ratio
    n_enc, n_dec = len(config["enc_channels"]), len(config["dec_channels"])
    ratio = f"{config['img_resolution']}/{config['latent_resolution']}"
    # encoder positions L-2, L-4, ..., L-2d must all be loop indices >= 0
    if n_enc < max(1, 2 * d):
        raise ValueError(
            f"vqgan.enc_channels: {n_enc} entries are too few for {d} downsamplings ({ratio}); need at least {2 * d}"
        )
    # decoder positions L-1, L-3, ..., L-2d+1 must all be >= 0
    if n_dec < max(1, 2 * d - 1):
        raise ValueError(
            f"vqgan.dec_channels: {n_dec} entries are too few for {d} upsamplings ({ratio}); need at least {2 * d - 1}"
        )


def norm_groups(config: dict):
    return config.get("norm_groups", OPTIONAL_KEYS["norm_groups"])


def num_halvings(config: dict) -> int:
    """d = log2(img_resolution / latent_resolution); ValueError unless an integer >= 0."""
    img, lat = config["img_resolution"], config["latent_resolution"]
    ratio, rem = divmod(img, lat)
    if rem != 0 or ratio < 1 or ratio & (ratio - 1) != 0:
        raise ValueError(f"vqgan.latent_resolution: {img}/{lat} is not a power-of-two factor")
    return ratio.bit_length() - 1
