"""Stage-1 VQGAN: image <-> grid of codebook indices.

The architecture and the parameter names follow the course lab's VQGAN exactly
(see the lab's FORMAT.md), so that the lab's pretrained ``VQGAN.pt`` loads with
``strict=True``. The only generalisation is *where* the encoder downsamples and
the decoder upsamples: the lab hard-codes "after loop index 2 and 4", which only
works for its six/five-entry channel lists. Here the positions follow from

    d = log2(img_resolution / latent_resolution)          (number of halvings)
    encoder: downsample after the residual pair of index i in {L_enc-2, L_enc-4, ...}  (d of them)
    decoder: upsample after the three residual blocks of index i in {L_dec-1, L_dec-3, ...}  (d of them)

which reproduces the lab's {4, 2} / {4, 2} for its config and also serves the
small VQGANs this project trains itself.

One optional key beyond the lab's, ``norm_groups`` (default 32, the lab's value),
sets the number of GroupNorm groups. It does not change the state dict (GroupNorm
parameters are per channel). It exists because the lab's 32 groups degenerate at
the 32-channel widths a CPU can train: one channel per group makes every norm an
instance norm, and the last one before the output conv then forces the mean
colour of every decoded image to the same constant, whatever the tokens.

Images are in the model's normalised space (whatever normalisation the caller
applied); the model itself does no file I/O (maskgit.project.vqgan_checkpoint loads the lab's file).
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from maskgit.models.vqgan_config import GN_GROUPS, check_config, norm_groups, num_halvings

GN_EPS = 1e-6


# -----------------------------------------------------------------------------
# layout


def down_positions(n_enc: int, d: int) -> set[int]:
    """Encoder loop indices followed by a Downsample: the first d of L-2, L-4, ... (the deepest stages)."""
    return {n_enc - 2 - 2 * j for j in range(d)}


def up_positions(n_dec: int, d: int) -> set[int]:
    """Decoder loop indices followed by an Upsample: the first d of L-1, L-3, ... (the deepest stages)."""
    return {n_dec - 1 - 2 * j for j in range(d)}


# -----------------------------------------------------------------------------
# building blocks (class and child names fixed by the lab's state dict)


class GroupNorm(nn.Module):
    """Wrapper so the parameters sit at `<name>.gn.weight` like the lab's."""

    def __init__(self, channels: int, groups: int = GN_GROUPS):
        super().__init__()
        self.gn = nn.GroupNorm(num_groups=groups, num_channels=channels, eps=GN_EPS, affine=True)

    def forward(self, x):
        return self.gn(x)


class Swish(nn.Module):
    """x * sigmoid(x); no parameters, but it occupies a slot in the Sequentials."""

    def forward(self, x):
        return F.silu(x)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int = GN_GROUPS):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.block = nn.Sequential(
            GroupNorm(cin, groups),
            Swish(),
            nn.Conv2d(cin, cout, 3, 1, 1),
            GroupNorm(cout, groups),
            Swish(),
            nn.Conv2d(cout, cout, 3, 1, 1),
        )
        # only present when the width changes, so the lab's keys match exactly
        if cin != cout:
            self.channel_up = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        skip = self.channel_up(x) if self.cin != self.cout else x
        return self.block(x) + skip


class NonLocalBlock(nn.Module):
    """Single-head self-attention over the h*w positions, added to the input."""

    def __init__(self, channels: int, groups: int = GN_GROUPS):
        super().__init__()
        self.norm = GroupNorm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1, 1, 0)
        self.k = nn.Conv2d(channels, channels, 1, 1, 0)
        self.v = nn.Conv2d(channels, channels, 1, 1, 0)
        self.proj_out = nn.Conv2d(channels, channels, 1, 1, 0)

    def forward(self, x):
        b, c, h, w = x.shape
        hn = self.norm(x)
        # (B, C, H, W) -> (B, 1 head, H*W, C); SDPA's default scale is C^-0.5 as in the lab
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q(hn), self.k(hn), self.v(hn)))
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(a)


class DownSampleBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x):
        # asymmetric zero pad (right, bottom) so a stride-2 3x3 conv halves H and W exactly
        x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
        return self.conv(x)


class UpSampleBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


# -----------------------------------------------------------------------------
# encoder / decoder / codebook


class Encoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        chans = list(config["enc_channels"])
        resolution = config["img_resolution"]
        latent_res = config["latent_resolution"]
        downs = down_positions(len(chans), num_halvings(config))
        g = norm_groups(config)

        layers = [nn.Conv2d(config["image_channels"], chans[0], 3, 1, 1)]
        for i in range(len(chans) - 1):
            cin, cout = chans[i], chans[i + 1]
            for _ in range(2):
                layers.append(ResidualBlock(cin, cout, g))
                cin = cout
                if resolution == latent_res:
                    layers.append(NonLocalBlock(cin, g))
            if i in downs:
                layers.append(DownSampleBlock(cout))
                resolution //= 2
        c = chans[-1]
        layers += [
            ResidualBlock(c, c, g),
            NonLocalBlock(c, g),
            ResidualBlock(c, c, g),
            GroupNorm(c, g),
            Swish(),
            nn.Conv2d(c, config["latent_dim"], 3, 1, 1),
        ]
        assert resolution == latent_res, (resolution, latent_res)  # guaranteed by check_config
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class Decoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        chans = list(config["dec_channels"])
        resolution = config["latent_resolution"]
        ups = up_positions(len(chans), num_halvings(config))
        g = norm_groups(config)

        c = chans[-1]
        layers = [
            nn.Conv2d(config["latent_dim"], c, 3, 1, 1),
            ResidualBlock(c, c, g),
            NonLocalBlock(c, g),
            ResidualBlock(c, c, g),
        ]
        for i in reversed(range(len(chans))):
            cout = chans[i]
            for _ in range(3):
                layers.append(ResidualBlock(c, cout, g))
                c = cout
                if resolution == config["latent_resolution"]:
                    layers.append(NonLocalBlock(c, g))
            if i in ups:
                layers.append(UpSampleBlock(c))
                resolution *= 2
        # the lab has no Swish between the last norm and the output conv
        layers += [GroupNorm(c, g), nn.Conv2d(c, config["image_channels"], 3, 1, 1)]
        assert resolution == config["img_resolution"], (resolution, config["img_resolution"])
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class Codebook(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.num_codebook_vectors = config["num_codebook_vectors"]
        self.latent_dim = config["latent_dim"]
        self.beta = float(config["beta"])
        self.embedding = nn.Embedding(self.num_codebook_vectors, self.latent_dim)
        # small uniform init (common VQGAN practice): codes start near the origin,
        # close to where a freshly initialised encoder's outputs are
        nn.init.uniform_(self.embedding.weight, -1.0 / self.num_codebook_vectors, 1.0 / self.num_codebook_vectors)

    def nearest(self, z_flat):
        """Index of the nearest code (squared Euclidean) for each row of (M, D)."""
        return squared_distances(z_flat, self.embedding.weight).argmin(dim=1)  # first minimum on ties

    def forward(self, z):
        """z (B, D, h, w) -> (z_q straight-through, indices (B, h*w), q_loss)."""
        b, d, h, w = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # row-major over (h, w) per image
        idx = self.nearest(z_flat)
        z_q = self.embedding(idx).view(b, h, w, d).permute(0, 3, 1, 2)
        # codebook term pulls codes to (frozen) encoder outputs; beta * commitment term
        # keeps the encoder near its codes (VQ-VAE paper). The value is (1 + beta) * mse
        # whichever term carries beta; only the gradients differ.
        q_loss = F.mse_loss(z_q, z.detach()) + self.beta * F.mse_loss(z, z_q.detach())
        # straight-through: the value is exactly z_q (z - z.detach() is exactly 0, so
        # forward and decode_tokens agree bit for bit) and the gradient goes to z unchanged
        z_q = z_q.detach() + (z - z.detach())
        return z_q, idx.view(b, h * w), q_loss


# -----------------------------------------------------------------------------
# the model


class VQGAN(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        check_config(config)
        self.config = dict(config)
        self.num_codebook_vectors = config["num_codebook_vectors"]
        self.latent_resolution = config["latent_resolution"]  # tokens per side
        self.latent_dim = config["latent_dim"]
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.codebook = Codebook(config)
        self.quant_conv = nn.Conv2d(self.latent_dim, self.latent_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.latent_dim, self.latent_dim, 1)
        self._zero_init_branches()

    def _zero_init_branches(self) -> None:
        """Start every residual and attention branch at zero, so the untrained network is
        a short chain of convolutions around identity skips, which trains faster from
        scratch (docs/findings.md). A loaded checkpoint overwrites all of it."""
        for module in self.modules():
            if isinstance(module, ResidualBlock):
                last = module.block[5]
            elif isinstance(module, NonLocalBlock):
                last = module.proj_out
            else:
                continue
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @property
    def num_tokens(self) -> int:
        return self.latent_resolution**2

    def encode_latent(self, x):
        """Continuous encoder output z_e (B, D, h, w), before quantisation."""
        return self.quant_conv(self.encoder(x))

    def quantize(self, z):
        """-> (z_q straight-through (B, D, h, w), indices (B, h*w) long, q_loss)."""
        return self.codebook(z)

    def encode(self, x):
        return self.quantize(self.encode_latent(x))

    def decode(self, z_q):
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x):
        """-> (reconstruction, indices (B, h*w), q_loss)."""
        z_q, indices, q_loss = self.encode(x)
        return self.decode(z_q), indices, q_loss

    @torch.no_grad()
    def encode_to_tokens(self, images):
        """(B, C, H, W) normalised images -> LongTensor (B, h*w), row-major per image."""
        _, indices, _ = self.encode(images)
        return indices

    def decode_tokens(self, tokens):
        """LongTensor (B, h*w) of code ids -> images (B, C, H, W) in normalised space."""
        b, n = tokens.shape
        if n != self.num_tokens:
            raise ValueError(f"decode_tokens: expected {self.num_tokens} tokens per image, got {n}")
        # an out-of-range id (e.g. a leftover mask token) would be a device-side assert on GPU
        if n and (int(tokens.min()) < 0 or int(tokens.max()) >= self.num_codebook_vectors):
            raise ValueError(
                f"decode_tokens: token ids must lie in [0, {self.num_codebook_vectors}), "
                f"got [{int(tokens.min())}, {int(tokens.max())}]"
            )
        r = self.latent_resolution
        z_q = self.codebook.embedding(tokens.long()).view(b, r, r, self.latent_dim).permute(0, 3, 1, 2)
        return self.decode(z_q)


# -----------------------------------------------------------------------------
# stage-1 training helpers


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t) + ")"


