#!/usr/bin/env bash
# The image stage (issue 17): builds the three images with compose/build-images.sh,
# checks each (non-root USER, no shell, OCI labels, SBOM beside it, size; client
# <= 80 MB), pushes them to a throwaway Debian `docker-registry` on 127.0.0.1,
# signs and verifies them with ewii-image-sign (cosign's key format), and shows a
# tampered image and a wrong key refused. Then it pulls each image back from the
# registry (skopeo -> OCI layout -> `umoci unpack --rootless`) and
#   - runs the entrypoint `--help` in the unpacked root filesystem as the image's
#     uid: `unshare --mount --pid --fork chroot --userspec=UID:GID ROOTFS ENTRYPOINT`
#     (root changing to a non-root uid keeps no capabilities);
#   - runs the kit (conformance/flows/kit.sh) from the unpacked binaries: each is
#     started through the image's own loader and libraries, with every capability
#     dropped (setpriv), the hub serving /mcp over HTTPS (--http-tls-cert); the
#     official Python SDK, trusting the hub's HTTPS CA, makes an agent's tools/call,
#     and a plain-HTTP request to that port is refused.
# Running the containers themselves does not work on this machine (the runtime
# cannot set up cgroups); this is the nearest equivalent.
#
# Installs buildah, skopeo, umoci, docker-registry, docker-compose with apt when
# missing. Also validates the customer's Compose bundle (compose/customer/check.py).
#   EWII_REGISTRY_PORT   registry port (default: a free one)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ewii/target}"

need=()
for tool in buildah:buildah skopeo:skopeo umoci:umoci docker-registry:docker-registry \
    docker-compose:docker-compose setpriv:util-linux strip:binutils openssl:openssl; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    echo "installing ${need[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
/usr/bin/python3 -c 'import yaml' 2>/dev/null || apt-get install -y -qq python3-yaml >/dev/null

# shellcheck source=../conformance/flows/kit.sh
source "$repo/conformance/flows/kit.sh"
kit_init images
images_out="$work/images"

say "== the customer's Compose bundle"
docker-compose -f compose/customer/docker-compose.yml --env-file compose/customer/.env.example config >"$work/compose.yml" \
    || fail "docker-compose config refused compose/customer/docker-compose.yml"
/usr/bin/python3 compose/customer/check.py "$work/compose.yml" || fail "the bundle's security settings"
# The check itself: a bundle that publishes the adapter or drops read_only fails it.
sed -e 's/^\(    image: .*ewii-adapter.*\)$/\1\n    ports: ["7878:7878"]/' -e '0,/read_only: true/s//read_only: false/' \
    compose/customer/docker-compose.yml >"$work/weakened.yml"
docker-compose -f "$work/weakened.yml" --env-file compose/customer/.env.example config >"$work/weakened-resolved.yml"
if /usr/bin/python3 compose/customer/check.py "$work/weakened-resolved.yml" 2>"$work/weakened.err"; then
    fail "check.py passed a bundle that publishes the adapter"
fi
grep -q "adapter: publishes" "$work/weakened.err" && grep -q "read_only is not true" "$work/weakened.err" \
    || fail "check.py on a weakened bundle: $(cat "$work/weakened.err")"
pass "docker-compose config validates; every service read_only, cap_drop ALL, no-new-privileges, non-root, adapter unpublished, secrets as files"
# The hub's file names secrets/hub.env (made by the operator): an empty one will do.
mkdir -p "$work/hub-compose/secrets" && cp compose/hub/docker-compose.yml compose/hub/.env.example "$work/hub-compose/"
: >"$work/hub-compose/secrets/hub.env"
docker-compose -f "$work/hub-compose/docker-compose.yml" --env-file "$work/hub-compose/.env.example" config >/dev/null \
    || fail "docker-compose config refused compose/hub/docker-compose.yml"
pass "docker-compose config validates compose/hub/docker-compose.yml"

say "== images (compose/build-images.sh)"
bash compose/images/render.sh --check || fail "compose/images/*/Dockerfile differ from Dockerfile.in"
cargo build --release --locked --bins -p ewii-client -p ewii-adapter -p ewii-hub
cargo build --locked -p ewii-image-sign -p ewii-conformance --bins
sign="$CARGO_TARGET_DIR/debug/ewii-image-sign"
EWII_SKIP_CARGO=1 bash compose/build-images.sh "$images_out" | tee "$work/build.log"
version="$(awk '{print $2}' "$images_out/images.txt" | head -n 1)"; version="${version##*:}"

