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


"""Helpers for the pipeline tests: the real ``pipetask`` of this
environment, and a run's outputs in a form two runs can be compared by.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from lsst.epo.zooniverse.butler.config import CONFIG_DIR

BIN = Path(sys.executable).parent
"""Where this environment's ``pipetask`` is."""

ROOT = Path(__file__).resolve().parent.parent
"""The package's source tree (``EPO_ZOONIVERSE_DIR``)."""

RUN_OUTPUT_TYPES = ("zooniverse_rgb", "zooniverse_stamps", "zooniverse_rgb_report")
"""The dataset types `run_outputs` collects by default."""


def command_environment(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """Return the environment of a ``bps``, ``butler`` or ``pipetask``
    subprocess: ``base`` (default `os.environ`) with this environment's
    programs first on ``PATH``, the package's Butler configs on
    ``DAF_BUTLER_CONFIG_PATH`` and ``EPO_ZOONIVERSE_DIR`` (which the
    shipped submit files include from), then ``extra`` (e.g. ``PWD``,
    under which BPS makes its submit directory).
    """
    base = os.environ if base is None else base
    return dict(
        base,
        PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}",
        DAF_BUTLER_CONFIG_PATH=str(CONFIG_DIR),
        EPO_ZOONIVERSE_DIR=str(ROOT),
        **extra,
    )


def pipetask(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real ``pipetask`` command of this environment (with the
    package's Butler configs on ``DAF_BUTLER_CONFIG_PATH``); with
    ``check``, fail the test, showing its output, if it fails.
    """
    env = dict(os.environ, DAF_BUTLER_CONFIG_PATH=str(CONFIG_DIR))
    result = subprocess.run([str(BIN / "pipetask"), *args], capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, (
            f"pipetask {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def run_pipeline_file(
    repo: str,
    inputs: str,
    output: str,
    pipeline: str,
    where: str,
    *extra: str,
    constrain: bool = True,
    jobs: int = 1,
) -> None:
    """``pipetask run -j JOBS`` of a pipeline (file or URI with a subset)
    selecting data with ``where``, registering dataset types; with
    ``constrain``, only data IDs with catalog rows
    (``--dataset-query-constraint zooniverse_targets``).

    ``-j 1`` (the default) runs every quantum in the ``pipetask`` process;
    ``-j 2`` starts a new Python process for each quantum (multiprocessing
    "spawn"), whose imports cost more than a demo quantum's work (39 demo
    quanta: 7.6 s with ``-j 1``, 58 s with ``-j 2``), so the tests that
    need the spawned path ask for it.
    """
    constraint = ("--dataset-query-constraint", "zooniverse_targets") if constrain else ()
    pipetask(
        "run", "-j", str(jobs), "-b", repo, "-i", inputs, "-o", output, "-p", pipeline, "-d", where,
        "--register-dataset-types", *constraint, *extra,
    )  # fmt: skip


def stamps_content(data: bytes) -> bytes:
    """Return a Stamps file's headers and pixels without the Butler's
    provenance cards (dataset id and run, which differ between any two
    runs).

    Parameters
    ----------
    data : `bytes`
        The file.

    Returns
    -------
    content : `bytes`
        Every HDU's cards but the provenance ones, then its pixels.
    """
    from astropy.io import fits

    parts = []
    with fits.open(io.BytesIO(data)) as hdus:
        for hdu in hdus:
            cards = [card.image for card in hdu.header.cards if "LSST BUTLER" not in card.keyword]
            payload = b"" if hdu.data is None else hdu.data.tobytes()
            parts.append("".join(cards).encode() + payload)
    return b"\0".join(parts)


def run_outputs(butler, collection: str, dataset_types=RUN_OUTPUT_TYPES) -> dict[tuple, object]:
    """Return a run's outputs by dataset type and data ID: each RGB ZIP as
    bytes, each Stamps file as `stamps_content`, each report as a table.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The repository.
    collection : `str`
        The run's output collection.
    dataset_types : `tuple` [`str`], optional
        Which of `RUN_OUTPUT_TYPES` to collect.

    Returns
    -------
    outputs : `dict` [`tuple`, `object`]
        ``(dataset type, *sorted data ID items)`` to the output.
    """
    result = {}
    for dataset_type in dataset_types:
        for ref in butler.query_datasets(dataset_type, collections=collection, explain=False):
            key = (dataset_type, *sorted((k, str(v)) for k, v in ref.dataId.required.items()))
            if dataset_type == "zooniverse_rgb_report":
                result[key] = butler.get(ref)
                continue
            data = butler.getURI(ref).read()
            result[key] = stamps_content(data) if dataset_type == "zooniverse_stamps" else data
    return result


def assert_run_matches(butler, reference: str, collection: str) -> None:
    """Fail unless a run accounts for every catalog row as the reference
    run does, column by column (no row left unprocessed), and holds the
    same RGB ZIPs and Stamps
    (`run_outputs`: byte for byte, the Stamps' provenance cards aside).

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        The repository.
    reference : `str`
        The reference run's output collection (e.g. a local ``pipetask
        run``).
    collection : `str`
        The run to check.
    """
    from lsst.epo.zooniverse.pipeline.accounting import account_targets

    expected = account_targets(butler, reference)
    accounted = account_targets(butler, collection)
    assert "not_processed" not in set(expected["status"])
    assert len(accounted) == accounted.meta["n_rows"] == len(expected)
    for column in ("row_index", "object_id", "status", "reason", "tract", "patch", "file"):
        assert list(accounted[column]) == list(expected[column]), column
    reference_outputs = run_outputs(butler, reference, RUN_OUTPUT_TYPES[:2])
    outputs = run_outputs(butler, collection, RUN_OUTPUT_TYPES[:2])
    assert sorted(outputs) == sorted(reference_outputs)
    assert any(key[0] == "zooniverse_rgb" for key in reference_outputs)
    different = [key for key in reference_outputs if reference_outputs[key] != outputs[key]]
    assert not different, different
