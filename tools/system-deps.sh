#!/usr/bin/env bash
# The one place that installs the system packages blacksoil's tests use, from Debian's packages:
#   bubblewrap  - the tool sandbox (security/, agents/ sandboxed tools)
#   postgresql  - the experience store's PostgreSQL tests (a throwaway cluster on 127.0.0.1)
#   chromium    - the console's browser tests
#   iproute2    - `ss`: the DDP wire bench reads the kernel's per-socket byte counters with it
# Called by `make system-deps` (so `make test`) and by tests/conftest.py before any test runs, so any
# subset of the suite works on a fresh machine. Installs only what is missing; as a non-root user it
# installs nothing and prints the one command to run. The product itself never runs apt-get.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
install="apt-get install -y ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
    echo "blacksoil: missing system packages (${missing[*]}); run: sudo apt-get update && sudo $install" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "blacksoil: missing system packages (${missing[*]}) and no apt-get here; install them with your package manager" >&2
    exit 2
fi
echo "blacksoil: installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -q ${missing[*]} >/dev/null
