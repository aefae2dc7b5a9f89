#!/usr/bin/env bash
# Installs istioctl (one per version in ISTIO_VERSIONS) and helm (HELM_VERSION) into the execution environment
# for TARGETARCH (amd64 or arm64; default: this machine's). Every archive is checked against the sha256 that its
# release publishes beside it (<archive>.sha256); a mismatch, a missing checksum or a failed download fails the
# build. Run by the Containerfile that `ansible-builder create` writes from execution-environment.yml.
#
#   istioctl  https://github.com/istio/istio/releases/download/<v>/istioctl-<v>-linux-<arch>.tar.gz  -> /opt/istio/<v>/bin/istioctl
#   helm      https://get.helm.sh/helm-v<v>-linux-<arch>.tar.gz                                    -> /usr/local/bin/helm
set -euo pipefail

ISTIO_RELEASES=${ISTIO_RELEASES:-https://github.com/istio/istio/releases/download}
HELM_RELEASES=${HELM_RELEASES:-https://get.helm.sh}
ISTIO_ROOT=${ISTIO_ROOT:-/opt/istio}
BIN_DIR=${BIN_DIR:-/usr/local/bin}

die() { echo "install-tools: $*" >&2; exit 1; }

arch=${TARGETARCH:-}
if [[ -z $arch ]]; then
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
  esac
fi
[[ $arch == amd64 || $arch == arm64 ]] || die "unsupported architecture '$arch' (amd64 or arm64)"
[[ -n ${ISTIO_VERSIONS:-} ]] || die "no istioctl version: build with --build-arg ISTIO_VERSIONS='<from> <to>' (e.g. '1.28.3 1.29.6')"
[[ -n ${HELM_VERSION:-} ]] || die "no helm version: build with --build-arg HELM_VERSION=<version> (e.g. 3.19.0)"
semver='^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
for version in $ISTIO_VERSIONS; do
  [[ $version =~ $semver ]] || die "istioctl version '$version' is not like 1.29.6"
done
helm_version=${HELM_VERSION#v}
[[ $helm_version =~ $semver ]] || die "helm version '$HELM_VERSION' is not like 3.19.0"

command -v tar >/dev/null 2>&1 || dnf install -y --setopt=install_weak_deps=0 tar gzip
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch_verified URL FILE: download URL to FILE and check it against URL.sha256 (istio: "<sha>  <name>",
# helm: "<sha>"); fails on a download error, a checksum file without a sha256, or a mismatch.
fetch_verified() {
  local url=$1 file=$2 expected
  curl -fsSL --retry 3 -o "$file" "$url" || die "download failed: $url"
  curl -fsSL --retry 3 -o "$file.sha256" "$url.sha256" || die "download failed: $url.sha256"
  expected=$(awk 'NR == 1 { print tolower($1) }' "$file.sha256")
  [[ $expected =~ ^[0-9a-f]{64}$ ]] || die "no sha256 in $url.sha256"
  echo "$expected  $file" | sha256sum --check --quiet - || die "checksum mismatch: $url (expected $expected)"
}

for version in $ISTIO_VERSIONS; do
  archive="istioctl-$version-linux-$arch.tar.gz"
  fetch_verified "$ISTIO_RELEASES/$version/$archive" "$work/$archive"
  mkdir -p "$ISTIO_ROOT/$version/bin"
  tar -xzf "$work/$archive" -C "$ISTIO_ROOT/$version/bin" istioctl
  chmod 0755 "$ISTIO_ROOT/$version/bin/istioctl"
  echo "istioctl $version ($arch): $ISTIO_ROOT/$version/bin/istioctl"
done

archive="helm-v$helm_version-linux-$arch.tar.gz"
fetch_verified "$HELM_RELEASES/$archive" "$work/$archive"
tar -xzf "$work/$archive" -C "$work" "linux-$arch/helm"
install -m 0755 "$work/linux-$arch/helm" "$BIN_DIR/helm"
echo "helm $helm_version ($arch): $BIN_DIR/helm"
