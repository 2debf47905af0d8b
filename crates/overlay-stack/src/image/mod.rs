//! # Images are stacks of layers
//!
//! A container image is not a disk image: it is a list of *layers*, each a
//! tar of what one build step changed, plus a JSON *config* that says how to
//! run it. Stack the layers with overlayfs, bottom first, and the merged
//! view is the image's root filesystem — which is how Docker's `overlay2`
//! driver and containerd run every container. Import does the part
//! `docker load` does before that: it reads an image, checks every byte
//! against the digests the image names, and unpacks each layer into a
//! directory of its own, in the format overlayfs reads, so that
//!
//! ```text
//! mount -t overlay overlay -o lowerdir=DEST/layers/3:DEST/layers/2:DEST/layers/1 /merged
//! ```
//!
//! shows the image. See
//! <https://github.com/opencontainers/image-spec/blob/main/spec.md> and
//! <https://docs.kernel.org/filesystems/overlayfs.html#multiple-lower-layers>.
//!
//! Two formats are read, from a directory or an uncompressed tar:
//! the OCI image layout ([`oci`]; also what Docker 25+ `docker save`
//! writes) and the older `docker save` tar ([`docker`]). The blobs are
//! read where they lie ([`source`]), each once, hashed as they stream
//! ([`digest`]) into the unpacker ([`layer`]).
//!
//! Like every underhood command, import first makes a [`Plan`] — reading
//! only the index, manifest and config — then executes it:
//!
//! ```text
//! DEST/image.json     what was imported: source, layers bottom first, config, history
//! DEST/config.json    the image's config, byte for byte
//! DEST/layers/1 … N   one directory per layer, bottom first, in overlayfs format
//! ```
//!
//! It all happens in a staging directory beside DEST, renamed into place at
//! the end, so a failed import leaves nothing behind; the staging
//! directory of an import that was killed, the next import into DEST
//! removes ([`crate::staging`]).

pub mod config;
pub mod digest;
pub mod docker;
pub mod layer;
pub mod oci;
pub mod record;
pub mod source;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use steps::units::{human, plural};
use steps::{Chapter, Error, Narrator, Plan, Step};

pub use config::ImageConfig;
pub use record::{HistoryRow, Image, LayerRecord};

use config::ConfigFile;
use digest::Digest;
use layer::{Compression, Expected, Target, Unpacked};
use source::{Source, Span, io_text};

use crate::paths;
use crate::staging::{self, Kind};
use crate::whiteout::XattrNamespace;

/// What to do about an index, manifest or config that is not what it
/// says it is.
pub(crate) const DAMAGED: &str =
    "the image is damaged, or not an image: save it again (docker save, skopeo copy, umoci)";

/// What `overlay-stack import` is asked for besides SOURCE and DEST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `--ref NAME`: which image of a layout or tar that holds several.
    pub reference: Option<String>,
}

/// An image found in a source: its manifest and config read and checked,
/// its layers located but not yet read.
#[derive(Debug)]
struct Found {
    reference: Option<String>,
    manifest: Option<Digest>,
    config_member: String,
    config_digest: Option<Digest>,
    config_bytes: Vec<u8>,
    layers: Vec<LayerBlob>,
}

/// A layer's blob, as the image lists it.
#[derive(Debug)]
struct LayerBlob {
    /// Its path inside the source: `blobs/sha256/…` or `<id>/layer.tar`.
    member: String,
    span: Span,
    digest: Option<Digest>,
    media_type: String,
}

/// One step of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The staging directory of an import into DEST that was killed.
    RemoveLeftover { path: PathBuf, pid: u32 },
    /// `mkdir` the staging directory beside DEST, and lock it.
    Stage { staging: PathBuf, dest: PathBuf },
    /// Read one layer's blob and unpack it.
    Unpack(Box<UnpackLayer>),
    /// Keep the config as it was.
    WriteConfig {
        staging: PathBuf,
        dest: PathBuf,
        digest: String,
        bytes: Vec<u8>,
    },
    /// Write `image.json`; sizes found while unpacking are filled in then.
    WriteRecord {
        staging: PathBuf,
        dest: PathBuf,
        image: Box<Image>,
    },
    /// `rename(2)` the staging directory to DEST.
    Commit { staging: PathBuf, dest: PathBuf },
}

