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

"""The ``notify`` settings of the export service: pydantic models of each
notifier's keys, and `notifier_from_config`, which builds the notifiers.

Import `notifier_from_config` from `lsst.epo.zooniverse.export.notify`.
"""

from __future__ import annotations

__all__ = ["notifier_from_config"]

import logging
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import pydantic

from .notification import LogNotifier, MultiNotifier, Notifier
from .notifiers_mail import SmtpNotifier
from .notifiers_webhook import WebhookNotifier
from .settings_files import SettingsModel, SettingValueError, setting_message, validate_settings


def _level(value: Any) -> int:
    if isinstance(value, str):
        value = logging.getLevelNamesMapping().get(value.upper(), value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SettingValueError("a logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or number")
    return value


def _addresses(value: Any) -> Any:
    if not isinstance(value, str | list | tuple):
        raise SettingValueError("an e-mail address or a list of them")
    return value


class _LogSettings(SettingsModel):
    """Keys of a ``log`` notifier."""

    type: str
    level: Annotated[int, pydantic.BeforeValidator(_level)] = None  # type: ignore[assignment]


class _SmtpSettings(SettingsModel):
    """Keys of an ``smtp`` notifier (arguments of `SmtpNotifier`)."""

    type: str
    host: str
    sender: str
    port: int = None  # type: ignore[assignment]
    extra_recipients: Annotated[Any, pydantic.BeforeValidator(_addresses)] = None
    username: str = None  # type: ignore[assignment]
    password: str = None  # type: ignore[assignment]
    password_env: str = None  # type: ignore[assignment]
    password_file: str = None  # type: ignore[assignment]
    starttls: bool = None  # type: ignore[assignment]
    ssl: bool = None  # type: ignore[assignment]
    timeout: float = None  # type: ignore[assignment]
    subject_prefix: str = None  # type: ignore[assignment]
    local_hostname: str = None  # type: ignore[assignment]


class _WebhookSettings(SettingsModel):
    """Keys of a ``webhook`` notifier (arguments of `WebhookNotifier`)."""

    type: str
    url: str = None  # type: ignore[assignment]
    url_env: str = None  # type: ignore[assignment]
    headers: dict[str, str] | None = None
    header_env: dict[str, str] | None = None
    timeout: float = None  # type: ignore[assignment]


_KINDS: dict[str, tuple[type[SettingsModel], type[Notifier]]] = {
    "log": (_LogSettings, LogNotifier),
    "smtp": (_SmtpSettings, SmtpNotifier),
    "webhook": (_WebhookSettings, WebhookNotifier),
}


def _build(spec: Any, *, source: str | None, key: str) -> Notifier:
    """Build one notifier from its settings.

    Parameters
    ----------
    spec : `~typing.Any`
        Settings mapping with a ``type`` key.
    source : `str` or `None`
        File the settings come from, for messages.
    key : `str`
        Key of the settings in the file (``notify[0]``), for messages.

    Returns
    -------
    notifier : `Notifier`
        The notifier.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(setting_message(source, key, value=spec, allowed="a mapping with a 'type' key"))
    kind = spec.get("type")
    if kind not in _KINDS:
        shown = repr(kind) if len(repr(kind)) <= 60 else repr(kind)[:57] + "..."
        problem = f"unknown notifier type {shown}"
        raise ValueError(
            setting_message(source, f"{key}.type", allowed=", ".join(sorted(_KINDS)), problem=problem)
        )
    model, notifier = _KINDS[kind]
    settings = validate_settings(model, spec, source=source, error=ValueError, prefix=key)
    kwargs = settings.model_dump(exclude_unset=True, exclude={"type"})
    try:
        return notifier(**kwargs)
    except ValueError as err:
        head = f"{source}: " if source else ""
        raise ValueError(f"{head}key '{key}' ({kind}): {err}") from None


def notifier_from_config(
    config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, *, source: str | None = None
) -> Notifier:
    """Build the notifier described by configuration.

    Parameters
    ----------
    config : `~collections.abc.Mapping`, `~collections.abc.Sequence` or `None`
        One of: the service configuration (a mapping with a ``notify``
        key); the ``notify`` list itself (one mapping per notifier, each
        with a ``type`` of ``log``, ``smtp`` or ``webhook`` and that
        notifier's keyword arguments); the mapping of a single notifier.
        `None` or empty means a `LogNotifier`.
    source : `str`, optional
        File the settings come from, named in error messages.

    Returns
    -------
    notifier : `Notifier`
        A `LogNotifier` when nothing is configured, the notifier itself
        when one is, a `MultiNotifier` otherwise.

    Raises
    ------
    ValueError
        Raised for unknown types, unknown or missing keys, and bad values;
        the message names the key, the bad value and what is allowed (but
        never shows a password).

    Notes
    -----
    ``smtp`` keys: ``host``, ``sender`` (required), ``port``,
    ``extra_recipients``, ``username``, ``password_env`` or
    ``password_file`` (or the discouraged inline ``password``),
    ``starttls``, ``ssl``, ``timeout``, ``subject_prefix``,
    ``local_hostname``.  ``webhook`` keys: ``url`` or ``url_env``,
    ``headers``, ``header_env``, ``timeout``.  ``log`` keys: ``level``.
    Environment variables and files are read when a notification is sent.
    """
    if config is None:
        specs: Sequence[Any] = ()
    elif isinstance(config, Mapping):
        if "notify" in config:
            specs = config["notify"] or ()
            if isinstance(specs, Mapping):
                specs = (specs,)
        elif "type" in config:
            specs = (config,)
        elif not config:
            specs = ()
        else:
            keys = sorted(map(str, config))
            raise ValueError(f"Notifier configuration needs a 'notify' list or a 'type'; got keys {keys}.")
    else:
        specs = config
    if isinstance(specs, str | bytes) or not isinstance(specs, Sequence):
        raise ValueError(
            setting_message(source, "notify", value=specs, allowed="a list of notifier settings")
        )
    notifiers = [_build(spec, source=source, key=f"notify[{index}]") for index, spec in enumerate(specs)]
    if not notifiers:
        return LogNotifier()
    if len(notifiers) == 1:
        return notifiers[0]
    return MultiNotifier(notifiers)
