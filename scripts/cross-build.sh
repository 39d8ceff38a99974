#!/usr/bin/env bash
# Builds bramble for a board: scripts/cross-build.sh aarch64|armv7 [--test]
#
# With `cross` and a container engine (Docker or Podman) it uses `cross`
# and the images in cross/ (Cross.toml). Otherwise it uses Debian's cross
# toolchain, installing it when run as root on Debian: gcc for the target,
# libseccomp for the target (libcontainer links it) and the Rust target.
# Leaves target/<triple>/release/bramble and prints its stripped size.
# --test also builds the unit tests and runs them under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
    aarch64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; deb=arm64; qemu=qemu-aarch64-static ;;
    armv7) triple=armv7-unknown-linux-gnueabihf; gnu=arm-linux-gnueabihf; deb=armhf; qemu=qemu-arm-static ;;
    *) echo "usage: $0 aarch64|armv7 [--test]" >&2; exit 2 ;;
esac
run_tests=${2:-}

engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1 || command -v podman >/dev/null; }

if command -v cross >/dev/null && engine; then
    cross build --release --target "$triple"
    [ "$run_tests" = --test ] && cross test --lib --target "$triple"
else
    if ! command -v "$gnu-gcc" >/dev/null || ! dpkg -s "libseccomp-dev:$deb" >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "need $gnu-gcc and libseccomp-dev:$deb (Debian: dpkg --add-architecture $deb; apt-get install gcc-$gnu libseccomp-dev:$deb), or cross with Docker/Podman" >&2
            exit 1
        fi
        dpkg --add-architecture "$deb"
        apt-get update -qq
        apt-get install -y -qq "gcc-$gnu" "libc6-dev-$deb-cross" "libseccomp-dev:$deb" qemu-user-static pkg-config
    fi
    rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
    export "CARGO_TARGET_${upper}_RUNNER=$qemu -L /usr/$gnu"
    export "CC_${triple//-/_}=$gnu-gcc"
    export PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH="/usr/lib/$gnu/pkgconfig" PKG_CONFIG_SYSROOT_DIR=/
    cargo build --release --target "$triple"
    [ "$run_tests" = --test ] && cargo test --lib --target "$triple"
fi

bin="target/$triple/release/bramble"
file "$bin" 2>/dev/null || true
echo "$triple: $(stat -c %s "$bin") bytes stripped ($(( $(stat -c %s "$bin") / 1024 )) KiB)"
