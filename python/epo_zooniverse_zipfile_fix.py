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

"""Work around CPython's zipfile seek bug (gh-127847) in affected Pythons.

In Python 3.12.0-3.12.8 and 3.13.0-3.13.1, seeking forward in a stored
(uncompressed) member opened with `zipfile.ZipFile.open` moves the shared
file relative to wherever *another* open member left it and does not
update the member's remaining compressed size.  Interleaved reads of two
members of one archive then return wrong bytes or raise `EOFError`.
pipe_base's quantum-graph files are such archives: ``pipetask run-qbb``
(every BPS job) reads addresses from one member and datasets from another,
and on graphs of a few dozen patches its jobs fail with ``EOFError``.
CPython fixed it in 3.12.9 and 3.13.2.

`install` replaces the stored-member forward seek with an absolute one
(the member's data start plus the new position) that keeps every counter
consistent; other cases go to the original method.  It changes nothing on
fixed Pythons.  BPS jobs are new interpreters, so the patch must be made
at interpreter start-up: ``python -m epo_zooniverse_zipfile_fix install``
writes a ``.pth`` file into the running environment's site-packages that
does it (``scripts/setup_env.sh`` runs that command; ``uninstall`` removes
the file, ``status`` reports).  A plain ``pip install`` cannot ship that
file: setuptools puts a ``.pth`` into a regular wheel only through a
custom ``build_py`` command in a ``setup.py``, and an editable install
(what the set-up does) leaves it out.  The shipped BPS site and
clustering (`lsst.epo.zooniverse.pipeline.bps_site`,
`lsst.epo.zooniverse.pipeline.bps_clustering`) therefore call
`require_active`, which refuses an affected interpreter without the
start-up patch with a message naming the fixed versions and the command.

This is a top-level module with no imports beyond the standard library, to
keep interpreter start-up cheap.
"""

from __future__ import annotations

__all__ = [
    "FIXED_VERSIONS",
    "PTH_NAME",
    "ZipfileBugError",
    "active_at_startup",
    "affected",
    "install",
    "install_pth",
    "main",
    "pth_path",
    "require_active",
    "startup",
    "uninstall_pth",
]

import os
import sys
import zipfile
from pathlib import Path  # Loaded by zipfile anyway.

# Every interpreter of the environment imports this module at start-up:
# what only the command needs is imported when it runs.

_AFFECTED = ((3, 12, 0), (3, 12, 9)), ((3, 13, 0), (3, 13, 2))

FIXED_VERSIONS = "3.12.9 or a later 3.12, 3.13.2 or a later 3.13, 3.14 or later"
"""The CPython releases without the bug, for messages."""

PTH_NAME = "epo_zooniverse_zipfile_fix.pth"
"""Name of the start-up file in site-packages."""

# One line: site executes .pth lines that start with "import".  It does
# nothing (and prints nothing) if the module has been uninstalled since.
_PTH_LINE = (
    "import importlib.util as _u; _u.find_spec('epo_zooniverse_zipfile_fix') "
    "and __import__('epo_zooniverse_zipfile_fix').startup()\n"
)

_active_at_startup = False


def affected(version: tuple[int, ...] | None = None) -> bool:
    """Tell whether a Python version has the zipfile seek bug.

    Parameters
    ----------
    version : `tuple` [`int`, ...], optional
        ``(major, minor, micro)``; the running interpreter's if not given.

    Returns
    -------
    affected : `bool`
        `True` for 3.12.0-3.12.8 and 3.13.0-3.13.1.
    """
    version = tuple(version or sys.version_info[:3])
    return any(low <= version < high for low, high in _AFFECTED)


