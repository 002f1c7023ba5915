#!/usr/bin/env bash
# The chaos checker's own tests (pytest), in chaos/.venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -x "$here/.venv/bin/python" ]]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
cd "$here"
exec "$here/.venv/bin/python" -m pytest -q -p no:cacheprovider test_checker.py
