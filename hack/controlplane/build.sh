#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), kubectl,
# the lab nodes' kubelet and kube-proxy, CoreDNS, helm (to install and lint the chart), and Prometheus with promtool, from Go modules into hack/controlplane/bin (git-ignored).
# Skips binaries that already exist at the pinned versions, so a warm run costs a few seconds. Go's module and build caches are reused.
set -euo pipefail

# Pinned versions: keep KUBE_VERSION, the replace block in go.mod and ETCD_VERSION consistent
# (etcd is the version k8s.io/apiserver v0.33.x requires).
KUBE_VERSION=v1.33.5
ETCD_VERSION=v3.5.21
KWOK_VERSION=v0.7.0
# The lab's cluster DNS, from its own module (hack/coredns/go.mod pins it), so its dependencies never move Kubernetes'.
COREDNS_VERSION=v1.12.3
# helm from its own module (`go install`, like kwok), so its Kubernetes libraries never move the control plane's.
HELM_VERSION=v3.22.0
# The lab's Prometheus and promtool (checks and unit-tests monitoring/rules.yaml), from their own module: Prometheus
# 3.x is tagged v0.3xx.y for Go (v0.316.0 is Prometheus 3.16.0). Built without the web UI's assets (the API, which
# the lab and its tests use, is all there).
PROMETHEUS_VERSION=v0.316.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${here}/bin"
stamp="${bin}/.versions"
want="kube=${KUBE_VERSION} etcd=${ETCD_VERSION} kwok=${KWOK_VERSION} coredns=${COREDNS_VERSION} helm=${HELM_VERSION} prometheus=${PROMETHEUS_VERSION}"

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed or not on PATH; the control plane is built from Go modules (need Go >= 1.24)" >&2
  exit 1
fi

components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok coredns helm prometheus promtool)
missing=0
for c in "${components[@]}"; do [[ -x "${bin}/${c}" ]] || missing=1; done
if [[ ${missing} -eq 0 && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  echo "control plane binaries up to date in ${bin} (${want})"
  exit 0
fi

mkdir -p "${bin}"
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} \
 -X k8s.io/component-base/version.gitTreeState=clean"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

start=$(date +%s)
cd "${here}"
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  echo "building ${c} (${KUBE_VERSION}) ..."
  t0=$(date +%s)
  go build -trimpath -ldflags "${ldflags}" -o "${bin}/${c}" "./cmd/${c}"
  echo "  ${c} built in $(( $(date +%s) - t0 ))s"
done
echo "building kwok (${KWOK_VERSION}) ..."
t0=$(date +%s)
GOBIN="${bin}" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
echo "  kwok built in $(( $(date +%s) - t0 ))s"
echo "building coredns (${COREDNS_VERSION}) ..."
t0=$(date +%s)
if ! grep -q "github.com/coredns/coredns ${COREDNS_VERSION}" "${here}/../coredns/go.mod"; then
  echo "error: hack/coredns/go.mod does not require coredns ${COREDNS_VERSION}" >&2
  exit 1
fi
(cd "${here}/../coredns" && go build -trimpath -ldflags "-s -w" -o "${bin}/coredns" .)
echo "  coredns built in $(( $(date +%s) - t0 ))s"
echo "building helm (${HELM_VERSION}) ..."
t0=$(date +%s)
GOBIN="${bin}" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
echo "  helm built in $(( $(date +%s) - t0 ))s"
echo "building prometheus and promtool (${PROMETHEUS_VERSION}) ..."
t0=$(date +%s)
GOBIN="${bin}" go install -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}" \
  "github.com/prometheus/prometheus/cmd/prometheus@${PROMETHEUS_VERSION}" \
  "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}"
echo "  prometheus and promtool built in $(( $(date +%s) - t0 ))s"
echo "${want}" > "${stamp}"
echo "control plane built in $(( $(date +%s) - start ))s into ${bin}"
