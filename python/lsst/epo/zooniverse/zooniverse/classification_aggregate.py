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

"""Volunteers' answers counted per subject, workflow, task and answer.

`ClassificationAggregator` takes the classifications of an export one at a
time (`~lsst.epo.zooniverse.zooniverse.classification_export.Classification`)
and keeps only counts, so memory grows with the number of distinct
(subject, task, answer) triples, not with the export.

What a task's ``value`` looks like in the export decides how it is counted
(`answers_of`; doc/classifications.md gives the sources):

========== =========================================== =====================
type       ``value`` in the export                     one answer per
========== =========================================== =====================
single     the chosen answer's label (or null)         classification
multiple   a list of labels                            label chosen
survey     a list of ``{"choice": ..., ...}``          species (choice) marked
drawing    a list of marks with ``tool_label``/``tool`` mark (counted per tool)
dropdown   a list of ``{"select_label", "label"}``     menu selection
combo      a list of sub-annotations (``task``)        each sub-task counted
========== =========================================== =====================

Groups are keyed by the workflow's **major** version: Panoptes raises it
when the tasks change, so answers to different questions never mix.
"""

from __future__ import annotations

__all__ = ["AGGREGATE_COLUMNS", "ClassificationAggregator", "answers_of", "is_retired"]

import collections
import dataclasses
from typing import Any

import numpy as np
from astropy.table import Table

from .classification_export import Classification

AGGREGATE_COLUMNS = (
    ("subject_id", str, "Zooniverse subject id"),
    ("workflow_id", str, "Zooniverse workflow id"),
    ("workflow_name", str, "workflow display name (latest seen)"),
    ("workflow_version", str, "major workflow version (its task definitions)"),
    ("workflow_versions", str, "every full version seen for it, comma-separated"),
    ("task", str, "task key (T0, T1, ...)"),
    ("task_label", str, "the task's question or instruction (latest seen)"),
    ("task_type", str, "single, multiple, survey, drawing, dropdown, other or empty"),
    ("answer", str, "answer label, survey choice or drawing tool; empty: gave no answer"),
    ("n_votes", int, "classifications that gave this answer at least once"),
    ("n_marks", int, "times it was given (marks or choices; = n_votes for questions)"),
    ("n_classifications", int, "classifications of the subject that answered this task"),
    ("fraction", float, "n_votes / n_classifications"),
    ("subject_classifications", int, "classifications of the subject in this workflow version"),
    ("retired", bool, "retired in this workflow when the export was made"),
    ("retired_at", str, "when it was retired (empty if unknown or not retired)"),
)
"""Columns of the aggregated table: name, type, description."""


def _tool_name(mark: dict[str, Any]) -> str:
    label = mark.get("tool_label")
    if label:
        return str(label)
    for key in ("tool", "toolIndex", "tool_index"):
        if mark.get(key) is not None:
            return f"tool {mark[key]}"
    return "mark"


def answers_of(value: Any) -> tuple[str, list[str]]:
    """Return the type of a task and the answers one annotation gives.

    Parameters
    ----------
    value : `object`
        The annotation's ``value`` (decoded JSON).

    Returns
    -------
    task_type : `str`
        ``single``, ``multiple``, ``survey``, ``drawing``, ``dropdown``,
        ``other`` (a shape not known here; counted, reported), or
        ``empty`` (an empty list: the task type cannot be told).
    answers : `list` [`str`]
        One entry per answer given (repeated for repeated marks).
    """
    if type(value) is str:
        return "single", [value]
    if value is None:
        return "single", []
    if isinstance(value, str | int | float | bool):
        return "single", [str(value)]
    if not isinstance(value, list):
        return "other", []
    if not value:
        return "empty", []
    if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        return "multiple", [str(v) for v in value]
    if not all(isinstance(v, dict) for v in value):
        return "other", []
    first = value[0]
    if "choice" in first:
        return "survey", [str(v.get("choice")) for v in value]
    if "select_label" in first:
        answers = []
        for v in value:
            chosen = v.get("label", v.get("value"))
            if chosen is not None:
                answers.append(f"{v.get('select_label')}: {chosen}")
        return "dropdown", answers
    if any(k in first for k in ("tool", "toolIndex", "tool_index", "tool_label", "x", "y")):
        return "drawing", [_tool_name(v) for v in value]
    return "other", []


