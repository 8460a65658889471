#!/usr/bin/env python3
"""Writes the filter as an OCI image layout in the format Istio's WasmPlugin
pulls (the OCI variant of Istio's Wasm image spec): one layer holding the
.wasm itself (application/vnd.module.wasm.content.layer.v1+wasm) and a config
blob (application/vnd.module.wasm.config.v1+json). Push it with
`skopeo copy oci:<dir>:<tag> docker://<registry>/<repo>:<tag>` or
`oras cp --from-oci-layout <dir>:<tag> <registry>/<repo>:<tag>`.

Usage: oci.py <plugin.wasm> <out-dir> <tag>
Reproducible: no timestamps; the same .wasm gives the same digests.
"""
import hashlib
import json
import os
import shutil
import sys

LAYER_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
CONFIG_TYPE = "application/vnd.module.wasm.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def write_blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def main(wasm_path, out, tag):
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    if wasm[:4] != b"\0asm":
        sys.exit(f"{wasm_path} is not a wasm module")
    shutil.rmtree(out, ignore_errors=True)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    layer = dict(mediaType=LAYER_TYPE, **write_blob(blobs, wasm))
    layer["annotations"] = {"org.opencontainers.image.title": "plugin.wasm"}
    config = {
        "architecture": "wasm",
        "os": "wasip1",
        "rootIds": ["idp_ratelimit"],
        "layerDigests": [layer["digest"]],
    }
    config_blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": dict(mediaType=CONFIG_TYPE, **write_blob(blobs, config_blob)),
        "layers": [layer],
        "annotations": {
            "org.opencontainers.image.title": "idp-ratelimit",
            "org.opencontainers.image.version": tag,
            "org.opencontainers.image.description": "Envoy filter enforcing Okta, Auth0 and OneLogin API rate limits",
        },
    }
    manifest_blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            dict(
                mediaType=MANIFEST_TYPE,
                annotations={"org.opencontainers.image.ref.name": tag},
                **write_blob(blobs, manifest_blob),
            )
        ],
    }
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, indent=1)
    print(f"{out}: {tag} {index['manifests'][0]['digest']} (layer {layer['digest']}, {len(wasm)} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
