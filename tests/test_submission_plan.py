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

"""Splitting a catalog's tracts into ``bps submit`` commands
(`lsst.epo.zooniverse.pipeline.submission_plan`); the commands running side
by side are in tests/test_side_by_side_submissions.py.
"""

from __future__ import annotations

import datetime
import re
import shlex
import subprocess

import pytest

from lsst.epo.zooniverse.pipeline.submission_plan import plan_name, plan_submissions, split_evenly
from lsst.epo.zooniverse.script.plan_zooniverse_submissions import shell_line


@pytest.mark.parametrize(
    ("n_tracts", "per_part", "sizes"),
    [
        (23, 10, [8, 8, 7]),
        (20, 10, [10, 10]),
        (21, 10, [7, 7, 7]),
        (3, 10, [3]),
        (5, 1, [1, 1, 1, 1, 1]),
        (0, 10, []),
    ],
)
def test_split_evenly_makes_the_fewest_parts_of_near_equal_size(n_tracts, per_part, sizes):
    tracts = list(range(100, 100 + n_tracts))
    parts = split_evenly(tracts, per_part)
    assert [len(part) for part in parts] == sizes
    assert [t for part in parts for t in part] == tracts


def test_split_evenly_refuses_empty_parts():
    with pytest.raises(ValueError, match="at least 1"):
        split_evenly([1, 2], 0)


def test_plan_gives_each_submission_its_own_run_in_one_chain():
    parts = plan_submissions(
        [9815, 9813, 9814, 9813, 10001],
        skymap="lsst_cells_v1",
        submit_file="my submit.yaml",
        output="u/pi/zooniverse_cutouts",
        tracts_per_submission=2,
        repo="/repo/main",
        plan="20261206T063000Z",
    )
    assert [part.tracts for part in parts] == [(9813, 9814), (9815, 10001)]
    assert {part.output for part in parts} == {"u/pi/zooniverse_cutouts"}
    assert [part.output_run for part in parts] == [
        "u/pi/zooniverse_cutouts/20261206T063000Z/part001",
        "u/pi/zooniverse_cutouts/20261206T063000Z/part002",
    ]
    assert parts[0].data_query == "skymap = 'lsst_cells_v1' AND tract IN (9813, 9814)"
    assert parts[1].command == (
        "bps", "submit", "my submit.yaml", "-b", "/repo/main", "-o", "u/pi/zooniverse_cutouts",
        "--output-run", "u/pi/zooniverse_cutouts/20261206T063000Z/part002",
        "-d", "skymap = 'lsst_cells_v1' AND tract IN (9815, 10001)",
    )  # fmt: skip
    # Parts past 999 widen the number.
    other = plan_submissions(range(1500), skymap="s", submit_file="f", output="o", tracts_per_submission=1)
    assert len({part.output_run for part in other}) == 1500
    assert other[0].output_run.endswith("/part0001") and other[-1].output_run.endswith("/part1500")


def test_plans_made_in_the_same_second_do_not_share_runs():
    # BPS names runs to the second; two plans of one output made at once
    # (two notebooks) must still give every part a run of its own.
    second = datetime.datetime(2026, 12, 6, 6, 30, tzinfo=datetime.UTC)
    names = {plan_name(second) for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"20261206T063000Z-[0-9a-f]{6}", name) for name in names), names
    # Local time is written as UTC.
    eastern = datetime.timezone(datetime.timedelta(hours=-5))
    assert plan_name(datetime.datetime(2026, 12, 6, 1, 30, tzinfo=eastern)).startswith("20261206T063000Z-")
    # A plan's default name is one of these: every part under it.
    parts = plan_submissions([1, 2], skymap="s", submit_file="f", output="o", tracts_per_submission=1)
    assert re.fullmatch(r"o/\d{8}T\d{6}Z-[0-9a-f]{6}/part001", parts[0].output_run)
    assert parts[1].output_run == parts[0].output_run[:-1] + "2"


def test_plan_puts_where_in_every_data_query():
    parts = plan_submissions(
        [1, 2, 3],
        skymap="s",
        submit_file="f",
        output="o/",
        tracts_per_submission=2,
        where="band IN ('g', 'r')",
    )
    assert [part.data_query for part in parts] == [
        "skymap = 's' AND tract IN (1, 2) AND (band IN ('g', 'r'))",
        "skymap = 's' AND tract IN (3) AND (band IN ('g', 'r'))",
    ]
    # A trailing slash does not make an empty name component.
    assert parts[0].output_run.startswith("o/") and "//" not in parts[0].output_run


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"skymap": "lsst' OR 1=1 OR skymap='x"}, "Sky map name"),
        ({"skymap": "a b"}, "Sky map name"),
        ({"skymap": "lsst_cells_v1\n"}, "Sky map name"),
        ({"tracts": []}, "No tract"),
        ({"tracts_per_submission": 0}, "at least 1"),
        ({"output": "u/o\ntouch /tmp/x #"}, "control character"),
        ({"submit_file": "a\rb.yaml"}, "control character"),
        ({"repo": "/repo\tmain"}, "control character"),
        ({"inputs": "a,\x7fb"}, "control character"),
        ({"where": 'band = "g"'}, "double quote"),
        ({"where": "tract > 0) OR (tract >= 0"}, "unbalanced"),
        ({"where": "(tract > 0"}, "unbalanced"),
        ({"output": "/"}, "empty"),
    ],
)
def test_plan_refuses_bad_input(change, message):
    arguments = {"tracts": [1], "skymap": "lsst_cells_v1", "submit_file": "f", "output": "o"} | change
    with pytest.raises(ValueError, match=message):
        plan_submissions(arguments.pop("tracts"), **arguments)


def test_plan_keeps_parentheses_inside_strings():
    (part,) = plan_submissions([1], skymap="s", submit_file="f", output="o", where="band = ')'")
    assert part.data_query.endswith("AND (band = ')')")


def test_catalog_tracts_without_the_dataset_type(tmp_path):
    from lsst.epo.zooniverse.butler.config import get_butler, make_butler_repo
    from lsst.epo.zooniverse.pipeline.submission_plan import catalog_tracts

    make_butler_repo(str(tmp_path / "repo"))
    butler = get_butler(str(tmp_path / "repo"), writeable=True)
    butler.registry.insertDimensionData(
        "skymap", {"name": "s", "hash": b"h", "tract_max": 4, "patch_nx_max": 2, "patch_ny_max": 2}
    )
    butler.collections.register("empty")
    with pytest.raises(LookupError, match="No zooniverse_targets datasets in empty"):
        catalog_tracts(butler, ["empty"], "s")


@pytest.mark.parametrize(
    "command",
    [
        ("bps", "submit", "a b.yaml", "-d", "skymap = 'x' AND tract IN (1, 2)"),
        ("bps", "submit", "f", "-d", 'odd "$HOME" `x` \\ !'),
        ("bps", "submit", "it's", "-o", "u/pi/a;rm -rf /", "-d", "skymap = 'x' AND tract IN (3)"),
    ],
)
def test_shell_line_round_trips_through_sh(command):
    line = shell_line(command, command[-1])
    assert tuple(shlex.split(line)) == command
    # sh itself reads the line back into the same arguments.
    through_sh = subprocess.run(
        ["sh", "-c", "set -- " + line + '; for a in "$@"; do printf "%s\\0" "$a"; done'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert through_sh.stdout == "".join(f"{a}\0" for a in command)
