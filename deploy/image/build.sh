#!/usr/bin/env bash
# Builds Warden's image with buildah (no daemon: vfs storage, chroot isolation) and checks its
# config (entrypoint, user, ports) with buildah inspect. Run from anywhere:
#
#   bash deploy/image/build.sh [tag]        # default tag localhost/warden:dev
#
# No base image is pulled: the binary is static (CGO_ENABLED=0) and the image FROM scratch.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
tag="${1:-localhost/warden:dev}"
bah() { buildah --storage-driver vfs "$@"; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# -tags grpcnotrace: grpc-go then leaves out golang.org/x/net/trace, whose debug pages (never
# served by Warden: they register on http.DefaultServeMux) execute html/template. Template
# execution looks methods up by name through reflection, so while it is reachable the linker
# keeps every exported method of every type in the binary (all of go-redis's command API):
# 11.5 MB of binary and 5 MiB of idle RSS. deploy/image_test.go checks the tag's effect.
CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags='-s -w' -o "$ctx/warden" ./cmd/warden
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
printf 'nonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$ctx/passwd"
cp deploy/image/Containerfile "$ctx/"

bah bud --isolation chroot --layers=false -f "$ctx/Containerfile" -t "$tag" "$ctx"

fail=0
check() { # name got want
  if [ "$2" != "$3" ]; then echo "image $1: got $2, want $3"; fail=1; else echo "image $1: $2"; fi
}
check entrypoint "$(bah inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$tag")" '/warden '
check cmd "$(bah inspect --type image --format '{{range .OCIv1.Config.Cmd}}{{.}} {{end}}' "$tag")" '-grpc-addr 0.0.0.0:50051 -admin-addr 0.0.0.0:9090 '
check user "$(bah inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")" '65532:65532'
check ports "$(bah inspect --type image --format '{{range $p, $_ := .OCIv1.Config.ExposedPorts}}{{$p}} {{end}}' "$tag")" '50051/tcp 9090/tcp '
# The binary must be static: a dynamic one would not start FROM scratch.
if file "$ctx/warden" 2>/dev/null | grep -q 'dynamically linked'; then echo "warden is dynamically linked"; fail=1; fi
echo "image size: $(bah images --format '{{.Size}}' "$tag")"
exit "$fail"
