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

"""The PI tutorial notebook, executed top to bottom in a real kernel
against the demo repository and the Panoptes stand-in: interface drift
breaks it here.
"""

import collections
import os
import sys
from pathlib import Path

import nbclient
import nbformat

from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "pi_tutorial.ipynb"


def _outputs(notebook: nbformat.NotebookNode) -> str:
    """Return every text output of an executed notebook."""
    text = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output["text"])
            elif output.get("output_type") in ("execute_result", "display_data"):
                text.append(output.get("data", {}).get("text/plain", ""))
            elif output.get("output_type") == "error":
                text.append("\n".join(output.get("traceback", [])))
    return "\n".join(text)


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_tutorial_notebook_runs_to_a_subject_set(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    with PanoptesStandIn(project_id=4242) as zooniverse:
        # The kernel inherits this process's environment.
        monkeypatch.setenv("PANOPTES_ENDPOINT", zooniverse.url)
        monkeypatch.setenv("PANOPTES_CLIENT_ID", zooniverse.client_id)
        monkeypatch.setenv("PANOPTES_CLIENT_SECRET", zooniverse.client_secret)
        monkeypatch.setenv("TUTORIAL_ZOONIVERSE_PROJECT", "4242")
        monkeypatch.setenv("TUTORIAL_ZOONIVERSE_WORKFLOW", next(iter(zooniverse.workflows)))
        monkeypatch.setenv("EPO_TUTORIAL_DIR", str(tmp_path / "work"))
        monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        client = nbclient.NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        try:
            client.execute()
        finally:
            executed = tmp_path / "executed.ipynb"
            nbformat.write(notebook, executed)
            print(f"executed notebook: {executed}")
        text = _outputs(notebook)
        sets = list(zooniverse.subject_sets.values())
        external_ids = zooniverse.external_ids(sets[0]["id"]) if sets else []
        creates = len(zooniverse.api_requests("POST", "/api/subject_set_imports"))
        (workflow,) = zooniverse.workflows.values()
    assert [s["display_name"] for s in sets] == ["tutorial-first-light"]
    # One subject per published object, sent once although the notebook
    # synchronised twice (one import only).
    counts = collections.Counter(external_ids)
    assert counts and max(counts.values()) == 1, counts.most_common(3)
    assert all(e.startswith("demo-galaxies:") for e in external_ids)
    assert creates == 1
    assert workflow["links"]["subject_sets"] == [sets[0]["id"]]
    assert f"{len(external_ids)} published subjects" in text
    assert zooniverse.client_secret not in text
    assert (tmp_path / "work" / "contact_sheet.png").stat().st_size > 0
