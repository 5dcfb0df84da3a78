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
BPS jobs reading quantum graphs on Python 3.12.0-3.12.8 / 3.13.0-3.13.1:
the patch, its installation at interpreter start-up by
``python -m epo_zooniverse_zipfile_fix install`` and the shipped BPS site
and clustering refusing an affected Python without it.  Nothing here
touches this environment's site-packages: the command runs in a throw-away
virtual environment, and the refusal in interpreters started without
their site directories (``-S``).
"""

import os
import random
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import epo_zooniverse_zipfile_fix as fix
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where the module is found: the source tree (editable install) or this
# environment's site-packages, which holds the other packages too.
MODULE_DIR = os.path.dirname(fix.__file__)
PURELIB = sysconfig.get_path("purelib")


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
    """BPS job processes are new interpreters: the .pth file the set-up
    installs patches them at start-up on affected Pythons."""
    code = (
        "import sys, zipfile; sys.path.insert(0, sys.argv[1]); import test_zipfile_fix as t; "
        "members = t.make_archive(sys.argv[2]); "
        "import epo_zooniverse_zipfile_fix as f; "
        "print(zipfile.ZipExtFile.seek.__module__, t.interleaved_mismatches(sys.argv[2], members), "
        "f.active_at_startup())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__), str(tmp_path / "y.zip")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if fix.affected():
        assert out == ["epo_zooniverse_zipfile_fix", "0", "True"]
    else:
        assert out[1] == "0"


@pytest.mark.skipif(not fix.affected(), reason="this Python's zipfile has no seek bug to show")
def test_the_bug_is_real_on_this_python(tmp_path, monkeypatch):
    members = make_archive(tmp_path / "x.zip")
    monkeypatch.setattr(zipfile.ZipExtFile, "seek", fix._original_seek)
    assert interleaved_mismatches(tmp_path / "x.zip", members) > 0


def run(python, *args, **kwargs):
    return subprocess.run([str(python), *args], capture_output=True, text=True, **kwargs)


def test_install_command_in_a_fresh_environment(tmp_path):
    """``python -m epo_zooniverse_zipfile_fix install`` writes the .pth
    into the running environment's site-packages, and every new
    interpreter of that environment then patches zipfile at start-up.
    """
    env_dir = tmp_path / "env"
    run(sys.executable, "-m", "venv", "--without-pip", str(env_dir), check=True)
    python = env_dir / "bin" / "python"
    site_dir = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    assert site_dir.is_dir() and site_dir.is_relative_to(env_dir)
    # Only the module: nothing of this environment's start-up files.
    (site_dir / "deps.pth").write_text(f"{MODULE_DIR}\n")
    probe = (
        "import zipfile, epo_zooniverse_zipfile_fix as f; "
        "print(zipfile.ZipExtFile.seek.__module__, f.active_at_startup())"
    )
    assert run(python, "-c", probe, check=True).stdout.split() == ["zipfile", "False"]
    status = run(python, "-m", "epo_zooniverse_zipfile_fix", "status")
    assert status.returncode == (1 if fix.affected() else 0), status
    if fix.affected():
        assert "does NOT patch" in status.stdout and "-m epo_zooniverse_zipfile_fix install" in status.stderr

    result = run(python, "-m", "epo_zooniverse_zipfile_fix", "install")
    assert result.returncode == 0, result
    pth = site_dir / fix.PTH_NAME
    if fix.affected():
        assert pth.is_file() and "Installed" in result.stdout
        assert run(python, "-c", probe, check=True).stdout.split() == ["epo_zooniverse_zipfile_fix", "True"]
        status = run(python, "-m", "epo_zooniverse_zipfile_fix", "status")
        assert status.returncode == 0 and "a new interpreter patches it" in status.stdout, status
        # Idempotent, as setup_env.sh runs it every time.
        assert run(python, "-m", "epo_zooniverse_zipfile_fix", "install").returncode == 0
        assert sorted(p.name for p in site_dir.glob("*.pth")) == ["deps.pth", fix.PTH_NAME]
    else:
        assert not pth.exists() and "nothing to install" in result.stdout

    # Uninstalled, a new interpreter is unpatched; a .pth left behind by an
    # uninstalled package does nothing, silently.
    assert run(python, "-m", "epo_zooniverse_zipfile_fix", "uninstall", check=True).returncode == 0
    assert not pth.exists()
    assert run(python, "-c", probe, check=True).stdout.split() == ["zipfile", "False"]
    fix.install_pth(site_dir)
    (site_dir / "deps.pth").unlink()
    leftover = run(python, "-c", "import zipfile; print(zipfile.ZipExtFile.seek.__module__)", check=True)
    assert leftover.stdout.split() == ["zipfile"] and leftover.stderr == ""


REFUSAL_PROBE = """
import site, sys
module_dir, purelib, submit_file, site_dir = sys.argv[1:]
sys.path[:0] = [module_dir, purelib]  # No .pth file of either is run.
import epo_zooniverse_zipfile_fix as fix
fix.affected = lambda version=None: True  # Any Python: behave as 3.13.0.
from lsst.ctrl.bps import BpsConfig
from lsst.epo.zooniverse.pipeline import bps_clustering
from lsst.epo.zooniverse.pipeline.bps_site import QuickStartLocal

