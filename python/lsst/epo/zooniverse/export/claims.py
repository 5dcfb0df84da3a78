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
"""Claims and leases: how one worker of the service holds a dataset.

Work on a dataset (retrieval, validation, publication) is done under a
*claim*: the worker marks the dataset with its identity and a lease, with a
compare-and-set update that only one worker can win.  A claim whose lease
ran out, or whose worker on this host is dead (``kill -9``), is taken
over; the worker that lost it finds out at its next write
(`ClaimLostError`) and writes nothing more about the dataset.
"""

from __future__ import annotations

__all__ = ["ClaimLostError", "DatasetClaims", "process_is_alive"]

import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ..timestamps import utc_now_iso
from .records import DatasetRecord
from .repository import StateRepository
from .state import DATASETS
from .store import StateStore


class ClaimLostError(RuntimeError):
    """Another worker took over this worker's claim (its lease ran out):
    stop working on the dataset and write nothing more about it.
    """


def process_is_alive(pid: int) -> bool:
    """Tell whether a process of this host is running.

    Parameters
    ----------
    pid : `int`
        Its process id.

    Returns
    -------
    alive : `bool`
        `False` only if there is no such process.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DatasetClaims:
    """One worker's claims on datasets.

    Parameters
    ----------
    store : `~.store.StateStore`
        The state database.
    repository : `~.repository.StateRepository`
        Typed reads of it.
    lease_seconds : `float`
        How long a claim lasts without renewal.
    """

    def __init__(self, store: StateStore, repository: StateRepository, lease_seconds: float) -> None:
        self.store = store
        self.repository = repository
        self.lease_seconds = lease_seconds
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        """This worker's identity: host, process id and a random part."""

    def _holder_is_live(self, holder: str) -> bool:
        """Tell whether the worker holding an unexpired claim may still be
        working (it is on another host, or its process is alive).
        """
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        return host != socket.gethostname() or not pid.isdigit() or process_is_alive(int(pid))

    def claim(self, dataset_id: int, states: Iterable[str]) -> DatasetRecord | None:
        """Claim a dataset in one of some states.

        Parameters
        ----------
        dataset_id : `int`
            The dataset's database id.
        states : `~collections.abc.Iterable` [`str`]
            The states it may be claimed in.

        Returns
        -------
        dataset : `~.records.DatasetRecord` or `None`
            The claimed dataset; `None` if another live worker holds it or
            its state moved on.
        """
        now = time.time()
        with self.store.writing() as connection:
            row = self.repository.dataset(connection, dataset_id)
            if row is None or row.state not in states:
                return None
            holder = row.claimed_by
            if holder is not None and holder != self.worker and (row.claim_expires or 0) > now:
                if self._holder_is_live(holder):
                    return None
            condition = DATASETS.c.claimed_by.is_(None) if holder is None else DATASETS.c.claimed_by == holder
            result = connection.execute(
                DATASETS.update()
                .where(DATASETS.c.id == dataset_id, DATASETS.c.state == row.state, condition)
                .values(claimed_by=self.worker, claim_expires=now + self.lease_seconds)
            )
            if result.rowcount != 1:
                return None
            if holder is not None and holder != self.worker:
                self.store.audit(
                    connection,
                    f"worker@{self.worker}",
                    "claim_taken_over",
                    batch=row.batch,
                    detail=f"stale claim of {holder}",
                )
        return dataclasses.replace(row, claimed_by=self.worker)

    def update(self, connection: sa.Connection, dataset_id: int, **values: Any) -> None:
        """Update a dataset this worker holds, in the caller's transaction.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction.
        dataset_id : `int`
            The dataset's database id.
        **values
            Columns to set (``updated_at`` is set too).

        Raises
        ------
        ClaimLostError
            Raised (rolling the transaction back) if another worker holds
            the dataset now.
        """
        result = connection.execute(
            DATASETS.update()
            .where(DATASETS.c.id == dataset_id, DATASETS.c.claimed_by == self.worker)
            .values(updated_at=utc_now_iso(), **values)
        )
        if result.rowcount != 1:
            raise ClaimLostError(f"Dataset {dataset_id}: another worker took over the claim.")

    def extend(self, connection: sa.Connection, dataset_id: int, **values: Any) -> None:
        """Update a dataset this worker holds and renew its lease, in the
        caller's transaction.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction.
        dataset_id : `int`
            The dataset's database id.
        **values
            Other columns to set.

        Raises
        ------
        ClaimLostError
            Raised if another worker holds the dataset now.
        """
        self.update(connection, dataset_id, claim_expires=time.time() + self.lease_seconds, **values)

    def release(self, connection: sa.Connection, dataset_id: int, **values: Any) -> None:
        """Update a dataset this worker holds and give the claim up, in the
        caller's transaction.

        Parameters
        ----------
        connection : `sqlalchemy.Connection`
            The transaction.
        dataset_id : `int`
            The dataset's database id.
        **values
            Other columns to set (its new ``state``, ...).

        Raises
        ------
        ClaimLostError
            Raised if another worker holds the dataset now.
        """
        self.update(connection, dataset_id, claimed_by=None, claim_expires=None, **values)

    def renew(self, dataset_id: int) -> None:
        """Extend this worker's lease on a dataset (a heartbeat before each
        long step).

        Parameters
        ----------
        dataset_id : `int`
            The dataset's database id.

        Raises
        ------
        ClaimLostError
            Raised if another worker holds the dataset now.
        """
        with self.store.writing() as connection:
            self.extend(connection, dataset_id)

    def give_up(self, dataset_id: int) -> None:
        """Release a claim after a failure, if this worker still holds it.

        Parameters
        ----------
        dataset_id : `int`
            The dataset's database id.
        """
        try:
            with self.store.writing() as connection:
                self.release(connection, dataset_id)
        except ClaimLostError:
            pass
