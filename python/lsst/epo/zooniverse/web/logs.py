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

"""Logging of the web application: Safir's structlog set-up (JSON lines in
production) for the ``lsst`` loggers and uvicorn's, with every record
masked by the process's secret redactor before any handler writes it.
"""

from __future__ import annotations

__all__ = ["SecretMaskingFilter", "configure_web_logging"]

import logging

from safir.logging import configure_logging, configure_uvicorn_logging

from ..export.redaction import Redactor, default_redactor, install_log_redaction
from .settings import WebSettings

_LOGGERS = ("lsst", "uvicorn", "uvicorn.access", "uvicorn.error")


class SecretMaskingFilter(logging.Filter):
    """Replaces known secrets in a record's message by a mask.

    Parameters
    ----------
    redactor : `~lsst.epo.zooniverse.export.redaction.Redactor`, optional
        The secrets (the process's default redactor if not given: it holds
        the database password once the service is open).
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or default_redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.redactor.redact(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


def configure_web_logging(settings: WebSettings) -> None:
    """Set up logging as Safir applications do, with secrets masked.

    Parameters
    ----------
    settings : `~.settings.WebSettings`
        ``log_profile`` and ``log_level``.
    """
    configure_logging(name="lsst", profile=settings.log_profile, log_level=settings.log_level)
    configure_uvicorn_logging(settings.log_level)
    install_log_redaction()
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, SecretMaskingFilter) for f in handler.filters):
                handler.addFilter(SecretMaskingFilter())