bps_clustering.dimension_clustering = lambda config, qgraph, name: "clustered"
site_config = QuickStartLocal.from_config(BpsConfig(submit_file))


def attempts():
    for call in (
        lambda: type(site_config.get_parsl_config()).__name__,
        lambda: bps_clustering.balanced_dimension_clustering(BpsConfig({}), None, "x"),
    ):
        try:
            print(call())
        except fix.ZipfileBugError as error:
            print("refused:", error)


attempts()
site.addsitedir(site_dir)  # What site does at start-up, with the .pth.
print("active:", fix.active_at_startup())
attempts()
"""


def test_shipped_bps_site_and_clustering_refuse_an_affected_python_without_the_fix(tmp_path):
    """``bps submit`` with the shipped submit file (its site and its
    clustering) refuses on an affected Python that did not patch zipfile
    at start-up, and says which Pythons are fixed and what to run.
    """
    submit_file = ROOT / "config" / "bps" / "zooniverse.yaml"
    text = submit_file.read_text()
    assert "class: lsst.epo.zooniverse.pipeline.bps_site.QuickStartLocal\n" in text
    assert (
        "clusterAlgorithm: lsst.epo.zooniverse.pipeline.bps_clustering.balanced_dimension_clustering\n"
        in text
    )
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    fix.install_pth(site_dir)
    result = run(
        sys.executable, "-S", "-c", REFUSAL_PROBE, MODULE_DIR, PURELIB, str(submit_file), str(site_dir)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    site_refusal, clustering_refusal, active, *after = lines
    assert site_refusal.startswith("refused: bps submit with QuickStartLocal refuses to run on Python ")
    assert clustering_refusal.startswith("refused: bps clustering with balanced_dimension_clustering refuses")
    for message in (site_refusal, clustering_refusal):
        assert "gh-127847" in message and "EOFError" in message
        assert "3.12.9 or a later 3.12, 3.13.2 or a later 3.13" in message
        assert f"`{sys.executable} -m epo_zooniverse_zipfile_fix install`" in message
    # With the .pth processed as at start-up, both go ahead.
    assert active == "active: True"
    assert after == ["Config", "clustered"]


def test_setup_installs_it_with_the_command():
    text = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert '"$venv/bin/python" -m epo_zooniverse_zipfile_fix install' in text


def test_refusal_only_on_affected_pythons(monkeypatch):
    monkeypatch.setattr(fix, "_active_at_startup", False)
    monkeypatch.setattr(fix, "affected", lambda version=None: False)
    fix.require_active("this")  # A fixed Python needs nothing.
    monkeypatch.setattr(fix, "affected", lambda version=None: True)
    with pytest.raises(fix.ZipfileBugError, match=r"^this refuses to run on Python .*gh-127847"):
        fix.require_active("this")
