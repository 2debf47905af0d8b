//! The OCI image layout: `index.json` → manifest → config and layers.
//!
//! An OCI image layout is a directory (or a tar of one) with three things:
//! an `oci-layout` file giving the layout's version, `index.json` listing
//! the images it holds, and `blobs/sha256/` holding every blob under its
//! own digest. Each entry of `index.json` is a *descriptor* — media type,
//! digest, size, and annotations such as the image's name
//! (`org.opencontainers.image.ref.name`). It points either at an image
//! *manifest* (one config, a list of layers) or at another *index*, one
//! manifest per platform, from which a reader picks the one for its own OS
//! and architecture. Docker 25 and later write this layout inside
//! `docker save` tars too. See
//! <https://github.com/opencontainers/image-spec/blob/main/image-layout.md>
//! and <https://github.com/opencontainers/image-spec/blob/main/image-index.md>.

use std::collections::BTreeMap;

use serde::Deserialize;
use steps::Error;

use super::Found;
use super::digest::{Digest, verify};
use super::source::Source;

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation that names an image in a layout: what `--ref` matches.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker 25's) full name of an image.
const IMAGE_NAME: &str = "io.containerd.image.name";

/// A pointer to a blob.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl Descriptor {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }

    /// The name a person would pass to `--ref`.
    pub fn name(&self) -> Option<&str> {
        self.annotation(REF_NAME)
            .or_else(|| self.annotation(IMAGE_NAME))
    }

    /// Whether `--ref wanted` means this image: its ref name, or its full
    /// name with or without Docker Hub's implied prefix
    /// (`docker.io/library/alpine:3` is `alpine:3`).
    pub fn is_named(&self, wanted: &str) -> bool {
        if self.annotation(REF_NAME) == Some(wanted) {
            return true;
        }
        let Some(full) = self.annotation(IMAGE_NAME) else {
            return false;
        };
        full == wanted
            || full.strip_prefix("docker.io/") == Some(wanted)
            || full.strip_prefix("docker.io/library/") == Some(wanted)
    }

    /// A build's provenance or SBOM, which Docker and BuildKit list beside
    /// the images: not an image to run.
    fn is_attestation(&self) -> bool {
        self.annotation("vnd.docker.reference.type") == Some("attestation-manifest")
            || self.platform.as_ref().is_some_and(|p| p.os == "unknown")
    }

    fn is_index(&self) -> bool {
        self.media_type == INDEX || self.media_type == DOCKER_LIST
    }

    pub fn digest(&self, what: &str) -> Result<Digest, Error> {
        Digest::parse(&self.digest).map_err(|why| Error::usage(format!("{what}: {why}")))
    }
}

/// This machine's architecture as OCI names it (Go's `GOARCH`).
pub fn this_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Finds the image `wanted` (or the only one) in an OCI layout, reading
/// and checking its index, manifest and config.
pub(super) fn find(source: &Source, wanted: Option<&str>) -> Result<Found, Error> {
    let index_name = source.name("index.json");
    let bytes = source
        .read("index.json")?
        .ok_or_else(|| Error::usage(format!("{index_name}: missing")))?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
        Error::usage(format!("{index_name}: not an OCI image index: {e}")).hint(super::DAMAGED)
    })?;
    let (top, reference) = choose(source, &index.manifests, wanted)?;
    let (manifest_digest, manifest) = follow(source, top)?;
    let what = format!("manifest {}: config", manifest_digest.short());
    let config_digest = manifest.config.digest(&what)?;
    let config_what = format!("config {}", source.name(&config_digest.blob_path()));
    let config_bytes = read_blob(source, &manifest.config, &config_what)?;
    let mut layers = Vec::new();
    for (i, descriptor) in manifest.layers.iter().enumerate() {
        let what = format!("layer {} of manifest {}", i + 1, manifest_digest.short());
        let digest = descriptor.digest(&what)?;
        let member = digest.blob_path();
        let span = source.locate(&member)?.ok_or_else(|| {
            Error::usage(format!(
                "{}: layer {}'s blob {} is missing",
                source.path().display(),
                i + 1,
                digest.short()
            ))
            .hint("the image was copied incompletely; get it again")
        })?;
        if span.len != descriptor.size {
            return Err(super::digest::size_mismatch(
                &format!("layer {} ({})", i + 1, source.name(&member)),
                descriptor.size,
                span.len,
            ));
        }
        layers.push(super::LayerBlob {
            member,
            span,
            digest: Some(digest),
            media_type: descriptor.media_type.clone(),
        });
    }
    Ok(Found {
        reference,
        manifest: Some(manifest_digest),
        config_member: config_digest.blob_path(),
        config_digest: Some(config_digest),
        config_bytes,
        layers,
    })
}

