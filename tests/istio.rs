//! Istio packaging: `make oci`'s image layout is valid (every digest and size
//! matches its blob, the layer is the filter itself), and every WasmPlugin
//! example's pluginConfig is a configuration the filter accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Checks a descriptor against its blob and returns the blob's path.
fn check_descriptor(layout: &Path, d: &serde_json::Value) -> PathBuf {
    let digest = d["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let blob = layout.join("blobs/sha256").join(hex);
    assert_eq!(
        sha256_hex(&blob),
        hex,
        "{digest}: content does not match its digest"
    );
    assert_eq!(
        std::fs::metadata(&blob).unwrap().len(),
        d["size"].as_u64().unwrap(),
        "{digest}: size"
    );
    blob
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn oci_layout_is_valid_and_holds_the_filter() {
    let wasm = crate_dir().join("target/wasm32-wasip1/release/idp_ratelimit.wasm");
    let out = std::env::temp_dir().join(format!("idp-rl-oci-{}", std::process::id()));
    let status = Command::new("python3")
        .arg(crate_dir().join("envoy/istio/oci.py"))
        .args([wasm.as_os_str(), out.as_os_str()])
        .arg("0.1.0")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "oci.py failed (is the wasm built? `make build`)"
    );

    assert_eq!(
        read_json(&out.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "0.1.0"
    );
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest = read_json(&check_descriptor(&out, entry));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let config = read_json(&check_descriptor(&out, &manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "Istio's OCI variant has exactly one layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    let layer = check_descriptor(&out, &layers[0]);
    assert_eq!(
        std::fs::read(&layer).unwrap(),
        std::fs::read(&wasm).unwrap(),
        "the layer is the filter"
    );
    assert_eq!(config["layerDigests"][0], layers[0]["digest"]);

    // Reproducible: a second build of the same module gives the same manifest digest.
    let again = out.with_extension("again");
    Command::new("python3")
        .arg(crate_dir().join("envoy/istio/oci.py"))
        .args([wasm.as_os_str(), again.as_os_str()])
        .arg("0.1.0")
        .status()
        .unwrap();
    assert_eq!(
        read_json(&again.join("index.json"))["manifests"][0]["digest"],
        entry["digest"]
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn every_wasmplugin_example_is_accepted() {
    let dir = crate_dir().join("envoy/istio");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("kind: WasmPlugin"), "{path:?}");
        assert!(
            text.contains("phase: AUTHZ"),
            "{path:?}: runs after authentication"
        );
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("pluginConfig: "))
            .expect("pluginConfig line");
        if let Err(e) = idp_ratelimit::config::parse(line.as_bytes()) {
            panic!("{path:?}: pluginConfig refused: {e}");
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}
