//! Import end to end on images built here with the tar crate: formats,
//! digests, whiteouts, metadata and path safety. None of it needs root.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::digest::Digest;
use super::layer::{Compression, Target, components, unpack_tar};
use super::*;
use crate::whiteout::{XattrNamespace, is_opaque_in, is_whiteout};

/// One entry of a layer tar built for a test.
#[derive(Debug, Clone)]
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    /// A file whose name is written into the header as it is, unchecked:
    /// how a hostile tar spells `../x` or `/x`.
    Raw(&'a [u8]),
    /// A file with PAX records.
    Pax(&'a str, &'a [(&'a str, &'a [u8])]),
    /// A file owned by uid:gid.
    Owned(&'a str, u64, u64),
}

const MTIME: u64 = 1_600_000_000;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(MTIME);
    header.set_uid(nix::unistd::geteuid().as_raw().into());
    header.set_gid(nix::unistd::getegid().as_raw().into());
    header
}

fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        match entry {
            E::Dir(path, mode) => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            E::File(path, data, mode) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
            E::Symlink(path, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, path, target).unwrap();
            }
            E::Hardlink(path, target) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0);
                b.append_link(&mut h, path, target).unwrap();
            }
            E::Fifo(path) => {
                let mut h = header(tar::EntryType::Fifo, 0o600, 0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            E::Raw(name) => {
                let mut h = header(tar::EntryType::Regular, 0o644, 1);
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            }
            E::Owned(path, uid, gid) => {
                let mut h = header(tar::EntryType::Regular, 0o4755, 1);
                h.set_uid(*uid);
                h.set_gid(*gid);
                b.append_data(&mut h, path, &b"x"[..]).unwrap();
            }
            E::Pax(path, records) => {
                b.append_pax_extensions(records.iter().copied()).unwrap();
                let mut h = header(tar::EntryType::Regular, 0o644, 2);
                b.append_data(&mut h, path, &b"hi"[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// An image to write out in either format.
struct Fixture {
    /// Uncompressed layer tars, bottom first.
    layers: Vec<Vec<u8>>,
    gzip: bool,
    /// Replaces the true diff_ids in the config.
    diff_ids: Option<Vec<String>>,
}

impl Fixture {
    fn new(layers: Vec<Vec<u8>>) -> Self {
        Self {
            layers,
            gzip: true,
            diff_ids: None,
        }
    }

    fn config(&self) -> Vec<u8> {
        let diff_ids = self.diff_ids.clone().unwrap_or_else(|| {
            self.layers
                .iter()
                .map(|l| Digest::of(l).to_string())
                .collect()
        });
        let mut history = vec![json!({"created_by": "ENV A=1", "empty_layer": true})];
        for i in 0..self.layers.len() {
            history.push(json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("RUN step {}", i + 1)}));
        }
        serde_json::to_vec(&json!({
            "architecture": oci::this_architecture(), "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/root"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .unwrap()
    }

    fn blobs(&self) -> Vec<Vec<u8>> {
        self.layers
            .iter()
            .map(|l| if self.gzip { gzip(l) } else { l.clone() })
            .collect()
    }

    /// Writes `blobs/sha256/…` and returns the manifest's descriptor.
    fn write_blobs(&self, put: &mut dyn FnMut(String, Vec<u8>)) -> serde_json::Value {
        let config = self.config();
        let media = if self.gzip {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        let layers: Vec<_> = self
            .blobs()
            .into_iter()
            .map(|blob| {
                let d = json!({"mediaType": media, "digest": Digest::of(&blob).to_string(), "size": blob.len()});
                put(Digest::of(&blob).blob_path(), blob);
                d
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": oci::MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        put(Digest::of(&config).blob_path(), config);
        let descriptor = json!({"mediaType": oci::MANIFEST, "digest": Digest::of(&manifest).to_string(),
                                "size": manifest.len()});
        put(Digest::of(&manifest).blob_path(), manifest);
        descriptor
    }

    /// An OCI image layout directory with this image as `name`.
    fn oci_dir(&self, dir: &Path, name: &str) {
        let mut descriptor = self.write_blobs(&mut |path, bytes| {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        });
        descriptor["annotations"] = json!({oci::REF_NAME: name});
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [descriptor]});
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// A `docker save` tar of the legacy kind: `<id>/layer.tar`, uncompressed.
    fn docker_tar(&self, path: &Path, tag: &str) {
        let mut b = tar::Builder::new(fs::File::create(path).unwrap());
        let mut put = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        let config = self.config();
        let config_name = format!("{}.json", Digest::of(&config).hex());
        put(&config_name, &config);
        let mut layers = Vec::new();
        for (i, blob) in self.blobs().iter().enumerate() {
            let name = format!("{:064x}/layer.tar", i + 1);
            put(&name, blob);
            layers.push(name);
        }
        let manifest = json!([{"Config": config_name, "RepoTags": [tag], "Layers": layers}]);
        put("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        b.finish().unwrap();
    }
}

fn two_layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[
            E::Dir("etc", 0o755),
            E::File("etc/motd", "hello\n", 0o644),
            E::File("etc/gone", "bye\n", 0o644),
            E::Dir("bin", 0o755),
            E::File("bin/tool", "#!/bin/sh\n", 0o4755),
            E::Hardlink("bin/tool2", "bin/tool"),
            E::Symlink("bin/sh", "/bin/tool"),
        ]),
        layer_tar(&[
            E::Dir("etc", 0o755),
            E::File("etc/.wh.gone", "", 0o644),
            E::File("etc/new", "new\n", 0o600),
            E::Fifo("pipe"),
        ]),
    ]
}

fn quiet() -> Narrator {
    Narrator::quiet("overlay-stack")
}

fn import(source: &Path, dest: &Path, reference: Option<&str>) -> Result<Image, Error> {
    let options = ImportOptions {
        reference: reference.map(str::to_string),
    };
    let plan = plan(source, dest, &options)?;
    execute(&plan, &quiet())
}

fn leftovers(parent: &Path) -> Vec<String> {
    fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".import-") || n == "dest")
        .collect()
}

#[test]
fn an_oci_layout_plans_one_step_per_layer_and_reads_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    Fixture::new(two_layers()).oci_dir(&layout, "v1");
    let dest = tmp.path().join("dest");
    let plan = plan(&layout, &dest, &ImportOptions::default()).unwrap();
    let calls = plan.calls();
    assert_eq!(calls.len(), 6, "{calls:#?}");
    let staging = tmp
        .path()
        .join(format!(".dest.import-{}", std::process::id()));
    assert_eq!(calls[0], format!("mkdir -p {:?}", staging.join("layers")));
    assert!(
        calls[1].starts_with("unpack blobs/sha256/") && calls[1].contains("B, gzip) → \""),
        "{}",
        calls[1]
    );
    assert!(
        calls[1].ends_with(&format!(
            "{:?}: check sha256 and diff_id, .wh.* → whiteouts",
            dest.join("layers/1")
        )),
        "{}",
        calls[1]
    );
    assert!(calls[2].contains("layers/2"));
    assert!(calls[3].starts_with(&format!(
        "write {:?} (config sha256:",
        dest.join("config.json")
    )));
    assert_eq!(
        calls[4],
        format!(
            "write {:?} (2 layers, bottom first)",
            dest.join("image.json")
        )
    );
    assert_eq!(calls[5], format!("rename({staging:?}, {dest:?})"));
    assert!(
        plan.steps()
            .iter()
            .all(|s| s.chapter() == steps::chapter::IMAGES)
    );
    assert!(!dest.exists() && !staging.exists(), "plan wrote something");
}

#[test]
fn an_oci_layout_imports_into_overlayfs_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let fixture = Fixture::new(two_layers());
    fixture.oci_dir(&layout, "v1");
    let dest = tmp.path().join("dest");
    let image = import(&layout, &dest, None).unwrap();

    assert_eq!(image.format, "oci-layout");
    assert_eq!(image.reference.as_deref(), Some("v1"));
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.layers[0].dir, "layers/1");
    assert_eq!(
        image.layers[0].diff_id,
        Digest::of(&fixture.layers[0]).to_string()
    );
    assert_eq!(
        image.layers[0].digest,
        Digest::of(&fixture.blobs()[0]).to_string()
    );
    assert_eq!(image.layers[0].size, fixture.blobs()[0].len() as u64);
    assert_eq!(image.layers[0].unpacked_size, 6 + 4 + 10);
    assert_eq!(
        image.layers[1].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(image.config.cmd, ["/bin/sh"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/root"));
    assert_eq!(
        fs::read(dest.join("config.json")).unwrap(),
        fixture.config()
    );
    assert_eq!(Image::load(&dest).unwrap(), image);
    assert_eq!(
        image.lowers(&dest),
        [dest.join("layers/2"), dest.join("layers/1")]
    );
    let history = image.history();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].created_by, "RUN step 2");
    assert_eq!(history[2].size, Some(0));

    let l1 = dest.join("layers/1");
    assert_eq!(fs::read_to_string(l1.join("etc/motd")).unwrap(), "hello\n");
    let tool = fs::metadata(l1.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755, "set-user-ID is kept");
    assert_eq!(tool.mtime(), MTIME as i64);
    assert_eq!(
        fs::metadata(l1.join("bin/tool2")).unwrap().ino(),
        tool.ino(),
        "hard link"
    );
    assert_eq!(
        fs::read_link(l1.join("bin/sh")).unwrap(),
        Path::new("/bin/tool")
    );
    assert_eq!(
        fs::metadata(l1.join("etc")).unwrap().mtime(),
        MTIME as i64,
        "directory times are set last"
    );

    let l2 = dest.join("layers/2");
    assert!(is_whiteout(
        &fs::symlink_metadata(l2.join("etc/gone")).unwrap()
    ));
    assert_eq!(
        fs::metadata(l2.join("etc/new")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(
        fs::symlink_metadata(l2.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        !l2.join("etc/motd").exists(),
        "layer 2 holds only its own changes"
    );
    assert_eq!(leftovers(tmp.path()), ["dest"]);
}

#[test]
fn a_legacy_docker_save_tar_imports_checking_diff_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("image.tar");
    let mut fixture = Fixture::new(two_layers());
    fixture.gzip = false;
    fixture.docker_tar(&tar, "demo:1");
    let dest = tmp.path().join("dest");
    let plan = plan(&tar, &dest, &ImportOptions::default()).unwrap();
    assert!(
        plan.calls()[1].starts_with("unpack 000000000000…/layer.tar (")
            && plan.calls()[1].contains("uncompressed) → "),
        "{:?}",
        plan.calls()
    );
    assert!(
        plan.calls()[1].contains(": check diff_id, .wh.*"),
        "{}",
        plan.calls()[1]
    );
    let image = execute(&plan, &quiet()).unwrap();
    assert_eq!(image.format, "docker-save");
    assert_eq!(image.reference.as_deref(), Some("demo:1"));
    assert_eq!(image.manifest, None);
    assert_eq!(
        image.layers[1].digest,
        Digest::of(&fixture.layers[1]).to_string(),
        "computed while reading"
    );
    assert_eq!(
        image.layers[1].media_type,
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    assert!(is_whiteout(
        &fs::symlink_metadata(dest.join("layers/2/etc/gone")).unwrap()
    ));
}

#[test]
fn a_docker_25_tar_is_read_through_its_oci_index() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("image.tar");
    let fixture = Fixture::new(two_layers());
    let mut b = tar::Builder::new(fs::File::create(&tar).unwrap());
    let mut put = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut blobs = Vec::new();
    let mut descriptor = fixture.write_blobs(&mut |path, bytes| blobs.push((path, bytes)));
    for (path, bytes) in &blobs {
        put(path, bytes);
    }
    descriptor["annotations"] =
        json!({"io.containerd.image.name": "docker.io/library/demo:2", oci::REF_NAME: "2"});
    put("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#);
    put(
        "index.json",
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [descriptor]})).unwrap(),
    );
    put(
        "manifest.json",
        br#"[{"Config": "blobs/sha256/x", "RepoTags": ["demo:2"], "Layers": []}]"#,
    );
    b.finish().unwrap();
    drop(b);

    let image = import(&tar, &tmp.path().join("dest"), Some("demo:2")).unwrap();
    assert_eq!(image.format, "docker-save");
    assert!(
        image.manifest.is_some(),
        "read through index.json, not manifest.json"
    );
    assert_eq!(image.layers.len(), 2);
}

#[test]
fn a_nested_index_yields_this_machines_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let ours = Fixture::new(vec![layer_tar(&[E::File("ours", "1", 0o644)])]);
    let theirs = Fixture::new(vec![layer_tar(&[E::File("theirs", "2", 0o644)])]);
    let mut put = |path: String, bytes: Vec<u8>| {
        let path = layout.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    };
    let other = if oci::this_architecture() == "s390x" {
        "arm64"
    } else {
        "s390x"
    };
    let mut theirs_d = theirs.write_blobs(&mut put);
    theirs_d["platform"] = json!({"os": "linux", "architecture": other});
    let mut ours_d = ours.write_blobs(&mut put);
    ours_d["platform"] = json!({"os": "linux", "architecture": oci::this_architecture()});
    let inner = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": oci::INDEX,
                                           "manifests": [theirs_d, ours_d]}))
    .unwrap();
    let inner_d = json!({"mediaType": oci::INDEX, "digest": Digest::of(&inner).to_string(), "size": inner.len(),
                         "annotations": {oci::REF_NAME: "multi"}});
    put(Digest::of(&inner).blob_path(), inner);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"manifests": [inner_d]})).unwrap(),
    )
    .unwrap();

    let dest = tmp.path().join("dest");
    import(&layout, &dest, Some("multi")).unwrap();
    assert!(dest.join("layers/1/ours").exists());
    assert!(!dest.join("layers/1/theirs").exists());
}

