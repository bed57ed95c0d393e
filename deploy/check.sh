#!/usr/bin/env bash
# Deployment artifacts check, offline apart from the package registries (`just deploy-check`):
#   1. helm and kubeconform, built once with `go install` from the Go module proxy; the
#      Kubernetes JSON schemas of the PyPI package kubernetes-validate and the HTTPRoute CRD
#      of the Go module sigs.k8s.io/gateway-api, made into local schemas; all cached in $TOOLS;
#   2. helm lint (default and production values), helm template (default, production and
#      every optional feature on), kubeconform against the cached schemas (no network);
#   3. deploy/required_settings.py: every pod of the default, production and all-features
#      renders gets every setting its service declares required in production;
#   4. every tests/deploy/bad-values/*.yaml must fail with the message its "# expect:" names;
#      every render starts from tests/deploy/test-values.yaml (it names the Stripe Secret, without
#      which the default values refuse to render) and the default values must fail without it;
#   5. compose.yaml: `docker compose config` where a compose plugin answers, else the
#      Compose Specification validator of compose-go (the library docker compose loads with).
# tests/deploy/test_deploy_artifacts.py uses the helm this script installs.
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
COMPOSE_GO_VERSION=v2.16.2
GATEWAY_API_VERSION=v1.6.3          # the HTTPRoute CRD (gateway.networking.k8s.io/v1)
KUBERNETES_VALIDATE_VERSION=1.37.0  # ships kubernetes-json-schema/v1.25.0 .. v1.37.0
KUBE_VERSIONS=(1.30.0 1.37.0)       # validate against the oldest and the newest we support

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$REPO/deploy/helm/gpucloud
TOOLS=${GPUCLOUD_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/gpucloud/deploy-tools}
HELM=$TOOLS/helm-$HELM_VERSION/helm
KUBECONFORM=$TOOLS/kubeconform-$KUBECONFORM_VERSION/kubeconform
COMPOSE_SPEC=$TOOLS/compose-go-$COMPOSE_GO_VERSION/cmd  # compose-go's cmd/ is its validator
SCHEMAS=$TOOLS/schemas-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION-gateway-api-$GATEWAY_API_VERSION
TEST_VALUES=(-f "$REPO/tests/deploy/test-values.yaml")
RENDERED=$(mktemp -d)
trap 'rm -rf "$RENDERED"' EXIT

started=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
die() { printf 'deploy-check: %s\n' "$*" >&2; exit 1; }

need_go() {
    command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null || die "the Go toolchain (>= 1.24) is needed to build helm and kubeconform"
}

go_install() {  # go_install <binary path> <package@version> [ldflags]
    local bin=$1 pkg=$2 ldflags=${3:-}
    [[ -x $bin ]] && return
    need_go
    step "go install $pkg (first run only; helm takes about 2 minutes to compile on 2 cores)"
    GOBIN=$(dirname "$bin") CGO_ENABLED=0 go install -trimpath -ldflags "-s -w $ldflags" "$pkg"
}

install_schemas() {
    [[ -f $SCHEMAS/.complete ]] && return
    step "schemas: PyPI kubernetes-validate==$KUBERNETES_VALIDATE_VERSION, sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"
    local python python_packages gateway_api
    python=$(uv python find 3.11)
    python_packages=$(mktemp -d)
    uv pip install --quiet --no-deps --python "$python" --target "$python_packages" \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" pyyaml==6.0.3
    need_go
    gateway_api=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $gateway_api ]] || die "go mod download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION failed"
    rm -rf "$SCHEMAS"
    PYTHONPATH=$python_packages "$python" - "$python_packages/kubernetes_validate/kubernetes-json-schema" \
        "$gateway_api/config/crd/standard" "$SCHEMAS" "${KUBE_VERSIONS[@]}" <<'PY'
import json, pathlib, sys
import yaml

source, crds, target, versions = *map(pathlib.Path, sys.argv[1:4]), sys.argv[4:]

# kubernetes-validate's schemas point at https://kubernetes.io/api/_definitions.json, which
# kubeconform would fetch: drop the $id and make the references relative to the file.
for version in versions:
    out = target / f"v{version}"
    out.mkdir(parents=True)
    for schema in (source / f"v{version}-local-strict").glob("*.json"):
        text = schema.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
        document = json.loads(text)
        document.pop("$id", None)
        (out / schema.name).write_text(json.dumps(document))

def strict(node):
    """A CRD's openAPIV3Schema as kubeconform -strict wants it: no unknown fields."""
    if isinstance(node, dict):
        if node.pop("x-kubernetes-int-or-string", False):
            node["type"] = ["integer", "string"]
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)