/// What one layer's step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackLayer {
    /// 1 is the bottom layer.
    pub number: usize,
    pub total: usize,
    /// Its path inside the source.
    pub member: String,
    pub span: Span,
    pub compression: Compression,
    pub expected: Expected,
    pub staging: PathBuf,
    pub dest: PathBuf,
}

impl UnpackLayer {
    fn dir(&self) -> String {
        format!("layers/{}", self.number)
    }
}

/// `blobs/sha256/3f1a2b3c4d5e…` or `5d1f0a9b8c7e…/layer.tar`.
fn short_member(member: &str) -> String {
    let abbreviate = |hex: &str| match Digest::from_hex(hex) {
        Some(digest) => digest.abbrev(),
        None => hex.to_string(),
    };
    match member.split_once('/') {
        Some(("blobs", rest)) => match rest.rsplit_once('/') {
            Some((algorithm, hex)) => format!("blobs/{algorithm}/{}", abbreviate(hex)),
            None => member.to_string(),
        },
        Some((id, rest)) => format!("{}/{rest}", abbreviate(id)),
        None => member.to_string(),
    }
}

impl Step for Op {
    fn call(&self) -> String {
        match self {
            Op::RemoveLeftover { path, .. } => format!("rm -r {path:?}"),
            Op::Stage { staging, .. } => format!("mkdir -p {:?}", staging.join("layers")),
            Op::Unpack(layer) => {
                let checks = if layer.expected.blob.is_some() {
                    "check sha256 and diff_id"
                } else {
                    "check diff_id"
                };
                format!(
                    "unpack {} ({}, {}) → {:?}: {checks}, .wh.* → whiteouts",
                    short_member(&layer.member),
                    human(layer.span.len),
                    layer.compression.name(),
                    layer.dest.join(layer.dir()),
                )
            }
            Op::WriteConfig { dest, digest, .. } => {
                let short = digest.chars().take(19).collect::<String>();
                format!(
                    "write {:?} (config {short}, as it was)",
                    dest.join(record::CONFIG)
                )
            }
            Op::WriteRecord { dest, image, .. } => format!(
                "write {:?} ({}, bottom first)",
                dest.join(record::RECORD),
                plural(image.layers.len() as u64, "layer", "layers")
            ),
            Op::Commit { staging, dest } => format!("rename({staging:?}, {dest:?})"),
        }
    }

    fn why(&self) -> String {
        match self {
            Op::RemoveLeftover { pid, .. } => format!(
                "what an import into the same directory left when it was killed: no process \
                 {pid} runs, and none holds its lock"
            ),
            Op::Stage { dest, .. } => format!(
                "unpack beside {}, so that a failed import leaves nothing half-made",
                dest.display()
            ),
            Op::Unpack(layer) => format!(
                "layer {} of {}: a tar of what one build step changed; its deletions become overlayfs whiteouts, so the directory can be a lowerdir as it is",
                layer.number, layer.total
            ),
            Op::WriteConfig { .. } => {
                "keep how the image runs (env, entrypoint, cmd) and how it was built (history)"
                    .into()
            }
            Op::WriteRecord { .. } => {
                "record each layer's directory and digests, for mount's lowerdir= and for history"
                    .into()
            }
            Op::Commit { .. } => "rename(2) is atomic: DEST appears whole or not at all".into(),
        }
    }

    fn chapter(&self) -> Chapter {
        steps::chapter::IMAGES
    }
}

