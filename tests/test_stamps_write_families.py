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

"""Tests of the Stamps writer's shortcuts (formats/stamps_writer.py,
formats/fits_block_writer.py): headers made once per family of stamps,
the CRPIX cards of a reference pixel seen before, per-stamp primary arrays
formatted in one pass and stamps written through one buffer.  Every file
must be byte-identical to the astropy writer's (the reference), whatever
mix of stamps it holds.
"""

import io
import math

import numpy as np
import pytest
from astropy.wcs import WCS, Sip
from stamps_test_utils import astropy_bytes
from zooniverse_test_utils import tan_sip_wcs

from lsst.epo.zooniverse.formats import fits_block_writer, fits_cards, stamps_writer
from lsst.epo.zooniverse.formats.stamp_cutting import cut_stamp
from lsst.epo.zooniverse.formats.stamps import DEFAULT_MASK_PLANES, Stamp, Stamps, write_stamps
from lsst.epo.zooniverse.formats.wcs_metadata import CrpixTemplates


def _tan(crval=(150.0, 2.2), crpix=(1050.5, 1050.5)):
    """A tract-like TAN WCS with its native pole (PV1_3/PV1_4)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = [[-5.5555555555556e-05, 0.0], [0.0, 5.5555555555556e-05]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set_pv([(1, 3, 180.0), (1, 4, crval[1])])
    wcs.wcs.set()
    return wcs


def _cut(parent_wcs, positions, sizes, *, use_mask=True, use_variance=True, seed=0, materialise=()):
    """Stamps cut as extractStamps cuts them: views of a parent (copies
    where they leave it), each with the parent's WCS shifted.
    """
    rng = np.random.default_rng(seed)
    shape = (300, 280)
    image = rng.normal(size=shape).astype(np.float32)
    mask = np.where(rng.random(shape) < 0.1, 1 << rng.integers(0, 12, shape), 0).astype(np.int32)
    variance = rng.uniform(1, 2, shape).astype(np.float32)
    parent_x0, parent_y0 = 1000, 2000
    stamps = Stamps(
        metadata={"SKYMAP": "s", "TRACT": 9813, "PATCH": 40, "BAND": "r", "BUNIT": "nJy"},
        mask_planes=dict(DEFAULT_MASK_PLANES, CROSSTALK=11),
        use_mask=use_mask,
        use_variance=use_variance,
    )
    for k, ((x, y), size) in enumerate(zip(positions, sizes)):
        x0, y0 = parent_x0 + x - size // 2, parent_y0 + y - size // 2
        stamp = cut_stamp(
            image,
            mask,
            variance if use_variance else None,
            parent_x0=parent_x0,
            parent_y0=parent_y0,
            x0=x0,
            y0=y0,
            width=size,
            height=size,
            share=True,
            ra=150.0 + k * 1e-3,
            dec=2.2 - k * 1e-3,
            object_id=str(1000 + k),
            edge_distance=float(k) - 3.5,
        )
        if parent_wcs is not None:
            stamp.set_shifted_wcs(parent_wcs, x0 - parent_x0, y0 - parent_y0)
            if k in materialise:
                assert stamp.wcs is not None  # Its own WCS from now on.
        stamps.append(stamp)
    return stamps


def _fast_bytes(stamps):
    buffer = io.BytesIO()
    assert stamps_writer.write_stamps_fast(stamps, buffer) is True
    return buffer.getvalue()


_POSITIONS = [(50, 60), (0, 0), (279, 299), (140, 150), (10, 290), (-20, 100), (200, 5), (141, 151)]


def _cases():
    """(name, function making the stamps): the mixes the writer meets."""
    sizes = [11] * len(_POSITIONS)
    mixed = [11, 15, 11, 4, 15, 11, 1, 11]
    sip = tan_sip_wcs()
    sip.wcs.crpix = [1.0, 1.0]
    sip.sip = Sip(sip.sip.a, sip.sip.b, None, None, [1.0, 1.0])
    return {
        "one family, edges": lambda: _cut(_tan(), _POSITIONS, sizes),
        "sizes mixed": lambda: _cut(_tan(), _POSITIONS, mixed),
        "no mask": lambda: _cut(_tan(), _POSITIONS, mixed, use_mask=False),
        "no variance": lambda: _cut(_tan(), _POSITIONS, sizes, use_variance=False),
        "image only": lambda: _cut(_tan(), _POSITIONS, sizes, use_mask=False, use_variance=False),
        "no WCS": lambda: _cut(None, _POSITIONS, mixed),
        "some WCS made": lambda: _cut(_tan(), _POSITIONS, mixed, materialise={1, 4, 5}),
        "SIP parent": lambda: _cut(sip, _POSITIONS, sizes),
        "zero CRPIX": lambda: _zero_crpix(),
        "fractional CRPIX": lambda: _cut(_tan(crpix=(1050.25, 33.125)), _POSITIONS, sizes),
        "two parents": lambda: _two_parents(),
        "runs of sizes": lambda: _runs_of_sizes(),
    }


def _zero_crpix():
    """Stamps with CRPIX1 -0.0 (one parent) and 0.0 (another parent of the
    same family): one cache key, two cards.
    """
    negative = _cut(_tan(crpix=(-0.0, 10.0)), [(5, 5), (0, 0)], [11, 1])
    positive = _cut(_tan(crpix=(5.0, 10.0)), [(10, 5), (3, 3)], [11, 7])
    assert [float(s.wcs.wcs.crpix[0]) for s in _cut(_tan(crpix=(-0.0, 10.0)), [(5, 5)], [11])] == [0.0]
    stamps = Stamps(metadata=negative.metadata, mask_planes=negative.mask_planes)
    for a, b in zip(negative, positive):
        stamps.append(a)
        stamps.append(b)
    return stamps


def _runs_of_sizes():
    """Runs of stamps of one size, longer and shorter than the stamps of
    one size that fill the writer's buffer, with stamps whose WCS is their
    own and stamps at the edges in between.
    """
    rng = np.random.default_rng(7)
    sizes = [11] * 30 + [15] * 50 + [4] + [11] * 119 + [1] * 3
    positions = [(int(x), int(y)) for x, y in rng.uniform(-5, 285, (len(sizes), 2))]
    return _cut(_tan(), positions, sizes, materialise={31, 150})


def _two_parents():
    first = _cut(_tan(), _POSITIONS, [11] * len(_POSITIONS))
    second = _cut(_tan(crval=(10.0, -30.0), crpix=(-3.5, 7e8)), _POSITIONS[::-1], [9] * len(_POSITIONS))
    mixed = Stamps(metadata=first.metadata, mask_planes=first.mask_planes)
    for a, b in zip(first, second):
        mixed.append(a)
        mixed.append(b)
    return mixed


@pytest.mark.parametrize("name", list(_cases()))
def test_families_byte_identical_to_astropy(name):
    make = _cases()[name]
    expected = astropy_bytes(make())
    # Twice: the second file finds the CRPIX cards of the first.
    assert _fast_bytes(make()) == expected
    assert _fast_bytes(make()) == expected


def test_another_band_does_not_ask_wcslib_again(monkeypatch):
    calls = []
    cards = CrpixTemplates.cards

    def counting(self, wcs):
        calls.append(tuple(wcs.wcs.crpix))
        return cards(self, wcs)

    monkeypatch.setattr(CrpixTemplates, "cards", counting)
    parent = _tan(crval=(33.0, -4.0), crpix=(777.5, 888.5))
    first = _fast_bytes(_cut(parent, _POSITIONS, [11] * len(_POSITIONS)))
    assert len(calls) == len(_POSITIONS)
    # The same objects in another band: another parent object, same WCS.
    band = _cut(_tan(crval=(33.0, -4.0), crpix=(777.5, 888.5)), _POSITIONS, [11] * len(_POSITIONS), seed=1)
    second = _fast_bytes(band)
    assert len(calls) == len(_POSITIONS) + 1  # Only the first stamp of the parent.
    assert second == astropy_bytes(band) and first != second


class CountingStream(io.BytesIO):
    """A file that counts the calls to write."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def write(self, data):
        self.calls += 1
        return super().write(data)


