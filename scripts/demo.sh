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
#   7. EPO's side through EPO's web application (state in
#      OUTPUT_DIR/epo_service): `zooniverse-epo serve-api` on 127.0.0.1
#      (standalone tokens) with a demo PI token (demo_pi, scope pi) and a
#      demo operator token (`zooniverse-epo token create`); the PI registers
#      the project with EpoClient; `zooniverse-epo worker --once` retrieves,
#      validates and quarantines; the operator approves every quarantined
#      batch through the operators' API; the worker publishes; the PI reads
#      the notification digests (one per cycle) and the published subjects
#      (OUTPUT_DIR/pi_notifications.json, pi_subjects.json); then the
#      reports and manifest, and the public directory served over HTTP with
#      every published URL fetched back,
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

# EPO's side, through EPO's web application: a fresh service state for this
# run of the demo (./epo_service, shared by the web application, the worker
# and the commands below).
rm -rf "$output/epo_service"
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)       # zooniverse-epo serve: the public location
api_port=$(free_port)   # zooniverse-epo serve-api: the web application
api="http://127.0.0.1:$api_port/epo-zooniverse"
pids=""
trap 'kill $pids 2>/dev/null || true' EXIT
# Notifications to the PI are logged at INFO; the demo shows the commands' own output.
epo() { zooniverse-epo --log-level WARNING --public-url "http://127.0.0.1:$port/" "$@"; }
# Standalone tokens (EPO_WEB_AUTH=tokens, the default): one for the PI, one
# for an operator; each printed once on stdout (kept here in variables),
# only their digests are stored.
pi_token=$(epo token create --user demo_pi --scope pi --days 1 --comment "demo PI")
operator_token=$(epo token create --user demo_operator --scope operator --days 1 --comment "demo operator")
export EPO_DEMO_URL="$api" EPO_DEMO_PI_TOKEN="$pi_token" EPO_DEMO_OPERATOR_TOKEN="$operator_token"
# Not through the epo function: $! must be the server's own pid for the
# trap to stop it.
EPO_WEB_AUTH=tokens EPO_WEB_PATH_PREFIX=/epo-zooniverse \
    zooniverse-epo --log-level WARNING --public-url "http://127.0.0.1:$port/" serve-api --port "$api_port" \
    > "$output/epo_api.log" 2>&1 &
pids="$pids $!"
for attempt in $(seq 300); do
    python -c "import sys, urllib.request; urllib.request.urlopen('$api/healthz', timeout=2)" 2>/dev/null && break
    [ "$attempt" = 300 ] && { echo "zooniverse-epo serve-api did not start; see $output/epo_api.log" >&2; exit 1; }
    sleep 0.2
done
echo "EPO: web application at $api/ (log $output/epo_api.log)"

# The PI registers the project with EpoClient and the PI token.
python - "$repo" <<'PY'
import os, sys
from lsst.epo.zooniverse.pi.client import EpoClient
with EpoClient(os.environ["EPO_DEMO_URL"], token=os.environ["EPO_DEMO_PI_TOKEN"]) as epo:
    project = epo.register("demo-galaxies", zooniverse_project_id=1, repo=sys.argv[1],
                           collections="u/demo_pi/*", dataset_types=["zooniverse_rgb", "zooniverse_cutout"],
                           contact="demo_pi@example.org")
print(f"PI demo_pi: registered {project['name']} on {project['collections']} (owner {project['owner']})")
PY
# The worker: one cycle retrieves, validates and quarantines (its cycle
# line and the PI's digest are in the log).
worker() {
    zooniverse-epo --log-level INFO --public-url "http://127.0.0.1:$port/" worker --once 2>> "$output/epo_worker.log" \
        || { tail -n 20 "$output/epo_worker.log" >&2; return 1; }
}
: > "$output/epo_worker.log"
worker
# The operator approves every quarantined batch through the operators' API.
python - <<'PY'
import os, httpx
with httpx.Client(base_url=os.environ["EPO_DEMO_URL"] + "/v1/operator/", timeout=120,
                  headers={"Authorization": f"Bearer {os.environ['EPO_DEMO_OPERATOR_TOKEN']}"}) as http:
    batches = []
    while True:
        page = http.get("batches", params={"offset": len(batches), "limit": 500}).raise_for_status().json()
        batches += page["batches"]
        if not page["batches"] or len(batches) >= page["total"]:
            break
    for b in batches:
        print(f"  quarantined {b['batch']} ({b['project']}, {b['dataset_type']}): {b['images']}")
    answer = http.post("decisions", json={"decision": "approve", "batches": [b["batch"] for b in batches],
                                          "reason": "demo: reviewed the contact sheet"}).raise_for_status().json()
failed = [r for r in answer["results"] if not r["ok"]]
assert batches and not failed, failed
print(f"Operator demo_operator: approved {len(answer['results'])} batches "
      f"({sum(r['images'] for r in answer['results'])} images) through {os.environ['EPO_DEMO_URL']}/v1/operator/")
PY
# The worker's next cycle publishes the approved pictures.
worker
grep -h " cycle 1: \|digests sent" "$output/epo_worker.log" | sed 's/^.* INFO [^ ]* Worker /worker /' || true
# The PI reads the notification digests and the published subjects.
python - "$output" <<'PY'
import json, os, sys
from lsst.epo.zooniverse.pi.client import EpoClient
with EpoClient(os.environ["EPO_DEMO_URL"], token=os.environ["EPO_DEMO_PI_TOKEN"]) as epo:
    project = epo.project("demo-galaxies")
    messages = epo.notifications()
    subjects = epo.subjects("demo-galaxies")
for name, data in (("pi_notifications.json", messages), ("pi_subjects.json", subjects)):
    with open(os.path.join(sys.argv[1], name), "w") as stream:
        json.dump(data, stream, indent=1)
print(f"PI demo_pi: {project['name']} datasets {project['datasets']}, images {project['images']}")
print(f"PI demo_pi: {len(messages)} notification digests (demo_output/pi_notifications.json):")
for message in reversed(messages):
    print(f"  {message['created_at']}  {message['summary']}")
print(f"PI demo_pi: {len(subjects)} published subjects (demo_output/pi_subjects.json)")
assert subjects and len(messages) >= 3, (len(subjects), len(messages))
PY
epo report demo-galaxies --output "$output/epo_report.csv"
epo report demo-galaxies --catalog u/demo_pi/zooniverse_cutouts --output "$output/epo_catalog_report.csv"
epo manifest demo-galaxies --output "$output/manifests"
zooniverse-epo --log-level WARNING --public-url "http://127.0.0.1:$port/" serve --port "$port" \
    2> "$output/epo_serve.log" &
pids="$pids $!"
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
pids="$pids $!"
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
