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

"""The PI's side of the export service, for a notebook on the RSP.

`EpoProject` is a PI's handle on their project at EPO: register the
collections the pipeline writes, follow what EPO did with each picture,
list the published subjects, and create or update the project's
Zooniverse subject sets through panoptes-client::

    from lsst.epo.zooniverse.pi.project import EpoProject

    project = EpoProject.register(
        "my-galaxies",
        owner="jdoe",
        repo="/repo/main",
        collections="u/jdoe/zooniverse/*",
        zooniverse_project=12345,
        contact="jdoe@example.org",
        config="epo_service.yaml",
    )
    print(project.status())
    subjects = project.published_subjects()  # astropy Table
    # Zooniverse credentials from the PANOPTES_* variables (or a file).
    project.sync_subject_set("first-light")
    project.link_subject_set("first-light", workflow=6789)
    project.subject_sets()

The same operations exist as ``zooniverse-epo`` commands for EPO's
operators.  Here the service runs in the notebook's process against the
service configuration it is given, which only EPO holds in production;
`EpoProject` itself has no approve or publish method: EPO's operators
approve every batch (``zooniverse-epo approve`` or the review page)
before anything is public.
"""

from __future__ import annotations

__all__ = ["EpoProject", "ProjectStatus"]

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from astropy.table import Table

if TYPE_CHECKING:
    from ..export.service import ExportService
    from ..zooniverse.subject_sets import SubjectSetPublisher, SubjectSetSummary, ZooniverseCredentials


@dataclasses.dataclass(frozen=True)
class ProjectStatus:
    """Counts of a project's batches (datasets) and pictures by state."""

    project: str
    """Project name."""
    datasets: Mapping[str, int]
    """Batches by state (``quarantined``, ``approved``, ``published``,
    ``rejected``, …)."""
    images: Mapping[str, int]
    """Pictures by state (``quarantined``, ``approved``, ``published``,
    ``superseded``, ``rejected``, …)."""

    @property
    def published(self) -> int:
        """Pictures public now (`int`)."""
        return self.images.get("published", 0)

    @property
    def waiting(self) -> int:
        """Pictures waiting for EPO's approval or publication (`int`)."""
        return sum(self.images.get(state, 0) for state in ("quarantined", "approved", "publishing"))

    def __str__(self) -> str:
        def counts(values: Mapping[str, int]) -> str:
            return ", ".join(f"{n} {state}" for state, n in sorted(values.items())) or "none"

        return f"{self.project}: batches {counts(self.datasets)}; pictures {counts(self.images)}"


