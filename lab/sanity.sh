#!/bin/sh
# ansible-test sanity on the collection, the way collection maintainers run it.
# ansible-test wants the collection inside a git work tree laid out as
# ansible_collections/NS/NAME, so this copies it into a scratch one; --venv
# installs each test's requirements from the package index into
# ~/.ansible/test/venv (cached after the first run).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/.venv/bin
python_version=$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test first downloads a pip bootstrap script from a host this
# machine cannot reach; it looks in its cache before downloading. This
# stand-in does what that script does here: ensurepip, then the pip version
# ansible-test pins.
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
cat > "$cache/get_pip_24_2.py" <<'PY'
"""dsrprov's stand-in for ansible-test's pip bootstrap (its download host is unreachable here)."""
import subprocess
import sys

subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True)
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pip==24.2"], check=True)
PY

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tree=$scratch/ansible_collections/dsrprov/dsr
mkdir -p "$(dirname "$tree")"
cp -r "$here/src/ansible_collections/dsrprov/dsr" "$tree"
find "$tree" -name __pycache__ -prune -exec rm -rf {} + -o -name .ansible -prune -exec rm -rf {} +
cd "$tree"
# ansible-test counts untracked files too: keep its own output (and the
# venv it delegates to) out of what it checks.
printf 'tests/output/\n' > .gitignore
git init -q . && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm sanity
# validate-modules needs pwsh to read a PowerShell module's arg spec, and pwsh
# is in no package registry reachable here (ansible-lint forbids skipping it in
# the ignore file): the PowerShell modules are left out of this run; tests/unit
# parses every script with tree-sitter and compiles its C# with mcs instead.
"$bin/ansible-test" sanity --venv --python "$python_version" \
  --exclude plugins/modules/dsr_win_facts.ps1 --exclude plugins/modules/dsr_win_firewall.ps1 \
  --exclude plugins/modules/dsr_win_loopback.ps1 --exclude plugins/modules/dsr_win_netconfig.ps1 "$@"
