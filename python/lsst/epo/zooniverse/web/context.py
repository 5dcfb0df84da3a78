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

"""What every request handler of the web application works with: the
export service, the web tables, the digest and the rate limiter, made once
per process (`WebContext.build`) and found on ``app.state.context``.
"""

from __future__ import annotations

__all__ = ["WebContext", "context_dependency"]

import dataclasses
import secrets
from typing import Any

from fastapi import Request

from ..export.notify import notifier_from_config
from ..export.service import ExportService
from ..export.service_config import ServiceConfig
from .digest import DigestNotifier
from .inbox import Inbox
from .operator_views import OperatorViews
from .project_views import ProjectViews
from .rate_limit import RateLimiter
from .settings import WebSettings
from .tokens import TokenStore
from .withdrawals import WithdrawalRequests


@dataclasses.dataclass
class WebContext:
    """The application's long-lived objects.

    Parameters
    ----------
    settings : `~.settings.WebSettings`
        The settings.
    service : `~lsst.epo.zooniverse.export.service.ExportService`
        The export service (its notifier is ``digest``).
    digest : `~.digest.DigestNotifier`
        Collects the PIs' notifications.
    """

    settings: WebSettings
    service: ExportService
    digest: DigestNotifier
    tokens: TokenStore = dataclasses.field(init=False)
    inbox: Inbox = dataclasses.field(init=False)
    withdrawals: WithdrawalRequests = dataclasses.field(init=False)
    views: OperatorViews = dataclasses.field(init=False)
    pictures: ProjectViews = dataclasses.field(init=False)
    limiter: RateLimiter = dataclasses.field(init=False)
    csrf_key: bytes = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        engine = self.service.engine
        self.tokens = TokenStore(engine)
        self.inbox = Inbox(engine)
        self.digest.inbox = self.inbox
        self.withdrawals = WithdrawalRequests(engine)
        self.views = OperatorViews(self.service.store)
        self.pictures = ProjectViews(self.service.store, self.service.public)
        self.limiter = RateLimiter(self.settings.rate_limit)
        secret = self.settings.csrf_secret
        self.csrf_key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)

    @classmethod
    def build(cls, settings: WebSettings, **overrides: Any) -> WebContext:
        """Open the export service named by the settings.

        Parameters
        ----------
        settings : `~.settings.WebSettings`
            The settings (``config`` names the service configuration).
        **overrides
            Overrides of the service configuration (as
            ``ServiceConfig.load`` takes them).

        Returns
        -------
        context : `WebContext`
            The context; its digest sends through the notifiers of the
            service configuration as well as to the inbox.
        """
        config = ServiceConfig.load(settings.config, **overrides)
        downstream = notifier_from_config(list(config.notify))
        digest = DigestNotifier(None, downstream)
        service = ExportService(config, notifier=digest)
        return cls(settings=settings, service=service, digest=digest)

    def close(self) -> None:
        """Send the last digest and release the database."""
        self.digest.flush()
        self.service.close()


def context_dependency(request: Request) -> WebContext:
    """Return the application's context (a FastAPI dependency).

    Parameters
    ----------
    request : `fastapi.Request`
        The request.

    Returns
    -------
    context : `WebContext`
        The context.
    """
    return request.app.state.context
