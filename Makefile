# bramble: common tasks. `make run` and `make test` are the two that matter.

PREFIX  ?= /usr/local
DESTDIR ?=
CARGO   ?= cargo
RUN_DIR ?= /tmp/bramble-run

export BRAMBLE_GIT_REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: all build release deps run test unit lint bench install clean

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
	install -D -m 0755 target/release/bramble $(DESTDIR)$(PREFIX)/bin/bramble
	install -D -m 0644 systemd/bramble.service $(DESTDIR)/etc/systemd/system/bramble.service
	install -D -m 0644 systemd/bramble-agent.service $(DESTDIR)/etc/systemd/system/bramble-agent.service
	test -e $(DESTDIR)/etc/default/bramble || install -D -m 0644 systemd/bramble.env $(DESTDIR)/etc/default/bramble
	install -d $(DESTDIR)$(PREFIX)/share/bramble/board-configs
	install -m 0644 board-configs/*.toml $(DESTDIR)$(PREFIX)/share/bramble/board-configs/

clean:
	$(CARGO) clean
