#!/usr/bin/env bash
# Set up epo_zooniverse on this machine: find Python >= 3.12, make a virtual
# environment (.venv, or $EPO_ZOONIVERSE_VENV), install the project into it,
# and with --test-tools install the Debian checkers, the PostgreSQL server,
# the Chromium browser and Slurm (with munge) the tests use.
# Safe to run again: it only redoes what changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EPO_ZOONIVERSE_VENV:-$root/.venv}
want_test_tools=0
for arg in "$@"; do
    case "$arg" in
        --test-tools) want_test_tools=1 ;;
        *) echo "setup_env.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

say() { echo "[setup] $*" >&2; }

is_python312() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.14 python3.13 python3.12 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 && is_python312 "$candidate"; then
            command -v "$candidate"; return 0
        fi
    done
    # pyenv installs that are not the selected version.
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    if command -v pyenv >/dev/null 2>&1; then pyenv_root=$(pyenv root); fi
    for candidate in $(ls -d "$pyenv_root"/versions/3.* 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/bin/python" ] && is_python312 "$candidate/bin/python"; then
            echo "$candidate/bin/python"; return 0
        fi
    done
    return 1
}

if [ ! -x "$venv/bin/python" ] || ! is_python312 "$venv/bin/python"; then
    if ! python=$(find_python); then
        echo "epo_zooniverse needs Python >= 3.12 (the Rubin middleware requires it)." >&2
        echo "None was found on PATH or under pyenv; install one (e.g. 'pyenv install 3.12')" >&2
        echo "or point PYTHON at it: PYTHON=/path/to/python3.12 $0" >&2
        exit 1
    fi
    say "making $venv with $python ($("$python" --version))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi

# Install (editable) when the project's requirements changed since last time.
stamp="$venv/.epo_zooniverse_installed"
fingerprint=$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ] || \
   ! "$venv/bin/python" -c 'import lsst.epo.zooniverse.version' >/dev/null 2>&1; then
    say "installing lsst-epo-zooniverse and its dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet -e "$root[test,bench,postgres]"
    echo "$fingerprint" > "$stamp"
fi

# The state-database tests start their own throw-away PostgreSQL server
# (tests/postgres_server.py): they need initdb and pg_ctl, from PATH or from
# Debian's /usr/lib/postgresql/<version>/bin, and as root a `postgres` account
# to run the server as.  The Debian package's default cluster is not used.
have_postgres_server() {
    if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
        return 1
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        return 0
    fi
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then return 0; fi
    done
    return 1
}

# CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 misread interleaved members of a
# ZIP (gh-127847), which breaks BPS jobs reading larger quantum graphs:
# every interpreter of this environment loads the workaround at start-up
# (a .pth file in site-packages; on fixed Pythons the command removes it).
"$venv/bin/python" -m epo_zooniverse_zipfile_fix install >/dev/null

if [ "$want_test_tools" = 1 ]; then
    missing=()
    command -v pngcheck >/dev/null 2>&1 || missing+=(pngcheck)
    command -v fitsverify >/dev/null 2>&1 || missing+=(fitsverify)
    have_postgres_server || missing+=(postgresql)
    # The review-page test drives a real headless Chromium through
    # Playwright (tests/test_review_page.py); browsers cannot be downloaded
    # by Playwright here, so it uses Debian's.
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
        && [ ! -x /usr/bin/chromium ]; then
        missing+=(chromium)
    fi
    # The batch test (tests/test_slurm_bps.py) starts a throw-away two-node
    # Slurm cluster of its own (tests/slurm_cluster.py: private slurm.conf
    # and munge key, stopped afterwards); it needs Debian's Slurm and munge.
    # Without apt-get they are not installed: the test then skips, and
    # fails under CI.
    if command -v apt-get >/dev/null 2>&1; then
        for tool in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
            command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] \
                || missing+=("${tool#*:}")
        done
    elif ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
        say "WARNING: no apt-get and no Slurm: tests/test_slurm_bps.py will skip (and fail with CI=true)"
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
            say "installing Debian packages: ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null
            apt-get install -y -qq "${missing[@]}" >/dev/null
        elif command -v sudo >/dev/null 2>&1; then
            say "installing Debian packages with sudo: ${missing[*]}"
            sudo apt-get update -qq >/dev/null
            sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "The tests need ${missing[*]}: install them (apt-get install ${missing[*]})." >&2
            exit 1
        fi
    fi
fi
say "ready: $venv"