declare -A uid_of
for name in ewii-client ewii-adapter ewii-hub; do
    image="localhost/$name:$version"
    buildah inspect --type image "$image" >"$work/$name.inspect.json"
    user="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["OCIv1"]["config"].get("User",""))' "$work/$name.inspect.json")"
    [[ -n "$user" && "${user%%:*}" != 0 && "${user%%:*}" != root ]] || fail "$name: USER is '$user'"
    uid_of[$name]="$user"
    for l in source revision version; do
        python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["OCIv1"]["config"]["Labels"][sys.argv[2]]' \
            "$work/$name.inspect.json" "org.opencontainers.image.$l" 2>/dev/null || fail "$name: label org.opencontainers.image.$l missing"
    done
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["spdxVersion"]=="SPDX-2.3" and len(d["packages"])>10, d["spdxVersion"]' \
        "$images_out/$name.spdx.json" || fail "$name: SBOM $images_out/$name.spdx.json"
    # The image's size: its layers, uncompressed, as buildah stored them.
    size="$(buildah images --format '{{.Size}}' --noheading "$image" | head -n 1)"
    bytes="$(awk -v n="$name" '$1==n {print $3}' "$images_out/images.txt")"
    printf '      %-13s USER %s, %s (%s bytes of files), SBOM %s packages\n' "$name" "$user" "$size" "$bytes" \
        "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["packages"]))' "$images_out/$name.spdx.json")"
    if [[ $name == ewii-client ]] && ((bytes > 80000000)); then fail "ewii-client is $bytes bytes (> 80 MB)"; fi
done
pass "three images: non-root USER, OCI labels, SPDX SBOM beside each, client <= 80 MB"

say "== a throwaway registry on 127.0.0.1, push, sign, verify"
port="${EWII_REGISTRY_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
reg="127.0.0.1:$port"
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry/data}, delete: {enabled: true}}
http: {addr: $reg}
YML
docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
wait_for "docker-registry on $reg" "${pids[-1]}" curl -fsS "http://$reg/v2/"
"$sign" generate-key-pair --out-dir "$work" >/dev/null
mkdir -p "$work/other" && "$sign" generate-key-pair --out-dir "$work/other" >/dev/null
for name in ewii-client ewii-adapter ewii-hub; do
    buildah push --quiet --tls-verify=false "localhost/$name:$version" "docker://$reg/ewii/$name:$version"
    "$sign" sign --key "$work/cosign.key" "$reg/ewii/$name:$version"
    "$sign" verify --key "$work/cosign.pub" "$reg/ewii/$name:$version"
    if "$sign" verify --key "$work/other/cosign.pub" "$reg/ewii/$name:$version" 2>"$work/wrong-key.err"; then
        fail "$name verified with the wrong key"
    fi
    grep -q "another key" "$work/wrong-key.err" || fail "wrong key: $(cat "$work/wrong-key.err")"
done
pass "pushed, signed and verified (cosign.pub); a wrong key is refused"

# Tampering: a changed image pushed under the signed tag has a new digest that has
# no signature; and the old signature copied onto the new digest does not match it.
signed="$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/ewii/ewii-client:$version")"
ctr="$(buildah from "localhost/ewii-client:$version")"
echo "not what was signed" >"$work/evil"
buildah copy --quiet "$ctr" "$work/evil" /usr/local/bin/evil >/dev/null
buildah commit --quiet --format oci --rm "$ctr" localhost/ewii-client:tampered >/dev/null
buildah push --quiet --tls-verify=false localhost/ewii-client:tampered "docker://$reg/ewii/ewii-client:$version"
if "$sign" verify --key "$work/cosign.pub" "$reg/ewii/ewii-client:$version" 2>"$work/tampered.err"; then
    fail "a tampered image verified"
fi
grep -q "no signatures found" "$work/tampered.err" || fail "tampered: $(cat "$work/tampered.err")"
tampered="$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/ewii/ewii-client:$version")"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
    "docker://$reg/ewii/ewii-client:${signed/:/-}.sig" "docker://$reg/ewii/ewii-client:${tampered/:/-}.sig"
if "$sign" verify --key "$work/cosign.pub" "$reg/ewii/ewii-client:$version" 2>"$work/replayed.err"; then
    fail "a tampered image verified with a replayed signature"
fi
grep -q "the signature is for $signed" "$work/replayed.err" || fail "replayed: $(cat "$work/replayed.err")"
"$sign" verify --key "$work/cosign.pub" "$reg/ewii/ewii-client@$signed" >/dev/null || fail "the signed digest no longer verifies"
buildah rmi localhost/ewii-client:tampered >/dev/null
# Put the signed image back under its tag (same digest).
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
    "docker://$reg/ewii/ewii-client@$signed" "docker://$reg/ewii/ewii-client:$version"
pass "a tampered image is refused (no signature for its digest; a replayed signature names the signed digest)"

