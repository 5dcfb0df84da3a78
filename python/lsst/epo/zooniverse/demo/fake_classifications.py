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

"""FAKE volunteers: a generated classification export in Zooniverse's CSV
format, for the tutorial, the tests and the benchmark.

Nothing here comes from Zooniverse or from real people.  The rows have the
columns and JSON shapes of Panoptes' export (doc/classifications.md): a
question task ``T0`` (one answer), a question task ``T1`` (several
answers) and a drawing task ``T2`` (marks with a tool label); ``retired``
in ``subject_data`` is the workflow status record Panoptes writes.
"""

from __future__ import annotations

__all__ = ["FAKE_ANSWERS", "FAKE_FEATURES", "fake_classification_rows", "write_fake_classification_export"]

import csv
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..zooniverse.classification_export import EXPORT_COLUMNS

FAKE_ANSWERS = ("Galaxy", "Star", "Artefact")
"""Answers of the fake single-answer question T0."""

FAKE_FEATURES = ("Spiral arms", "Bar", "Companion")
"""Answers of the fake multiple-answer question T1."""


# Long: the docstring lists every knob, and one row's cells are spelled out
# in export column order so that the format is visible in one place.
def fake_classification_rows(
    subjects: Mapping[str, Mapping[str, Any]],
    *,
    n_rows: int,
    workflow_id: str = "101",
    workflow_name: str = "Is it a galaxy? (FAKE volunteers)",
    workflow_version: str = "3.1",
    star_probability: Callable[[str, Mapping[str, Any]], float] | None = None,
    retire_after: int | None = 5,
    seed: int = 16,
    first_id: int = 500_000_000,
) -> Iterator[list[str]]:
    """Generate fake classification rows (without the header).

    Parameters
    ----------
    subjects : `~collections.abc.Mapping`
        Subject id → its metadata (as EPO sent it, e.g. ``#object_id``).
    n_rows : `int`
        Classifications to make, spread over the subjects in turn.
    workflow_id, workflow_name, workflow_version : `str`, optional
        The workflow they claim to come from.
    star_probability : `~collections.abc.Callable`, optional
        ``f(subject_id, metadata)`` → chance a fake volunteer says
        ``Star`` (default 0.2).
    retire_after : `int`, optional
        A subject is written as retired from its n-th classification on
        (`None`: never).
    seed : `int`, optional
        Random seed (same seed, same rows).
    first_id : `int`, optional
        First classification id.

    Yields
    ------
    row : `list` [`str`]
        The cells, in `EXPORT_COLUMNS` order.
    """
    rng = random.Random(seed)
    ids = list(subjects)
    position = {sid: i for i, sid in enumerate(ids)}
    seen: dict[str, int] = {}
    metadata_json = json.dumps(
        {"source": "FAKE generated export", "user_language": "en", "classifier_version": "2.0"}
    )
    for k in range(n_rows):
        sid = ids[k % len(ids)]
        seen[sid] = seen.get(sid, 0) + 1
        p_star = star_probability(sid, subjects[sid]) if star_probability else 0.2
        draw = rng.random()
        answer = "Star" if draw < p_star else ("Artefact" if draw > 0.97 else "Galaxy")
        features = [f for f in FAKE_FEATURES if answer == "Galaxy" and rng.random() < 0.3]
        marks = [
            {
                "x": round(rng.uniform(0, 100), 1),
                "y": round(rng.uniform(0, 100), 1),
                "tool": 0,
                "frame": 0,
                "details": [],
                "tool_label": "Neighbour",
            }
            for _ in range(rng.randrange(3))
        ]
        annotations = [
            {"task": "T0", "task_label": "Is it a galaxy, a star or an artefact?", "value": answer},
            {"task": "T1", "task_label": "Which features do you see?", "value": features},
            {"task": "T2", "task_label": "Mark every neighbour.", "value": marks},
        ]
        retired: Any = None
        if retire_after is not None:
            retired = {
                "id": 70_000 + position[sid],
                "workflow_id": int(workflow_id) if workflow_id.isdigit() else workflow_id,
                "subject_id": int(sid) if sid.isdigit() else sid,
                "classifications_count": seen[sid],
                "retired_at": "2026-12-01T12:00:00.000Z" if seen[sid] >= retire_after else None,
                "retirement_reason": "classification_count" if seen[sid] >= retire_after else None,
            }
        subject_data = {sid: {"retired": retired, **subjects[sid]}}
        user = rng.randrange(40)
        yield [
            str(first_id + k),
            f"fake_volunteer_{user}" if user else "not-logged-in-0f1e2d3c4b5a69788796",
            str(9_000 + user) if user else "",
            "0f1e2d3c4b5a69788796",
            workflow_id,
            workflow_name,
            workflow_version,
            f"2026-12-01 {k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d} UTC",
            "",
            "",
            metadata_json,
            json.dumps(annotations),
            json.dumps(subject_data),
            sid,
        ]


def write_fake_classification_export(
    path: str,
    subjects: Mapping[str, Mapping[str, Any]],
    *,
    n_rows: int,
    extra_rows: Sequence[Sequence[str]] = (),
    **kwargs: Any,
) -> str:
    """Write a FAKE classification export (see the module docstring).

    Parameters
    ----------
    path : `str`
        CSV file to write.
    subjects : `~collections.abc.Mapping`
        Subject id → its metadata.
    n_rows : `int`
        Generated classifications.
    extra_rows : `~collections.abc.Sequence`, optional
        Rows appended as they are (tests add broken ones).
    **kwargs
        Passed to `fake_classification_rows`.

    Returns
    -------
    path : `str`
        ``path``.
    """
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(fake_classification_rows(subjects, n_rows=n_rows, **kwargs))
        writer.writerows(extra_rows)
    return path