/// Reads the index, manifest and config of `source` (an OCI image layout
/// directory, an OCI layout tar, or a `docker save` tar) and returns the
/// plan to unpack it into `dest`. Writes nothing.
pub fn plan(source: &Path, dest: &Path, options: &ImportOptions) -> Result<Plan<Op>, Error> {
    let (parent, name) = check_dest(dest)?;
    let src = Source::open(source)?;
    let wanted = options.reference.as_deref();
    let has_docker_manifest = src.has("manifest.json");
    let found = if src.has("index.json") {
        oci::find(&src, wanted)?
    } else if has_docker_manifest {
        docker::find(&src, wanted)?
    } else {
        return Err(Error::usage(format!(
            "{}: not an image: it has neither index.json (an OCI image layout) nor manifest.json (docker save)",
            source.display()
        )));
    };
    let config_name = src.name(&found.config_member);
    let config: ConfigFile = serde_json::from_slice(&found.config_bytes).map_err(|e| {
        Error::usage(format!("{config_name}: not an image config: {e}")).hint(DAMAGED)
    })?;
    let diff_ids = diff_ids(&config, &config_name, found.layers.len())?;

    let mut plan = Plan::new();
    for leftover in staging::leftovers(&parent, &name, Kind::Import) {
        plan.push(Op::RemoveLeftover {
            path: leftover.path,
            pid: leftover.pid,
        });
    }
    let staging = staging::path(&parent, &name, Kind::Import);
    plan.push(Op::Stage {
        staging: staging.clone(),
        dest: dest.to_path_buf(),
    });
    let total = found.layers.len();
    let mut layers = Vec::new();
    for (i, (blob, diff_id)) in found.layers.iter().zip(diff_ids).enumerate() {
        let label = format!("layer {} ({})", i + 1, src.name(&blob.member));
        let head = blob
            .span
            .head(4)
            .map_err(|e| Error::setup(format!("{label}: read: {}", io_text(&e))))?;
        let compression = Compression::sniff(&head);
        if compression == Compression::Zstd {
            return Err(layer::zstd_refused(&label));
        }
        layers.push(LayerRecord {
            dir: format!("layers/{}", i + 1),
            digest: blob
                .digest
                .as_ref()
                .map(Digest::to_string)
                .unwrap_or_default(),
            diff_id: diff_id.to_string(),
            size: blob.span.len,
            media_type: media_type(&blob.media_type, compression),
            unpacked_size: 0,
        });
        plan.push(Op::Unpack(Box::new(UnpackLayer {
            number: i + 1,
            total,
            member: blob.member.clone(),
            span: blob.span.clone(),
            compression,
            expected: Expected {
                label,
                blob: blob.digest.clone(),
                diff_id,
            },
            staging: staging.clone(),
            dest: dest.to_path_buf(),
        })));
    }
    let config_digest = found
        .config_digest
        .clone()
        .unwrap_or_else(|| Digest::of(&found.config_bytes));
    plan.push(Op::WriteConfig {
        staging: staging.clone(),
        dest: dest.to_path_buf(),
        digest: config_digest.to_string(),
        bytes: found.config_bytes.clone(),
    });
    let image = Image {
        source: std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf()),
        format: if has_docker_manifest {
            "docker-save"
        } else {
            "oci-layout"
        }
        .into(),
        reference: found.reference.clone(),
        manifest: found.manifest.as_ref().map(Digest::to_string),
        config_digest: config_digest.to_string(),
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        layers,
        config: config
            .config
            .as_ref()
            .map(ImageConfig::from)
            .unwrap_or_default(),
        history: config.history.clone().unwrap_or_default(),
        dropped_attributes: 0,
    };
    plan.push(Op::WriteRecord {
        staging: staging.clone(),
        dest: dest.to_path_buf(),
        image: Box::new(image),
    });
    plan.push(Op::Commit {
        staging,
        dest: dest.to_path_buf(),
    });
    Ok(plan)
}