#[test]
fn an_unknown_ref_is_a_usage_error_listing_the_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    Fixture::new(two_layers()).oci_dir(&layout, "v1");
    let error = plan(
        &layout,
        &tmp.path().join("d"),
        &ImportOptions {
            reference: Some("v2".into()),
        },
    )
    .unwrap_err();
    assert_eq!(error.code(), steps::exit::USAGE);
    assert_eq!(
        error.to_string(),
        format!(
            "{}: no image named \"v2\"; it has: v1; hint: choose one of them with --ref NAME",
            layout.display()
        )
    );
}

#[test]
fn two_named_images_need_a_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    Fixture::new(two_layers()).oci_dir(&layout, "a");
    let first: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let other = tmp.path().join("other");
    Fixture::new(vec![layer_tar(&[E::File("x", "x", 0o644)])]).oci_dir(&other, "b");
    let second: serde_json::Value =
        serde_json::from_slice(&fs::read(other.join("index.json")).unwrap()).unwrap();
    for entry in fs::read_dir(other.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(
            entry.path(),
            layout.join("blobs/sha256").join(entry.file_name()),
        )
        .unwrap();
    }
    let index = json!({"manifests": [first["manifests"][0], second["manifests"][0]]});
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();

    let error = plan(&layout, &tmp.path().join("d"), &ImportOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} holds 2 images; choose one with --ref: a, b",
            layout.display()
        )
    );
    let image = import(&layout, &tmp.path().join("d"), Some("b")).unwrap();
    assert_eq!(image.layers.len(), 1);
}

