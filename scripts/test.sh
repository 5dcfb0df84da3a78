#!/usr/bin/env bash
# Set up (including the Debian checkers pngcheck and fitsverify) and run the
# whole test suite on both cores.  Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EPO_ZOONIVERSE_VENV:-$root/.venv}

bash "$root/scripts/setup_env.sh" --test-tools
cd "$root"
exec "$venv/bin/python" -m pytest -n 2 tests "$@"
