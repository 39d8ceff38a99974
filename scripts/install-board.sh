#!/usr/bin/env bash
# Installs bramble on a board as a systemd service. Run as root from the
# source tree (or an unpacked copy of bramble, systemd/ and board-configs/).
#
#   scripts/install-board.sh [--binary PATH] [--board NAME]
#                            [--agent --server HOST:PORT --token TOKEN]
#                            [--prefix DIR] [--destdir DIR] [--no-start] [--force]
#
# Picks the board config from /proc/device-tree/model unless --board names
# one, runs `bramble check` (a failed check stops the install unless
# --force), writes /etc/default/bramble (kept if it exists, unless --force),
# then enables and starts bramble.service, or bramble-agent.service with
# --agent. `make install` runs it with --no-start.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

binary="" board="" agent=0 server="" token="" prefix=/usr/local destdir="" start=1 force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --board) board=$2; shift 2 ;;
        --agent) agent=1; shift ;;
        --server) server=$2; shift 2 ;;
        --token) token=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        --no-start) start=0; shift ;;
        --force) force=1; shift ;;
        *) echo "install-board: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
done

if [ -z "$binary" ]; then
    for b in "$here/bramble" "$here/target/release/bramble"; do
        [ -x "$b" ] && binary=$b && break
    done
fi
[ -x "$binary" ] || { echo "install-board: no bramble binary: build one (make release, make cross-aarch64) or pass --binary PATH" >&2; exit 1; }
if [ $agent = 1 ] && { [ -z "$server" ] || [ -z "$token" ]; }; then
    echo "install-board: --agent needs --server HOST:PORT and --token TOKEN (bramble token on the server prints it)" >&2
    exit 2
fi

# The board config from the device tree's model string.
board_from_model() {
    local model
    model=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null || true)
    case "$model" in
        *"Raspberry Pi 5"*) echo raspberry-pi-5 ;;
        *"Raspberry Pi 4"*) echo raspberry-pi-4b ;;
        *"Compute Module 4"*) echo raspberry-pi-cm4 ;;
        *"Raspberry Pi 3"*) echo raspberry-pi-3b ;;
        *"Raspberry Pi Zero 2"*) echo raspberry-pi-zero-2w ;;
        *) case "$(uname -m)" in
               aarch64) echo generic-aarch64 ;;
               armv7l) echo generic-armv7 ;;
               *) echo "" ;;
           esac ;;
    esac
}
[ -n "$board" ] || board=$(board_from_model)
[ -z "$board" ] || [ -f "$here/board-configs/$board.toml" ] || {
    echo "install-board: no board config $board.toml in $here/board-configs" >&2; exit 1; }

bin="$destdir$prefix/bin/bramble"
units="$destdir/etc/systemd/system"
install -D -m 0755 "$binary" "$bin"
install -d "$destdir$prefix/share/bramble/board-configs" "$units"
install -m 0644 "$here"/board-configs/*.toml "$destdir$prefix/share/bramble/board-configs/"
for unit in bramble.service bramble-agent.service; do
    sed "s|/usr/local/bin/bramble|$prefix/bin/bramble|" "$here/systemd/$unit" > "$units/$unit"
    chmod 0644 "$units/$unit"
done

env_file="$destdir/etc/default/bramble"
if [ ! -e "$env_file" ] || [ $force = 1 ]; then
    board_flag=${board:+ --board $board}
    install -D -m 0644 "$here/systemd/bramble.env" "$env_file"
    sed -i "s|^BRAMBLE_SERVER_ARGS=.*|BRAMBLE_SERVER_ARGS=\"--data-dir /var/lib/bramble$board_flag\"|" "$env_file"
    if [ $agent = 1 ]; then
        sed -i "s|^BRAMBLE_AGENT_ARGS=.*|BRAMBLE_AGENT_ARGS=\"--data-dir /var/lib/bramble --server $server --token $token$board_flag\"|" "$env_file"
        chmod 0600 "$env_file"
    fi
fi
echo "installed $bin (board ${board:-none}), units in $units, flags in $env_file"

[ $start = 1 ] || exit 0
if ! "$bin" check --data-dir /var/lib/bramble ${board:+--board "$board"}; then
    [ $force = 1 ] || { echo "install-board: bramble check failed (see above); fix it or pass --force" >&2; exit 1; }
fi
service=bramble.service
[ $agent = 1 ] && service=bramble-agent.service
systemctl daemon-reload
systemctl enable --now "$service"
if [ $agent = 0 ]; then
    echo "bramble is starting. For kubectl on another machine:"
    echo "  $prefix/bin/bramble kubeconfig --data-dir /var/lib/bramble --server https://<this-board's-address>:6443 > kubeconfig"
fi
