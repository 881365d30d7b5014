# fleetgate — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo


.PHONY: demo demo-environments all build test chaos bench-memory bench-repositories lint fmt testenv testenv-node testenv-build image lab-image bench bench-apply generate install clean fuzz-ci

## From a clone to plans approved and applied on a local control plane; leaves nothing running.
demo:
	hack/demo.sh

## staging and production from one fleet.yaml: production promotes what staging held.
demo-environments:
	hack/demo-environments.sh

all: build

build:
	$(CARGO) build --workspace --all-targets

## Builds the test control plane, node and image (once per machine), then runs every test
## with the control plane up: the unit tests, tests/offline, tests/cluster and tests/node.rs
## (which starts a node of its own). One area: hack/with-testenv.sh cargo test --test cluster gate::
test: testenv-build image
	hack/with-testenv.sh $(CARGO) test --workspace --all-features --no-fail-fast

## Faults and hostile tenants (tests/chaos/, about 3 minutes): kills, restarts, hangs.
## FLEETGATE_CHAOS_NODES sizes the fleets of the API server and etcd restarts (default 2000).
chaos: testenv-build
	hack/with-testenv.sh $(CARGO) test --test chaos -- --ignored

## Formatting and lints, as CI checks them.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Builds kube-apiserver, etcd, helm, Gitea (the forge tests') and the test node (kubelet,
## kube-scheduler, kube-controller-manager, kube-proxy, containerd, runc) from the Go
## module proxy into ~/.cache/fleetgate.
testenv-build:
	hack/testenv/build.sh >/dev/null
	hack/gitea/build.sh >/dev/null
	hack/testenv/node/build.sh >/dev/null

## Starts a control plane and prints its kubeconfig; stop it with hack/testenv.sh stop PATH.
testenv:
	hack/testenv.sh start

## The same with a node that runs pods; load an image with hack/testenv.sh import PATH ARCHIVE.
testenv-node:
	hack/testenv.sh start --node

## The controller's OCI image, without a container engine (hack/image/build.sh): prints
## the oci-archive's path, the reference and, last, the digest. IMAGE and IMAGE_TAG name
## it (default fleetgate/fleetgate and the crate's version).
IMAGE ?= fleetgate/fleetgate
IMAGE_TAG ?=
image:
	hack/image/build.sh $(IMAGE) $(IMAGE_TAG)

## The lab provider's image (docs/provider-contract.md, "As a pod"): the same binary with ip, BIRD,
## keepalived and ping, run as root; chart charts/fleetgate-lab-provider.
LAB_IMAGE ?= fleetgate/lab-provider
lab-image:
	FLEETGATE_IMAGE_FLAVOR=lab-provider hack/image/build.sh $(LAB_IMAGE) $(IMAGE_TAG)

bench:
	$(CARGO) bench --bench fleet_core
	$(CARGO) bench --bench peak_memory
	$(CARGO) bench --bench drift_check
	$(CARGO) bench --bench bounded_fleet

## Apply throughput on one test control plane: the server's ceiling (create and server-side
## apply, 32 in flight), fleetgate and kubectl apply --server-side, side by side; prints
## objects/s, kube-apiserver CPU per 1,000 objects and audited requests per object.
## FLEETGATE_BENCH_NODES sizes (default 2000,10000), FLEETGATE_BENCH_CONCURRENCY extra
## --apply-concurrency settings, FLEETGATE_BENCH_REPEAT interleaved repetitions (default 1).
bench-apply: testenv-build
	hack/with-testenv.sh $(CARGO) bench --bench apply_throughput

## Fuzzes each target for FUZZ_SECONDS (default 45) on nightly; installs cargo-fuzz if missing.
fuzz-ci:
	hack/fuzz-ci.sh

## The controller's memory with many repositories (FLEETGATE_BENCH_REPOS, default 20) of
## FLEETGATE_BENCH_NODES nodes each (default 2000), against the test control plane.
bench-memory: testenv-build
	hack/with-testenv.sh $(CARGO) bench --bench controller_memory

## Many repositories on one controller (FLEETGATE_BENCH_REPOS, default 1000, over
## FLEETGATE_BENCH_NAMESPACES, default 100): time until all are Ready, CPU per interval,
## git operations, at each --git-max-concurrent in FLEETGATE_BENCH_GIT_CONCURRENCY.
bench-repositories: testenv-build
	hack/with-testenv.sh $(CARGO) bench --bench controller_repositories

## Regenerates crds/, the chart's CRDs and deploy/ (plain manifests from the chart).
generate:
	hack/generate.sh

## Installs fleetgate and the kubectl plugin (kubectl-fleet) into ~/.cargo/bin.
install:
	$(CARGO) install --locked --path .

clean:
	$(CARGO) clean
