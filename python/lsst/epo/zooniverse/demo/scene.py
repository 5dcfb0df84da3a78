# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""A synthetic sky for the demo repository: stars and galaxies of known
positions, magnitudes and colours, rendered into g, r, i coadd planes with
realistic noise, a saturated bright star and a survey edge without data.
"""

from __future__ import annotations

__all__ = ["DEMO_BANDS", "DemoSource", "make_sources", "render_tract"]

import dataclasses
import math

import astropy.wcs
import numpy as np

DEMO_BANDS = ("g", "r", "i")
"""Bands of the synthetic coadds."""

_AB_ZERO_NJY = 3631e9
_PSF_FWHM_ARCSEC = {"g": 0.85, "r": 0.75, "i": 0.7}
_SKY_SIGMA_NJY = {"g": 18.0, "r": 14.0, "i": 20.0}
SATURATION_NJY = 4.0e5
"""Pixel value above which the demo coadds flag SAT (a bright star)."""


@dataclasses.dataclass(frozen=True)
class DemoSource:
    """A synthetic star or galaxy.

    Parameters
    ----------
    source_id : `int`
        Truth id.
    kind : `str`
        ``star`` or ``galaxy``.
    ra, dec : `float`
        Position in degrees.
    mag : `dict` [`str`, `float`]
        AB magnitude per band.
    half_light_arcsec : `float`
        Galaxy half-light radius (0 for stars).
    axis_ratio, position_angle : `float`
        Galaxy shape (position angle in degrees from +x).
    """

    source_id: int
    kind: str
    ra: float
    dec: float
    mag: dict[str, float]
    half_light_arcsec: float = 0.0
    axis_ratio: float = 1.0
    position_angle: float = 0.0

    def flux(self, band: str) -> float:
        """Total flux in nJy."""
        return _AB_ZERO_NJY * 10 ** (-0.4 * self.mag[band])


# Colours (g-r, r-i) of a few stellar and galaxy types.
_STAR_COLOURS = [(-0.3, -0.2), (0.2, 0.05), (0.6, 0.25), (1.2, 0.6), (1.5, 1.3)]
_GALAXY_COLOURS = [(0.35, 0.15), (0.6, 0.3), (0.9, 0.4), (1.3, 0.5)]


def make_sources(
    wcs: astropy.wcs.WCS,
    width: int,
    height: int,
    *,
    n_stars: int,
    n_galaxies: int,
    seed: int,
    first_id: int = 1,
) -> list[DemoSource]:
    """Scatter stars and galaxies uniformly over a pixel grid.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        Grid WCS (0-based pixels).
    width, height : `int`
        Grid size.
    n_stars, n_galaxies : `int`
        How many of each.
    seed : `int`
        Random seed (the scene is reproducible).
    first_id : `int`, optional
        Id of the first source.

    Returns
    -------
    sources : `list` [`DemoSource`]
        Stars first, then galaxies.
    """
    rng = np.random.default_rng(seed)
    sources = []
    for k in range(n_stars + n_galaxies):
        is_star = k < n_stars
        x = rng.uniform(5, width - 5)
        y = rng.uniform(5, height - 5)
        ra, dec = wcs.wcs_pix2world([[x, y]], 0)[0]
        r_mag = rng.uniform(17.5, 23.0) if is_star else rng.uniform(18.5, 22.5)
        g_r, r_i = (_STAR_COLOURS if is_star else _GALAXY_COLOURS)[int(rng.integers(0, 4 + is_star))]
        mags = {"g": r_mag + g_r, "r": r_mag, "i": r_mag - r_i}
        if is_star:
            sources.append(DemoSource(first_id + k, "star", float(ra % 360.0), float(dec), mags))
        else:
            sources.append(
                DemoSource(
                    first_id + k,
                    "galaxy",
                    float(ra % 360.0),
                    float(dec),
                    mags,
                    half_light_arcsec=float(rng.uniform(0.6, 2.5)),
                    axis_ratio=float(rng.uniform(0.3, 1.0)),
                    position_angle=float(rng.uniform(0, 180)),
                )
            )
    return sources


def _add_source(canvas: np.ndarray, source: DemoSource, x: float, y: float, band: str, scale: float) -> None:
    """Add one source's light to a canvas (pixel-centre sampling of a
    Gaussian PSF, or an exponential profile convolved approximately by
    adding the PSF width in quadrature).
    """
    psf_sigma = _PSF_FWHM_ARCSEC[band] / 2.3548 / scale
    if source.kind == "star":
        sigma_major = sigma_minor = psf_sigma
        profile = "gauss"
    else:
        # Exponential scale length from the half-light radius.
        scale_length = source.half_light_arcsec / 1.678 / scale
        sigma_major = math.hypot(scale_length, psf_sigma)
        sigma_minor = math.hypot(scale_length * source.axis_ratio, psf_sigma)
        profile = "exp"
    radius = int(math.ceil(8 * sigma_major)) + 2
    x0, x1 = max(int(x) - radius, 0), min(int(x) + radius + 1, canvas.shape[1])
    y0, y1 = max(int(y) - radius, 0), min(int(y) + radius + 1, canvas.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - x, yy - y
    theta = math.radians(source.position_angle)
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    if profile == "gauss":
        shape = np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))
        norm = 2 * math.pi * sigma_major * sigma_minor
    else:
        shape = np.exp(-np.hypot(u / sigma_major, v / sigma_minor))
        norm = 2 * math.pi * sigma_major * sigma_minor
    canvas[y0:y1, x0:x1] += (source.flux(band) / norm) * shape


def render_tract(
    sources: list[DemoSource],
    wcs: astropy.wcs.WCS,
    width: int,
    height: int,
    band: str,
    *,
    seed: int,
    scale_arcsec: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Render the sources into a tract-sized image with noise.

    Parameters
    ----------
    sources : `list` [`DemoSource`]
        What to draw.
    wcs : `astropy.wcs.WCS`
        Tract WCS (0-based pixels).
    width, height : `int`
        Tract size.
    band : `str`
        Band to render.
    seed : `int`
        Noise seed.
    scale_arcsec : `float`
        Pixel scale.

    Returns
    -------
    image, variance : `numpy.ndarray`
        ``float32`` planes in nJy and nJy².
    """
    model = np.zeros((height, width), dtype=np.float64)
    for source in sources:
        x, y = wcs.wcs_world2pix([[source.ra, source.dec]], 0)[0]
        _add_source(model, source, float(x), float(y), band, scale_arcsec)
    sky_sigma = _SKY_SIGMA_NJY[band]
    # Source noise: Poisson-like, effective gain 0.05 counts per nJy.
    variance = sky_sigma**2 + np.maximum(model, 0.0) / 0.05
    rng = np.random.default_rng(seed)
    image = model + rng.normal(size=model.shape) * np.sqrt(variance)
    return image.astype(np.float32), variance.astype(np.float32)