/// DEST must be new or an empty directory, in a directory that exists,
/// and its path one that overlayfs can take its layers from. Returns its
/// parent and its name.
fn check_dest(dest: &Path) -> Result<(PathBuf, std::ffi::OsString), Error> {
    let (parent, name) = paths::new_layer_dir("DIR", dest, "./alpine")?;
    let shown = paths::shown(dest);
    if !parent.is_dir() {
        return Err(Error::usage(format!(
            "DIR {shown}: its parent {} is not a directory",
            paths::shown(&parent)
        ))
        .hint(format!("make it first: mkdir -p {}", paths::shown(&parent))));
    }
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::usage(format!("DIR {shown}: {}", io_text(&e)))),
        Ok(m) if !m.is_dir() => {
            return Err(
                Error::usage(format!("DIR {shown}: exists and is not a directory"))
                    .hint("import into a new or empty directory"),
            );
        }
        Ok(_) => {
            let mut entries = std::fs::read_dir(dest)
                .map_err(|e| Error::usage(format!("DIR {shown}: {}", io_text(&e))))?;
            if entries.next().is_some() {
                return Err(Error::usage(format!("DIR {shown}: not empty"))
                    .hint("import into a new or empty directory"));
            }
        }
    }
    Ok((parent, name))
}

/// The config's `rootfs.diff_ids`, one per layer.
fn diff_ids(config: &ConfigFile, config_name: &str, layers: usize) -> Result<Vec<Digest>, Error> {
    let ids = &config.rootfs.diff_ids;
    if ids.len() != layers {
        return Err(Error::setup(format!(
            "{config_name}: rootfs.diff_ids lists {} layers, the manifest {layers}",
            ids.len()
        ))
        .hint("the image is inconsistent; get it again"));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            Digest::parse(id)
                .map_err(|why| Error::usage(format!("{config_name}: rootfs.diff_ids[{i}]: {why}")))
        })
        .collect()
}

