//! `DEST/image.json`: what an import made, and where it came from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use steps::Error;

use super::config::{HistoryEntry, ImageConfig};
use super::source::io_text;

/// The file in an imported image's directory that describes it.
pub const RECORD: &str = "image.json";
/// The image's config document, kept byte for byte.
pub const CONFIG: &str = "config.json";

/// An imported image: its layers as directories under its own directory,
/// bottom first as the image lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The OCI layout or tar it was imported from.
    pub source: PathBuf,
    /// `oci-layout` or `docker-save`.
    pub format: String,
    /// The name it was chosen by (`--ref`) or carries, if any.
    pub reference: Option<String>,
    /// The manifest's digest (OCI layouts; a legacy `docker save` has none).
    pub manifest: Option<String>,
    /// The config's digest.
    pub config_digest: String,
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub layers: Vec<LayerRecord>,
    pub config: ImageConfig,
    pub history: Vec<HistoryEntry>,
    /// Extended attributes of the layers that DEST's filesystem could not
    /// keep, so were dropped.
    #[serde(default)]
    pub dropped_attributes: u64,
}

/// One layer: where it was unpacked and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Relative to the image's directory: `layers/1` is the bottom one.
    pub dir: String,
    /// The blob's digest, as shipped (compressed).
    pub digest: String,
    /// The digest of the uncompressed tar, from the config's
    /// `rootfs.diff_ids`.
    pub diff_id: String,
    /// The blob's size in bytes.
    pub size: u64,
    pub media_type: String,
    /// The bytes of the regular files the layer holds.
    pub unpacked_size: u64,
}

/// A row of `overlay-stack history`, like one of `docker history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// `sha256:` and 12 hex digits of the layer's diff_id; `None` for a
    /// step that made no layer.
    pub layer: Option<String>,
    pub created: Option<String>,
    pub created_by: String,
    /// Bytes the step added; 0 for a step that made no layer.
    pub size: Option<u64>,
    pub comment: Option<String>,
}

impl Image {
    /// Reads `DIR/image.json`.
    pub fn load(dir: &Path) -> Result<Image, Error> {
        let path = dir.join(RECORD);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::usage(format!(
                    "{}: not an imported image (it has no {RECORD})",
                    dir.display()
                ))
                .hint("make one with overlay-stack import SOURCE DIR")
            } else {
                Error::usage(format!("{}: {}", path.display(), io_text(&e)))
            }
        })?;
        let image: Image = serde_json::from_slice(&bytes).map_err(|e| {
            Error::usage(format!("{}: not an image record: {e}", path.display()))
                .hint("import the image again with overlay-stack import")
        })?;
        // Each layer is a directory inside the image's: a record that
        // names one elsewhere (`/`, `../..`) would stack the host's files.
        for (i, layer) in image.layers.iter().enumerate() {
            let inside = !layer.dir.is_empty()
                && Path::new(&layer.dir)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(Error::usage(format!(
                    "{}: layers[{i}].dir {:?} is not a directory inside the image",
                    path.display(),
                    layer.dir
                ))
                .hint("import the image again with overlay-stack import"));
            }
        }
        Ok(image)
    }

    /// The layer directories, absolute and **top first**: the order
    /// overlayfs's `lowerdir=` wants, the reverse of the image's.
    pub fn lowers(&self, dir: &Path) -> Vec<PathBuf> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.layers
            .iter()
            .rev()
            .map(|layer| dir.join(&layer.dir))
            .collect()
    }

    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The build steps, newest first like `docker history`: one row per
    /// history entry, each that made a layer paired with the next layer up
    /// from the bottom; without history, one row per layer.
    pub fn history(&self) -> Vec<HistoryRow> {
        let row = |layer: Option<&LayerRecord>, entry: Option<&HistoryEntry>| HistoryRow {
            layer: layer.map(|l| short(&l.diff_id)),
            created: entry.and_then(|e| e.created.clone()),
            created_by: entry.and_then(|e| e.created_by.clone()).unwrap_or_default(),
            size: match (layer, entry) {
                (Some(l), _) => Some(l.unpacked_size),
                (None, Some(e)) if e.empty_layer => Some(0),
                _ => None,
            },
            comment: entry.and_then(|e| e.comment.clone()),
        };
        let mut rows: Vec<HistoryRow> = if self.history.is_empty() {
            self.layers.iter().map(|l| row(Some(l), None)).collect()
        } else {
            let mut layers = self.layers.iter();
            self.history
                .iter()
                .map(|entry| {
                    let layer = if entry.empty_layer {
                        None
                    } else {
                        layers.next()
                    };
                    row(layer, Some(entry))
                })
                .collect()
        };
        rows.reverse();
        rows
    }
}

