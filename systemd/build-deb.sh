#!/bin/bash
# Builds the Debian package: `make deb`, or systemd/build-deb.sh [OUTDIR] (default dist/).
# Architecture all: the package ships Guardian's wheel, and its postinst builds the venv in
# /opt/guardian/.venv (dependencies from the package registry; uvloop and marisa-trie as
# wheels for arm64, armhf and amd64). The files are exactly install.sh's (--files-only), plus
# the wheel, the Debian docs and the lintian overrides. Needs dpkg-deb and a Python with pip
# and wheel (PYTHON, default .venv/bin/python).
set -euo pipefail
umask 022  # what we ship and install has its own modes, whatever the caller's umask (a daemon's 027 included)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:-$REPO/dist}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/guardian/__init__.py")
[ -n "$VERSION" ] || { echo "build-deb.sh: no __version__ in guardian/__init__.py" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root

bash "$HERE/install.sh" --destdir "$ROOT" --files-only >/dev/null

# The wheel, from a clean copy of the sources (an in-tree build/ could carry stale files).
mkdir -p "$WORK/src"
cp -r "$REPO/guardian" "$REPO/rules" "$REPO/setup.cfg" "$REPO/pyproject.toml" \
    "$REPO/README.md" "$WORK/src/"
[ ! -d "$REPO/web" ] || cp -r "$REPO/web" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$ROOT/opt/guardian/wheels"
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --no-index -w "$ROOT/opt/guardian/wheels" "$WORK/src"
chmod 0644 "$ROOT"/opt/guardian/wheels/*.whl

DOC=$ROOT/usr/share/doc/guardian
mkdir -p "$DOC" "$ROOT/usr/share/lintian/overrides"
install -m 0644 "$HERE/deb/copyright" "$DOC/copyright"
WHEN=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'guardian (%s) stable; urgency=medium\n\n  * Built from the Guardian repository (make deb).\n\n -- Guardian maintainers <guardian@example.org>  %s\n' \
    "$VERSION" "$WHEN" | gzip -9n > "$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"
install -m 0644 "$HERE/deb/lintian-overrides" "$ROOT/usr/share/lintian/overrides/guardian"
mkdir -p "$ROOT/usr/share/man/man1"
gzip -9n < "$HERE/deb/guardian.1" > "$ROOT/usr/share/man/man1/guardian.1.gz"
chmod 0644 "$ROOT/usr/share/man/man1/guardian.1.gz"

mkdir -p "$ROOT/DEBIAN"
for script in postinst prerm postrm; do install -m 0755 "$HERE/deb/$script" "$ROOT/DEBIAN/$script"; done
echo /etc/guardian/guardian.yaml > "$ROOT/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: guardian
Version: $VERSION
Architecture: all
Maintainer: Guardian maintainers <guardian@example.org>
Installed-Size: $SIZE
Depends: python3 (>= 3.11), python3-venv, python3-pip, passwd, iproute2, ieee-data, libpcap0.8, init-system-helpers (>= 1.54)
Section: net
Priority: optional
Homepage: https://example.org/guardian
Description: home-network guardian: family DNS filtering for a Raspberry Pi
 Guardian answers the household's DNS and filters it per child: categories,
 schedules, screen-time budgets, safe search, risk events for the parents,
 and a dashboard. Runs as two hardened systemd services (guardian and
 guardian-web) under their own users.
CONTROL

mkdir -p "$OUT"
DEB=$OUT/guardian_${VERSION}_all.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
