#!/usr/bin/env bash
# Sets up pitlane's locked Python environment (.venv) on a fresh machine: finds a Python 3.12,
# installs pipenv for it if missing, then installs exactly what Pipfile.lock pins (dev tools included).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python312() {
    local candidate
    for candidate in "${PITLANE_PYTHON:-}" python3.12 python3 python; do
        [[ -n $candidate ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    # pyenv keeps versions outside PATH unless selected; look there too.
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root=$(pyenv root)
        for candidate in $(ls -d "$root"/versions/3.12* 2>/dev/null | sort -V -r); do
            if [[ -x $candidate/bin/python3 ]]; then
                echo "$candidate/bin/python3"
                return 0
            fi
        done
    fi
    # uv-managed or Homebrew Pythons, then the usual prefixes.
    for candidate in /usr/local/bin/python3.12 /opt/homebrew/bin/python3.12 \
        "$HOME"/.local/share/uv/python/cpython-3.12*/bin/python3.12; do
        [[ -x $candidate ]] && { echo "$candidate"; return 0; }
    done
    return 1
}

# The demo pushes its model to a real OCI registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1.
ensure_system_packages() {
    local missing=()
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    command -v git >/dev/null 2>&1 || missing+=(git)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        echo "bootstrap: installing ${missing[*]} (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    else
        echo "bootstrap: pitlane's demo needs ${missing[*]}: install it (Debian/Ubuntu: sudo apt-get install ${missing[*]})," >&2
        echo "bootstrap: then run this again." >&2
        exit 1
    fi
}
ensure_system_packages

python=$(find_python312) || {
    echo "pitlane needs Python 3.12 (donkeycar 5.4 requires it) and none was found." >&2
    echo "Install it (pyenv install 3.12, apt install python3.12, or uv python install 3.12)," >&2
    echo "or point PITLANE_PYTHON at it, then run this again." >&2
    exit 1
}
echo "bootstrap: using $python ($("$python" --version))"

if ! "$python" -m pipenv --version >/dev/null 2>&1; then
    echo "bootstrap: installing pipenv for $python"
    "$python" -m pip install --quiet --disable-pip-version-check pipenv
fi

export PIPENV_VENV_IN_PROJECT=1 PIPENV_YES=1 PIPENV_NOSPIN=1 PIPENV_IGNORE_VIRTUALENVS=1
"$python" -m pipenv --python "$python" sync --dev
echo "bootstrap: environment ready in .venv"