/// `sha256:3f1a2b3c4d5e`.
fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: usize, size: u64) -> LayerRecord {
        LayerRecord {
            dir: format!("layers/{n}"),
            digest: format!("sha256:{}", "b".repeat(64)),
            diff_id: format!("sha256:{n}{}", "a".repeat(63)),
            size: 10,
            media_type: String::new(),
            unpacked_size: size,
        }
    }

    fn image(history: Vec<HistoryEntry>) -> Image {
        Image {
            source: "/images/alpine.tar".into(),
            format: "docker-save".into(),
            reference: None,
            manifest: None,
            config_digest: String::new(),
            architecture: None,
            os: None,
            layers: vec![layer(1, 100), layer(2, 200)],
            config: ImageConfig::default(),
            history,
            dropped_attributes: 0,
        }
    }

    fn step(by: &str, empty: bool) -> HistoryEntry {
        HistoryEntry {
            created_by: Some(by.into()),
            empty_layer: empty,
            ..Default::default()
        }
    }

    #[test]
    fn history_is_newest_first_with_empty_layers_sized_zero() {
        let image = image(vec![
            step("ADD rootfs.tar /", false),
            step("ENV A=1", true),
            step("RUN apk add curl", false),
            step("CMD [\"sh\"]", true),
        ]);
        let rows = image.history();
        let by: Vec<&str> = rows.iter().map(|r| r.created_by.as_str()).collect();
        assert_eq!(
            by,
            [
                "CMD [\"sh\"]",
                "RUN apk add curl",
                "ENV A=1",
                "ADD rootfs.tar /"
            ]
        );
        assert_eq!(rows[0].layer, None);
        assert_eq!(rows[0].size, Some(0));
        assert_eq!(rows[1].layer.as_deref(), Some("sha256:2aaaaaaaaaaa"));
        assert_eq!(rows[1].size, Some(200));
        assert_eq!(rows[3].layer.as_deref(), Some("sha256:1aaaaaaaaaaa"));
    }

    #[test]
    fn without_history_there_is_a_row_per_layer() {
        let rows = image(Vec::new()).history();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].layer.as_deref(), Some("sha256:2aaaaaaaaaaa"));
        assert_eq!(rows[0].created_by, "");
    }

    #[test]
    fn lowers_are_top_first_and_absolute() {
        let lowers = image(Vec::new()).lowers(Path::new("img"));
        assert!(lowers[0].is_absolute());
        assert!(lowers[0].ends_with("img/layers/2"));
        assert!(lowers[1].ends_with("img/layers/1"));
    }

    #[test]
    fn loading_a_directory_that_is_no_image_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = Image::load(dir.path()).unwrap_err();
        assert_eq!(error.code(), steps::exit::USAGE);
        assert!(
            error.to_string().contains("not an imported image"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("make one with overlay-stack import"),
            "{error}"
        );
        let record = image(vec![step("x", false)]);
        std::fs::write(
            dir.path().join(RECORD),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert_eq!(Image::load(dir.path()).unwrap(), record);
    }
}