def _stored_seek(self, offset, whence=os.SEEK_SET):
    if self.closed or not self._seekable or self._compress_type != zipfile.ZIP_STORED or self._decrypter:
        return _original_seek(self, offset, whence)
    if whence == os.SEEK_SET:
        new_pos = offset
    elif whence == os.SEEK_CUR:
        new_pos = self.tell() + offset
    elif whence == os.SEEK_END:
        new_pos = self._orig_file_size + offset
    else:
        return _original_seek(self, offset, whence)
    new_pos = min(max(new_pos, 0), self._orig_file_size)
    if new_pos == 0:
        # The original handles a rewind correctly (it restores the CRC).
        return _original_seek(self, 0, os.SEEK_SET)
    # Stored data: byte new_pos of the member is at a known file offset.
    self._fileobj.seek(self._orig_compress_start + new_pos)
    self._readbuffer = b""
    self._offset = 0
    self._left = self._orig_file_size - new_pos
    self._compress_left = self._orig_compress_size - new_pos
    self._eof = self._left <= 0
    # A CRC over part of the data cannot be checked.
    self._expected_crc = None
    return self.tell()


_original_seek = zipfile.ZipExtFile.seek


def install() -> bool:
    """Patch `zipfile.ZipExtFile.seek` if this Python needs it.

    Returns
    -------
    installed : `bool`
        `True` if the patch is (now) in place.
    """
    if not affected():
        return False
    zipfile.ZipExtFile.seek = _stored_seek
    return True


def startup() -> None:
    """Patch at interpreter start-up; called by the ``.pth`` file only.

    `active_at_startup` then tells that the patch was made this way, which
    means that every interpreter of this environment makes it.
    """
    global _active_at_startup
    _active_at_startup = install()


def active_at_startup() -> bool:
    """Tell whether this interpreter patched zipfile at start-up.

    Returns
    -------
    active : `bool`
        `True` if the ``.pth`` file installed the patch when the
        interpreter started (and it is still in place).
    """
    return _active_at_startup and zipfile.ZipExtFile.seek is _stored_seek


class ZipfileBugError(RuntimeError):
    """Raised when BPS would run on a Python with the zipfile seek bug and
    without the workaround.
    """


def refusal_message(what: str) -> str:
    """Return the paragraph that `require_active` raises with.

    Parameters
    ----------
    what : `str`
        What refuses to run, e.g. ``"bps submit with QuickStartLocal"``.

    Returns
    -------
    message : `str`
        One paragraph: the bug, the fixed Pythons and the command.
    """
    version = ".".join(str(part) for part in sys.version_info[:3])
    return (
        f"{what} refuses to run on Python {version}: its zipfile module has CPython "
        "bug gh-127847 (interleaved reads of two members of one ZIP archive return wrong "
        "bytes), which makes BPS jobs fail with EOFError reading their quantum graphs, and "
        "this environment does not load this package's workaround at interpreter start-up. "
        f"Use a fixed Python ({FIXED_VERSIONS}), or install the workaround into this "
        f"environment with `{sys.executable} -m epo_zooniverse_zipfile_fix install` "
        "(scripts/setup_env.sh does this) and run again."
    )


def require_active(what: str) -> None:
    """Refuse to go on if this Python has the bug and every interpreter of
    the environment does not patch it at start-up.

    Parameters
    ----------
    what : `str`
        What refuses to run, for the message.

    Raises
    ------
    ZipfileBugError
        Raised on an affected Python where `active_at_startup` is
        `False`.
    """
    if affected() and not active_at_startup():
        raise ZipfileBugError(refusal_message(what))


def pth_path(site_dir: str | os.PathLike | None = None) -> Path:
    """Return where the ``.pth`` file goes.

    Parameters
    ----------
    site_dir : `str` or `os.PathLike`, optional
        Site directory; the running environment's site-packages (its
        ``purelib``) if not given.

    Returns
    -------
    path : `pathlib.Path`
        ``<site_dir>/epo_zooniverse_zipfile_fix.pth``.
    """
    import sysconfig

    return Path(site_dir if site_dir is not None else sysconfig.get_path("purelib")) / PTH_NAME