def is_retired(entry: dict[str, Any]) -> tuple[bool, str]:
    """Read a subject's ``retired`` field of ``subject_data``.

    Parameters
    ----------
    entry : `dict`
        The subject's ``subject_data`` entry.

    Returns
    -------
    retired : `bool`
        Whether it was retired in the classification's workflow.
    retired_at : `str`
        When, if the export says (else "").

    Notes
    -----
    Panoptes writes the subject's workflow status record there (``null``
    when there is none, its fields otherwise, ``retired_at`` null until
    retirement); older exports and Panoptes' own tests use a boolean.
    """
    retired = entry.get("retired")
    if isinstance(retired, dict):
        when = retired.get("retired_at")
        return bool(when), str(when) if when else ""
    return retired is True, ""


@dataclasses.dataclass(slots=True)
class _Tally:
    """Counts of one (subject, workflow, major version, task)."""

    task_label: str = ""
    task_type: str = "empty"
    n_classifications: int = 0
    n_answered: int = 0
    votes: dict[str, int] = dataclasses.field(default_factory=dict)
    marks: dict[str, int] = dataclasses.field(default_factory=dict)


class ClassificationAggregator:
    """Count answers per subject, workflow version, task and answer.

    Notes
    -----
    A classification of several subjects (a subject group) counts for each
    of them. ``type_conflicts`` lists the tasks whose answers looked like
    two task types (the first one wins).
    """

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str, str, str], _Tally] = {}
        self.subject_metadata: dict[str, dict[str, Any]] = {}
        self.subject_counts: collections.Counter = collections.Counter()
        self.retired: dict[tuple[str, str], str] = {}
        self.workflow_names: dict[str, str] = {}
        self.workflow_versions: dict[tuple[str, str], collections.Counter] = collections.defaultdict(
            collections.Counter
        )
        self.n_classifications = 0
        self.n_multi_subject = 0
        self.flagged: collections.Counter = collections.Counter()
        self.type_conflicts: dict[tuple[str, str, str], set[str]] = {}
        self.other_values: list[tuple[str, str]] = []

    def _flatten(self, annotations: list[Any], into: dict[str, tuple[str, str, list[str]]]) -> None:
        """Collect (label, type, answers) per task of one classification."""
        for annotation in annotations:
            if not isinstance(annotation, dict) or "task" not in annotation:
                into.setdefault("?", ("", "other", []))
                continue
            value = annotation.get("value")
            task = str(annotation["task"])
            if type(value) is list and value and isinstance(value[0], dict) and "task" in value[0]:
                self._flatten(value, into)  # a combo task: count each sub-task
                continue
            task_type, answers = answers_of(value)
            label = str(annotation.get("task_label") or "")
            if task in into:  # the same task twice in one classification
                old_label, old_type, old_answers = into[task]
                task_type = old_type if task_type == "empty" else task_type
                into[task] = (label or old_label, task_type, old_answers + answers)
            else:
                into[task] = (label, task_type, answers)

    def add(self, classification: Classification) -> None:
        """Count one classification.

        Parameters
        ----------
        classification : `Classification`
            A row of the export.
        """
        c = classification
        self.n_classifications += 1
        if len(c.subjects) > 1:
            self.n_multi_subject += 1
        if c.flags:
            self.flagged.update(c.flags.split())
        major = c.workflow_major_version
        self.workflow_names[c.workflow_id] = c.workflow_name
        self.workflow_versions[(c.workflow_id, major)][c.workflow_version] += 1
        tasks: dict[str, tuple[str, str, list[str]]] = {}
        self._flatten(c.annotations, tasks)
        for task, (_, task_type, _) in tasks.items():
            if task_type == "other":
                self.other_values.append((c.classification_id, task))
        for sid, entry in c.subjects.items():
            if sid not in self.subject_metadata:
                self.subject_metadata[sid] = {k: v for k, v in entry.items() if k != "retired"}
            self.subject_counts[(sid, c.workflow_id, major)] += 1
            retired, when = is_retired(entry)
            if retired and not self.retired.get((sid, c.workflow_id)):
                self.retired[(sid, c.workflow_id)] = when or "retired"
            for task, (label, task_type, answers) in tasks.items():
                self._count(sid, c.workflow_id, major, task, label, task_type, answers)

    def _count(
        self, sid: str, workflow: str, major: str, task: str, label: str, task_type: str, answers: list[str]
    ) -> None:
        key = (sid, workflow, major, task)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = _Tally()
        tally.n_classifications += 1
        if label:
            tally.task_label = label
        if task_type != "empty":
            if tally.task_type == "empty":
                tally.task_type = task_type
            elif tally.task_type != task_type:
                self.type_conflicts.setdefault((workflow, major, task), {tally.task_type}).add(task_type)
        if answers:
            tally.n_answered += 1
            marks, votes = tally.marks, tally.votes
            for answer in answers:
                marks[answer] = marks.get(answer, 0) + 1
            for answer in set(answers) if len(answers) > 1 else answers:
                votes[answer] = votes.get(answer, 0) + 1

    @property
    def n_subjects(self) -> int:
        """Distinct subjects classified."""
        return len(self.subject_metadata)

    def retired_subjects(self) -> list[str]:
        """Return the subjects retired in at least one workflow, sorted."""
        return sorted({sid for sid, _ in self.retired}, key=_id_order)

    def table(self) -> Table:
        """Return the counts as a table, one row per subject, workflow
        version, task and answer (a task some classifications left
        unanswered also gets a row with an empty answer).

        Returns
        -------
        table : `astropy.table.Table`
            Columns `AGGREGATE_COLUMNS`, sorted by subject, workflow,
            version, task, then most votes first.
        """
        rows: list[tuple[Any, ...]] = []
        versions = {
            key: ",".join(sorted(counter, key=_version_order))
            for key, counter in self.workflow_versions.items()
        }
        for key in sorted(
            self.tallies, key=lambda k: (_id_order(k[0]), _id_order(k[1]), _id_order(k[2]), k[3])
        ):
            sid, workflow, major, task = key
            tally = self.tallies[key]
            retired_at = self.retired.get((sid, workflow), "")
            common = (
                sid,
                workflow,
                self.workflow_names.get(workflow, ""),
                major,
                versions.get((workflow, major), ""),
                task,
                tally.task_label,
                tally.task_type,
            )
            tail = (self.subject_counts[(sid, workflow, major)], bool(retired_at), _when(retired_at))
            n = tally.n_classifications
            for answer, votes in sorted(tally.votes.items(), key=lambda item: (-item[1], item[0])):
                rows.append((*common, answer, votes, tally.marks[answer], n, votes / n, *tail))
            if tally.n_answered < n:
                blank = n - tally.n_answered
                rows.append((*common, "", blank, 0, n, blank / n, *tail))
        return _make_table(rows)


def _make_table(rows: list[tuple[Any, ...]]) -> Table:
    columns = []
    for i, (name, kind, description) in enumerate(AGGREGATE_COLUMNS):
        values = [row[i] for row in rows]
        if kind is str:
            array = np.array(values, dtype=str) if values else np.array([], dtype="U1")
        else:
            array = np.array(values, dtype=kind)
        columns.append((name, array, description))
    table = Table([a for _, a, _ in columns], names=[n for n, _, _ in columns])
    for name, _, description in columns:
        table[name].description = description
    return table


def _when(retired_at: str) -> str:
    return "" if retired_at == "retired" else retired_at


def _id_order(value: str) -> tuple[int, int, str]:
    """Sort Zooniverse ids numerically, anything else after them."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _version_order(value: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(_id_order(part) for part in value.split("."))
