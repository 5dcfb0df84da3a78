#!/usr/bin/env bash
# The main job on the embedded default (local Butler repository, local BPS):
#   1. set up (Python >= 3.12 virtual environment, this package),
#   2. build the demo repository (synthetic g/r/i coadds + real 2MASS J/H/K),
#   3. shard its sample catalog into the Butler (zooniverse_targets, htm7),
#   4. `bps submit` config/bps/zooniverse.yaml (ctrl_bps_parsl, this machine)
#      running shardCatalog -> extractStamps -> composeRgb,
#   5. print the output collection, counts, what happened to every catalog
#      row, and the path of a contact sheet of the pictures,
#   6. put and get a single hand-made PNG cutout through the Butler.
# Usage: scripts/demo.sh [REPO] [OUTPUT_DIR]   (defaults: demo_repo demo_output)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EPO_ZOONIVERSE_VENV:-$root/.venv}
repo=$(realpath -m "${1:-$root/demo_repo}")
output=$(realpath -m "${2:-$root/demo_output}")

bash "$root/scripts/setup_env.sh"
export PATH="$venv/bin:$PATH"
export EPO_ZOONIVERSE_DIR="$root"
export DAF_BUTLER_CONFIG_PATH="$("$venv/bin/python" -c 'from lsst.epo.zooniverse.butler_config import CONFIG_DIR; print(CONFIG_DIR)')"

butler make-zooniverse-demo-repo --overwrite "$repo"
butler shard-zooniverse-catalog "$repo" "$repo/catalogs/sample_catalog.csv" \
    --output-run targets/sample --extra-columns note

mkdir -p "$output"
cd "$output"
bps submit "$root/config/bps/zooniverse.yaml" \
    -b "$repo" -i demo/defaults,targets/sample -o demo/zooniverse_cutouts \
    -d "skymap = 'zooniverse_demo'" \
    --extra-qgraph-options "--dataset-query-constraint zooniverse_targets -C composeRgb:$root/config/composeRgb_demo.py"

butler summarize-zooniverse-run "$repo" demo/zooniverse_cutouts \
    --contact-sheet "$output/contact_sheet.png" --accounting "$output/accounting.csv"
python "$root/examples/put_get_cutout.py" "$repo" "$output"