/// Flips one byte in the middle of a file.
fn corrupt(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_layer_fails_with_both_digests_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let fixture = Fixture::new(two_layers());
    fixture.oci_dir(&layout, "v1");
    let blob = Digest::of(&fixture.blobs()[1]);
    corrupt(&layout.join(blob.blob_path()));
    let error = import(&layout, &tmp.path().join("dest"), None).unwrap_err();
    assert_eq!(error.code(), steps::exit::SETUP);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "layer 2 ({}): sha256 mismatch: expected {blob}, got sha256:",
            layout.join(blob.blob_path()).display()
        )),
        "{text}"
    );
    assert!(!text.contains('\n'));
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
}

#[test]
fn a_wrong_diff_id_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let mut fixture = Fixture::new(two_layers());
    let wrong = Digest::of(b"not this layer");
    fixture.diff_ids = Some(vec![
        Digest::of(&fixture.layers[0]).to_string(),
        wrong.to_string(),
    ]);
    fixture.oci_dir(&layout, "v1");
    let error = import(&layout, &tmp.path().join("dest"), None).unwrap_err();
    assert_eq!(error.code(), steps::exit::SETUP);
    let text = error.to_string();
    assert!(
        text.contains("uncompressed tar vs the config's rootfs.diff_ids: sha256 mismatch"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "expected {wrong}, got {}",
            Digest::of(&fixture.layers[1])
        )),
        "{text}"
    );
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn a_corrupt_config_or_manifest_is_caught_by_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let fixture = Fixture::new(two_layers());
    fixture.oci_dir(&layout, "v1");
    let config = Digest::of(&fixture.config());
    corrupt(&layout.join(config.blob_path()));
    let error = plan(&layout, &tmp.path().join("dest"), &ImportOptions::default()).unwrap_err();
    assert_eq!(error.code(), steps::exit::SETUP);
    assert!(
        error
            .to_string()
            .contains(&format!("sha256 mismatch: expected {config}")),
        "{error}"
    );

    let layout = tmp.path().join("layout2");
    fixture.oci_dir(&layout, "v1");
    let blob = layout.join(Digest::of(&fixture.blobs()[0]).blob_path());
    let mut bytes = fs::read(&blob).unwrap();
    bytes.push(0);
    fs::write(&blob, bytes).unwrap();
    let error = plan(&layout, &tmp.path().join("dest"), &ImportOptions::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("size mismatch: the descriptor says"),
        "{error}"
    );
}

