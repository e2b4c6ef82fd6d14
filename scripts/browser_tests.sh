#!/usr/bin/env bash
# The browser tests (web/tests): the crate built for wasm32, run in headless Chromium on its
# WebGPU adapter (SwiftShader on a machine without a GPU) through chromedriver. Needs what
# scripts/setup.sh installs: chromium, chromium-driver, the wasm32 target and
# wasm-bindgen-cli at the version web/Cargo.toml pins.
set -euo pipefail
cd "$(dirname "$0")/../web"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
# A model directory takes seconds on SwiftShader; the runner's default is 20 s per test.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-900}"
cargo test "$@"
