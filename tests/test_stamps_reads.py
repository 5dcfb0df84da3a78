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

"""Subset reads of Stamps files: by index or object id, touching only a small
part of the file; refusals of inconsistent files; non-seekable streams.
"""

import io
import os

import astropy.io.fits as fits
import numpy as np
import pytest
from stamps_test_utils import (
    CountingReader,
    make_many,
    make_stamps,
    no_astropy_reader,
    same_reads,
)

import lsst.epo.zooniverse.formats.stamps as stamps_module
from lsst.epo.zooniverse.formats.stamps import (
    read_stamps,
    read_stamps_index,
    write_stamps,
)


@pytest.fixture(scope="module")
def many_file(tmp_path_factory):
    stamps = make_many()
    path = str(tmp_path_factory.mktemp("many") / "many.fits")
    write_stamps(stamps, path)
    return stamps, path


def test_subset_read_by_index_reads_little(many_file):
    stamps, path = many_file
    size = os.path.getsize(path)
    reader = CountingReader(path)
    subset = read_stamps(reader, indices=[1])
    assert len(subset) == 1 and subset[0].equals(stamps[1])
    assert subset.metadata == {"BAND": "z"}
    assert reader.bytes_read < 0.15 * size, (reader.bytes_read, size)

    reader = CountingReader(path)
    subset = read_stamps(reader, object_ids=["4000002", "4000000"])
    assert subset.object_ids == ["4000002", "4000000"]
    assert subset[0].equals(stamps[2]) and subset[1].equals(stamps[0])
    assert reader.bytes_read < 0.15 * size, (reader.bytes_read, size)

    # The index alone: the primary header only.
    reader = CountingReader(path)
    index = read_stamps_index(reader)
    assert list(index["object_id"]) == stamps.object_ids
    assert list(index["bbox_x0"]) == [10 * k for k in range(60)]
    assert reader.bytes_read < 0.05 * size

    # A late stamp and a full read still give the right data.
    late = read_stamps(path, indices=[59, 30, 30])
    assert [s.object_id for s in late] == ["4000059", "4000030", "4000030"]
    assert late[0].equals(stamps[59])
    assert read_stamps(CountingReader(path)).equals(stamps)


def test_read_without_variance_skips_its_bytes(many_file, monkeypatch):
    stamps, path = many_file
    size = os.path.getsize(path)
    full_reader = CountingReader(path)
    read_stamps(full_reader)
    reader = CountingReader(path)
    light = read_stamps(reader, use_variance=False)
    assert not light.use_variance and light.use_mask
    assert len(light) == len(stamps) and light.object_ids == stamps.object_ids
    for got, original in zip(light, stamps):
        assert got.variance is None
        np.testing.assert_array_equal(got.image, original.image)
        np.testing.assert_array_equal(got.mask, original.mask)
        assert (got.x0, got.y0, got.coverage) == (original.x0, original.y0, original.coverage)
    # The variance pixels are not read (the headers still are).
    variance_bytes = sum(stamp.variance.nbytes for stamp in stamps)
    assert full_reader.bytes_read - reader.bytes_read >= variance_bytes, (reader.bytes_read, size)
    # With a subset, and through the astropy reader (the reference).
    subset = read_stamps(path, indices=[59, 3], use_variance=False)
    assert [s.object_id for s in subset] == ["4000059", "4000003"]
    assert subset[0].variance is None and np.array_equal(subset[1].image, stamps[3].image)
    reference = stamps_module._read_stamps_astropy(path, None, None, "reference", False)
    no_astropy_reader(monkeypatch)
    same_reads(read_stamps(path, use_variance=False), reference)
    assert read_stamps(path, use_variance=True).equals(stamps)


def test_subset_read_errors(many_file):
    _, path = many_file
    with pytest.raises(ValueError, match="out of range"):
        read_stamps(path, indices=[60])
    with pytest.raises(ValueError, match="out of range"):
        read_stamps(path, indices=[-1])
    with pytest.raises(ValueError, match="object ids"):
        read_stamps(path, object_ids=["4000000", "nope"])
    with pytest.raises(ValueError, match="not both"):
        read_stamps(path, indices=[0], object_ids=["4000000"])


def test_inconsistent_files_are_refused(tmp_path):
    stamps = make_stamps()
    path = str(tmp_path / "good.fits")
    write_stamps(stamps, path)

    # Fewer stamp HDUs than N_STAMPS.
    truncated = str(tmp_path / "truncated.fits")
    with fits.open(path) as hdul:
        fits.HDUList([hdu.copy() for hdu in hdul[:7]]).writeto(truncated)
    with pytest.raises(ValueError, match="N_STAMPS"):
        read_stamps(truncated)
    with pytest.raises(ValueError, match="stamp 3"):
        read_stamps(truncated, indices=[2])

    # N_STAMPS disagreeing with the per-stamp arrays.
    wrong_n = str(tmp_path / "wrong_n.fits")
    with fits.open(path) as hdul:
        hdul[0].header["N_STAMPS"] = 2
        hdul.writeto(wrong_n)
    with pytest.raises(ValueError, match="N_STAMPS=2"):
        read_stamps(wrong_n)
    with pytest.raises(ValueError, match="N_STAMPS=2"):
        read_stamps_index(wrong_n)

    # An extension that is neither IMAGE, MASK, VARIANCE nor a table.
    unknown = str(tmp_path / "unknown.fits")
    with fits.open(path) as hdul:
        hdus = [hdu.copy() for hdu in hdul] + [fits.ImageHDU(np.zeros((2, 2), np.float32), name="PSF")]
        fits.HDUList(hdus).writeto(unknown)
    with pytest.raises(ValueError, match="unknown extension type 'PSF'"):
        read_stamps(unknown)

    # Not a Stamps file at all.
    plain = str(tmp_path / "plain.fits")
    fits.PrimaryHDU(np.zeros((2, 2), np.float32)).writeto(plain)
    with pytest.raises(ValueError, match="not a Stamps file"):
        read_stamps(plain)


def test_reader_non_seekable_stream(many_file):
    stamps, path = many_file
    with open(path, "rb") as stream:
        data = stream.read()

    class Pipe(io.RawIOBase):
        def __init__(self):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._data.read(min(len(buffer), 1000))  # Short reads.
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert read_stamps(Pipe()).equals(stamps)
    assert read_stamps(io.BufferedReader(Pipe()), indices=[59])[0].equals(stamps[59])
