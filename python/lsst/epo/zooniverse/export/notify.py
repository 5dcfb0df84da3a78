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

"""Tell PIs what happened to their images.

The export service builds a `Notification` whenever a PI's batch changes
state (retrieved, quarantined, approved, rejected, published) and hands it
to a `Notifier`.  Three notifiers exist: `LogNotifier` writes to the
service log, `SmtpNotifier` sends a plain-text e-mail and
`WebhookNotifier` POSTs JSON to a URL; `MultiNotifier` combines them.
`notifier_from_config` builds one from the ``notify`` list of the service
configuration::

    notify:
      - type: log
      - type: smtp
        host: localhost
        port: 2525
        sender: epo@example.org
        username: epo
        password_env: EPO_SMTP_PASSWORD
      - type: webhook
        url: https://hooks.example.org/epo
        header_env: {Authorization: EPO_WEBHOOK_TOKEN}

Secrets (SMTP passwords, webhook tokens) are read from environment
variables (``password_env``, ``header_env``, ``url_env``) or files
(``password_file``) when a notification is sent, so they stay out of the
configuration file and follow rotation.  Error messages never contain
them.
"""

from __future__ import annotations

__all__ = [
    "EVENTS",
    "LogNotifier",
    "MultiNotifier",
    "Notification",
    "NotificationError",
    "Notifier",
    "SmtpNotifier",
    "WebhookNotifier",
    "notifier_from_config",
]

from .notification import EVENTS, LogNotifier, MultiNotifier, Notification, NotificationError, Notifier
from .notifiers_mail import SmtpNotifier
from .notifiers_webhook import WebhookNotifier
from .notify_settings import notifier_from_config
