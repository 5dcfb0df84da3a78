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

"""The Stamps Butler formatter: a round trip read back in a fresh process,
with parameters and the index component, and a bad put that leaves nothing.
"""

import json
import re

import astropy.io.fits as fits
import numpy as np
import pytest
from stamps_test_utils import (
    MASK_PLANES,
    METADATA,
    TESTS_DIR,
    cards,
    expected_primary,
    make_stamps,
    verify_fits,
)
from zooniverse_test_utils import (
    repository_files,
    run_in_fresh_process,
)

from lsst.epo.zooniverse.formats.stamps import (
    Stamp,
    Stamps,
)


def test_butler_round_trip_in_fresh_process(tmp_path, test_butler):
    original = make_stamps()
    ref = test_butler.put(original, "test_stamps")
    assert original.metadata == METADATA  # put does not change the caller's object
    path = test_butler.getURI(ref).ospath
    assert path.endswith(".fits")
    verify_fits(path)

    header = fits.getheader(path)
    provenance = [(c.keyword, c.value) for c in header.cards if c.keyword.startswith("LSST BUTLER ")]
    assert dict(provenance)["LSST BUTLER ID"] == str(ref.id)
    assert dict(provenance)["LSST BUTLER RUN"] == "test_run"
    assert dict(provenance)["LSST BUTLER DATASETTYPE"] == "test_stamps"
    for card in header.cards:
        if card.keyword.startswith("LSST BUTLER "):
            assert card.image.startswith(f"HIERARCH {card.keyword} = ")
    # Provenance sits after the user metadata, as obs_base adds it.
    assert cards(header) == expected_primary(original, provenance=provenance)

    root = str(tmp_path / "repo")
    code = f"""
        import json, math, sys
        import numpy as np
        sys.path.insert(0, {TESTS_DIR!r})
        from lsst.daf.butler import Butler
        from stamps_test_utils import make_stamps

        butler = Butler.from_config({root!r}, collections="test_run")
        full = butler.get("test_stamps")
        by_index = butler.get("test_stamps", parameters={{"indices": [2, 0]}})
        by_id = butler.get("test_stamps", parameters={{"object_ids": ["obj b"]}})
        light = butler.get("test_stamps", parameters={{"use_variance": False, "indices": [1]}})
        try:
            butler.get("test_stamps", parameters={{"use_variance": "no"}})
            bad_parameter = ""
        except ValueError as err:
            bad_parameter = str(err)
        index = butler.get("test_stamps.index")
        original = make_stamps()
        print(json.dumps({{
            "type": type(full).__name__,
            "equals": full.equals(original),
            "metadata": full.metadata,
            "provenance": full.provenance,
            "mask_planes": full.mask_planes,
            "by_index": [s.object_id for s in by_index],
            "by_index_equal": by_index[0].equals(original[2]) and by_index[1].equals(original[0]),
            "by_id_equal": len(by_id) == 1 and by_id[0].equals(original[1]),
            "light": [light.use_variance, light[0].variance is None,
                      bool(np.array_equal(light[0].image, original[1].image, equal_nan=True))],
            "bad_parameter": bad_parameter,
            "index_type": type(index).__name__,
            "index_ids": [str(v) for v in index["object_id"]],
            "index_bbox": [[int(index[c][k]) for c in ("bbox_x0", "bbox_y0", "bbox_width", "bbox_height")]
                           for k in range(len(index))],
            "index_ra": [None if math.isnan(v) else float(v) for v in index["ra"]],
        }}))
    """
    result = json.loads(run_in_fresh_process(code).strip().splitlines()[-1])
    assert result["type"] == "Stamps"
    assert result["equals"]
    assert result["metadata"] == METADATA
    assert result["provenance"] == dict(provenance)
    assert result["mask_planes"] == MASK_PLANES
    assert result["by_index"] == ["o'c", "1234567890123"] and result["by_index_equal"]
    assert result["by_id_equal"]
    assert result["light"] == [False, True, True]
    assert "use_variance must be True or False" in result["bad_parameter"]
    assert result["index_type"] == "Table"
    assert result["index_ids"] == ["1234567890123", "obj b", "o'c"]
    assert result["index_bbox"] == [list(s.bbox) for s in original]
    assert result["index_ra"] == [150.125, None, 10.5]

    # Same in this process, through the component name.
    index = test_butler.get("test_stamps.index")
    assert list(index["object_id"]) == original.object_ids
    assert "LSST BUTLER ID" not in index.meta


def test_butler_bad_put_leaves_nothing(tmp_path, test_butler):
    root = str(tmp_path / "repo")
    before = repository_files(root)
    stamp = make_stamps()[0]
    with pytest.raises(TypeError):
        test_butler.put([stamp], "test_stamps")
    with pytest.raises(TypeError):
        test_butler.put(stamp, "test_stamps")
    # Errors raised while writing come wrapped in the datastore's
    # RuntimeError (or directly, if the formatter checks in can_accept).
    for bad, error, regex in [
        (Stamps([stamp], metadata={"LIST": [1, 2]}), TypeError, "Cannot write"),
        (Stamps([stamp], metadata={"NAME": "\u00c9toile"}), ValueError, "ASCII"),
        (Stamps([stamp], metadata={"N_STAMPS": 1}), ValueError, "reserved"),
        (Stamps([Stamp(np.ones((2, 2)))]), ValueError, "no mask"),
    ]:
        with pytest.raises((error, RuntimeError)) as info:
            test_butler.put(bad, "test_stamps")
        cause = info.value if isinstance(info.value, error) else info.value.__cause__
        assert isinstance(cause, error) and re.search(regex, str(cause)), repr(info.value)
    assert test_butler.query_datasets("test_stamps", collections="test_run", explain=False) == []
    assert list(test_butler.registry.queryDatasets("test_stamps", collections="test_run")) == []
    assert repository_files(root) == before
    # The repository is still usable.
    ref = test_butler.put(Stamps([stamp], metadata={"BAND": "y"}), "test_stamps")
    assert test_butler.get(ref).equals(Stamps([stamp], metadata={"BAND": "y"}))
