#!/usr/bin/env bash
# Fetch the nats-server package of a Debian suite and unpack it into .nats/<suite>/ in the repo:
#   trixie (Debian 13) -> nats-server 2.10.x      sid (unstable) -> nats-server 2.15.x
#
# The mirror is the one this machine's apt already uses (deb822 /etc/apt/sources.list.d/*.sources,
# or one-line /etc/apt/sources.list and sources.list.d/*.list); DEBIAN_MIRROR overrides it. A private
# sources list, lists dir and cache dir are used: the system's apt configuration and package
# database are not touched. Idempotent: if the binary is already unpacked, it only prints its path.
# The last line of stdout is the binary's absolute path.
#
# Usage: bash scripts/fetch-nats-server.sh [suite]        (default: trixie)
#        NATS_SERVER_BIN="$(bash scripts/fetch-nats-server.sh sid | tail -n 1)"
set -euo pipefail

SUITE="${1:-trixie}"
if [[ ! "${SUITE}" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "fetch-nats-server: '${SUITE}' is not a Debian suite name (e.g. trixie, sid)" >&2
  exit 64
fi
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_DIR="${REPO_ROOT}/.nats/${SUITE}"
APT_DIR="${NATS_DIR}/apt"
DEB_DIR="${NATS_DIR}/deb"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
APT_ETC="${APT_ETC:-/etc/apt}"

# The first Debian archive URI (not the security archive) of an enabled "deb" source.
apt_mirror() {
  local file
  shopt -s nullglob
  for file in "${APT_ETC}"/sources.list.d/*.sources; do
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "") {
          n = split(uris, list, " ")
          for (i = 1; i <= n; i++) if (list[i] !~ /-security\/?$/ && suites !~ /^[^ ]*-security( |$)/) { print list[i]; exit }
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
      tolower($1) == "uris:" { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
      tolower($1) == "suites:" { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
      tolower($1) == "enabled:" { sub(/^[^:]*:[ \t]*/, ""); enabled = tolower($0) }
      END { flush() }
    ' "${file}"
  done
  for file in "${APT_ETC}"/sources.list "${APT_ETC}"/sources.list.d/*.list; do
    [[ -r "${file}" ]] || continue
    # deb [options] URI suite components...
    awk '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($i !~ /-security\/?$/ && $(i + 1) !~ /-security$/) { print $i; exit }
      }
    ' "${file}"
  done
  shopt -u nullglob
}

find_binary() {
  local candidate
  for candidate in "${NATS_DIR}/usr/sbin/nats-server" "${NATS_DIR}/usr/bin/nats-server"; do
    if [[ -x "${candidate}" ]]; then
      echo "${candidate}"
      return 0
    fi
  done
  return 1
}

if existing="$(find_binary)"; then
  echo "${existing}"
  exit 0
fi

for tool in apt-get dpkg awk; do
  if ! command -v "${tool}" >/dev/null 2>&1; then
    echo "fetch-nats-server: '${tool}' not found; this script needs a Debian-based system" >&2
    exit 1
  fi
done
if [[ ! -r "${KEYRING}" ]]; then
  echo "fetch-nats-server: ${KEYRING} missing; install the debian-archive-keyring package" >&2
  exit 1
fi
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}"
MIRROR="${MIRROR%/}"
if [[ -z "${MIRROR}" ]]; then
  echo "fetch-nats-server: no Debian mirror found in ${APT_ETC}/sources.list.d/*.sources or ${APT_ETC}/sources.list;" \
    "set DEBIAN_MIRROR to the URI of a Debian archive" >&2
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

echo "fetch-nats-server: updating private package lists for ${SUITE} (mirror from apt's sources)" >&2
apt-get "${APTOPTS[@]}" -q update >&2

echo "fetch-nats-server: downloading nats-server from ${SUITE}" >&2
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
