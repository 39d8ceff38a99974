# bramble: common tasks. `make run` and `make test` are the two that matter.

PREFIX  ?= /usr/local
DESTDIR ?=
CARGO   ?= cargo
RUN_DIR ?= /tmp/bramble-run

.PHONY: all build release deps run test unit lint bench install clean cross-aarch64 cross-armv7

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

deps:
	@scripts/install-deps.sh

# A single-board cluster on this machine running the example app.
run: deps build
	scripts/run-local.sh target/debug/bramble $(RUN_DIR)

# Every test: formatting and lints, unit tests beside the code and the
# integration tests in tests/.
test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --no-fail-fast -- --test-threads=2

unit:
	$(CARGO) test --lib

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: deps
	$(CARGO) build --release
	$(CARGO) run --release --example bench

install: release
	scripts/install-board.sh --binary target/release/bramble --prefix $(PREFIX) --destdir "$(DESTDIR)" --no-start

# Board binaries: `cross` when a container engine is there, Debian's cross
# toolchain otherwise (scripts/cross-build.sh). TEST=1 also runs the unit
# tests under qemu-user.
cross-aarch64:
	scripts/cross-build.sh aarch64 $(if $(TEST),--test)

cross-armv7:
	scripts/cross-build.sh armv7 $(if $(TEST),--test)

clean:
	$(CARGO) clean