def test_stamps_go_to_the_file_in_few_writes():
    positions = [(int(x), int(y)) for x, y in np.random.default_rng(3).uniform(0, 280, (300, 2))]
    stamps = _cut(_tan(), positions, [41] * len(positions))
    stream = CountingStream()
    assert stamps_writer.write_stamps_fast(stamps, stream) is True
    size = len(stream.getvalue())
    assert size == len(astropy_bytes(stamps))
    assert stream.calls <= math.ceil(size / fits_block_writer.BUFFER_SIZE) + 1 < len(stamps)


def test_stamp_larger_than_the_buffer(tmp_path):
    side = 520  # 3 planes of 1.08 MB: larger than the buffer below.
    rng = np.random.default_rng(4)
    big = Stamp(
        rng.normal(size=(side, side)).astype(np.float32),
        mask=np.zeros((side, side), np.int32),
        variance=np.ones((side, side), np.float32),
        x0=-7,
        y0=12,
    )
    small = _cut(_tan(), _POSITIONS, [11] * len(_POSITIONS))
    stamps = Stamps([small[0], big, small[1], small[2], big], metadata={"BAND": "g"})
    stream = io.BytesIO()
    writer = fits_block_writer.BlockWriter(stream, size=2880 * 200)
    writer.write(b"x" * 2880 * 150)
    offset = writer.reserve(3 * 2880 * 380)
    assert offset == 0 and len(writer.buffer) == 3 * 2880 * 380  # Its own buffer.
    writer.view[:] = b"y" * len(writer.view)
    assert writer.reserve(2880) == 0 and len(writer.buffer) == 2880 * 200  # Back to the usual size.
    writer.view[:2880] = b"z" * 2880
    writer.flush()
    assert stream.getvalue() == b"x" * 2880 * 150 + b"y" * 3 * 2880 * 380 + b"z" * 2880
    path = tmp_path / "big.fits"
    write_stamps(stamps, path)
    assert path.read_bytes() == astropy_bytes(stamps)