def codebook_usage(indices, num_codes: int) -> dict:
    """Perplexity exp(H(p)) of the code histogram, and how many codes are used / dead.

    Perplexity is num_codes when all codes are used equally and 1 when one code
    takes everything; an empty batch gives perplexity 0.
    """
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_codes):
        raise ValueError(f"codebook_usage: indices must lie in [0, {num_codes})")
    counts = torch.bincount(flat, minlength=num_codes).double()
    total = counts.sum()
    used = int((counts > 0).sum())
    if total == 0:
        return dict(perplexity=0.0, used=0, dead=num_codes)
    p = counts / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return dict(perplexity=float(entropy.exp()), used=used, dead=num_codes - used)


@torch.no_grad()
def restart_dead_codes(vqgan: VQGAN, z_e_flat, counts, generator=None) -> int:
    """Re-initialise codebook rows whose count is zero to random encoder outputs.

    z_e_flat: (M, D) recent encoder outputs (after quant_conv); counts: (K,) how
    often each code was picked over the same window. Dead codes otherwise never
    receive a gradient again. Rows are drawn without replacement when M allows.
    The optimizer's moment estimates for those rows are left to the caller.
    Returns the number of codes restarted.
    """
    weight = vqgan.codebook.embedding.weight
    k, d = weight.shape
    if counts.shape != (k,):
        raise ValueError(f"restart_dead_codes: counts must have shape ({k}), got {_shape(counts.shape)}")
    if z_e_flat.dim() != 2 or z_e_flat.shape[1] != d:
        raise ValueError(f"restart_dead_codes: z_e_flat must have shape (M, {d}), got {_shape(z_e_flat.shape)}")
    dead = (counts == 0).nonzero(as_tuple=True)[0].to(weight.device)
    n, m = dead.numel(), z_e_flat.shape[0]
    if n == 0 or m == 0:
        return 0
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if m >= n:
        pick = torch.randperm(m, generator=generator, device=gen_device)[:n]
    else:
        pick = torch.randint(m, (n,), generator=generator, device=gen_device)
    weight[dead] = z_e_flat[pick.to(z_e_flat.device)].to(device=weight.device, dtype=weight.dtype)
    return n


