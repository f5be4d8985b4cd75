"""Training textures are sharp at the pixel: their own smoothness is not in the CoC label.

A texture that is smooth over many pixels, rendered "in focus", looks exactly like a blurred one;
a reader trained on it learns that visible blur is often no blur. Measured with the share of a
texture's luminance variance above 1/8 cycle per pixel (the top two octaves): white noise has
94 % there, and 71 % / 37 % after a disc blur of 2 / 4 px (``render_defocus``).
"""

from __future__ import annotations

import torch

from depth_defocus_ros.synth import textures as T


def fine_share(tex: torch.Tensor) -> float:
    """Share of the luminance variance of (3, N, N) at frequencies of at least 1/8 cycle/px."""
    y = tex.mean(0)
    p = torch.fft.fft2(y - y.mean()).abs() ** 2
    f = torch.fft.fftfreq(y.shape[-1]).abs()
    high = torch.maximum(f[:, None], f[None, :]) >= 0.125
    return float(p[high].sum() / p.sum())


def test_procedural_textures_have_detail_down_to_the_pixel():
    gen = torch.Generator().manual_seed(0)
    shares = sorted(fine_share(T.procedural_texture(256, gen)) for _ in range(16))
    # octaves down to the pixel, persistence 0.65-0.9 (natural images: about 1); the earlier recipe (3-7 octaves
    # from 2-5 cells, persistence 0.35-0.75) gave a median of 0.014 with these seeds
    assert shares[8] > 0.06, shares
    assert shares[0] > 0.01, shares


def test_photo_crops_are_never_magnified():
    gen = torch.Generator().manual_seed(1)
    noise = torch.rand(3, 100, 100, generator=gen)  # white noise: 94 % of its variance is fine
    bank = T.TextureBank(size=128, photo_fraction=1.0, use_photos=False)
    bank.photos = [noise]
    small = [bank._photo_crop(gen) for _ in range(4)]
    assert all(t.shape == (3, 128, 128) for t in small)
    # a 100 px photo is mirror-tiled at its own scale: a bilinear magnification to 128 px would
    # move most of the variance below 1/8 cycle/px
    assert min(fine_share(t) for t in small) > 0.8
    bank.photos = [torch.rand(3, 600, 600, generator=gen)]
    assert min(fine_share(bank._photo_crop(gen)) for _ in range(4)) > 0.8  # reduced 1.5-2.5x: still sharp


def test_blurred_sample_photographs_are_not_textures():
    # motion-blurred on purpose, a smooth chart, smooth microscopy, too small to use unmagnified
    left_out = {"clock_motion.png", "color.png", "cell.png", "microaneurysms.png"}
    assert not left_out & set(T._SKIMAGE_PHOTOS)


def test_flat_textures_show_nothing_but_their_boundaries():
    """Textureless surfaces: flat colours under a linear shading (which a disc blur leaves as it
    is), changing only at pixel-sharp boundaries."""
    gen = torch.Generator().manual_seed(3)
    bank = T.TextureBank(size=96, use_photos=False, pool=12, flat_fraction=1.0)
    bank.refresh(gen)
    piecewise = 0
    for tex in bank._bank:
        # the discrete Laplacian of a linear ramp is zero: away from boundaries nothing is left
        mid = tex[:, 1:-1, 1:-1]
        lap = (tex[:, 1:-1, :-2] + tex[:, 1:-1, 2:] + tex[:, :-2, 1:-1] + tex[:, 2:, 1:-1] - 4 * mid).abs()
        flat = (lap.amax(0) < 1e-4).float().mean()
        assert flat > 0.8, float(flat)  # one colour: 0.96-1 (clipped shading); several: 0.84-0.91
        # the shading changes a colour by at most 0.25 / 96 per pixel; a boundary by more
        jumps = (tex[:, :, 1:] - tex[:, :, :-1]).abs().amax(0)
        big = jumps > 0.02
        if big.any():
            piecewise += 1
            # pixel-sharp: a step is crossed in one pixel, not ramped over several
            assert (big[:, 1:] & big[:, :-1]).sum() <= 0.05 * big.sum()
    assert 0 < piecewise < len(bank._bank)  # both kinds are drawn


def test_no_flat_share_draws_the_recipe_unchanged():
    a, b = (T.TextureBank(size=64, use_photos=False, pool=4, flat_fraction=f) for f in (0.0, 0.5))
    a.refresh(torch.Generator().manual_seed(5))
    b.refresh(torch.Generator().manual_seed(5))
    ref = torch.stack([T.procedural_texture(64, g) for g in [torch.Generator().manual_seed(5)] for _ in range(4)])
    assert torch.equal(a._bank, ref)  # the option adds no draw when it is 0
    assert not torch.equal(b._bank, ref)
