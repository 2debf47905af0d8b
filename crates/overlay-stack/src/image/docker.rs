//! The `docker save` tar: `manifest.json` → config and layer tars.
//!
//! Before Docker 25, `docker save` wrote its own format: `manifest.json`
//! lists each image as its config file (`<id>.json`), its names
//! (`RepoTags`, like `alpine:3.20`) and its layers bottom first, each an
//! uncompressed tar at `<id>/layer.tar`. Nothing but the config names the
//! layers' digests, so a reader can check only their diff_ids (and the
//! config, whose file is named by its own digest). Docker 25 and later
//! still write `manifest.json`, beside an OCI layout that import reads
//! instead. See <https://github.com/moby/moby/blob/master/image/spec/v1.2.md>.

use serde::Deserialize;
use steps::Error;

use super::digest::{Digest, verify};
use super::source::Source;
use super::{Found, LayerBlob};

/// One image of `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(default)]
    pub layers: Vec<String>,
}

impl Entry {
    fn tags(&self) -> &[String] {
        self.repo_tags.as_deref().unwrap_or_default()
    }
}

/// A digest named by a file's path: `<hex>.json`, `blobs/sha256/<hex>`,
/// `<hex>/layer.tar`'s directory is *not* one (a v1 id, not a digest).
fn digest_in_name(member: &str) -> Option<Digest> {
    let hex = member
        .strip_prefix("blobs/sha256/")
        .or_else(|| member.strip_suffix(".json"))?;
    Digest::from_hex(hex)
}

/// Finds the image `wanted` (or the only one) in a `docker save` tar.
pub(super) fn find(source: &Source, wanted: Option<&str>) -> Result<Found, Error> {
    let manifest_name = source.name("manifest.json");
    let bytes = source
        .read("manifest.json")?
        .ok_or_else(|| Error::usage(format!("{manifest_name}: missing")))?;
    let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::usage(format!("{manifest_name}: not a docker save manifest: {e}"))
            .hint(super::DAMAGED)
    })?;
    let (entry, reference) = choose(source, &entries, wanted)?;
    let config_member = entry.config.clone();
    let config_name = source.name(&config_member);
    let config_bytes = source.read(&config_member)?.ok_or_else(|| {
        Error::usage(format!(
            "{config_name}: missing (named by manifest.json's Config)"
        ))
    })?;
    let config_digest = digest_in_name(&config_member);
    if let Some(digest) = &config_digest {
        verify(
            &format!("config {config_name}"),
            &config_bytes,
            digest,
            None,
        )?;
    }
    let mut layers = Vec::new();
    for (i, member) in entry.layers.iter().enumerate() {
        let span = source.locate(member)?.ok_or_else(|| {
            Error::usage(format!(
                "{}: layer {} is missing (manifest.json's Layers[{i}])",
                source.name(member),
                i + 1
            ))
        })?;
        layers.push(LayerBlob {
            member: member.clone(),
            span,
            digest: member
                .strip_prefix("blobs/sha256/")
                .and_then(Digest::from_hex),
            media_type: String::new(),
        });
    }
    Ok(Found {
        reference,
        manifest: None,
        config_member,
        config_digest,
        config_bytes,
        layers,
    })
}

fn choose<'a>(
    source: &Source,
    entries: &'a [Entry],
    wanted: Option<&str>,
) -> Result<(&'a Entry, Option<String>), Error> {
    let path = source.path().display();
    let tags: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.tags())
        .map(String::as_str)
        .collect();
    match (wanted, entries) {
        (_, []) => Err(Error::usage(format!(
            "{path}: manifest.json lists no image"
        ))),
        (Some(wanted), _) => {
            let entry = entries
                .iter()
                .find(|e| {
                    e.tags()
                        .iter()
                        .any(|t| t == wanted || is_hub_short(t, wanted))
                })
                .ok_or_else(|| {
                    let has = if tags.is_empty() {
                        "it names none; leave out --ref".to_string()
                    } else {
                        format!("it has: {}", tags.join(", "))
                    };
                    Error::usage(format!("{path}: no image named {wanted:?}; {has}"))
                        .hint("choose one of them with --ref NAME")
                })?;
            Ok((entry, Some(wanted.to_string())))
        }
        (None, [only]) => Ok((only, only.tags().first().cloned())),
        (None, _) => Err(Error::usage(format!(
            "{path} holds {} images; choose one with --ref: {}",
            entries.len(),
            tags.join(", ")
        ))),
    }
}

/// `alpine:3.20` is what Docker Hub's `docker.io/library/alpine:3.20` is
/// called for short.
fn is_hub_short(tag: &str, wanted: &str) -> bool {
    tag.strip_prefix("docker.io/library/") == Some(wanted)
        || tag.strip_prefix("docker.io/") == Some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_carry_digests_and_layer_dirs_do_not() {
        let hex = "a".repeat(64);
        assert_eq!(digest_in_name(&format!("{hex}.json")).unwrap().hex(), hex);
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{hex}"))
                .unwrap()
                .hex(),
            hex
        );
        assert!(digest_in_name(&format!("{hex}/layer.tar")).is_none());
        assert!(digest_in_name("config.json").is_none());
    }

    #[test]
    fn manifest_json_reads_with_null_tags() {
        let entries: Vec<Entry> = serde_json::from_str(
            r#"[{"Config": "c.json", "RepoTags": null, "Layers": ["a/layer.tar"]},
                {"Config": "d.json", "RepoTags": ["x:1", "x:2"], "Layers": []}]"#,
        )
        .unwrap();
        assert!(entries[0].tags().is_empty());
        assert_eq!(entries[1].tags(), ["x:1", "x:2"]);
    }
}
