#!/usr/bin/env bash
# Runs a command with a test control plane up, and stops it afterwards, even on failure.
# The command sees FLEETGATE_TEST_KUBECONFIG (the test helpers reuse that environment)
# and finds the matching kubectl and helm first on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$("$here/testenv/build.sh" | tail -n 1)
kubeconfig=$("$here/testenv.sh" start --until-exit $$ | tail -n 1)
trap '"$here/testenv.sh" stop "$kubeconfig" || true' EXIT
export FLEETGATE_TEST_KUBECONFIG=$kubeconfig
export PATH="$bin:$PATH"
"$@"
