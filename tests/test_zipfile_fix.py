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

"""The workaround for CPython's zipfile seek bug (gh-127847), which breaks
BPS jobs reading quantum graphs on Python 3.12.0-3.12.8 / 3.13.0-3.13.1.
"""

import os
import random
import subprocess
import sys
import zipfile

import epo_zooniverse_zipfile_fix as fix
import pytest


def make_archive(path):
    rng = random.Random(3)
    members = {"a.bin": rng.randbytes(200_000), "b.bin": rng.randbytes(30_000)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return members


def interleaved_mismatches(path, members, n=400):
    rng = random.Random(4)
    archive = zipfile.ZipFile(path)
    a, b = members["a.bin"], members["b.bin"]
    bad = 0
    with archive.open("a.bin") as stream:
        for _ in range(n):
            with archive.open("b.bin") as other:
                other.seek(rng.randrange(1, len(b) - 100))
                other.read(50)
            offset, size = rng.randrange(1, len(a) - 1000), rng.randrange(1, 1000)
            stream.seek(offset)
            try:
                bad += stream.read(size) != a[offset : offset + size]
            except EOFError:
                bad += 1
        stream.seek(100)
        stream.seek(50, os.SEEK_CUR)
        bad += stream.read(10) != a[150:160]
        stream.seek(-30, os.SEEK_END)
        bad += stream.read() != a[-30:]
        stream.seek(0)
        bad += stream.read() != a
    return bad


def test_affected_versions():
    assert fix.affected((3, 12, 1)) and fix.affected((3, 13, 0)) and fix.affected((3, 12, 8))
    assert not fix.affected((3, 12, 9)) and not fix.affected((3, 13, 2)) and not fix.affected((3, 11, 7))
    assert not fix.affected((3, 14, 0))


def test_patched_seek_reads_interleaved_members_right(tmp_path, monkeypatch):
    members = make_archive(tmp_path / "x.zip")
    monkeypatch.setattr(zipfile.ZipExtFile, "seek", fix._stored_seek)
    assert interleaved_mismatches(tmp_path / "x.zip", members) == 0


def test_every_interpreter_of_the_environment_has_it(tmp_path):
    """BPS job processes are new interpreters: the set-up's .pth file
    patches them at start-up on affected Pythons."""
    code = (
        "import sys, zipfile; sys.path.insert(0, sys.argv[1]); import test_zipfile_fix as t; "
        "members = t.make_archive(sys.argv[2]); "
        "print(zipfile.ZipExtFile.seek.__module__, t.interleaved_mismatches(sys.argv[2], members))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__), str(tmp_path / "y.zip")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if fix.affected():
        assert out == ["epo_zooniverse_zipfile_fix", "0"]
    else:
        assert out[1] == "0"


@pytest.mark.skipif(not fix.affected(), reason="this Python's zipfile has no seek bug to show")
def test_the_bug_is_real_on_this_python(tmp_path, monkeypatch):
    members = make_archive(tmp_path / "x.zip")
    monkeypatch.setattr(zipfile.ZipExtFile, "seek", fix._original_seek)
    assert interleaved_mismatches(tmp_path / "x.zip", members) > 0
