#!/bin/bash
# Guardian's installer for Raspberry Pi OS / Debian bookworm (arm64, armhf, amd64).
#
#   sudo systemd/install.sh                  install, or upgrade in place (config and data kept)
#   sudo systemd/install.sh --uninstall      remove the program and units; keep config and data
#   sudo systemd/install.sh --uninstall --purge   ... and remove /etc/guardian, /var/lib/guardian, the users
#   systemd/install.sh --dry-run             print every file it would write and command it would run
#   systemd/install.sh --destdir DIR         install into DIR (a staging or throwaway root)
#
# Options: --from SOURCE (a checkout, a wheel, or a requirement such as "guardian==0.1.0";
# default: this checkout, or the wheel the .deb ships), --python PYTHON (default python3),
# --pip-args "ARGS" (e.g. "--no-index --find-links /media/usb/wheels"), --no-start,
# --files-only (with --destdir: stage the files alone, as `make deb` does).
# Output lines that tell what happens start with "file ", "dir ", "run " or "remove ".
set -euo pipefail
umask 022  # what we ship and install has its own modes, whatever the caller's umask (a daemon's 027 included)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DESTDIR=${DESTDIR:-}
DRY_RUN=0
MODE=install
PURGE=0
START=1
FILES_ONLY=0  # stage the files only (no users, venv or systemctl): what build-deb.sh packs
PYTHON=${PYTHON:-python3}
PIP_ARGS=${GUARDIAN_PIP_ARGS:-}
SOURCE=""

PREFIX=/opt/guardian
VENV=$PREFIX/.venv
CONF_DIR=/etc/guardian
DATA_DIR=/var/lib/guardian
UNIT_DIR=/lib/systemd/system
UNITS="guardian.service guardian-web.service"
USER_DNS=guardian
USER_WEB=guardian-web

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; DESTDIR=$2; shift ;;
    --destdir=*) DESTDIR=${1#*=} ;;
    --uninstall) MODE=uninstall ;;
    --purge) PURGE=1 ;;
    --from) [ $# -ge 2 ] || die "--from needs a source"; SOURCE=$2; shift ;;
    --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PYTHON=$2; shift ;;
    --pip-args) [ $# -ge 2 ] || die "--pip-args needs arguments"; PIP_ARGS=$2; shift ;;
    --no-start) START=0 ;;
    --files-only) FILES_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ "$PURGE" = 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"
