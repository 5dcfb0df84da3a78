# This file is part of epo_zooniverse.
#
# See the COPYRIGHT file at the top-level directory of this distribution.
# Use of this source code is governed by the GPLv3 (see LICENSE).

"""pytest configuration: make the shared helpers importable and their
fixtures available to every test module.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from zooniverse_test_utils import test_butler  # noqa: F401
