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

"""Commands of EPO's web application: ``token create|revoke|list`` (the
bearer tokens of a standalone application) and ``serve-api`` (run it with
uvicorn).

They work as subcommands of ``zooniverse-epo`` (they read its
``--config`` and overrides from the click context) and as their own
program, ``zooniverse-epo-web`` (`web_main`), which takes the same
``--config`` and ``--database`` options.
"""

from __future__ import annotations

__all__ = ["serve_api", "token", "web_main"]

import datetime
from typing import Any

import click


def _options(ctx: click.Context) -> tuple[str | None, dict[str, Any]]:
    obj = ctx.ensure_object(dict)
    overrides = {key: value for key, value in obj.get("overrides", {}).items() if value is not None}
    return obj.get("config"), overrides


def _token_store(ctx: click.Context) -> Any:
    from ..export.service_config import ServiceConfig
    from ..export.state import open_state_database
    from ..web.tokens import TokenStore

    config_path, overrides = _options(ctx)
    config = ServiceConfig.load(config_path, **overrides)
    engine = open_state_database(config.database_url)
    ctx.call_on_close(engine.dispose)
    return TokenStore(engine)


def _guard(function: Any) -> Any:
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..export.redaction import default_redactor
        from ..export.service_config import ServiceConfigError
        from ..export.state import StateDatabaseError
        from ..web.settings import WebSettingsError
        from ..web.tokens import TokenError

        try:
            return function(*args, **kwargs)
        except (TokenError, ServiceConfigError, StateDatabaseError, WebSettingsError) as err:
            raise click.ClickException(default_redactor().redact(err)) from None

    return wrapper


@click.group(name="token")
def token() -> None:
    """Make, list and revoke bearer tokens of the standalone web
    application (behind Gafaelfawr, the RSP's own tokens are used instead).
    """


@token.command(name="create")
@click.option("--user", "username", required=True, help="Whose token (their RSP user name).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["pi", "operator"]),
    help="What it allows (repeatable): pi (the PI API for --user), operator (review, approve, publish).",
)
@click.option(
    "--days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True, help="Lifetime."
)
@click.option("--comment", default=None, help="A note kept with the token.")
@click.pass_context
@_guard
def token_create(
    ctx: click.Context, username: str, scopes: tuple[str, ...], days: float, comment: str | None
) -> None:
    """Make a token; print it once on standard output (only its digest is
    kept).
    """
    value, info = _token_store(ctx).create(
        username, list(scopes), lifetime_seconds=days * 86400, comment=comment
    )
    expires = datetime.datetime.fromtimestamp(info.expires_at or 0, datetime.UTC).isoformat(
        timespec="seconds"
    )
    click.echo(f"Token {info.key} for {username} ({', '.join(sorted(scopes))}), expires {expires}.", err=True)
    click.echo(value)


@token.command(name="revoke")
@click.argument("key")
@click.pass_context
@_guard
def token_revoke(ctx: click.Context, key: str) -> None:
    """Revoke the token KEY (its key, as ``token list`` shows, or the whole
    token).
    """
    if not _token_store(ctx).revoke(key):
        raise click.ClickException("No live token with that key.")
    click.echo("Revoked.", err=True)


@token.command(name="list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@click.pass_context
@_guard
def token_list(ctx: click.Context, username: str | None) -> None:
    """List tokens (keys, users, scopes, expiry; never the secrets)."""
    for row in _token_store(ctx).list(username):
        expires = (
            datetime.datetime.fromtimestamp(row["expires_at"], datetime.UTC).isoformat(timespec="seconds")
            if row["expires_at"]
            else "never"
        )
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else f"expires {expires}"
        click.echo(
            f"{row['key']}  {row['username']}  {row['scopes']}  {state}  {row['comment'] or ''}".rstrip()
        )


@click.command(name="serve-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port.")
@click.pass_context
@_guard
def serve_api(ctx: click.Context, host: str, port: int) -> None:
    """Run the web application (PI API, operators' API and review page)
    with uvicorn.  Its own settings are the EPO_WEB_* environment variables
    (doc/deployment.md); --config (or EPO_WEB_CONFIG) names the service
    configuration.
    """
    import uvicorn

    from ..web.app import create_app
    from ..web.context import WebContext
    from ..web.settings import load_web_settings

    config_path, overrides = _options(ctx)
    settings = load_web_settings(**({"config": config_path} if config_path else {}))
    context = WebContext.build(settings, **overrides)
    try:
        app = create_app(settings, context)
        click.echo(
            f"Serving http://{host}:{port}{settings.path_prefix}/ ({settings.auth} authentication)", err=True
        )
        # The application reads X-Forwarded-* itself, from trusted proxies
        # only; uvicorn's own handling is off.
        # Idle connections stay open longer than a proxy's (60 s) so that
        # the proxy, not uvicorn, closes them (no race on a reused one).
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=False,
            log_config=None,
            server_header=False,
            timeout_keep_alive=75,
        )
    finally:
        context.close()


@click.group(name="zooniverse-epo-web", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="ZOONIVERSE_EPO_CONFIG",
    help="Service configuration YAML (default: $ZOONIVERSE_EPO_CONFIG, else built-in defaults).",
)
@click.option("--database", default=None, envvar="ZOONIVERSE_EPO_DATABASE", help="State database URL.")
@click.pass_context
def web_main(ctx: click.Context, config: str | None, database: str | None) -> None:
    """EPO's web application: tokens and the server."""
    ctx.ensure_object(dict).update(config=config, overrides={"database": database})


web_main.add_command(token)
web_main.add_command(serve_api)
