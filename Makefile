# arrowquant — every target installs what it is missing, then does its job.
#   make demo   quantize the bundled sample model with the CLI (wasm package in Node)
#   make test   build everything and pass every test (native, wasm in Node, JS, pyarrow check)
#   make size   .wasm size raw / gzip / brotli
#   make eval   quality at the bundled diffusion models' output (ε-MSE, samples)
#   make bench  speed and memory
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_BINDGEN_VERSION := 0.2.130
export CARGO_TARGET_DIR ?= $(CURDIR)/target
VENV ?= /var/tmp/arrowquant-venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WASM_RELEASE := $(CARGO_TARGET_DIR)/wasm32-unknown-unknown/release/arrowquant.wasm
PKG_WASM := pkg/wasm/arrowquant_bg.wasm
RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml $(wildcard Cargo.lock) .cargo/config.toml
SAMPLE := samples/rivagan_f32.safetensors



.PHONY: fuzz eval serve bench build-threads setup-nightly setup-chromium measure-codecs help setup setup-rust setup-node setup-python build demo test test-native test-wasm test-js test-py size clean

help:
	@echo "make demo | make test | make eval | make bench | make fuzz | make size | make build | make clean"

# ---- setup (idempotent: each step checks before it installs) --------------------------------
setup-rust:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@[ "$$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $(WASM_BINDGEN_VERSION)" ] || \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force
	@# zstd (the Parquet codec) is C code; building it for wasm32 needs clang.
	@command -v clang >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq clang >/dev/null; }

setup-node:
	@command -v node >/dev/null || { echo "Node.js >= 20.19 is required"; exit 1; }
	@[ -d node_modules/hyparquet-compressors ] && [ -d node_modules/deno ] && [ -d node_modules/miniflare ] && [ -d node_modules/playwright-core ] && [ -d node_modules/typescript ] && [ -d node_modules/vite ] && [ -d node_modules/esbuild ] && [ -d node_modules/webpack ] && [ -L node_modules/arrowquant ] || npm install --no-audit --no-fund --silent

setup-chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

setup-python:
	@[ -x $(PY) ] && $(PY) -c 'import pyarrow, numpy, gguf' 2>/dev/null || { \
	  python3 -m venv $(VENV) && $(VENV)/bin/pip install -q pyarrow==26.0.1 numpy==2.4.6 gguf==0.19.0; }

setup: setup-rust setup-nightly setup-node setup-python setup-chromium

# ---- build ------------------------------------------------------------------------------------
$(WASM_RELEASE): $(RUST_SOURCES)
	cargo build --target wasm32-unknown-unknown --release
	@touch $@

# The shipped modules carry no function-name or producers section (a fifth of the module).
BINDGEN_SHIP := --remove-name-section --remove-producers-section

$(PKG_WASM): $(WASM_RELEASE)
	wasm-bindgen --target web $(BINDGEN_SHIP) --out-dir pkg/wasm $(WASM_RELEASE)
	node tools/optional-params.mjs pkg/wasm/arrowquant.d.ts

build: setup-rust setup-node $(PKG_WASM)

# Threaded build: nightly + build-std + shared memory (flags from the verified recipe). RUSTFLAGS
# replaces .cargo/config.toml's list, so +simd128 is repeated here.
MT_TARGET_DIR := $(CARGO_TARGET_DIR)/threads
WASM_MT := $(MT_TARGET_DIR)/wasm32-unknown-unknown/release/arrowquant.wasm
PKG_WASM_MT := pkg/wasm-mt/arrowquant_bg.wasm
MT_RUSTFLAGS := -C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=1073741824 \
  -C link-arg=--export=__heap_base -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base

setup-nightly:
	@rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src --toolchain nightly

$(WASM_MT): $(RUST_SOURCES)
	RUSTFLAGS='$(MT_RUSTFLAGS)' CARGO_TARGET_DIR=$(MT_TARGET_DIR) cargo +nightly build --target wasm32-unknown-unknown \
	  --release --features threads -Z build-std=panic_abort,std
	@touch $@

$(PKG_WASM_MT): $(WASM_MT)
	wasm-bindgen --target web $(BINDGEN_SHIP) --out-dir pkg/wasm-mt $(WASM_MT)
	node tools/optional-params.mjs pkg/wasm-mt/arrowquant.d.ts

build-threads: setup-rust setup-nightly $(PKG_WASM_MT)

# The benchmark module: the same code with the kernel and stage timings exported (feature
# `bench`), in its own target dir and package folder, never in the npm package.
BENCH_TARGET_DIR := $(CARGO_TARGET_DIR)/bench
WASM_BENCH := $(BENCH_TARGET_DIR)/wasm32-unknown-unknown/release/arrowquant.wasm
PKG_WASM_BENCH := pkg/wasm-bench/arrowquant_bg.wasm