#[test]
fn a_corrupt_legacy_layer_fails_on_its_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::new(two_layers());
    fixture.gzip = false;
    fixture.layers[0] = layer_tar(&[E::File("big", &"a".repeat(100_000), 0o644)]);
    let tar = tmp.path().join("image.tar");
    fixture.docker_tar(&tar, "demo:1");
    // Flip a byte of the file's data inside the outer tar.
    let mut bytes = fs::read(&tar).unwrap();
    let at = bytes
        .windows(1000)
        .position(|w| w.iter().all(|b| *b == b'a'))
        .unwrap()
        + 500;
    bytes[at] = b'b';
    fs::write(&tar, bytes).unwrap();
    let error = import(&tar, &tmp.path().join("dest"), None).unwrap_err();
    assert!(error.to_string().contains("layer 1 ("), "{error}");
    assert!(
        error
            .to_string()
            .contains("rootfs.diff_ids: sha256 mismatch"),
        "{error}"
    );
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn zstd_layers_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let mut fixture = Fixture::new(vec![[&[0x28, 0xb5, 0x2f, 0xfd][..], &[0; 60]].concat()]);
    fixture.gzip = false;
    fixture.oci_dir(&layout, "v1");
    let error = plan(&layout, &tmp.path().join("dest"), &ImportOptions::default()).unwrap_err();
    assert!(error.to_string().starts_with("layer 1 ("), "{error}");
    assert!(
        error
            .to_string()
            .contains("zstd-compressed; import reads only gzip and uncompressed layers"),
        "{error}"
    );
}