def install_pth(site_dir: str | os.PathLike | None = None) -> Path:
    """Write the ``.pth`` file that patches every interpreter at start-up.

    Parameters
    ----------
    site_dir : `str` or `os.PathLike`, optional
        Site directory; the running environment's site-packages if not
        given.

    Returns
    -------
    path : `pathlib.Path`
        The file written (replaced atomically if it was there).
    """
    path = pth_path(site_dir)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(_PTH_LINE)
    os.replace(tmp, path)
    return path


def uninstall_pth(site_dir: str | os.PathLike | None = None) -> Path | None:
    """Remove the ``.pth`` file.

    Parameters
    ----------
    site_dir : `str` or `os.PathLike`, optional
        Site directory; the running environment's site-packages if not
        given.

    Returns
    -------
    path : `pathlib.Path` or `None`
        The file removed; `None` if there was none.
    """
    path = pth_path(site_dir)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def _fresh_interpreter_active() -> bool:
    import subprocess

    code = "import sys, epo_zooniverse_zipfile_fix as f; sys.exit(0 if f.active_at_startup() else 1)"
    return subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL).returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m epo_zooniverse_zipfile_fix install|uninstall|status``.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Arguments; ``sys.argv[1:]`` if not given.

    Returns
    -------
    status : `int`
        0 on success.  ``status`` returns 1 if this Python is affected and
        a new interpreter of the environment does not patch it.
    """
    import argparse
    import sysconfig

    parser = argparse.ArgumentParser(
        prog="python -m epo_zooniverse_zipfile_fix",
        description=(
            "Install, remove or check the start-up workaround for CPython's zipfile seek "
            f"bug gh-127847 (Python 3.12.0-3.12.8 and 3.13.0-3.13.1; fixed in {FIXED_VERSIONS})."
        ),
    )
    parser.add_argument("command", choices=("install", "uninstall", "status"))
    parser.add_argument(
        "--site-dir",
        help="site directory for the .pth file (default: this environment's site-packages, "
        f"{sysconfig.get_path('purelib')})",
    )
    args = parser.parse_args(argv)
    version = ".".join(str(part) for part in sys.version_info[:3])
    path = pth_path(args.site_dir)
    if args.command == "uninstall":
        removed = uninstall_pth(args.site_dir)
        print(f"Removed {removed}." if removed else f"Nothing to remove: no {path}.")
        return 0
    if args.command == "install":
        if not affected():
            removed = uninstall_pth(args.site_dir)
            print(
                f"Python {version} ({sys.executable}) does not have the bug; nothing to install"
                + (f" (removed the stale {removed})." if removed else ".")
            )
            return 0
        try:
            install_pth(args.site_dir)
        except OSError as error:
            print(f"Cannot write {path}: {error}", file=sys.stderr)
            return 1
        print(f"Installed {path}: interpreters of {sys.executable} patch zipfile at start-up.")
        if args.site_dir is None and not _fresh_interpreter_active():
            print(
                f"But a new {sys.executable} does not load it: is {path.parent} one of its site "
                "directories, and is epo_zooniverse_zipfile_fix importable at start-up?",
                file=sys.stderr,
            )
            return 1
        return 0
    # status
    if not path.exists():
        state = "has no .pth file"
    elif path.read_text() != _PTH_LINE:
        state = "has an outdated .pth file (run install)"
    else:
        state = "has the .pth file"
    if not affected():
        print(f"Python {version} ({sys.executable}) does not have the bug; {path.parent} {state}.")
        return 0
    active = _fresh_interpreter_active()
    print(
        f"Python {version} ({sys.executable}) has the bug; {path.parent} {state}; "
        + ("a new interpreter patches it at start-up." if active else "a new interpreter does NOT patch it.")
    )
    if not active:
        print(f"Run: {sys.executable} -m epo_zooniverse_zipfile_fix install", file=sys.stderr)
    return 0 if active else 1


if __name__ == "__main__":
    sys.exit(main())
