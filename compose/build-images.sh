#!/usr/bin/env bash
# Builds Ewii's three OCI images from the release binaries, distroless style,
# with buildah (no daemon, no RUN, no shell in the image):
#
#   ewii-client   ewii-adapter   ewii-hub
#
# Each image is `FROM scratch` + the stripped binary at /usr/local/bin/NAME, the
# shared libraries `ldd` names (libc, libm, libgcc_s, the loader) copied from this
# machine's Debian packages, the Debian CA bundle, /etc/passwd and /etc/group with
# the non-root user ewii (65532:65532, no login shell), its home /var/lib/ewii and
# /run/ewii (the adapter's socket directory), both owned by it.
# USER 65532:65532, ENTRYPOINT the binary, OCI labels (source, revision, version,
# title, licenses, created from the commit time so a rebuild of one commit gets
# the same labels). Beside each: OUT/NAME.spdx.json, an SPDX 2.3 SBOM (the Rust
# crates compiled in, from `cargo tree`, and the Debian packages the libraries and
# CA bundle come from, from dpkg).
#
#   compose/build-images.sh [OUT]      (default OUT: target-dir/images)
#
#   CARGO_TARGET_DIR   where `cargo build --release` puts the binaries (built here
#                      when missing or older than the sources; EWII_SKIP_CARGO=1 skips)
#   EWII_IMAGE_TAG     image tag (default: the workspace version)
#   STORAGE_DRIVER     buildah's storage driver for a fresh storage (buildah's
#                      default, overlay, works here; vfs where overlayfs does not)
#
# Docker users: compose/images/NAME/Dockerfile builds the same layout.
set -euo pipefail
# The image's directories and files get the modes made here: world-readable
# (the user is not root), whatever the caller's umask.
umask 022
cd "$(dirname "$0")/.."
repo="$PWD"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ewii/target}"
out="${1:-$CARGO_TARGET_DIR/images}"
mkdir -p "$out"

for tool in buildah strip ldd dpkg-query python3; do
    command -v "$tool" >/dev/null || { echo "build-images: $tool not found (apt-get install buildah binutils)" >&2; exit 1; }
done

images=(ewii-client ewii-adapter ewii-hub)
crate_of() { case "$1" in ewii-client) echo ewii-client ;; ewii-adapter) echo ewii-adapter ;; ewii-hub) echo ewii-hub ;; esac; }
description_of() {
    case "$1" in
        ewii-client) echo "Ewii client: the customer's outbound-only QUIC tunnel to the operator's hub" ;;
        ewii-adapter) echo "Ewii MCP adapter: the customer's database tools, served only to its client" ;;
        ewii-hub) echo "Ewii hub: the operator's tunnel endpoint, CA and agents' MCP gateway" ;;
    esac
}

if [[ "${EWII_SKIP_CARGO:-0}" != 1 ]]; then
    cargo build --release --locked --bins -p ewii-client -p ewii-adapter -p ewii-hub
fi

version="$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="ewii-hub"))')"
tag="${EWII_IMAGE_TAG:-$version}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git status --porcelain 2>/dev/null)" ]] || revision="$revision-dirty"
created="$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
source_url="$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"

rm -f "$out/images.txt.new"
stage_root="$(mktemp -d "${TMPDIR:-/tmp}/ewii-images.XXXXXX")"
trap 'rm -rf "$stage_root"' EXIT

for name in "${images[@]}"; do
    bin="$CARGO_TARGET_DIR/release/$name"
    [[ -x "$bin" ]] || { echo "build-images: $bin missing" >&2; exit 1; }
    root="$stage_root/$name"
    mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/var/lib/ewii" "$root/run/ewii" "$root/tmp"
    strip --strip-all -o "$root/usr/local/bin/$name" "$bin"
    chmod 0755 "$root/usr/local/bin/$name"
    # The libraries and loader the binary links, at the paths ldd resolves.
    libs=()
    while read -r lib; do
        libs+=("$lib")
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done < <(ldd "$bin" | grep -Eo '/[^ ]+\.so[^ ]*' | sort -u)
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\newii:x:65532:65532:ewii:/var/lib/ewii:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\newii:x:65532:\n' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    # The user's state directory and the adapter's socket directory (owned
    # by the user once in the image, below): a volume mounted on either
    # starts with its owner and mode.
    chmod 0700 "$root/var/lib/ewii" "$root/run/ewii"

    # SBOM: the crates compiled into the binary and the Debian packages shipped.
    crate="$(crate_of "$name")"
    cargo tree --locked -p "$crate" -e normal --prefix none --format '{p}' 2>/dev/null \
        | sed 's/ (.*)//; s/ (\*)//' | sort -u >"$stage_root/$name.crates"
    : >"$stage_root/$name.debs"
    for f in "${libs[@]}" /etc/ssl/certs/ca-certificates.crt; do
        pkg="$(dpkg-query -S "$(readlink -f "$f")" 2>/dev/null | head -n 1 | cut -d: -f1)" \
            || pkg="$(dpkg-query -S "$f" 2>/dev/null | head -n 1 | cut -d: -f1)" || true
        [[ -n "$pkg" ]] || pkg="$(dpkg-query -S "$f" 2>/dev/null | head -n 1 | cut -d: -f1)" || true
        [[ "$f" == */ca-certificates.crt ]] && pkg=ca-certificates
        [[ -n "$pkg" ]] && printf '%s %s\n' "$pkg" "$(dpkg-query -W -f='${Version}' "$pkg")" >>"$stage_root/$name.debs"
    done
    python3 - "$name" "$version" "$revision" "$created" "$source_url" \
        "$stage_root/$name.crates" "$stage_root/$name.debs" >"$out/$name.spdx.json" <<'PY'