class EpoProject:
    """A PI's project at EPO's export service.

    Parameters
    ----------
    name : `str`
        Project name, as registered.
    service : `~lsst.epo.zooniverse.export.service.ExportService`, optional
        The service to use; one is made from ``config`` if not given.
    config : `str` or `os.PathLike`, optional
        Service configuration file (``ZOONIVERSE_EPO_CONFIG`` or the
        embedded defaults if not given); ignored with ``service``.

    Raises
    ------
    lsst.epo.zooniverse.export.service.ExportServiceError
        Raised if no project of that name is registered.
    """

    def __init__(
        self, name: str, *, service: ExportService | None = None, config: str | os.PathLike | None = None
    ) -> None:
        self._own_service = service is None
        self._service = service if service is not None else _make_service(config)
        try:
            self._record = self._service.project(name)
        except Exception:
            self.close()
            raise
        self.name = name

    @classmethod
    def register(
        cls,
        name: str,
        *,
        owner: str,
        repo: str,
        collections: str,
        zooniverse_project: int,
        dataset_types: Sequence[str] = ("zooniverse_rgb",),
        contact: str | None = None,
        metadata_policy: str = "full",
        service: ExportService | None = None,
        config: str | os.PathLike | None = None,
    ) -> EpoProject:
        # Long by its docstring; the code is a lookup and one registration.
        """Register the collections a PI's pipeline writes with EPO.

        Parameters
        ----------
        name : `str`
            Short project name (``[a-z0-9][a-z0-9_-]*``): the first part of
            every public URL.
        owner : `str`
            The PI's RSP user name; only collections under ``u/<owner>/``
            can be registered.
        repo : `str`
            Butler repository (path, URI or label).
        collections : `str`
            Collection name or glob, e.g. ``u/<owner>/zooniverse/*``: new
            outputs there are found at EPO's next poll.
        zooniverse_project : `int`
            The Zooniverse project's id.
        dataset_types : `~collections.abc.Sequence` [`str`], optional
            What EPO retrieves: ``zooniverse_rgb`` and/or
            ``zooniverse_cutout``.
        contact : `str`, optional
            E-mail address(es) for EPO's notifications.
        metadata_policy : `str`, optional
            ``full`` (ids and coordinates as hidden metadata) or
            ``anonymised`` (no identifying text anywhere public).
        service, config
            As for the constructor.

        Returns
        -------
        project : `EpoProject`
            The registered project.  Registering the same settings again
            returns it unchanged.

        Raises
        ------
        lsst.epo.zooniverse.export.service.ExportServiceError
            Raised if the name is taken with other settings, the
            collections are outside ``u/<owner>/`` or a dataset type is not
            allowed by EPO's policy.
        """
        own = service is None
        service = service if service is not None else _make_service(config)
        try:
            # The settings as the service records them (differences are
            # reported in this order).
            settings = {
                "owner": owner,
                "repo": repo,
                "collections": collections,
                "zooniverse_project_id": zooniverse_project,
                "dataset_types": list(dataset_types),
                "metadata_policy": metadata_policy,
                "contact": contact,
            }
            existing = {record["name"]: record for record in service.projects()}.get(name)
            if existing is not None:
                _check_same_registration(existing, **settings)
                project = cls(name, service=service)
                project._own_service = own
                return project
            service.register_project(
                name, **{**settings, "dataset_types": tuple(settings["dataset_types"])}, actor=owner
            )
            project = cls(name, service=service)
        except Exception:
            if own:
                service.close()
            raise
        project._own_service = own
        return project

    def __enter__(self) -> EpoProject:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EpoProject({self.name!r}, zooniverse_project={self.zooniverse_project})"

    def close(self) -> None:
        """Release the service's database connections (if this object made
        the service).
        """
        if self._own_service:
            self._service.close()

    @property
    def service(self) -> ExportService:
        """The export service this project lives in."""
        return self._service

    @property
    def zooniverse_project(self) -> int:
        """The Zooniverse project's id (`int`)."""
        return int(self._record["zooniverse_project_id"])

    @property
    def collections(self) -> str:
        """The registered collection name or glob (`str`)."""
        return self._record["collections"]

    def status(self) -> ProjectStatus:
        """Count the project's batches and pictures by state.

        Returns
        -------
        status : `ProjectStatus`
            What EPO has done so far.
        """
        counts = self._service.status(self.name)["projects"][self.name]
        return ProjectStatus(project=self.name, datasets=counts["datasets"], images=counts["images"])

    def pictures(self) -> Table:
        """Every picture EPO has seen, with its state and reason.

        Returns
        -------
        pictures : `astropy.table.Table`
            ``batch, dataset_type, data_id, entry, object_id, state,
            reason, url`` (a rejected batch without pictures is one row
            with an empty entry).
        """
        return _table(
            self._service.report(self.name),
            ("batch", "dataset_type", "data_id", "entry", "object_id", "state", "reason", "url"),
        )

    def published_subjects(self) -> Table:
        """List the project's published subjects, one per catalog object.

        Returns
        -------
        subjects : `astropy.table.Table`
            ``external_id`` (what Zooniverse knows the subject by),
            ``object_id``, ``url`` and ``batch``, sorted by external id.
        """
        images = self._service.published_images(self.name)
        rows = [
            {
                "external_id": row.external_id,
                "object_id": image["object_id"],
                "url": image["url"],
                "batch": image["batch"],
            }
            for image, row in zip(images, self._service.subject_rows(self.name, images), strict=True)
        ]
        rows.sort(key=lambda r: r["external_id"])
        return _table(rows, ("external_id", "object_id", "url", "batch"))

    def catalog_report(self, collection: str) -> Table:
        """Say, for every row of the original catalog, where its picture is
        public or why it has none.

        Parameters
        ----------
        collection : `str`
            The pipeline's output collection (it includes the sharding run).

        Returns
        -------
        report : `astropy.table.Table`
            One row per catalog row, in catalog order: ``row_index``,
            ``object_id``, ``outcome``, ``stage``, ``reason``, ``url``.
            ``meta["counts"]`` counts the outcomes by stage.
        """
        rows = self._service.catalog_report(self.name, collection)
        table = _table(rows, ("row_index", "object_id", "outcome", "stage", "reason", "url"))
        counts: dict[str, int] = {}
        for row in rows:
            key = "published" if row["outcome"] == "published" else f"not published ({row['stage']})"
            counts[key] = counts.get(key, 0) + 1
        table.meta["counts"] = counts
        return table

    def write_manifests(self, directory: str | os.PathLike) -> list[str]:
        """Write the project's Zooniverse import manifests (validated).

        Parameters
        ----------
        directory : `str` or `os.PathLike`
            Where to write ``manifest_partNNN.csv``.

        Returns
        -------
        paths : `list` [`str`]
            The parts written, at most 10,000 subjects each.
        """
        return self._service.write_manifests(self.name, os.fspath(directory))

    # ------------------------------------------------------------------
    # Zooniverse subject sets.

    def _publisher(
        self, credentials: ZooniverseCredentials | str | os.PathLike | None
    ) -> SubjectSetPublisher:
        from ..zooniverse.subject_sets import SubjectSetPublisher, ZooniverseCredentials

        if credentials is not None and not isinstance(credentials, ZooniverseCredentials):
            credentials = ZooniverseCredentials.from_file(os.fspath(credentials))
        return SubjectSetPublisher(self._service, credentials)

    def sync_subject_set(
        self,
        name: str,
        *,
        method: str = "import",
        dry_run: bool = False,
        credentials: ZooniverseCredentials | str | os.PathLike | None = None,
    ) -> SubjectSetSummary:
        """Make a subject set of the project's Zooniverse project hold every
        published subject, once.

        Parameters
        ----------
        name : `str`
            Display name of the subject set; created if the Zooniverse
            project has none of that name.
        method : `str`, optional
            ``import``: Zooniverse's subject-set import of the manifest EPO
            publishes (Zooniverse downloads it; at most 10,000 rows per
            part); ``subjects``: one subject created per object, with its
            public URL as a remote location.
        dry_run : `bool`, optional
            Do everything except talking to Zooniverse (the manifests are
            written and validated, the counts reported).
        credentials : `ZooniverseCredentials`, `str` or `os.PathLike`, optional
            Zooniverse credentials, or a credentials file readable only by
            you; default: the ``PANOPTES_*`` environment variables.  They
            are never printed or logged.

        Returns
        -------
        summary : `~..zooniverse.subject_sets.SubjectSetSummary`
            What was sent (``created``), what the set already held
            (``already_present``) and what did not arrive (``failed``).
            Running it again sends only what is missing.

        Raises
        ------
        lsst.epo.zooniverse.zooniverse.subject_sets.SubjectSetError
            Raised if Zooniverse refuses the credentials or the set cannot
            be completed (the message says how far it got; run it again to
            resume).
        """
        return self._publisher(credentials).sync(
            self.name, subject_set_name=name, method=method, dry_run=dry_run, operator=self._record["owner"]
        )

    def link_subject_set(
        self,
        name: str,
        workflow: int,
        *,
        credentials: ZooniverseCredentials | str | os.PathLike | None = None,
    ) -> bool:
        """Link a subject set made by `sync_subject_set` to a workflow of
        the project's Zooniverse project, so that volunteers classify it.

        Parameters
        ----------
        name : `str`
            Display name of the subject set.
        workflow : `int`
            Zooniverse workflow id.
        credentials : `ZooniverseCredentials`, `str` or `os.PathLike`, optional
            As for `sync_subject_set`.

        Returns
        -------
        linked : `bool`
            `True` if linked now, `False` if it already was.
        """
        return self._publisher(credentials).link_to_workflow(
            self.name, subject_set_name=name, workflow=workflow, operator=self._record["owner"]
        )

    def subject_sets(self, *, credentials: ZooniverseCredentials | str | os.PathLike | None = None) -> Table:
        """List the subject sets of the project's Zooniverse project.

        Parameters
        ----------
        credentials : `ZooniverseCredentials`, `str` or `os.PathLike`, optional
            As for `sync_subject_set`.

        Returns
        -------
        sets : `astropy.table.Table`
            ``subject_set_id``, ``display_name``,
            ``set_member_subjects_count`` (what Zooniverse says) and
            ``recorded`` (subjects EPO recorded as sent to that set).
        """
        sets = self._publisher(credentials).subject_sets(self.name)
        columns = ("subject_set_id", "display_name", "set_member_subjects_count", "recorded")
        if not sets:
            return Table(names=columns, dtype=[int, str, int, int])
        return Table(rows=[[s[c] for c in columns] for s in sets], names=columns)

    def sent_subjects(self, subject_set: str | None = None) -> Table:
        """List what EPO recorded as sent to Zooniverse for this project.

        Parameters
        ----------
        subject_set : `str`, optional
            Only this subject set (display name).

        Returns
        -------
        subjects : `astropy.table.Table`
            ``subject_set_name, subject_set_id, external_id, subject_id,
            method, recorded_at``.
        """
        from ..zooniverse.subject_sets import SubjectSetPublisher

        rows = SubjectSetPublisher(self._service).recorded_subjects(self.name, subject_set)
        columns = ("subject_set_name", "subject_set_id", "external_id", "subject_id", "method", "recorded_at")
        return _table([{c: "" if r[c] is None else r[c] for c in columns} for r in rows], columns)


def _check_same_registration(existing: Mapping[str, Any], **wanted: Any) -> None:
    """Raise if a registered project has other settings than wanted."""
    from ..export.service import ExportServiceError

    current = dict(existing)
    if isinstance(current.get("dataset_types"), str):
        import json

        current["dataset_types"] = json.loads(current["dataset_types"])
    differences = [
        f"{key} is {current.get(key)!r}, not {value!r}"
        for key, value in wanted.items()
        if current.get(key) != value
    ]
    if differences:
        raise ExportServiceError(
            f"A project named {existing['name']!r} is already registered with other settings: "
            + "; ".join(differences)
            + ". Choose another name, or ask EPO to change the registration."
        )


def _make_service(config: str | os.PathLike | None) -> ExportService:
    from ..export.service import ExportService
    from ..export.service_config import ServiceConfig

    return ExportService(ServiceConfig.load(os.fspath(config) if config is not None else None))


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Table:
    """Make a table with these columns (also when there are no rows)."""
    if not rows:
        return Table(names=list(columns), dtype=[str] * len(columns))
    return Table(rows=[[row[c] for c in columns] for row in rows], names=list(columns))
