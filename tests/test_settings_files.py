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

"""The settings files (service configuration, data-rights policy, notify
section) report a bad setting as "FILE: key 'a.b': bad value X; allowed:
...", and every secret is read and masked by one helper.
"""

import logging
import os

import pytest
import yaml

from lsst.epo.zooniverse.export.notify import notifier_from_config
from lsst.epo.zooniverse.export.policy import DataRightsPolicy, PolicyError
from lsst.epo.zooniverse.export.redaction import Redactor, default_redactor
from lsst.epo.zooniverse.export.secrets import SecretError, read_secret
from lsst.epo.zooniverse.export.service_config import ServiceConfig, ServiceConfigError

SECRET = "s3cret-value-4-tests"


def _service_error(tmp_path, values):
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump({"database": "sqlite://", **values}))
    with pytest.raises(ServiceConfigError) as info:
        ServiceConfig.load(str(path))
    return str(path), str(info.value)


# ----------------------------------------------------------------------
# The error format, for each of the three files.


def test_policy_file_error_names_file_key_value_allowed(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("max_entries: '5'\n")
    with pytest.raises(PolicyError) as info:
        DataRightsPolicy.from_yaml(path)
    assert str(info.value) == f"{path}: key 'max_entries': bad value '5'; allowed: an integer."
    path.write_text("collection_patterns: ['u/{owner}/*', 'u/{user}/*']\n")
    with pytest.raises(PolicyError) as info:
        DataRightsPolicy.from_yaml(path)
    assert str(info.value) == (
        f"{path}: key 'collection_patterns[1]': bad value 'u/{{user}}/*'; "
        "allowed: patterns whose only brace is the {owner} placeholder."
    )
    path.write_text("max_entrys: 5\n")
    with pytest.raises(PolicyError) as info:
        DataRightsPolicy.from_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unknown keys ['max_entrys']; allowed: ")
    assert "max_entries" in message and "max_png_bytes" in message


def test_service_config_error_names_file_key_value_allowed(tmp_path):
    path, message = _service_error(tmp_path, {"claim_seconds": -1})
    assert message == f"{path}: key 'claim_seconds': bad value -1; allowed: a positive number of seconds."
    path, message = _service_error(
        tmp_path, {"review": {"operators": {"eve": {"token_env": "X"}}, "secure_cookie": "yes"}}
    )
    assert message == f"{path}: key 'review.secure_cookie': bad value 'yes'; allowed: true or false."
    path, message = _service_error(tmp_path, {"policy": {"max_png_width": True}})
    assert message == f"{path}: key 'policy.max_png_width': bad value True; allowed: an integer."
    path, message = _service_error(tmp_path, {"colour": "red"})
    assert message.startswith(f"{path}: unknown keys ['colour']; allowed: claim_seconds, database, ")
    # Overrides are named as such.
    with pytest.raises(ServiceConfigError) as info:
        ServiceConfig.load(None, database="sqlite://", claim_seconds=0)
    assert "overrides" in str(info.value) and "key 'claim_seconds': bad value 0" in str(info.value)


def test_public_url_must_be_https_except_loopback(tmp_path):
    path, message = _service_error(tmp_path, {"public_url": "http://epo.example.org/zooniverse/"})
    assert message == (
        f"{path}: key 'public_url': bad value 'http://epo.example.org/zooniverse/'; allowed: an https:// "
        "URL with a host (http:// only to loopback: localhost, 127.0.0.0/8, ::1)."
    )
    for bad in ("ftp://epo.example.org/", "https:///z/", "epo.example.org/z/"):
        path, message = _service_error(tmp_path, {"public_url": bad})
        assert f"{path}: key 'public_url': bad value {bad!r}; allowed: an https:// URL" in message
    with pytest.raises(ServiceConfigError, match="overrides.*key 'public_url'"):
        ServiceConfig.load(None, database="sqlite://", public_url="http://10.0.0.1/")
    for good in (
        "https://epo.example.org/zooniverse/",
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://[::1]:8080/",
    ):
        path = tmp_path / "service.yaml"
        path.write_text(yaml.safe_dump({"database": "sqlite://", "public_url": good}))
        assert ServiceConfig.load(str(path)).public_url == good


def test_notify_section_error_names_file_key_value_allowed(tmp_path):
    path, message = _service_error(
        tmp_path,
        {"notify": [{"type": "log"}, {"type": "smtp", "host": "h", "sender": "a@b.org", "port": "25"}]},
    )
    assert message == f"{path}: key 'notify[1].port': bad value '25'; allowed: an integer."
    path, message = _service_error(tmp_path, {"notify": [{"type": "pigeon"}]})
    assert message == (
        f"{path}: key 'notify[0].type': unknown notifier type 'pigeon'; allowed: log, smtp, webhook."
    )
    with pytest.raises(ValueError) as info:
        notifier_from_config([{"type": "webhook", "url": "https://h/", "timeout": "1"}], source="site.yaml")
    assert str(info.value) == "site.yaml: key 'notify[0].timeout': bad value '1'; allowed: a number."


def test_secret_values_are_never_shown(tmp_path):
    path, message = _service_error(tmp_path, {"review": {"operators": {"eve": {"token": SECRET}}}})
    assert message.startswith(f"{path}: key 'review.operators.eve.token': bad value (hidden); allowed: ")
    assert SECRET not in message
    with pytest.raises(ValueError) as info:
        notifier_from_config(
            [{"type": "smtp", "host": "h", "sender": "a@b.org", "username": "u", "password": 1234}]
        )
    assert "key 'notify[0].password': bad value (hidden)" in str(info.value) and "1234" not in str(info.value)


# ----------------------------------------------------------------------
# The secrets helper.


def test_read_secret_from_environment(monkeypatch):
    redactor = Redactor(environ={})
    monkeypatch.setenv("EPO_TEST_SECRET_VALUE", f"  {SECRET}\n")
    assert read_secret(env="EPO_TEST_SECRET_VALUE", what="test secret", redactor=redactor) == SECRET
    assert redactor.redact(f"x {SECRET} y") == "x *** y"


def test_read_secret_from_file(tmp_path, caplog):
    redactor = Redactor(environ={})
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert read_secret(file=path, what="test secret", redactor=redactor) == SECRET
        assert not caplog.records
        path.chmod(0o640)
        assert read_secret(file=str(path), what="test secret", redactor=redactor) == SECRET
    assert any("readable by other users" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert redactor.redact(SECRET) == "***"


def test_read_secret_goes_to_the_default_redactor(monkeypatch):
    value = "another-s3cret-for-the-default"
    monkeypatch.setenv("EPO_TEST_PLAIN_VALUE", value)
    read_secret(env="EPO_TEST_PLAIN_VALUE", what="test secret")
    assert value not in default_redactor().redact(value)


def test_read_secret_errors_name_what_and_source_never_the_value(tmp_path, monkeypatch):
    monkeypatch.delenv("EPO_TEST_ABSENT_SECRET", raising=False)
    with pytest.raises(SecretError) as info:
        read_secret(env="EPO_TEST_ABSENT_SECRET", what="test secret")
    assert str(info.value) == "test secret: the environment variable EPO_TEST_ABSENT_SECRET is not set."
    monkeypatch.setenv("EPO_TEST_EMPTY_SECRET", "  \n")
    with pytest.raises(SecretError, match="EPO_TEST_EMPTY_SECRET"):
        read_secret(env="EPO_TEST_EMPTY_SECRET", what="test secret")
    with pytest.raises(SecretError) as info:
        read_secret(file=tmp_path / "absent", what="test secret")
    assert str(info.value).startswith(f"test secret: cannot read {tmp_path / 'absent'} (")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match="empty"):
        read_secret(file=tmp_path / "empty", what="test secret")
    (tmp_path / "long").write_text(SECRET * 1000)
    with pytest.raises(SecretError) as info:
        read_secret(file=tmp_path / "long", what="test secret")
    assert SECRET not in str(info.value) and "long" in str(info.value)
    for kwargs in ({}, {"env": "X", "file": "y"}):
        with pytest.raises(SecretError, match="exactly one"):
            read_secret(what="test secret", **kwargs)
    assert issubclass(SecretError, ValueError)


def test_service_config_reads_secrets_with_the_helper(tmp_path, monkeypatch):
    # The operator token and the database password are masked once read.
    monkeypatch.setenv("EPO_TEST_OPERATOR_TOKEN", SECRET)
    monkeypatch.setenv("EPO_TEST_DB_SECRET_VALUE", "database-pass-7")
    path = tmp_path / "service.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": "postgresql://epo@db.example.org/epo",
                "database_password_env": "EPO_TEST_DB_SECRET_VALUE",
                "review": {"operators": {"eve": {"token_env": "EPO_TEST_OPERATOR_TOKEN"}}},
            }
        )
    )
    config = ServiceConfig.load(str(path))
    assert config.database_url.password == "database-pass-7"
    assert config.review.authenticate("eve", SECRET) == "eve"
    assert default_redactor().redact(f"{SECRET} database-pass-7") == "*** ***"
    monkeypatch.delenv("EPO_TEST_DB_SECRET_VALUE")
    with pytest.raises(ServiceConfigError) as info:
        ServiceConfig.load(str(path))
    assert str(info.value) == (
        f"{path}: database_password_env: the environment variable EPO_TEST_DB_SECRET_VALUE is not set."
    )
    assert os.environ.get("EPO_TEST_OPERATOR_TOKEN") == SECRET