import json, sys
name, version, revision, created, source, crates_file, debs_file = sys.argv[1:]
pkgs, rels = [], []
def add(spdx_id, pname, pversion, purl, supplier="NOASSERTION"):
    pkgs.append({"SPDXID": spdx_id, "name": pname, "versionInfo": pversion,
                 "downloadLocation": "NOASSERTION", "supplier": supplier,
                 "licenseConcluded": "NOASSERTION", "filesAnalyzed": False,
                 "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                                   "referenceType": "purl", "referenceLocator": purl}]})
add("SPDXRef-image", name, version, f"pkg:oci/{name}@{version}", "Organization: Ewii")
rels.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
             "relatedSpdxElement": "SPDXRef-image"})
seen = set()
for i, line in enumerate(sorted(set(open(crates_file).read().split("\n")))):
    parts = line.split()
    if len(parts) < 2 or parts[0] in seen:
        continue
    seen.add(parts[0] + parts[1])
    cname, cver = parts[0], parts[1].lstrip("v")
    sid = f"SPDXRef-crate-{i}"
    add(sid, cname, cver, f"pkg:cargo/{cname}@{cver}")
    rels.append({"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": sid})
for i, line in enumerate(sorted(set(l for l in open(debs_file).read().split("\n") if l))):
    dname, dver = line.split(" ", 1)
    sid = f"SPDXRef-deb-{i}"
    add(sid, dname, dver, f"pkg:deb/debian/{dname}@{dver}?arch=amd64&distro=debian-12", "Organization: Debian")
    rels.append({"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS", "relatedSpdxElement": sid})
json.dump({"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
           "name": f"{name}-{version}", "documentNamespace": f"{source}/sbom/{name}/{version}/{revision}",
           "creationInfo": {"created": created, "creators": ["Tool: compose/build-images.sh"]},
           "packages": pkgs, "relationships": rels}, sys.stdout, indent=1)
print()
PY

    ctr="$(buildah from --name "build-$name-$$" scratch)"
    buildah copy --quiet "$ctr" "$root" / >/dev/null
    # buildah copy makes everything root's; give the user its two directories.
    mnt="$(buildah mount "$ctr")"
    chown 65532:65532 "$mnt/var/lib/ewii" "$mnt/run/ewii"
    buildah umount "$ctr" >/dev/null
    buildah config \
        --user 65532:65532 \
        --workingdir /var/lib/ewii \
        --env HOME=/var/lib/ewii \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --entrypoint "[\"/usr/local/bin/$name\"]" \
        --cmd '["--help"]' \
        --label "org.opencontainers.image.title=$name" \
        --label "org.opencontainers.image.description=$(description_of "$name")" \
        --label "org.opencontainers.image.source=$source_url" \
        --label "org.opencontainers.image.revision=$revision" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.created=$created" \
        --label "org.opencontainers.image.licenses=Apache-2.0" \
        --label "dev.ewii.sbom=$name.spdx.json" \
        "$ctr"
    buildah commit --quiet --format oci --rm "$ctr" "localhost/$name:$tag" >/dev/null
    size="$(du -sb "$root" | cut -f1)"
    printf '%s localhost/%s:%s %s\n' "$name" "$name" "$tag" "$size" >>"$out/images.txt.new"
    printf 'built localhost/%s:%s (%s MB uncompressed), SBOM %s\n' "$name" "$tag" "$((size / 1000000))" "$out/$name.spdx.json"
done
mv "$out/images.txt.new" "$out/images.txt"