crd = yaml.safe_load((crds / "gateway.networking.k8s.io_httproutes.yaml").read_text())
for served in crd["spec"]["versions"]:
    schema = served["schema"]["openAPIV3Schema"]
    strict(schema)
    out = target / "crds" / crd["spec"]["group"] / f"{crd['spec']['names']['singular']}_{served['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(schema))
PY
    rm -rf "$python_packages"
    touch "$SCHEMAS/.complete"
}

helm_version_flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in chartutil lint/rules; do  # what `make build` sets: the Kubernetes version helm was built for
    helm_version_flags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=37"
done
go_install "$HELM" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$helm_version_flags"
go_install "$KUBECONFORM" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
install_schemas

step "helm lint"
"$HELM" lint --strict "$CHART" "${TEST_VALUES[@]}"
"$HELM" lint --strict "$CHART" -f "$CHART/values-production.yaml"

step "helm template"
features=(--set httpRoute.enabled=true --set ingress.enabled=true --set ingress.tlsSecretName=gpucloud-tls
          --set services.iam.signingKeys.secretName=gpucloud-iam-signing-keys
          --set operatorToken.secretName=gpucloud-operator-token
          --set kafka.ca.secretName=gpucloud-kafka-ca
          --set services.gateway.ingressFromAnywhere=true --set defaults.podAntiAffinity.type=required)
for kube in "${KUBE_VERSIONS[@]}"; do
    "$HELM" template gpucloud "$CHART" --kube-version "$kube" "${TEST_VALUES[@]}" >"$RENDERED/default-$kube.yaml"
    "$HELM" template gpucloud "$CHART" --kube-version "$kube" -f "$CHART/values-production.yaml" \
        >"$RENDERED/production-$kube.yaml"
    "$HELM" template gpucloud "$CHART" --kube-version "$kube" "${TEST_VALUES[@]}" "${features[@]}" >"$RENDERED/features-$kube.yaml"
    # SCRAM on a private network without TLS, and a local cluster without authentication
    "$HELM" template gpucloud "$CHART" --kube-version "$kube" "${TEST_VALUES[@]}" --set kafka.securityProtocol=SASL_PLAINTEXT \
        >"$RENDERED/sasl-plaintext-$kube.yaml"
    "$HELM" template gpucloud "$CHART" --kube-version "$kube" "${TEST_VALUES[@]}" --set kafka.securityProtocol=PLAINTEXT \
        --set environment=development >"$RENDERED/plaintext-$kube.yaml"
done

step "kubeconform (offline: the cached schemas only)"
for kube in "${KUBE_VERSIONS[@]}"; do
    echo "Kubernetes $kube:"
    "$KUBECONFORM" -strict -summary \
        -schema-location "$SCHEMAS/v$kube/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$SCHEMAS/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        "$RENDERED"/*-"$kube".yaml
done

step "every pod gets every setting its service requires in production"
(cd "$REPO" && uv run --quiet python deploy/required_settings.py "$RENDERED"/{default,production,features}-*.yaml)

step "values.schema.json and the chart's checks reject bad values"
for bad in "$REPO"/tests/deploy/bad-values/*.yaml; do
    expect=$(sed -n 's/^# expect: //p' "$bad")
    [[ -n $expect ]] || die "$bad: no '# expect: <message>' line"
    if output=$("$HELM" template gpucloud "$CHART" "${TEST_VALUES[@]}" -f "$bad" 2>&1); then
        die "$(basename "$bad"): helm template accepted it"
    fi
    grep -qF -- "$expect" <<<"$output" || die "$(basename "$bad"): no '$expect' in: $output"
    printf 'rejected %-28s %s\n' "$(basename "$bad")" "$(grep -F -- "$expect" <<<"$output" | head -1 | sed 's/^ *//')"
done

step "the default values choose Stripe and refuse to render without its Secret"
if output=$("$HELM" template gpucloud "$CHART" 2>&1); then
    die "helm template of the default values (no Stripe Secret) rendered"
fi
grep -qF "services.billing.payments.stripe.secretName" <<<"$output" || die "no Stripe Secret refusal in: $output"
echo "refused: $(grep -F "services.billing.payments.stripe.secretName" <<<"$output" | head -1 | sed 's/^Error: //')"

step "compose.yaml"
if docker compose version >/dev/null 2>&1; then
    docker compose -f "$REPO/compose.yaml" config --quiet
    echo "docker compose config: ok"
else
    go_install "$COMPOSE_SPEC" "github.com/compose-spec/compose-go/v2/cmd@$COMPOSE_GO_VERSION"
    (cd "$REPO" && "$COMPOSE_SPEC" compose.yaml >/dev/null)
    echo "no docker compose plugin here; compose-go $COMPOSE_GO_VERSION validated compose.yaml against the Compose Specification"
fi

step "deploy-check passed"
