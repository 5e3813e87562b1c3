//! The module as an OCI image in the Wasm image format Istio's agent and Envoy Gateway
//! pull: the *compat* variant of the Wasm image specification (solo-io/wasm,
//! `spec-compat.md`), one `application/vnd.oci.image.layer.v1.tar+gzip` layer holding
//! `plugin.wasm`, and the manifest annotation `module.wasm.image/variant: compat`.
//!
//! Built reproducibly: the same module gives the same bytes and so the same digest (tar
//! entries with mtime 0, owner 0:0, mode 0644, no user names; gzip with no timestamp or
//! file name; JSON with sorted keys), so a digest names a build, not a moment.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The layer's media type (the compat variant's, which every registry accepts).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The file in the layer the meshes load.
pub const WASM_FILE_NAME: &str = "plugin.wasm";

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// The image: its layer, config and manifest blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmImage {
    /// The gzipped tar holding `plugin.wasm`.
    pub layer: Blob,
    /// The OCI image config.
    pub config: Blob,
    /// The manifest; its digest is the image's (`oci://...@<digest>`).
    pub manifest: Blob,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&Sha256::digest(bytes));
    format!("sha256:{}", crate::auth::digest_hex(&digest))
}

/// The tar of the layer: one regular file, with nothing that depends on when or by whom
/// it was built.
fn layer_tar(wasm: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(WASM_FILE_NAME)?;
    header.set_size(wasm.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    builder.into_inner()
}

/// Gzip with no timestamp and no file name, at a fixed level.
fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Builds the image of a module.
pub fn build(wasm: &[u8]) -> std::io::Result<WasmImage> {
    if !wasm.starts_with(b"\0asm") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a WebAssembly module (it does not start with \\0asm)",
        ));
    }
    let tar = layer_tar(wasm)?;
    let layer = Blob::new(gzip(&tar)?);
    // serde_json's maps are sorted, so the same values always give the same bytes.
    let config = Blob::new(
        json!({
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar)]},
        })
        .to_string()
        .into_bytes(),
    );
    let manifest = Blob::new(
        json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(CONFIG_MEDIA_TYPE),
            "layers": [layer.descriptor(LAYER_MEDIA_TYPE)],
            "annotations": {"module.wasm.image/variant": "compat"},
        })
        .to_string()
        .into_bytes(),
    );
    Ok(WasmImage {
        layer,
        config,
        manifest,
    })
}

/// Writes `image` as an OCI image layout into `dir` (`oci-layout`, `index.json`,
/// `blobs/sha256/...`), its manifest tagged `tag`, as `oras` and `skopeo` read it.
pub fn write_layout(image: &WasmImage, dir: &Path, tag: &str) -> std::io::Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)?;
    for blob in [&image.layer, &image.config, &image.manifest] {
        let hex = blob.digest.trim_start_matches("sha256:");
        std::fs::write(blobs.join(hex), &blob.bytes)?;
    }
    std::fs::write(
        dir.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"}).to_string(),
    )?;
    let mut manifest = image.manifest.descriptor(MANIFEST_MEDIA_TYPE);
    if let Some(fields) = manifest.as_object_mut() {
        fields.insert(
            "annotations".into(),
            json!({"org.opencontainers.image.ref.name": tag}),
        );
    }
    std::fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [manifest]}).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module, as far as this test cares";

    #[test]
    fn the_same_module_gives_the_same_image() {
        let a = build(MODULE).unwrap();
        assert_eq!(a, build(MODULE).unwrap());
        let mut other = MODULE.to_vec();
        other.push(0);
        assert_ne!(a.manifest.digest, build(&other).unwrap().manifest.digest);
    }

    #[test]
    fn the_layer_holds_plugin_wasm_only_with_fixed_metadata() {
        let image = build(MODULE).unwrap();
        assert_eq!(&image.layer.bytes[..2], b"\x1f\x8b");
        assert_eq!(&image.layer.bytes[4..8], &[0, 0, 0, 0], "gzip mtime is 0");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("plugin.wasm"));
        let h = entry.header();
        assert_eq!(
            (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
            (0, 0, 0)
        );
        assert_eq!(h.mode().unwrap(), 0o644);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, MODULE);
        drop(entry);
        assert!(entries.next().is_none(), "exactly one file");
    }

    #[test]
    fn the_manifest_is_the_compat_variant() {
        let image = build(MODULE).unwrap();
        let m: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(m["annotations"]["module.wasm.image/variant"], "compat");
        assert_eq!(m["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(m["config"]["digest"], image.config.digest.as_str());
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(layers[0]["digest"], image.layer.digest.as_str());
        assert_eq!(layers[0]["size"], image.layer.bytes.len());
        assert_eq!(
            image.manifest.digest,
            sha256_digest(&image.manifest.bytes),
            "the digest is of the bytes written"
        );
    }

    #[test]
    fn a_file_that_is_not_wasm_is_refused() {
        assert!(build(b"#!/bin/sh").is_err());
    }

    #[test]
    fn the_layout_indexes_the_manifest_by_tag() {
        let dir = std::env::temp_dir().join(format!("llm-gateway-oci-{}", std::process::id()));
        let image = build(MODULE).unwrap();
        write_layout(&image, &dir, "0.1.0").unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            image.manifest.digest.as_str()
        );
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "0.1.0"
        );
        let hex = image.layer.digest.trim_start_matches("sha256:");
        assert_eq!(
            std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap(),
            image.layer.bytes
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