DESTDIR=${DESTDIR%/}
if [ -n "$DESTDIR" ]; then
  case "$DESTDIR" in /*) ;; *) DESTDIR=$(pwd)/$DESTDIR ;; esac
fi
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo), or try --dry-run"
fi

# --- the four kinds of step: each prints what it does, and does it unless --dry-run ---
run() {
  local shown
  shown=$(printf '%q ' "$@")
  echo "run ${shown% }"
  [ "$DRY_RUN" = 1 ] || "$@"
}
# dir PATH MODE OWNER:GROUP
dir() {
  echo "dir $1 $2 $3"
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$DESTDIR$1"
  chmod "$2" "$DESTDIR$1"
  own "$3" "$DESTDIR$1"
}
# file SOURCE PATH MODE OWNER:GROUP [keep]   ("keep": an existing file is the admin's, left as it is)
file() {
  if [ "${5:-}" = keep ] && [ -e "$DESTDIR$2" ]; then
    echo "keep $2 (already there: yours)"
    return 0
  fi
  echo "file $2 $3 $4"
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$(dirname "$DESTDIR$2")"
  install -m "$3" "$1" "$DESTDIR$2"
  own "$4" "$DESTDIR$2"
}
# link TARGET PATH
link() {
  echo "file $2 -> $1"
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$(dirname "$DESTDIR$2")"
  ln -sfn "$1" "$DESTDIR$2"
}
remove() {
  echo "remove $1"
  [ "$DRY_RUN" = 1 ] || rm -rf -- "${DESTDIR:?}$1" 2>/dev/null || rm -rf -- "$1"
}

# Owners by number from the target root's own user database (DESTDIR's, or this system's).
own() {
  local user=${1%%:*} group=${1#*:} uid gid
  uid=$(awk -F: -v n="$user" '$1 == n {print $3}' "$DESTDIR/etc/passwd" 2>/dev/null || true)
  gid=$(awk -F: -v n="$group" '$1 == n {print $3}' "$DESTDIR/etc/group" 2>/dev/null || true)
  if [ -n "$uid" ] && [ -n "$gid" ]; then
    chown -h "$uid:$gid" "$2"
  fi
}

# What holds port 53 here, and the documented fix (README: "Troubleshooting").
port53() {
  local holders name
  holders=$(ss -H -lnptu 'sport = :53' 2>/dev/null | grep -o 'users:(("[^"]*"' | sed 's/users:(("//; s/"$//' | sort -u || true)
  [ -n "$holders" ] || { echo "port 53: free"; return 0; }
  for name in $holders; do
    case "$name" in
      guardian|python3*) echo "port 53: held by Guardian itself (an upgrade restarts it)" ;;
      systemd-resolve*)
        echo "port 53: held by systemd-resolved's stub listener (127.0.0.53)."
        echo "  fix: mkdir -p /etc/systemd/resolved.conf.d &&" \
             "printf '[Resolve]\\nDNSStubListener=no\\n' > /etc/systemd/resolved.conf.d/guardian.conf &&" \
             "systemctl restart systemd-resolved" ;;
      dnsmasq)
        echo "port 53: held by dnsmasq."
        echo "  fix: systemctl disable --now dnsmasq  (if it also serves DHCP: keep it, with port=0 in /etc/dnsmasq.conf)" ;;
      pihole-FTL)
        echo "port 53: held by Pi-hole (pihole-FTL)."
        echo "  fix: systemctl disable --now pihole-FTL, or give Guardian another address in dns.listen" ;;
      *)
        echo "port 53: held by $name."
        echo "  fix: stop $name, or set dns.listen in $CONF_DIR/guardian.yaml to an address it does not use" ;;
    esac
  done
}

has_user() { grep -q "^$1:" "$DESTDIR/etc/passwd" 2>/dev/null; }
has_group() { grep -q "^$1:" "$DESTDIR/etc/group" 2>/dev/null; }
prefix_args() { [ -z "$DESTDIR" ] || echo "--prefix $DESTDIR"; }

users() {
  if [ -n "$DESTDIR" ] && [ ! -e "$DESTDIR/etc/passwd" ]; then
    echo "skip users: no $DESTDIR/etc/passwd (a staging root; the package's postinst makes them)"
    return 0
  fi
  # shellcheck disable=SC2046
  has_group $USER_DNS || run groupadd --system $(prefix_args) $USER_DNS
  # shellcheck disable=SC2046
  has_user $USER_DNS || run useradd --system $(prefix_args) --gid $USER_DNS --no-create-home \
    --home-dir $DATA_DIR --shell /usr/sbin/nologin --comment "Guardian DNS" $USER_DNS
  # The dashboard: its own user, in group guardian to read the config and the query log.
  # shellcheck disable=SC2046
  has_user $USER_WEB || run useradd --system $(prefix_args) --user-group --groups $USER_DNS --no-create-home \
    --home-dir $DATA_DIR/web --shell /usr/sbin/nologin --comment "Guardian dashboard" $USER_WEB
}

default_source() {
  if [ -n "$SOURCE" ]; then echo "$SOURCE"
  elif [ -f "$HERE/../setup.cfg" ]; then (cd "$HERE/.." && pwd)
  else
    local wheel
    wheel=$(ls "$PREFIX"/wheels/guardian-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$wheel" ] || die "nothing to install from: pass --from (a checkout, a wheel or a requirement)"
    echo "$wheel"
  fi
}

source_file() {  # a file shipped beside this script (a checkout's systemd/, or the package's copy)
  if [ -f "$HERE/$1" ]; then echo "$HERE/$1"
  elif [ -f "$HERE/../$1" ]; then echo "$HERE/../$1"
  else die "missing $1 beside install.sh"; fi
}

# The Debian packages Guardian needs at run time (a .deb install has them as Depends).
DEBS="python3-venv ieee-data libpcap0.8 iproute2"
debs() {
  local missing="" p
  for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    if [ -n "$DESTDIR" ]; then
      echo "note: this system lacks$missing (the target needs them)"
    else
      # shellcheck disable=SC2086
      run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    fi
  fi
}

# Every file Guardian installs besides the venv (the .deb ships exactly these, built by
# build-deb.sh with --files-only, plus its own packaging files).
stage_files() {
  dir $PREFIX 0755 root:root
  dir $CONF_DIR 0750 root:$USER_DNS
  dir $CONF_DIR/provision.d 0750 root:$USER_DNS
  dir $DATA_DIR 0750 $USER_DNS:$USER_DNS
  dir $DATA_DIR/web 0750 $USER_WEB:$USER_DNS
  link $VENV/bin/guardian /usr/bin/guardian
  file "$(source_file README.md)" $PREFIX/README.md 0644 root:root
  file "$(source_file guardian.service)" $UNIT_DIR/guardian.service 0644 root:root
  file "$(source_file guardian-web.service)" $UNIT_DIR/guardian-web.service 0644 root:root
  file "$(source_file guardian.yaml)" $CONF_DIR/guardian.yaml 0640 root:$USER_DNS keep
}

install_all() {
  if [ "$FILES_ONLY" = 1 ]; then
    stage_files
    return 0
  fi
  port53
  debs
  users
  stage_files
  if [ -f "$DESTDIR$CONF_DIR/guardian.yaml" ] && ! grep -Eq '^[[:space:]]*enabled:[[:space:]]*false' "$DESTDIR$CONF_DIR/guardian.yaml"; then
    echo "note: $CONF_DIR/guardian.yaml does not say 'dashboard: {enabled: false}': guardian run would start"
    echo "  a second dashboard beside guardian-web.service (README: Hardening); add it under dashboard:"
  fi
  local src
  src=$(default_source)
  # shellcheck disable=SC2086
  if [ ! -x "$DESTDIR$VENV/bin/python" ] || [ "$DRY_RUN" = 1 ]; then
    run "$PYTHON" -m venv "$DESTDIR$VENV"
  fi
  local spec=$src
  if [ -d "$src" ]; then spec="$src[fast]"; fi
  # shellcheck disable=SC2086
  run "$DESTDIR$VENV/bin/python" -m pip install --quiet --upgrade $PIP_ARGS "$spec"
  if [ -n "$DESTDIR" ]; then
    # shellcheck disable=SC2086
    run systemctl --root="$DESTDIR" enable $UNITS
  else
    run systemctl daemon-reload
    # shellcheck disable=SC2086
    run systemctl enable $UNITS
    if [ "$START" = 1 ]; then
      # shellcheck disable=SC2086
      run systemctl restart $UNITS  # starts them, or restarts them on the new version (upgrade)
    fi
  fi
  echo "done: check with 'guardian status'; the dashboard is on port 8080 (README: Install)"
}

uninstall_all() {
  if [ -n "$DESTDIR" ]; then
    # shellcheck disable=SC2086
    run systemctl --root="$DESTDIR" disable $UNITS
  else
    # shellcheck disable=SC2086
    run systemctl disable --now $UNITS
  fi
  remove $UNIT_DIR/guardian.service
  remove $UNIT_DIR/guardian-web.service
  remove /usr/bin/guardian
  remove $PREFIX
  [ -n "$DESTDIR" ] || run systemctl daemon-reload
  if [ "$PURGE" = 1 ]; then
    remove $CONF_DIR
    remove $DATA_DIR
    # shellcheck disable=SC2046
    ! has_user $USER_WEB || run userdel $(prefix_args) $USER_WEB
    # shellcheck disable=SC2046
    ! has_user $USER_DNS || run userdel $(prefix_args) $USER_DNS
    # shellcheck disable=SC2046
    ! has_group $USER_DNS || run groupdel $(prefix_args) $USER_DNS
    echo "done: Guardian, its configuration, its data and its users are gone"
  else
    echo "done: kept $CONF_DIR and $DATA_DIR (the household, the history); --purge removes them"
  fi
}

if [ "$MODE" = install ]; then install_all; else uninstall_all; fi
