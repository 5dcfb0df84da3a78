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

"""``butler make-zooniverse-demo-repo``: build the demo repository."""

__all__ = ["make_zooniverse_demo_repo"]

import click

from ..demo import make_demo_repo


def make_zooniverse_demo_repo(repo: str, overwrite: bool = False, seed: int = 20261125) -> None:
    """Build the demo repository and print what was made.

    Parameters
    ----------
    repo : `str`
        Directory to create.
    overwrite : `bool`, optional
        Remove ``repo`` first if it exists.
    seed : `int`, optional
        Seed of the synthetic sky.

    Raises
    ------
    click.ClickException
        Raised if ``repo`` exists and ``overwrite`` is false.
    """
    try:
        demo = make_demo_repo(
            repo, overwrite=overwrite, seed=seed, progress=lambda m: click.echo(m, err=True)
        )
    except FileExistsError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"repository:     {demo.root}")
    click.echo(f"collection:     {demo.collection}")
    click.echo(f"deep_coadd:     {demo.n_coadds} datasets")
    click.echo(f"sample catalog: {demo.sample_catalog}")
    click.echo(f"truth catalog:  {demo.truth_catalog}")