say "== unpack each signed image from the registry and run it"
mkdir -p "$work/oci" "$work/bin"
for name in ewii-client ewii-adapter ewii-hub; do
    # What the customer runs: the digest that verified, pulled by that digest.
    digest="$("$sign" verify --key "$work/cosign.pub" "$reg/ewii/$name:$version" | sed 's/.*@//')"
    skopeo copy --quiet --src-tls-verify=false "docker://$reg/ewii/$name@$digest" "oci:$work/oci/$name:$version"
    # Owners as the image records them: everything root's but the user's two
    # directories (umoci --rootless below maps every owner to the caller).
    python3 - "$work/oci/$name" "$version" <<'PY' || fail "$name: file owners in the image"
import json, sys, tarfile
layout, ref = sys.argv[1], sys.argv[2]
blob = lambda d: f"{layout}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{layout}/index.json"))
desc = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref)
for layer in json.load(open(blob(desc["digest"])))["layers"]:
    for m in tarfile.open(blob(layer["digest"])):
        path = m.name.lstrip("./").rstrip("/")
        want = 65532 if path in ("var/lib/ewii", "run/ewii") else 0
        assert (m.uid, m.gid) == (want, want), f"{path} is {m.uid}:{m.gid}"
        assert not (m.mode & 0o6000), f"{path} is setuid/setgid"
PY
    umoci unpack --rootless --image "$work/oci/$name:$version" "$work/rootfs-$name" >/dev/null
    rootfs="$work/rootfs-$name/rootfs"
    for sh in bin/sh bin/bash bin/dash bin/busybox usr/bin/sh usr/bin/bash; do
        [[ ! -e "$rootfs/$sh" ]] || fail "$name: the image has a shell ($sh)"
    done
    [[ -z "$(find "$rootfs" -name 'sh' -o -name 'bash' -o -name 'busybox')" ]] || fail "$name: a shell in the image"
    # umoci --rootless maps every file to the caller; give them back the image's owners.
    chown -R 0:0 "$rootfs" && chown "${uid_of[$name]}" "$rootfs/var/lib/ewii" "$rootfs/run/ewii"
    # The unpacked root's own directory is made under this script's umask.
    chmod 0755 "$rootfs"
    [[ "$(stat -c %a "$rootfs/usr/local/bin")" == 755 ]] || fail "$name: /usr/local/bin is mode $(stat -c %a "$rootfs/usr/local/bin")"
    entry="/usr/local/bin/$name"
    unshare --mount --pid --fork chroot --userspec="${uid_of[$name]}" "$rootfs" "$entry" --help >"$work/$name-help.out" 2>&1 \
        || fail "$name --help in its root filesystem as ${uid_of[$name]}: $(tail -n 3 "$work/$name-help.out")"
    grep -q "Usage: $name" "$work/$name-help.out" || fail "$name --help printed: $(head -n 3 "$work/$name-help.out")"
    if [[ $name == ewii-adapter ]]; then
        # The image's user can keep state in its home (a volume starts so too).
        EWII_ENROLLMENT_TOKEN=ewii_tok_image_test_0123456789abcdef unshare --mount --pid --fork \
            chroot --userspec="${uid_of[$name]}" "$rootfs" "$entry" --home /var/lib/ewii init --workspace-id acme \
            >"$work/$name-init.out" 2>&1 || fail "$name init in its home as ${uid_of[$name]}: $(tail -n 3 "$work/$name-init.out")"
        [[ "$(stat -c %u "$rootfs/var/lib/ewii/local-credential")" == "${uid_of[$name]%%:*}" ]] \
            || fail "$name: the local credential is not the image user's"
    fi
    # The kit's wrapper: the image's loader and libraries, no capabilities.
    cat >"$work/bin/$name" <<SH
#!/bin/sh
exec setpriv --inh-caps=-all --bounding-set=-all --no-new-privs \\
    "$rootfs/lib64/ld-linux-x86-64.so.2" --library-path "$rootfs/lib/x86_64-linux-gnu" \\
    "$rootfs$entry" "\$@"
SH
    chmod +x "$work/bin/$name"
done
ln -s "$CARGO_TARGET_DIR/debug/ewii-bearer-proxy" "$work/bin/ewii-bearer-proxy"
pass "each image pulled by its verified digest: files root's but /var/lib/ewii and /run/ewii (65532), no setuid, no shell; entrypoint --help as its non-root uid in a chroot"

say "== the kit from the unpacked images (hub /mcp over HTTPS)"
hub_bin="$work/bin/ewii-hub" adapter_bin="$work/bin/ewii-adapter" client_bin="$work/bin/ewii-client"
KIT_POSTGRES=0
kit_hub
stop_pid "$hub_pid"
# The operator's HTTPS certificate for /mcp: a CA of its own, a leaf for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ewii-test-https-ca \
    -keyout "$work/https-ca.key" -out "$work/https-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$work/https.key" -out "$work/https.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/https.ext"
openssl x509 -req -in "$work/https.csr" -CA "$work/https-ca.pem" -CAkey "$work/https-ca.key" -CAcreateserial \
    -days 1 -extfile "$work/https.ext" -out "$work/https.crt" 2>/dev/null