#[test]
fn compression_is_told_by_magic_bytes() {
    assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    assert_eq!(
        Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
        Compression::Zstd
    );
    assert_eq!(Compression::sniff(b"etc/"), Compression::Uncompressed);
    assert_eq!(Compression::sniff(&[]), Compression::Uncompressed);
}

#[test]
fn dest_must_be_new_or_empty_and_source_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    Fixture::new(two_layers()).oci_dir(&layout, "v1");
    let options = ImportOptions::default();

    let full = tmp.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), "").unwrap();
    let error = plan(&layout, &full, &options).unwrap_err();
    assert_eq!(error.code(), steps::exit::USAGE);
    assert_eq!(
        error.to_string(),
        format!(
            "DIR {}: not empty; hint: import into a new or empty directory",
            full.display()
        )
    );

    let file = full.join("x");
    assert!(
        plan(&layout, &file, &options)
            .unwrap_err()
            .to_string()
            .contains("exists and is not a directory")
    );
    let orphan = tmp.path().join("no/such/dest");
    assert!(
        plan(&layout, &orphan, &options)
            .unwrap_err()
            .to_string()
            .contains("hint: make it first: mkdir -p")
    );

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(
        plan(&layout, &empty, &options).is_ok(),
        "an empty directory is fine"
    );
    import(&layout, &empty, None).unwrap();
    assert!(empty.join("layers/2").is_dir());

    let error = plan(&tmp.path().join("missing"), &tmp.path().join("d"), &options).unwrap_err();
    assert_eq!(error.code(), steps::exit::USAGE);
    assert!(
        error
            .to_string()
            .contains("no such file or directory (ENOENT)"),
        "{error}"
    );
    let error = plan(&full, &tmp.path().join("d"), &options).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not an image: it has neither index.json"),
        "{error}"
    );
}