def squared_distances(z_flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(M, D) x (K, D) -> (M, K) squared Euclidean distances, expanded as
    ||z||^2 + ||e||^2 - 2 z.e: one matmul, no (M, K, D) tensor."""
    return z_flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2.0 * (z_flat @ codes.t())


@torch.no_grad()
def kmeans_codes(z_flat, num_codes: int, iters: int = 20, generator=None):
    """Lloyd's k-means on encoder outputs (M, D) -> (num_codes, D) centres.

    Used to initialise the codebook from a briefly trained continuous autoencoder
    (the k-means init of SoundStream and Encodec): every code starts where encoder
    outputs actually are, instead of being dragged there one gradient step at a
    time (docs/findings.md). A cluster that empties is re-seeded with a random
    sample. Starts from distinct random samples; needs M >= num_codes.
    """
    m = z_flat.shape[0]
    if m < num_codes:
        raise ValueError(f"kmeans_codes: {m} vectors are too few for {num_codes} codes")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    z = z_flat.float()
    centres = z[torch.randperm(m, generator=generator, device=gen_device)[:num_codes].to(z.device)].clone()
    for _ in range(iters):
        assign = squared_distances(z, centres).argmin(dim=1)
        counts = torch.bincount(assign, minlength=num_codes).to(z.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assign, z)
        reseed = z[torch.randint(m, (num_codes,), generator=generator, device=gen_device).to(z.device)]
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], reseed)
    return centres


def _image_grads(x):
    """Forward differences along width (dx) and height (dy)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def reconstruction_loss(recon, target, l1_weight: float, l2_weight: float, edge_weight: float):
    """Weighted pixel L1 + L2 + edge loss -> (total, {'l1', 'l2', 'edge'} detached).

    edge = mean of the L1 distances between the finite-difference gradients
    (dx and dy) of recon and target: it penalises blurred borders of flat-coloured
    regions, which plain L2 tolerates, without a perceptual network (those need
    downloaded weights).
    """
    l1 = F.l1_loss(recon, target)
    l2 = F.mse_loss(recon, target)
    rdx, rdy = _image_grads(recon)
    tdx, tdy = _image_grads(target)
    edge = 0.5 * (F.l1_loss(rdx, tdx) + F.l1_loss(rdy, tdy))
    total = l1_weight * l1 + l2_weight * l2 + edge_weight * edge
    return total, {"l1": l1.detach(), "l2": l2.detach(), "edge": edge.detach()}