"${hub[@]}" serve --quic 127.0.0.1:0 --http 127.0.0.1:0 --name 127.0.0.1 --json \
    --http-tls-cert "$work/https.crt" --http-tls-key "$work/https.key" \
    >"$work/hub-serve.out" 2>"$work/hub-serve.log" &
hub_pid=$!
pids+=("$hub_pid")
wait_for "ewii-hub serve --http-tls-cert" "$hub_pid" grep -q '"mcp_url"' "$work/hub-serve.out"
hub_quic="$(json_field quic <"$work/hub-serve.out")"
hub_mcp_url="$(json_field mcp_url <"$work/hub-serve.out")"
[[ "$hub_mcp_url" == https://* ]] || fail "the hub's MCP URL is $hub_mcp_url"
grep -q '^CapEff:[[:space:]]*0000000000000000' "/proc/$hub_pid/status" \
    || grep -q '^CapEff:[[:space:]]*0000000000000000' "/proc/$(pgrep -P "$hub_pid" | head -n 1)/status" \
    || fail "the hub runs with capabilities: $(grep Cap "/proc/$hub_pid/status")"
pass "ewii-hub (from the image) serves $hub_mcp_url, no capabilities"
kit_adapter
kit_client
# agent_call CA_FILE: the official Python SDK, trusting CA_FILE (httpx reads
# SSL_CERT_FILE), lists the hub's tools until eu_shop_query is there and calls it.
agent_call() {
    SSL_CERT_FILE="$1" "$py" - "$hub_mcp_url" "$agent_credential" "$python_dir" "$WAIT_S" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[3])
from sdk_session import with_session, call, list_tools
url, bearer, wait_s = sys.argv[1], open(sys.argv[2]).read().strip(), float(sys.argv[4])
headers = {"Authorization": "Bearer " + bearer}
deadline = time.monotonic() + wait_s
while True:
    try:
        if "eu_shop_query" in (tools := with_session(url, headers, list_tools)):
            break
    except Exception as e:  # the hub restarting
        tools = e
    assert time.monotonic() < deadline, f"tools/list over HTTPS: {tools}"
    time.sleep(0.3)
result = with_session(url, headers, lambda s: call(s, "eu_shop_query",
                                                   {"sql": "SELECT count(*) AS n FROM customers", "params": []}))
assert not result.get("isError"), result
assert "10" in str(result), result
print("tools/call eu_shop_query over HTTPS:", str(result.get("structuredContent") or result["content"][0]["text"])[:120])
PY
}
py="$(python_sdk "$EWII_MCP_PY_2")"
agent_call "$work/https-ca.pem" || fail "the agent's tools/call over HTTPS"
pass "the official Python SDK (trusting the HTTPS CA) called eu_shop_query through the hub, the tunnel and the adapter from the images"
plain="$(curl -sS --max-time 5 "http://${hub_mcp_url#https://}" -d '{}' 2>&1 || true)"
grep -q "HTTPS only" <<<"$plain" || fail "plain HTTP to the TLS port answered: $plain"
if curl -sS --max-time 5 "$hub_mcp_url" -o /dev/null 2>/dev/null; then fail "HTTPS without the CA was accepted"; fi
pass "plain HTTP to the HTTPS port refused (400, HTTPS only); a client without the CA refuses the hub"

# The hub again, on the same QUIC port, now with a certificate from its own CA for
# /mcp: the agent trusts hub-ca.pem, what customers' clients already pin.
stop_pid "$hub_pid"
"${hub[@]}" serve --quic "$hub_quic" --http 127.0.0.1:0 --name 127.0.0.1 --json --http-tls-hub-ca \
    >"$work/hub-serve.out" 2>"$work/hub-serve-2.log" &
hub_pid=$!
pids+=("$hub_pid")
wait_for "ewii-hub serve --http-tls-hub-ca" "$hub_pid" grep -q '"mcp_url"' "$work/hub-serve.out"
hub_mcp_url="$(json_field mcp_url <"$work/hub-serve.out")"
wait_for "ewii-client reconnecting to the restarted hub" "$client_pid" events 2 tunnel_up
agent_call "$work/hub-ca.pem" || fail "the agent's tools/call over HTTPS with the hub CA"
if SSL_CERT_FILE="$work/https-ca.pem" agent_call "$work/https-ca.pem" >/dev/null 2>&1; then
    fail "an agent trusting another CA reached the hub"
fi
pass "--http-tls-hub-ca: the official Python SDK trusting hub-ca.pem called eu_shop_query; trusting another CA it is refused"
for name in ewii-client ewii-adapter ewii-hub; do buildah rmi "localhost/$name:$version" >/dev/null 2>&1 || true; done
say "images stage passed"
