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

"""Picture orientation: the quarter turns and flip that put north up and
east left, and turning and resizing a picture together with its WCS.
"""

from __future__ import annotations

__all__ = ["affine_wcs", "orient_picture", "orient_pictures", "orient_to_north_up", "oriented_wcs"]

import math

import astropy.wcs
import numpy as np
from PIL import Image


def orient_to_north_up(wcs: astropy.wcs.WCS) -> tuple[int, bool]:
    """Find the quarter turns and flip that put north up and east left.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        Celestial WCS of a pixel grid (y increasing upwards).

    Returns
    -------
    quarter_turns : `int`
        Counter-clockwise quarter turns to apply (`numpy.rot90` ``k``) to
        a picture whose row 0 is the lowest y.
    flip_x : `bool`
        Whether to mirror x first.
    """
    cd = wcs.pixel_scale_matrix  # d(lon, lat)/d(x, y)
    # Pixel-space directions of east (+lon) and north (+lat).
    inverse = np.linalg.inv(cd)
    east, north = inverse[:, 0], inverse[:, 1]
    flip_x = (
        float(east[0] * north[1] - east[1] * north[0]) > 0
    )  # East-left needs a clockwise (east, north) pair.
    if flip_x:
        north = np.array([-north[0], north[1]])
    angle = math.degrees(math.atan2(north[1], north[0]))  # 90 = already up
    quarter_turns = int(round((90.0 - angle) / 90.0)) % 4
    return quarter_turns, flip_x


def affine_wcs(wcs: astropy.wcs.WCS, matrix: np.ndarray, offset: np.ndarray) -> astropy.wcs.WCS:
    """Return the WCS of a picture whose 0-based pixel ``p`` maps to
    ``matrix @ p + offset`` in the original grid.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        Celestial WCS of the original pixel grid.
    matrix : `numpy.ndarray`
        2x2 matrix from picture to original pixel coordinates.
    offset : `numpy.ndarray`
        Offset (2 values) of that affine map.

    Returns
    -------
    picture_wcs : `astropy.wcs.WCS`
        A modified copy of ``wcs``.
    """
    result = wcs.deepcopy()
    cd = wcs.pixel_scale_matrix @ matrix
    # Original crpix (0-based) q0 = matrix @ p0 + offset, so
    # p0 = inv(matrix) @ (q0 - offset).
    q0 = wcs.wcs.crpix - 1.0
    p0 = np.linalg.solve(matrix, q0 - offset)
    result.wcs.crpix = p0 + 1.0
    if result.wcs.has_cd():
        result.wcs.cd = cd
    else:
        result.wcs.pc = cd
        result.wcs.cdelt = [1.0, 1.0]
    if wcs.sip is not None:
        # SIP terms are polynomials of the pixel offsets from CRPIX: with
        # u = matrix @ v they become inv(matrix) @ f(matrix @ v).
        inverse = np.linalg.inv(matrix)
        result.sip = astropy.wcs.Sip(
            *_turned_sip(wcs.sip.a, wcs.sip.b, matrix, inverse),
            *(
                _turned_sip(wcs.sip.ap, wcs.sip.bp, matrix, inverse)
                if wcs.sip.ap is not None
                else (None, None)
            ),
            p0 + 1.0,
        )
    result.wcs.set()
    return result


def _polynomial_product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Return the product of two polynomials in (x, y) given as
    coefficient arrays ``c[i, j]`` of ``x**i * y**j``.
    """
    product = np.zeros((left.shape[0] + right.shape[0] - 1, left.shape[1] + right.shape[1] - 1))
    for i, j in zip(*np.nonzero(left)):
        product[i : i + right.shape[0], j : j + right.shape[1]] += left[i, j] * right
    return product


def _substituted(coefficients: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Return ``f(matrix @ v)`` as coefficients in ``v``, ``f`` given by
    ``coefficients`` (``c[p, q]`` of ``u1**p * u2**q``).
    """
    size = coefficients.shape[0]
    first = np.array([[0.0, matrix[0, 1]], [matrix[0, 0], 0.0]])  # u1 = m00 v1 + m01 v2
    second = np.array([[0.0, matrix[1, 1]], [matrix[1, 0], 0.0]])  # u2 = m10 v1 + m11 v2
    powers_first, powers_second = [np.ones((1, 1))], [np.ones((1, 1))]
    for _ in range(size - 1):
        powers_first.append(_polynomial_product(powers_first[-1], first))
        powers_second.append(_polynomial_product(powers_second[-1], second))
    result = np.zeros((2 * size, 2 * size))
    for p, q in zip(*np.nonzero(coefficients)):
        term = coefficients[p, q] * _polynomial_product(powers_first[p], powers_second[q])
        result[: term.shape[0], : term.shape[1]] += term
    return result[:size, :size]  # The degree does not grow.