/// Picks the entry of `index.json` to import: the one `--ref` names, else
/// the only image (of this machine's platform, when there are several).
fn choose<'a>(
    source: &Source,
    manifests: &'a [Descriptor],
    wanted: Option<&str>,
) -> Result<(&'a Descriptor, Option<String>), Error> {
    let path = source.path().display();
    let images: Vec<&Descriptor> = manifests.iter().filter(|d| !d.is_attestation()).collect();
    if images.is_empty() {
        return Err(Error::usage(format!("{path}: index.json lists no image")));
    }
    let mut names: Vec<&str> = Vec::new();
    for name in images.iter().filter_map(|d| d.name()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if let Some(wanted) = wanted {
        let named: Vec<&Descriptor> = images
            .iter()
            .copied()
            .filter(|d| d.is_named(wanted))
            .collect();
        if named.is_empty() {
            let has = if names.is_empty() {
                "it names none; leave out --ref".to_string()
            } else {
                format!("it has: {}", names.join(", "))
            };
            return Err(
                Error::usage(format!("{path}: no image named {wanted:?}; {has}"))
                    .hint("choose one of them with --ref NAME"),
            );
        }
        let chosen = for_this_platform(&named).unwrap_or(named[0]);
        return Ok((chosen, Some(wanted.to_string())));
    }
    let mut digests: Vec<&str> = images.iter().map(|d| d.digest.as_str()).collect();
    digests.sort_unstable();
    digests.dedup();
    if digests.len() == 1 {
        return Ok((images[0], images[0].name().map(str::to_string)));
    }
    if names.len() > 1 {
        return Err(Error::usage(format!(
            "{path} holds {} images; choose one with --ref: {}",
            digests.len(),
            names.join(", ")
        )));
    }
    match for_this_platform(&images) {
        Some(chosen) => Ok((chosen, chosen.name().map(str::to_string))),
        None => Err(no_platform(&format!("{path}/index.json"), &images)),
    }
}

/// The descriptor for linux on this machine's architecture, if any.
fn for_this_platform<'a>(candidates: &[&'a Descriptor]) -> Option<&'a Descriptor> {
    let arch = this_architecture();
    candidates.iter().copied().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    })
}

fn no_platform(what: &str, candidates: &[&Descriptor]) -> Error {
    let has: Vec<String> = candidates
        .iter()
        .map(|d| {
            d.platform
                .as_ref()
                .map_or("no platform".into(), |p| p.to_string())
        })
        .collect();
    Error::usage(format!(
        "{what}: no image for linux/{}; it has: {}",
        this_architecture(),
        has.join(", ")
    ))
}

/// Reads a descriptor's blob and follows nested indexes down to a manifest.
fn follow(source: &Source, start: &Descriptor) -> Result<(Digest, Manifest), Error> {
    let mut descriptor = start.clone();
    // An index of indexes is legal; a loop of them is not, so stop.
    for _ in 0..8 {
        let digest = descriptor.digest("index.json")?;
        let what = format!("manifest {}", source.name(&digest.blob_path()));
        let bytes = read_blob(source, &descriptor, &what)?;
        let probe: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::usage(format!("{what}: not JSON: {e}")).hint(super::DAMAGED))?;
        let is_index = descriptor.is_index()
            || (descriptor.media_type.is_empty() && probe.get("manifests").is_some());
        if is_index {
            let index: Index = serde_json::from_value(probe).map_err(|e| {
                Error::usage(format!("{what}: not an image index: {e}")).hint(super::DAMAGED)
            })?;
            let images: Vec<&Descriptor> = index
                .manifests
                .iter()
                .filter(|d| !d.is_attestation())
                .collect();
            descriptor = match (for_this_platform(&images), images.as_slice()) {
                (Some(chosen), _) => chosen.clone(),
                (None, [only]) if only.platform.is_none() => (*only).clone(),
                _ => return Err(no_platform(&what, &images)),
            };
            continue;
        }
        let manifest: Manifest = serde_json::from_value(probe).map_err(|e| {
            Error::usage(format!("{what}: not an image manifest: {e}")).hint(super::DAMAGED)
        })?;
        let media_type = manifest
            .media_type
            .as_deref()
            .unwrap_or(&descriptor.media_type);
        if !(media_type.is_empty() || media_type == MANIFEST || media_type == DOCKER_MANIFEST) {
            return Err(Error::usage(format!(
                "{what}: a {media_type}, not an image manifest"
            )));
        }
        return Ok((digest, manifest));
    }
    Err(Error::usage(format!(
        "{}: indexes nest more than 8 deep",
        source.path().display()
    )))
}

/// Reads a small blob whole and checks it against its descriptor.
fn read_blob(source: &Source, descriptor: &Descriptor, what: &str) -> Result<Vec<u8>, Error> {
    let digest = descriptor.digest(what)?;
    let bytes = source.read(&digest.blob_path())?.ok_or_else(|| {
        Error::usage(format!("{what}: missing"))
            .hint("the image was copied incompletely; get it again")
    })?;
    verify(what, &bytes, &digest, Some(descriptor.size))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(json: &str) -> Descriptor {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn names_match_the_ref_annotation_or_the_full_name() {
        let d = descriptor(
            r#"{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:00", "size": 1,
                "annotations": {"io.containerd.image.name": "docker.io/library/alpine:3.20",
                                "org.opencontainers.image.ref.name": "3.20"}}"#,
        );
        assert_eq!(d.name(), Some("3.20"));
        for name in [
            "3.20",
            "alpine:3.20",
            "library/alpine:3.20",
            "docker.io/library/alpine:3.20",
        ] {
            assert!(d.is_named(name), "{name}");
        }
        assert!(!d.is_named("alpine:latest"));
    }

    #[test]
    fn the_platform_is_linux_on_this_architecture() {
        let other = if this_architecture() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let index: Index = serde_json::from_str(&format!(
            r#"{{"manifests": [
                {{"digest": "sha256:01", "size": 1, "platform": {{"os": "linux", "architecture": "{other}"}}}},
                {{"digest": "sha256:02", "size": 1, "platform": {{"os": "linux", "architecture": "{}"}}}},
                {{"digest": "sha256:03", "size": 1, "platform": {{"os": "unknown", "architecture": "unknown"}}}}
            ]}}"#,
            this_architecture()
        ))
        .unwrap();
        let all: Vec<&Descriptor> = index.manifests.iter().collect();
        assert_eq!(for_this_platform(&all).unwrap().digest, "sha256:02");
        assert!(all[2].is_attestation());
        let error = no_platform("x", &all[..1]);
        assert!(
            error
                .to_string()
                .contains(&format!("it has: linux/{other}")),
            "{error}"
        );
    }
}