/// Unpacks a tar into a fresh `layer` dir of a fresh temp dir.
fn unpack(entries: &[E]) -> (tempfile::TempDir, Result<layer::Counts, Error>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layer");
    fs::create_dir(&dir).unwrap();
    let target = Target {
        dir,
        below: Vec::new(),
        namespace: XattrNamespace::User,
    };
    let counts = unpack_tar(&layer_tar(entries)[..], &target);
    (tmp, counts)
}

/// Whether user.* attributes work where the tests write (for opaque
/// markers without root).
fn user_xattrs() -> bool {
    let tmp = tempfile::tempdir().unwrap();
    xattr::set(tmp.path(), "user.probe", b"1").is_ok()
}

#[test]
fn whiteouts_and_opaque_markers_become_overlayfs_ones() {
    if !user_xattrs() {
        eprintln!("skipped: no user.* xattrs on the temp dir's filesystem");
        return;
    }
    let (tmp, counts) = unpack(&[
        E::File(".wh.gone", "", 0o644),
        E::Dir("opaque", 0o755),
        E::File("opaque/.wh..wh..opq", "", 0o644),
        E::File("late/.wh..wh..opq", "", 0o644),
        E::Dir("late", 0o750),
        // Deleted below and made again in this layer, in either order.
        E::File(".wh.redone", "", 0o644),
        E::Dir("redone", 0o755),
        E::Dir("again", 0o755),
        E::File(".wh.again", "", 0o644),
        // A file of this layer hides the one below by itself.
        E::File("file", "mine", 0o644),
        E::File(".wh.file", "", 0o644),
        E::File(".wh.then", "", 0o644),
        E::File("then", "back", 0o644),
        E::File(".wh..wh.plnk", "", 0o644),
    ]);
    let counts = counts.unwrap();
    let layer = tmp.path().join("layer");
    assert!(is_whiteout(
        &fs::symlink_metadata(layer.join("gone")).unwrap()
    ));
    for dir in ["opaque", "late", "redone", "again"] {
        assert!(
            is_opaque_in(&layer.join(dir), XattrNamespace::User),
            "{dir}"
        );
    }
    assert_eq!(
        fs::metadata(layer.join("late")).unwrap().mode() & 0o777,
        0o750
    );
    assert_eq!(fs::read_to_string(layer.join("file")).unwrap(), "mine");
    assert_eq!(fs::read_to_string(layer.join("then")).unwrap(), "back");
    assert!(!layer.join(".wh..wh.plnk").exists());
    let mut names: Vec<String> = fs::read_dir(&layer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["again", "file", "gone", "late", "opaque", "redone", "then"]
    );
    assert_eq!((counts.whiteouts, counts.opaque), (3, 4));
}

