# wasmbox: `make demo` and `make test` set up everything on a fresh machine.

CARGO ?= cargo
APPS := hello sleeper exit-code cat trap fsprobe fssuite memhog busy hostile
# Components (WASI 0.2), built for wasm32-wasip2.
APPS_P2 := cli-p2 http-hello http-echo
WASM_DIR := target/wasm32-wasip1/release
WASM_P2_DIR := target/wasm32-wasip2/release

.PHONY: all deps build apps images demo demo-docker test test-compat bench soak fuzz lint install clean

all: build

## deps: install what is missing (Debian packages, Rust wasm targets, containerd into .cache)
deps:
	scripts/install-deps.sh

## build: the shim, the runner, the packer, the sample apps and their images
build: deps
	$(CARGO) build --release
	$(MAKE) apps images

apps:
	$(CARGO) build --release --target wasm32-wasip1 $(addprefix -p ,$(APPS))
	$(CARGO) build --release --target wasm32-wasip2 $(addprefix -p ,$(APPS_P2))
	mkdir -p target/wasm
	clang --target=wasm32-wasi -O2 -o target/wasm/c-hello.wasm images/c/hello.c
	mkdir -p target/native
	musl-gcc -static -Os -o target/native/pause images/pause/pause.c
	musl-gcc -static -Os -o target/native/probe images/native/probe.c

# One OCI image tarball per sample app (cheap, so always rebuilt).
images:
	mkdir -p target/images
	for app in $(APPS); do \
		target/release/wasmbox-image --wasm $(WASM_DIR)/$$app.wasm \
			--name docker.io/wasmbox/$$app:latest --output target/images/$$app.tar || exit 1; \
	done
	target/release/wasmbox-image --wasm target/native/pause --platform linux/amd64 \
		--entrypoint /pause --name docker.io/wasmbox/pause:latest --output target/images/pause.tar
	target/release/wasmbox-image --wasm target/native/probe --platform linux/amd64 \
		--entrypoint /probe --name docker.io/wasmbox/probe:latest --output target/images/probe.tar
	for app in $(APPS_P2); do \
		target/release/wasmbox-image --wasm $(WASM_P2_DIR)/$$app.wasm \
			--name docker.io/wasmbox/$$app:latest --output target/images/$$app.tar || exit 1; \
	done

## demo: a private containerd running the sample images with ctr
demo: build
	scripts/demo.sh

## demo-docker: the same with Docker: a private dockerd on a private containerd
demo-docker: build
	scripts/docker-demo.sh

## test: every test, unit and integration (containerd $$WASMBOX_CONTAINERD, default 2.1)
test: build
	rm -f target/test-skips.txt
	$(CARGO) test --release
	@if [ -s target/test-skips.txt ]; then echo "Skipped, with the reason:"; cat target/test-skips.txt; fi

## test-compat: the integration tests against containerd 1.7 and 1.6 too
test-compat: build
	WASMBOX_CONTAINERD=1.7 scripts/install-deps.sh
	WASMBOX_CONTAINERD=1.6 scripts/install-deps.sh
	rm -f target/test-skips.txt
	WASMBOX_CONTAINERD=1.7 $(CARGO) test --release -p wasmbox-tests
	WASMBOX_CONTAINERD=1.6 $(CARGO) test --release -p wasmbox-tests
	@if [ -s target/test-skips.txt ]; then echo "Skipped, with the reason:"; cat target/test-skips.txt; fi

## bench: wasmbox against runc on one private containerd -> bench/RESULTS.md and SVG charts
bench: build
	scripts/install-deps.sh bench
	bench/sqlite/build.sh target/wasm/sqlite3.wasm target/native/sqlite3-musl
	$(CARGO) build --release -p wasmbox-bench -p http-hello-native
	target/release/wasmbox-bench

## soak: 10,000 ctr cycles and 1,000 CRI pods, and what they leave -> bench/RESULTS.md
soak: build
	$(CARGO) build --release -p wasmbox-bench
	target/release/wasmbox-bench soak

## fuzz: every cargo-fuzz target for FUZZ_SECONDS (default 600) each, on nightly
fuzz:
	scripts/fuzz.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

## install: the shim and runner into /usr/local/bin, next to each other
install: build
	install -m 0755 target/release/containerd-shim-wasmbox-v1 target/release/wasmbox-runner /usr/local/bin/

clean:
	$(CARGO) clean
