#!/usr/bin/env bash
# Builds the example app's image, bramble.local/kubia:1, without Docker or a
# registry: busybox-static plus a tiny web server that answers with the
# pod's hostname. Writes an oci-archive to $1.
set -euo pipefail
out=$(realpath -m "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
umoci init --layout oci >/dev/null
umoci new --image oci:kubia >/dev/null
umoci unpack --image oci:kubia bundle >/dev/null
mkdir -p bundle/rootfs/bin bundle/rootfs/www
cp /bin/busybox bundle/rootfs/bin/busybox
for a in sh ls cat echo sleep httpd nc wget hostname mkdir; do ln -s busybox "bundle/rootfs/bin/$a"; done
cat > bundle/rootfs/bin/kubia <<'APP'
#!/bin/sh
# The seed's kubia: every request is answered with this pod's hostname.
echo "kubia starting on $(hostname)"
printf 'You'"'"'ve hit %s\n' "$(hostname)" > /www/index.html
exec httpd -f -p 8080 -h /www
APP
chmod +x bundle/rootfs/bin/kubia
umoci repack --image oci:kubia bundle >/dev/null
umoci config --image oci:kubia --os linux --architecture "$(dpkg --print-architecture)" \
  --config.entrypoint /bin/kubia --config.env PATH=/bin --config.exposedports 8080/tcp >/dev/null
mkdir -p "$(dirname "$out")"
rm -f "$out"
skopeo copy -q oci:oci:kubia "oci-archive:$out:bramble.local/kubia:1"
echo "built bramble.local/kubia:1 -> $out"
