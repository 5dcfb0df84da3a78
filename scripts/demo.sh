#!/usr/bin/env bash
# The main job on the embedded default (local Butler repository): set up,
# build the demo repository, then put and get a PNG cutout through the Butler.
# Usage: scripts/demo.sh [REPO] [OUTPUT_DIR]   (defaults: demo_repo demo_output)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EPO_ZOONIVERSE_VENV:-$root/.venv}
repo=${1:-$root/demo_repo}
output=${2:-$root/demo_output}

bash "$root/scripts/setup_env.sh"
"$venv/bin/butler" make-zooniverse-demo-repo --overwrite "$repo"
"$venv/bin/python" "$root/examples/put_get_cutout.py" "$repo" "$output"