def _turned_sip(
    a: np.ndarray, b: np.ndarray, matrix: np.ndarray, inverse: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the SIP coefficients ``(a, b)`` of
    ``inverse @ f(matrix @ v)``.
    """
    first, second = _substituted(np.asarray(a, float), matrix), _substituted(np.asarray(b, float), matrix)
    return inverse[0, 0] * first + inverse[0, 1] * second, inverse[1, 0] * first + inverse[1, 1] * second


def orient_picture(
    channels: np.ndarray, wcs: astropy.wcs.WCS | None, quarter_turns: int, flip_x: bool, output_size: int
) -> tuple[np.ndarray, astropy.wcs.WCS | None]:
    """Orient and resize a ``(H, W, 3)`` uint8 array whose row 0 is the
    lowest y.

    Parameters
    ----------
    channels : `numpy.ndarray`
        ``uint8`` RGB array, row 0 the lowest y.
    wcs : `astropy.wcs.WCS` or `None`
        Its celestial WCS, if any.
    quarter_turns : `int`
        Counter-clockwise quarter turns (see `orient_to_north_up`).
    flip_x : `bool`
        Whether to mirror x first.
    output_size : `int`
        Side of the square output in pixels (Lanczos resampling); 0 keeps
        the size.

    Returns
    -------
    picture : `numpy.ndarray`
        C-contiguous ``uint8`` RGB array, row 0 at the top.
    picture_wcs : `astropy.wcs.WCS` or `None`
        Its WCS (FITS pixel (1, 1) at the bottom left); ``wcs`` itself if
        the picture is the stamp's own pixel grid, `None` without
        ``wcs``.
    """
    array = channels
    if flip_x:
        array = array[:, ::-1]
    for _ in range(quarter_turns):
        array = np.rot90(array, k=-1)  # rot90 on row-0-lowest arrays turns the other way
    if output_size and (array.shape[0] != output_size or array.shape[1] != output_size):
        image = Image.fromarray(np.ascontiguousarray(array[::-1]), mode="RGB")
        image = image.resize((output_size, output_size), Image.Resampling.LANCZOS)
        array = np.asarray(image)[::-1]
    height, width = channels.shape[:2]
    picture_wcs = oriented_wcs(wcs, height, width, quarter_turns, flip_x, output_size)
    return np.ascontiguousarray(array[::-1]), picture_wcs


def orient_pictures(channels: np.ndarray, quarter_turns: int, flip_x: bool) -> np.ndarray:
    """Orient a batch of ``(N, H, W, 3)`` pictures as `orient_picture`
    orients each (without resizing).

    Parameters
    ----------
    channels : `numpy.ndarray`
        ``uint8`` RGB arrays, row 0 of each the lowest y.
    quarter_turns : `int`
        Counter-clockwise quarter turns (see `orient_to_north_up`).
    flip_x : `bool`
        Whether to mirror x first.

    Returns
    -------
    pictures : `numpy.ndarray`
        C-contiguous ``uint8`` array ``(N, H', W', 3)``, row 0 of each at
        the top.
    """
    array = channels
    if flip_x:
        array = array[:, :, ::-1]
    for _ in range(quarter_turns):
        array = np.rot90(array, k=-1, axes=(1, 2))
    return np.ascontiguousarray(array[:, ::-1])


def oriented_wcs(
    wcs: astropy.wcs.WCS | None,
    height: int,
    width: int,
    quarter_turns: int,
    flip_x: bool,
    output_size: int,
) -> astropy.wcs.WCS | None:
    """Return the WCS of a picture `orient_picture` makes.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS` or `None`
        The celestial WCS of the ``(height, width)`` channels, if any.
    height, width : `int`
        Shape of the channels.
    quarter_turns, flip_x, output_size
        As given to `orient_picture`.

    Returns
    -------
    picture_wcs : `astropy.wcs.WCS` or `None`
        The picture's WCS (FITS pixel (1, 1) at the bottom left); ``wcs``
        itself if the picture is the stamp's own pixel grid, `None`
        without ``wcs``.
    """
    if wcs is None:
        return None
    # The picture in "y-up" orientation: p = M q + t.
    matrix = np.eye(2)
    offset = np.zeros(2)
    if flip_x:
        matrix = np.array([[-1.0, 0.0], [0.0, 1.0]])
        offset = np.array([width - 1.0, 0.0])
    h, w = height, width
    for _ in range(quarter_turns):
        # Counter-clockwise quarter turn of a y-up picture: the old pixel
        # (x, y) goes to (H-1-y, x); so old = (v, H-1-u).
        turn = np.array([[0.0, 1.0], [-1.0, 0.0]])
        matrix, offset = matrix @ turn, matrix @ np.array([0.0, h - 1.0]) + offset
        h, w = w, h
    if output_size and (h != output_size or w != output_size):
        scale_x = w / output_size
        scale_y = h / output_size
        resize = np.diag([scale_x, scale_y])
        # Output pixel centre u maps to input (u + 0.5) * s - 0.5.
        matrix, offset = (
            matrix @ resize,
            matrix @ np.array([0.5 * scale_x - 0.5, 0.5 * scale_y - 0.5]) + offset,
        )
    if offset.any() or not np.array_equal(matrix, np.eye(2)):
        return affine_wcs(wcs, matrix, offset)
    return wcs  # The stamp's own pixel grid: its WCS as is.
