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

"""How this package's storage classes and formatters reach a Butler.

There are three ways (see the README):

1. A new repository: ``butler create --seed-config <CONFIG_DIR>/seed.yaml
   REPO`` (or `make_butler_repo`) writes them into the repository's own
   configuration.
2. An existing repository: put `CONFIG_DIR` on ``DAF_BUTLER_CONFIG_PATH``
   before a Butler is made (the EUPS table does this; pip users
   ``export DAF_BUTLER_CONFIG_PATH=$(python -m
   lsst.epo.zooniverse.butler.config)``
   or call `enable_butler_config` in a notebook).
3. `get_butler` does 2 and checks the result.

`check_butler_config` turns the Butler's bare ``KeyError`` for an unknown
storage class into an error that says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_DIR",
    "CONFIG_PATH_VARIABLE",
    "SEED_CONFIG",
    "STORAGE_CLASS_NAMES",
    "ButlerConfigError",
    "check_butler_config",
    "enable_butler_config",
    "get_butler",
    "make_butler_repo",
]

import os
from pathlib import Path
from typing import Any

CONFIG_DIR = str(Path(__file__).parent / "configs")
"""Directory of this package's Butler configuration (`str`)."""

SEED_CONFIG = os.path.join(CONFIG_DIR, "seed.yaml")
"""Seed configuration for ``butler create --seed-config`` (`str`)."""

CONFIG_PATH_VARIABLE = "DAF_BUTLER_CONFIG_PATH"
"""Environment variable daf_butler reads extra configuration from."""

STORAGE_CLASS_NAMES = ("ZooniverseCutout", "ZooniverseStamps", "ZooniverseRgb", "ZooniverseSkyMap")
"""Storage classes defined by this package."""


class ButlerConfigError(RuntimeError):
    """Raised when a Butler lacks this package's storage classes or
    formatters; the message says how to fix it.
    """


def _fix_text(root: Any = None) -> str:
    where = f" for {root}" if root else ""
    return (
        f"The Butler{where} does not know the epo_zooniverse storage classes/formatters "
        f"({', '.join(STORAGE_CLASS_NAMES)}). Fix: before creating the Butler, "
        f"`export {CONFIG_PATH_VARIABLE}={CONFIG_DIR}` (or `setup epo_zooniverse` with EUPS, or call "
        "lsst.epo.zooniverse.enable_butler_config() in Python); or create new repositories with "
        f"`butler create --seed-config {SEED_CONFIG} REPO`."
    )


def enable_butler_config() -> str:
    """Put this package's Butler configuration on ``DAF_BUTLER_CONFIG_PATH``
    for Butlers made later in this process (and its children).

    Returns
    -------
    value : `str`
        The new value of the variable.

    Notes
    -----
    Call it before creating the Butler, e.g. at the top of an RSP notebook.
    It does nothing if the directory is already on the path.
    """
    current = [p for p in os.environ.get(CONFIG_PATH_VARIABLE, "").split(os.pathsep) if p]
    if os.path.realpath(CONFIG_DIR) not in {os.path.realpath(p) for p in current}:
        current.insert(0, CONFIG_DIR)
    os.environ[CONFIG_PATH_VARIABLE] = os.pathsep.join(current)
    return os.environ[CONFIG_PATH_VARIABLE]


def check_butler_config(butler: Any) -> None:
    """Check that a Butler can read and write this package's datasets.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The Butler to check.

    Raises
    ------
    ButlerConfigError
        Raised if a storage class or its formatter is missing; the message
        names the fix.
    """
    from lsst.daf.butler import DatasetType, StorageClassFactory

    factory = StorageClassFactory()
    problems = []
    dataset_types = []
    for name in STORAGE_CLASS_NAMES:
        try:
            storage_class = factory.getStorageClass(name)
        except KeyError:
            problems.append(f"storage class {name} is not defined")
            continue
        dataset_types.append(DatasetType(f"check_{name.lower()}", butler.dimensions.empty, storage_class))
    datastore = getattr(butler, "_datastore", None)
    if datastore is not None and dataset_types:
        for dataset_type in dataset_types:
            try:
                datastore.validateConfiguration([dataset_type], logFailures=False)
            except Exception:
                problems.append(f"no formatter for storage class {dataset_type.storageClass_name}")
    if problems:
        # A repository's ButlerConfig usually has no "root" entry; where the
        # configuration was read from (configDir) names the repository.
        config = getattr(butler, "_config", None)
        root = None
        if config is not None:
            root = config.get("root", None) or getattr(config, "configDir", None)
        raise ButlerConfigError(f"{_fix_text(root)} Problems: {'; '.join(problems)}.")


def get_butler(repo: str, **kwargs: Any) -> Any:
    """Make a Butler that knows this package's datasets.

    Parameters
    ----------
    repo : `str`
        Repository path or URI.
    **kwargs
        Passed to `lsst.daf.butler.Butler.from_config` (``writeable``,
        ``run``, ``collections``, ...).

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        The Butler, checked with `check_butler_config`.

    Raises
    ------
    ButlerConfigError
        Raised if the configuration still does not reach the Butler.
    """
    from lsst.daf.butler import Butler

    enable_butler_config()
    butler = Butler.from_config(repo, **kwargs)
    check_butler_config(butler)
    return butler


def make_butler_repo(root: str, *, registry_db: str | None = None, **kwargs: Any) -> Any:
    """Create a repository whose own configuration includes this package's
    storage classes and formatters.

    Parameters
    ----------
    root : `str`
        Where to create the repository.
    registry_db : `str`, optional
        SQLAlchemy URL of the registry's database (e.g. an empty
        PostgreSQL database with the ``btree_gist`` extension); by default
        a SQLite file in ``root``.
    **kwargs
        Passed to `lsst.daf.butler.Butler.makeRepo`.

    Returns
    -------
    config : `lsst.daf.butler.Config`
        The repository configuration written.
    """
    from lsst.daf.butler import Butler, Config

    config = Config(SEED_CONFIG)
    if registry_db is not None:
        config["registry", "db"] = registry_db
    return Butler.makeRepo(root, config=config, **kwargs)


if __name__ == "__main__":
    # `python -m lsst.epo.zooniverse.butler.config` prints the directory to
    # put on DAF_BUTLER_CONFIG_PATH.
    print(CONFIG_DIR)