#[test]
fn metadata_is_kept_and_read_only_directories_are_filled_first() {
    let records: &[(&str, &[u8])] = &[
        ("SCHILY.xattr.user.note", b"kept"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("mtime", b"1700000000.5"),
    ];
    let (tmp, counts) = unpack(&[
        E::Dir("./", 0o711),
        E::Dir("ro", 0o555),
        E::File("ro/inside", "x", 0o444),
        E::Pax("noted", records),
    ]);
    counts.unwrap();
    let layer = tmp.path().join("layer");
    assert_eq!(
        fs::metadata(&layer).unwrap().mode() & 0o777,
        0o711,
        "./ is the layer's root"
    );
    assert_eq!(
        fs::metadata(layer.join("ro")).unwrap().mode() & 0o777,
        0o555
    );
    assert_eq!(fs::read_to_string(layer.join("ro/inside")).unwrap(), "x");
    let noted = fs::metadata(layer.join("noted")).unwrap();
    assert_eq!(
        (noted.mtime(), noted.mtime_nsec()),
        (1_700_000_000, 500_000_000)
    );
    if user_xattrs() {
        assert_eq!(
            xattr::get(layer.join("noted"), "user.note")
                .unwrap()
                .as_deref(),
            Some(&b"kept"[..])
        );
    }
    assert_eq!(
        xattr::get(layer.join("noted"), "trusted.overlay.opaque")
            .ok()
            .flatten(),
        None
    );
    fs::set_permissions(layer.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_later_entry_replaces_an_earlier_one() {
    let (tmp, counts) = unpack(&[
        E::Dir("a", 0o755),
        E::File("a/x", "1", 0o644),
        E::File("a", "now a file", 0o644),
        E::File("b", "first", 0o644),
        E::File("b", "second", 0o644),
        E::Symlink("c", "b"),
        E::Dir("c", 0o755),
    ]);
    counts.unwrap();
    let layer = tmp.path().join("layer");
    assert_eq!(fs::read_to_string(layer.join("a")).unwrap(), "now a file");
    assert_eq!(fs::read_to_string(layer.join("b")).unwrap(), "second");
    assert!(fs::symlink_metadata(layer.join("c")).unwrap().is_dir());
}

#[test]
fn entry_paths_are_split_and_checked_before_anything_is_written() {
    assert_eq!(components(b"./a//b/./c/").unwrap(), [&b"a"[..], b"b", b"c"]);
    assert!(components(b"./").unwrap().is_empty());
    assert_eq!(components(b"/etc/passwd"), Err("an absolute path"));
    assert_eq!(components(b"a/../../x"), Err("a path with \"..\""));
}

/// Asserts that unpacking fails with `message`, and that nothing appeared
/// beside the layer.
fn refused(entries: &[E], message: &str) {
    let (tmp, counts) = unpack(entries);
    let error = counts.unwrap_err();
    assert_eq!(error.code(), steps::exit::SETUP);
    assert!(error.to_string().contains(message), "{error}");
    let mut beside: Vec<PathBuf> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    beside.retain(|p| !p.ends_with("layer"));
    assert!(beside.is_empty(), "written outside the layer: {beside:?}");
}

#[test]
fn paths_that_leave_the_layer_are_refused() {
    refused(
        &[E::Raw(b"../escaped")],
        "entry \"../escaped\": refused: a path with \"..\"",
    );
    refused(
        &[E::Raw(b"/abs")],
        "entry \"/abs\": refused: an absolute path",
    );
    refused(&[E::Raw(b"a/../../escaped")], "refused: a path with");
    refused(
        &[E::Hardlink("h", "../escaped")],
        "refused: a hard link to a path with",
    );
    refused(
        &[E::File(".wh..", "", 0o644)],
        "entry \".wh..\": refused: a whiteout of \".\"",
    );
    refused(
        &[E::File("d/.wh...", "", 0o644)],
        "entry \"d/.wh...\": refused: a whiteout of \"..\"",
    );
    refused(
        &[E::File("d/.wh.", "", 0o644)],
        "refused: a whiteout of \"\"",
    );
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    refused(
        &[
            E::Symlink("evil", &target),
            E::File("evil/planted", "x", 0o644),
        ],
        &format!(
            "entry \"evil/planted\": refused: it goes through the symlink \"evil\" (→ {target:?})"
        ),
    );
    assert!(!outside.path().join("planted").exists());
    // Relative, and even pointing inside the layer: still refused.
    refused(
        &[
            E::Dir("real", 0o755),
            E::Symlink("link", "real"),
            E::File("link/x", "x", 0o644),
        ],
        "goes through the symlink \"link\" (→ \"real\")",
    );
    refused(
        &[E::Symlink("up", ".."), E::File("up/escaped", "x", 0o644)],
        "goes through the symlink \"up\"",
    );
    refused(
        &[
            E::Symlink("evil", &target),
            E::File("evil/.wh.x", "", 0o644),
        ],
        "goes through the symlink",
    );
    refused(
        &[E::Symlink("evil", &target), E::Hardlink("h", "evil/secret")],
        "goes through the symlink",
    );
}

#[test]
fn a_hard_link_must_point_into_the_layer() {
    let (_tmp, counts) = unpack(&[E::Hardlink("h", "missing")]);
    let error = counts.unwrap_err();
    assert!(
        error.to_string().contains("linkat(\"missing\", \"h\")"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("hint: a hard link must point to a file earlier in the same layer"),
        "{error}"
    );
}

#[test]
fn a_directory_the_tar_leaves_out_keeps_its_attributes_from_below() {
    if !user_xattrs() {
        eprintln!("skipped: no user.* xattrs on the temp dir's filesystem");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layers: Vec<PathBuf> = (1..=3).map(|n| tmp.path().join(n.to_string())).collect();
    let tars = [
        layer_tar(&[
            E::Dir("srv", 0o750),
            E::Dir("srv/www", 0o710),
            E::File("srv/www/index.html", "hi", 0o644),
            E::Dir("a", 0o755),
            E::Dir("a/b", 0o700),
        ]),
        // Only a's contents change: a/b is hidden from here on.
        layer_tar(&[E::Dir("a", 0o755), E::File("a/.wh..wh..opq", "", 0o644)]),
        // Neither srv/www nor a/b is listed.
        layer_tar(&[
            E::File("srv/www/new.html", "new", 0o644),
            E::File("a/b/x", "x", 0o644),
        ]),
    ];
    for (i, tar) in tars.iter().enumerate() {
        fs::create_dir(&layers[i]).unwrap();
        let target = Target {
            dir: layers[i].clone(),
            below: layers[..i].iter().rev().cloned().collect(),
            namespace: XattrNamespace::User,
        };
        unpack_tar(&tar[..], &target).unwrap();
    }
    let www = fs::metadata(layers[2].join("srv/www")).unwrap();
    assert_eq!((www.mode() & 0o7777, www.mtime()), (0o710, MTIME as i64));
    assert_eq!(
        fs::metadata(layers[2].join("srv")).unwrap().mode() & 0o7777,
        0o750
    );
    let b = fs::metadata(layers[2].join("a/b")).unwrap();
    assert_eq!(
        b.mode() & 0o7777,
        0o755,
        "a/b below is hidden by the opaque a: defaults"
    );
    assert_ne!(b.mtime(), MTIME as i64);
}

#[test]
fn owners_are_set_as_root_and_skipped_otherwise() {
    let (tmp, counts) = unpack(&[E::Owned("given-away", 4242, 4243)]);
    let counts = counts.unwrap();
    let file = fs::metadata(tmp.path().join("layer/given-away")).unwrap();
    if nix::unistd::geteuid().is_root() {
        assert_eq!((file.uid(), file.gid()), (4242, 4243));
        assert_eq!(counts.skipped, 0);
    } else {
        assert_eq!(file.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(counts.skipped, 1, "not an error for an ordinary user");
    }
    assert_eq!(
        file.mode() & 0o7777,
        0o4755,
        "set-user-ID survives the chown"
    );
}