/// The layer's media type as the manifest gives it, or as legacy Docker
/// would have named it.
fn media_type(given: &str, compression: Compression) -> String {
    match (given, compression) {
        ("", Compression::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
        ("", _) => "application/vnd.docker.image.rootfs.diff.tar".into(),
        (given, _) => given.into(),
    }
}

/// What executing the steps has made so far.
#[derive(Debug, Default)]
struct Progress {
    /// The lock on the staging directory, held until the import ends.
    held: Option<staging::Held>,
    /// The staging directory, once made and until renamed: removed if a
    /// later step fails.
    staging: Option<PathBuf>,
    unpacked: Vec<Unpacked>,
    image: Option<Image>,
    /// DEST, once renamed into place, and whether it was there (empty)
    /// before: taken back if the import is stopped after that.
    committed: Option<(PathBuf, bool)>,
}

/// Leaves DEST as it was before the import: gone, or empty.
fn take_back(dest: &Path, was_there: bool) {
    if !was_there {
        let _ = std::fs::remove_dir_all(dest);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dest) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs the plan, narrating each step with `--explain`. On any failure
/// nothing is left: the staging directory is removed.
pub fn execute(plan: &Plan<Op>, narrator: &Narrator) -> Result<Image, Error> {
    let mut progress = Progress::default();
    let mut number = 0;
    let result = plan.execute(narrator, |op| {
        run(op, &mut progress, narrator)?;
        number += 1;
        crate::interrupt::after_step(number)?;
        Ok(ControlFlow::<()>::Continue(()))
    });
    if let Err(error) = result {
        if let Some(staging) = progress.staging.take() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        if let Some((dest, was_there)) = progress.committed.take() {
            take_back(&dest, was_there);
        }
        return Err(error);
    }
    progress
        .image
        .ok_or_else(|| Error::setup("the import plan wrote no image record"))
}

fn run(op: &Op, progress: &mut Progress, narrator: &Narrator) -> Result<(), Error> {
    match op {
        Op::RemoveLeftover { path, .. } => {
            staging::remove(path).map_err(|e| Error::io(op.call(), &e))
        }
        Op::Stage { staging, .. } => {
            let held = staging::make(staging).map_err(|(call, errno)| {
                let error = Error::sys(format!("{call}({staging:?})"), errno);
                match errno {
                    Errno::EEXIST => error
                        .hint("another import into the same directory is under way; wait for it"),
                    Errno::EACCES | Errno::EPERM => error.hint(
                        "you may not write beside DIR: import into a directory of yours, or \
                         run as root",
                    ),
                    _ => error,
                }
            })?;
            progress.held = Some(held);
            progress.staging = Some(staging.clone());
            let layers = staging.join("layers");
            mkdir(&layers).map_err(|e| Error::sys(format!("mkdir({layers:?})"), e))
        }
        Op::Unpack(layer) => {
            let dir = layer.staging.join(layer.dir());
            mkdir(&dir).map_err(|e| Error::sys(format!("mkdir({dir:?})"), e))?;
            let target = Target {
                dir,
                below: (1..layer.number)
                    .rev()
                    .map(|n| layer.staging.join(format!("layers/{n}")))
                    .collect(),
                namespace: XattrNamespace::for_this_process(),
            };
            let unpacked =
                layer::unpack_blob(&layer.span, layer.compression, &target, &layer.expected)?;
            narrator.note(&summary(layer, &unpacked));
            progress.unpacked.push(unpacked);
            Ok(())
        }
        Op::WriteConfig { staging, bytes, .. } => write(&staging.join(record::CONFIG), bytes),
        Op::WriteRecord { staging, image, .. } => {
            let mut image = (**image).clone();
            for (record, unpacked) in image.layers.iter_mut().zip(&progress.unpacked) {
                record.digest = unpacked.blob.to_string();
                record.unpacked_size = unpacked.counts.bytes;
                image.dropped_attributes += unpacked.counts.unsupported;
            }
            let mut json = serde_json::to_vec_pretty(&image)
                .map_err(|e| Error::setup(format!("image.json: {e}")))?;
            json.push(b'\n');
            write(&staging.join(record::RECORD), &json)?;
            progress.image = Some(image);
            Ok(())
        }
        Op::Commit { staging, dest } => {
            let was_there = dest.exists();
            nix::fcntl::renameat(AT_FDCWD, staging, AT_FDCWD, dest).map_err(|errno| {
                let error = Error::sys(format!("rename({staging:?}, {dest:?})"), errno);
                if errno == Errno::ENOTEMPTY || errno == Errno::EEXIST {
                    error.hint("DEST was filled while importing; import into a new directory")
                } else {
                    error
                }
            })?;
            progress.staging = None;
            progress.committed = Some((dest.clone(), was_there));
            Ok(())
        }
    }
}

/// `layer 1: 523 entries, 4.2M in files, 3 whiteouts, 1 opaque directory; sha256 and diff_id match`.
fn summary(layer: &UnpackLayer, unpacked: &Unpacked) -> String {
    let c = &unpacked.counts;
    let mut text = format!(
        "layer {}: {}, {} in files, {}, {}",
        layer.number,
        plural(c.entries, "entry", "entries"),
        human(c.bytes),
        plural(c.whiteouts, "whiteout", "whiteouts"),
        plural(c.opaque, "opaque directory", "opaque directories"),
    );
    if c.skipped > 0 {
        text.push_str(&format!(
            ", {} not set (not root)",
            plural(c.skipped, "owner or attribute", "owners or attributes")
        ));
    }
    if c.unsupported > 0 {
        text.push_str(&format!(
            ", {} dropped (this filesystem cannot keep them)",
            plural(c.unsupported, "extended attribute", "extended attributes")
        ));
    }
    text.push_str(if layer.expected.blob.is_some() {
        "; sha256 and diff_id match"
    } else {
        "; diff_id matches"
    });
    text
}

fn mkdir(path: &Path) -> Result<(), Errno> {
    nix::unistd::mkdir(path, nix::sys::stat::Mode::from_bits_truncate(0o755))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::setup(format!("write {path:?}: {}", io_text(&e))))
}

#[cfg(test)]
mod tests;
