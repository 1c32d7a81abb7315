#!/usr/bin/env bash
# Builds a pod-sandbox ("pause") image as an OCI image archive from Debian's
# busybox-static, for a container runtime on a machine that cannot pull one:
#
#   scripts/pause-image.sh OUT.tar [NAME]
#   ctr -n k8s.io images import OUT.tar
#
# NAME (default podwire.test/pause:1) is the image's name once imported, the
# name containerd's CRI `sandbox_image` gives. The sandbox's process is
# busybox's `sleep`: it holds the pod's namespaces and does nothing else (the
# runtime stops a sandbox with SIGKILL). The archive is reproducible: the same
# busybox gives the same digests.
set -euo pipefail

out=${1:?usage: pause-image.sh OUT.tar [NAME]}
name=${2:-podwire.test/pause:1}
busybox=${BUSYBOX:-/bin/busybox}
linkage=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
if [ ! -x "$busybox" ] || [[ $linkage != *"not a dynamic executable"* ]]; then
  echo "pause-image.sh: $busybox is not a static executable (install busybox-static)" >&2
  exit 1
fi
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/image/blobs/sha256"
cp "$busybox" "$work/rootfs/bin/busybox"

# Writes stdin as a blob; prints "DIGEST SIZE".
blob() {
  local tmp="$work/blob.tmp" digest size
  cat >"$tmp"
  digest=$(sha256sum "$tmp" | cut -d' ' -f1)
  size=$(stat -c %s "$tmp")
  mv "$tmp" "$work/image/blobs/sha256/$digest"
  echo "$digest $size"
}

read -r layer layer_size < <(tar -C "$work/rootfs" --sort=name --owner=0 --group=0 \
  --numeric-owner --mtime=@0 -cf - bin | blob)
read -r config config_size < <(printf '%s' \
  "{\"architecture\":\"$arch\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/bin/busybox\",\"sleep\",\"2147483647\"],\"WorkingDir\":\"/\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer\"]}}" | blob)
read -r manifest manifest_size < <(printf '%s' \
  "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$config_size},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$layer\",\"size\":$layer_size}]}" | blob)
printf '%s' "{\"imageLayoutVersion\":\"1.0.0\"}" >"$work/image/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\"size\":$manifest_size,\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}]}" >"$work/image/index.json"
tar -C "$work/image" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  -cf "$out" oci-layout index.json blobs
echo "$out: $name (manifest sha256:$manifest)"