def test_array_cards_are_the_cards_one_by_one():
    cards = fits_cards.CardFormatter()
    values = {
        "RA_DEG": [150.0, -0.0, 0.1, 1e-300, 1e300, math.nan, math.inf, 2.0 / 3.0, np.float32(0.1), 7],
        "OBJ_ID": ["", "a", "o'c", "x" * 67, "y" * 69, "z" * 80, "a: 1", None],
        "BBOX_X0": [0, -1, 10**19, -(10**20), np.int64(5), True],
        "HIERARCH_LONG": [1, 2.5, "s"],
        "lower": [1.0, "x"],
        # Arrays of one kind (formatted in one pass).
        "BBOX_W": [0, 1, -1, 10**19 - 1, -(10**19) + 1, 12345],
        "BBOX_H": [7, 10**19],
        "BBOX_Y0": [5, -(10**19)],
        "COVERAGE": [0.0, -0.0, 1.0, 0.1, 2.0 / 3.0, 1e-05, 1e16, 1.5e300, -1.2345678901234567e-300],
        "EDGEDIST": [1.0, math.inf],
        "DEC_DEG": [1.0, math.nan],
        "RA_ERR": [1.0, 2],
        "TRACT": [1, 2.0],
        "PATCH": [],
    }
    for key, listed in values.items():
        assert cards.array_cards(key, listed) == [cards.card(key, value) for value in listed], key


def test_preallocated_file_is_cut_at_its_end(tmp_path):
    path = tmp_path / "short.fits"
    with fits_block_writer.open_for_writing(path) as stream:
        writer = fits_block_writer.BlockWriter(stream, size=2880 * 4)
        writer.preallocate(2880 * 10)
        for k in range(6):
            writer.write(bytes([k]) * 2880)
        writer.flush()
    assert path.read_bytes() == b"".join(bytes([k]) * 2880 for k in range(6))
    # Written longer than preallocated: the file grows as usual.
    with fits_block_writer.open_for_writing(path) as stream:
        writer = fits_block_writer.BlockWriter(stream, size=2880 * 4)
        writer.preallocate(2880)
        writer.write(b"a" * 2880 * 5)
        writer.flush()
    assert path.read_bytes() == b"a" * 2880 * 5


def test_files_of_generic_stamps_have_their_size(tmp_path):
    # Stamps with WCS of their own: the planned size is short of the file's.
    stamps = _cut(_tan(), _POSITIONS, [11, 15, 11, 4, 15, 11, 1, 11], materialise=set(range(8)))
    path = tmp_path / "own.fits"
    write_stamps(stamps, path)
    assert path.read_bytes() == astropy_bytes(stamps)
