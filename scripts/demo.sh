#!/usr/bin/env bash
# The main job on the embedded default (local Butler repository, local BPS):
#   1. set up (Python >= 3.12 virtual environment, this package),
#   2. build the demo repository (synthetic g/r/i coadds + real 2MASS J/H/K),
#   3. shard its sample catalog into the Butler (zooniverse_targets, htm7),
#   4. `bps submit` config/bps/zooniverse.yaml (ctrl_bps_parsl, this machine)
#      running shardCatalog -> extractStamps -> composeRgb,
#   5. print the output collection, counts, what happened to every catalog
#      row, and the path of a contact sheet of the pictures,
#   6. put and get a single hand-made PNG cutout through the Butler,
#   7. EPO's side (zooniverse-epo, state in OUTPUT_DIR/epo_service): register
#      the PI's project, poll (retrieve, validate, quarantine), approve as an
#      operator, publish, serve the public directory over HTTP and fetch
#      the published URLs back,
#   8. the Zooniverse subject set: `zooniverse-epo subject-set` through
#      panoptes-client, here against a local stand-in of the Zooniverse API
#      (lsst.epo.zooniverse.demo.panoptes_standin; this machine cannot reach
#      Zooniverse), run twice to show that nothing is sent twice, then
#      linked to the project's workflow.
# Usage: scripts/demo.sh [REPO] [OUTPUT_DIR]   (defaults: demo_repo demo_output)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EPO_ZOONIVERSE_VENV:-$root/.venv}
repo=$(realpath -m "${1:-$root/demo_repo}")
output=$(realpath -m "${2:-$root/demo_output}")

bash "$root/scripts/setup_env.sh"
export PATH="$venv/bin:$PATH"
export EPO_ZOONIVERSE_DIR="$root"
export DAF_BUTLER_CONFIG_PATH="$("$venv/bin/python" -c 'from lsst.epo.zooniverse.butler.config import CONFIG_DIR; print(CONFIG_DIR)')"

butler make-zooniverse-demo-repo --overwrite "$repo"
butler shard-zooniverse-catalog "$repo" "$repo/catalogs/sample_catalog.csv" \
    --output-run targets/sample --extra-columns note

mkdir -p "$output"
cd "$output"
bps submit "$root/config/bps/zooniverse.yaml" \
    -b "$repo" -i demo/defaults,targets/sample -o u/demo_pi/zooniverse_cutouts \
    -d "skymap = 'zooniverse_demo'" \
    --extra-qgraph-options "--dataset-query-constraint zooniverse_targets -C composeRgb:$root/config/composeRgb_demo.py"

butler summarize-zooniverse-run "$repo" u/demo_pi/zooniverse_cutouts \
    --contact-sheet "$output/contact_sheet.png" --accounting "$output/accounting.csv"
python "$root/examples/put_get_cutout.py" "$repo" "$output"

# EPO's side: a fresh service state for this run of the demo.
rm -rf "$output/epo_service"
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Notifications to the PI are logged at INFO; the demo shows the commands' own output.
epo() { zooniverse-epo --log-level WARNING --public-url "http://127.0.0.1:$port/" "$@"; }
epo register demo-galaxies --zooniverse-project 1 --owner demo_pi --repo "$repo" \
    --collections 'u/demo_pi/*' --dataset-type zooniverse_rgb --dataset-type zooniverse_cutout \
    --contact demo_pi@example.org
epo poll
epo review
epo approve $(epo review --json | python -c 'import json, sys; print(" ".join(b["batch"] for b in json.load(sys.stdin)))') \
    --operator demo_operator --reason "demo: reviewed the contact sheet"
epo publish
epo report demo-galaxies --output "$output/epo_report.csv"
epo report demo-galaxies --catalog u/demo_pi/zooniverse_cutouts --output "$output/epo_catalog_report.csv"
epo manifest demo-galaxies --output "$output/manifests"
# Not through the epo function: $! must be the server's own pid for the
# trap below to stop it.
zooniverse-epo --log-level WARNING --public-url "http://127.0.0.1:$port/" serve --port "$port" \
    2> "$output/epo_serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python - "$output/epo_report.csv" "http://127.0.0.1:$port/" <<'PY'
import csv, sys, time, urllib.request
report, base = sys.argv[1], sys.argv[2]
for attempt in range(100):
    try:
        status = urllib.request.urlopen(base + "status.json", timeout=5).read().decode()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("zooniverse-epo serve did not start")
rows = list(csv.DictReader(open(report)))
urls = [r["url"] for r in rows if r["state"] == "published"]
for url in urls:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "image/png" and response.read(8) == b"\x89PNG\r\n\x1a\n"
print(f"EPO: {len(urls)} published images fetched over HTTP from {base}, e.g. {urls[0] if urls else '-'}")
print(f"EPO: per-image report {report}; status {base}status.json:")
print(status)
PY

# The Zooniverse side: a local stand-in of the Zooniverse API (never the real
# one from the demo, whatever PANOPTES_* this shell has), then the subject
# set by Zooniverse's subject-set import of the manifest EPO publishes.
zport=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python -m lsst.epo.zooniverse.demo.panoptes_standin --port "$zport" --project-id 1 > "$output/panoptes_standin.log" 2>&1 &
standin=$!
trap 'kill $server $standin 2>/dev/null || true' EXIT
export PANOPTES_ENDPOINT="http://127.0.0.1:$zport" PANOPTES_CLIENT_ID=epo-app \
    PANOPTES_CLIENT_SECRET=standin-client-secret-0123
unset PANOPTES_USERNAME PANOPTES_PASSWORD
for attempt in $(seq 100); do
    python -c "import socket, sys; socket.create_connection(('127.0.0.1', $zport), 1)" 2>/dev/null && break
    sleep 0.1
done
epo subject-set demo-galaxies --name demo-first-light --poll-interval 1
epo subject-set demo-galaxies --name demo-first-light --poll-interval 1   # again: nothing is sent twice
epo link-workflow demo-galaxies --name demo-first-light --workflow 901    # the stand-in's workflow
epo subjects demo-galaxies --json > "$output/zooniverse_subjects.json"
python - "$output/zooniverse_subjects.json" <<'PY'
import json, sys
subjects = json.load(open(sys.argv[1]))
print(f"Zooniverse: {len(subjects)} subjects recorded in subject set(s) "
      f"{sorted({s['subject_set_id'] for s in subjects})} (list: {sys.argv[1]})")
PY
