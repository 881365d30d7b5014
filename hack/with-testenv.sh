#!/usr/bin/env bash
# Runs a command with a test control plane up, and stops it afterwards, even on failure.
# The command sees FLEETGATE_TEST_KUBECONFIG; the test helpers reuse that environment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kubeconfig=$("$here/testenv.sh" start --until-exit $$ | tail -n 1)
trap '"$here/testenv.sh" stop "$kubeconfig" || true' EXIT
export FLEETGATE_TEST_KUBECONFIG=$kubeconfig
"$@"