$(WASM_BENCH): $(RUST_SOURCES)
	CARGO_TARGET_DIR=$(BENCH_TARGET_DIR) cargo build --target wasm32-unknown-unknown --release --features bench
	@touch $@

$(PKG_WASM_BENCH): $(WASM_BENCH)
	wasm-bindgen --target web --out-dir pkg/wasm-bench $(WASM_BENCH)

# ---- the main job -----------------------------------------------------------------------------
demo: build
	@mkdir -p out
	node pkg/cli.js quantize $(SAMPLE) -o out/rivagan_f32.aq.parquet --profile local
	@echo
	@echo "== a diffusion UNet with its calibration statistics: time-aware groups + channel equalization =="
	node pkg/cli.js quantize samples/tiny_ddpm_digits.safetensors -o out/tiny_ddpm_digits.aq.parquet --profile local \
		--calibration samples/tiny_ddpm_digits.calib.safetensors
	@echo
	@echo "== the same UNet as GGUF (Q4_K_M), the container stable-diffusion.cpp and ComfyUI-GGUF read =="
	node pkg/cli.js quantize samples/tiny_ddpm_digits.safetensors -o out/tiny_ddpm_digits-Q4_K_M.gguf --gguf-type Q4_K_M
	@echo
	@echo "Next: npx arrowquant inspect out/rivagan_f32.aq.parquet, or make serve for the web page"

# The demo page (www/) on http://127.0.0.1:8080/www/, with COOP/COEP so it can use threads.
serve: build build-threads
	node www/serve.mjs

# ---- tests ------------------------------------------------------------------------------------
test-native: setup-rust
	cargo test
	cargo test --features threads --test native_threads

test-wasm: setup-rust
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --target wasm32-unknown-unknown --test wasm_node --test wasm_kernels

test-js: build build-threads setup-chromium
	node --test tests/js/

test-py: build setup-python
	$(PY) tests/py/check_format.py
	$(PY) tests/py/check_gguf.py
	$(PY) tools/eval/run.py --check

# Quality at the diffusion models' output (tools/eval/run.py: numpy forward passes, no torch), and
# our GGUF files loaded by stable-diffusion.cpp (built from PyPI on first use, several minutes).
eval: build setup-python
	$(PY) tools/eval/run.py
	$(PY) tests/py/check_sdcpp.py

# Coverage-guided fuzzing of the readers of untrusted bytes (safetensors, Parquet, calibration, GGUF) (cargo-fuzz on nightly, seeded with the
# bundled files and a Parquet file made from them), FUZZ_SECONDS each; then the JS mutation loops
# of tests/js/hostile.test.mjs at AQ_FUZZ_ITERATIONS. A crash lands in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 600
AQ_FUZZ_ITERATIONS ?= 50000
fuzz: build setup-nightly
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p fuzz/corpus/safetensors fuzz/corpus/parquet fuzz/corpus/calibration fuzz/corpus/gguf
	cp tests/data/*.safetensors samples/tiny_ddpm_digits.safetensors fuzz/corpus/safetensors/
	cp samples/*calib.safetensors fuzz/corpus/calibration/
	node pkg/cli.js quantize tests/data/rivagan_f16.safetensors -o fuzz/corpus/parquet/rivagan.aq.parquet --min-accuracy 0 >/dev/null
	node pkg/cli.js quantize samples/tiny_ddpm_digits.safetensors -o fuzz/corpus/parquet/ddpm.aq.parquet \
	  --calibration samples/tiny_ddpm_digits.calib.safetensors >/dev/null
	cd fuzz && node seeds.mjs
	node pkg/cli.js quantize samples/tiny_ddpm_digits.safetensors -o fuzz/corpus/gguf/ddpm-Q4_K_M.gguf --gguf-type Q4_K_M --quiet
	cd fuzz && for t in safetensors parquet calibration gguf; do \
	  cargo +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=1048576 -rss_limit_mb=4096 || exit 1; \
	done
	AQ_FUZZ_ITERATIONS=$(AQ_FUZZ_ITERATIONS) node --test tests/js/hostile.test.mjs

test: setup build test-native test-wasm test-js test-py
	@echo "all test suites passed"

size: build build-threads
	@node bench/size.mjs $(PKG_WASM) $(PKG_WASM_MT)

bench: build build-threads setup-chromium $(PKG_WASM_BENCH)
	node bench/run.mjs
	node bench/gguf.mjs
	node bench/threads.mjs
	node bench/diffusion.mjs

measure-codecs: setup-rust
	cargo run --release --features codec-survey --example measure_codecs

clean:
	rm -rf out pkg/wasm tests/out
	cargo clean
