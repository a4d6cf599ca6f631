#!/usr/bin/env bash
# Fetch Debian 13 (trixie)'s nats-server 2.10.x and unpack it into .nats/ in the repo.
#
# Uses a private sources list, lists dir and cache dir: the system's apt configuration and
# package database are not touched. Idempotent: if the binary is already unpacked, it only
# prints its path. The last line of stdout is the binary's absolute path.
#
# Usage: bash scripts/fetch-nats-server.sh
#        NATS_SERVER_BIN="$(bash scripts/fetch-nats-server.sh | tail -n 1)"
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_DIR="${REPO_ROOT}/.nats"
APT_DIR="${NATS_DIR}/apt"
DEB_DIR="${NATS_DIR}/deb"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="trixie"

find_binary() {
  local candidate
  for candidate in "${NATS_DIR}/usr/sbin/nats-server" "${NATS_DIR}/usr/bin/nats-server"; do
    if [[ -x "${candidate}" ]]; then
      echo "${candidate}"
      return 0
    fi
  done
  candidate="$(find "${NATS_DIR}" -path "${APT_DIR}" -prune -o -type f -name nats-server -perm -u+x -print 2>/dev/null | head -n 1)"
  if [[ -n "${candidate}" ]]; then
    echo "${candidate}"
    return 0
  fi
  return 1
}

if existing="$(find_binary)"; then
  echo "${existing}"
  exit 0
fi

for tool in apt-get dpkg; do
  if ! command -v "${tool}" >/dev/null 2>&1; then
    echo "fetch-nats-server: '${tool}' not found; this script needs a Debian-based system" >&2
    exit 1
  fi
done
if [[ ! -r "${KEYRING}" ]]; then
  echo "fetch-nats-server: ${KEYRING} missing; install the debian-archive-keyring package" >&2
  exit 1
fi

mkdir -p "${APT_DIR}/lists/partial" "${APT_DIR}/cache/archives/partial" "${DEB_DIR}"
echo "deb [signed-by=${KEYRING}] ${MIRROR} ${SUITE} main" > "${APT_DIR}/sources.list"

APTOPTS=(
  -o "Dir::Etc::SourceList=${APT_DIR}/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=${APT_DIR}/lists"
  -o "Dir::Cache=${APT_DIR}/cache"
  -o "Dir::State::Status=/dev/null"
  -o "APT::Architecture=$(dpkg --print-architecture)"
)

# apt-get download as root drops privileges to the _apt user: let it write the target dirs.
if [[ "$(id -u)" -eq 0 ]]; then
  chmod -R a+rwX "${APT_DIR}" "${DEB_DIR}"
fi

echo "fetch-nats-server: updating private package lists for ${SUITE}" >&2
apt-get "${APTOPTS[@]}" -q update >&2

echo "fetch-nats-server: downloading nats-server" >&2
(cd "${DEB_DIR}" && apt-get "${APTOPTS[@]}" -q download nats-server >&2)

deb="$(ls -1t "${DEB_DIR}"/nats-server_*.deb 2>/dev/null | head -n 1 || true)"
if [[ -z "${deb}" ]]; then
  echo "fetch-nats-server: no nats-server .deb was downloaded into ${DEB_DIR}" >&2
  exit 1
fi

echo "fetch-nats-server: unpacking $(basename "${deb}") into ${NATS_DIR}" >&2
dpkg -x "${deb}" "${NATS_DIR}"

if ! binary="$(find_binary)"; then
  echo "fetch-nats-server: nats-server binary not found after unpacking ${deb}" >&2
  exit 1
fi
echo "fetch-nats-server: $("${binary}" --version)" >&2
echo "${binary}"
