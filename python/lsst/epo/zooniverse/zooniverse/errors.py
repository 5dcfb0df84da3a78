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

"""Errors of the Zooniverse subject-set tools.

Every message is free of secrets: credentials, tokens and passwords are
masked before an error is raised.
"""

from __future__ import annotations

__all__ = [
    "CredentialsError",
    "SubjectSetAuthError",
    "SubjectSetError",
    "SubjectSetPermissionError",
    "UploadLimitError",
]

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .summary import SubjectSetSummary


class SubjectSetError(RuntimeError):
    """A subject set cannot be created or filled.

    Parameters
    ----------
    message : `str`
        What went wrong (no secrets).
    summary : `SubjectSetSummary`, optional
        What the run had done when it stopped.
    """

    def __init__(self, message: str, summary: SubjectSetSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class SubjectSetAuthError(SubjectSetError):
    """Zooniverse refused the credentials (or they do not allow the
    operation).
    """


class CredentialsError(SubjectSetError):
    """Credentials are missing, incomplete, or stored unsafely."""


class SubjectSetPermissionError(SubjectSetAuthError):
    """The credentials are valid but may not do this: the token lacks a
    scope, or the account is not a collaborator of the project.

    Parameters
    ----------
    message : `str`
        What was refused (names the scope or role).
    scope : `str`, optional
        The OAuth scope missing (``project``, ``subject``).
    role : `str`, optional
        The project role missing (``collaborator``).
    """

    def __init__(self, message: str, *, scope: str | None = None, role: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
        self.role = role


class UploadLimitError(SubjectSetError):
    """Zooniverse refuses new subjects: the account reached its upload
    limit (every subject it ever made counts, deleted ones too).

    Parameters
    ----------
    message : `str`
        What was refused, with the numbers.
    uploaded : `int`
        Subjects the account has made.
    limit : `int`
        Its limit.
    """

    def __init__(self, message: str, *, uploaded: int, limit: int) -> None:
        super().__init__(message)
        self.uploaded = uploaded
        self.limit = limit
