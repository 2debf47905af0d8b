//! overlay-stack import against real images: a `docker save` tar and an
//! OCI layout tar built here, byte by byte, with whiteouts, an opaque
//! directory, a directory deleted and made again in one layer, devices,
//! hard links, owners, set-user-ID and a long name; an OCI layout
//! made by a tool we did not write (umoci). Each is imported by the real
//! binary, its layers mounted with util-linux's `mount -t overlay`, and the
//! merged tree compared, entry by entry, with the tree the image means.
//! Then what must fail: a corrupt blob, a wrong diff_id, bad input — each
//! one line, with nothing left behind.
//!
//! Every mount is undone by a guard, also when the test fails.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;
use sha2::{Digest as _, Sha256};
use support::{
    Failed, MountGuard, Requirement::*, Suite, cmd, describe, ensure, ensure_eq, run, run_for,
    scratch, stderr, stdout,
};

fn main() {
    let mut suite = Suite::new();
    suite.test(
        "a_docker_save_tar_mounts_as_the_tree_it_means",
        &[Root, Overlayfs],
        || merged_tree_of(Format::DockerSave),
    );
    suite.test(
        "an_oci_layout_tar_mounts_as_the_tree_it_means",
        &[Root, Overlayfs],
        || merged_tree_of(Format::OciTar),
    );
    suite.test_with_tools(
        "an_oci_layout_made_by_umoci_mounts_as_its_rootfs",
        &[Root, Overlayfs],
        &["umoci"],
        umoci_layout,
    );
    suite.test(
        "a_corrupt_blob_is_refused_and_nothing_is_left",
        &[],
        corrupt_blob,
    );
    suite.test(
        "a_wrong_diff_id_is_refused_and_nothing_is_left",
        &[],
        wrong_diff_id,
    );
    suite.test("bad_input_exits_2_with_one_line", &[], bad_input);
    suite.test("dry_run_prints_the_plan_and_makes_nothing", &[], dry_run);
    suite.test("explain_tells_each_layer_as_it_is_checked", &[], explain);
    suite.test("history_lists_the_build_steps_newest_first", &[], history);
    suite.run();
}

// ---------------------------------------------------------------------
// Images built here

const MTIME: u64 = 1_600_000_000;

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// One entry of a layer tar.
#[derive(Debug, Clone, Copy)]
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a str, u32),
    /// A file or directory (`content` None) owned by uid:gid.
    Owned(&'a str, Option<&'a str>, u32, u64, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32, u32),
    Block(&'a str, u32, u32, u32),
    Fifo(&'a str, u32),
    /// A file with an extended attribute, in a PAX record.
    Xattr(&'a str, &'a str, &'a str, &'a str),
    /// `.wh.NAME` for the path given.
    Whiteout(&'a str),
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn layer(entries: &[E]) -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        match *entry {
            E::Dir(path, mode) => b.append_data(&mut header(T::Directory, mode, 0), path, &[][..]),
            E::File(path, data, mode) => b.append_data(
                &mut header(T::Regular, mode, data.len() as u64),
                path,
                data.as_bytes(),
            ),
            E::Owned(path, data, mode, uid, gid) => {
                let (kind, data) = match data {
                    Some(data) => (T::Regular, data),
                    None => (T::Directory, ""),
                };
                let mut h = header(kind, mode, data.len() as u64);
                h.set_uid(uid);
                h.set_gid(gid);
                b.append_data(&mut h, path, data.as_bytes())
            }
            E::Symlink(path, target) => {
                b.append_link(&mut header(T::Symlink, 0o777, 0), path, target)
            }
            E::Hardlink(path, target) => {
                b.append_link(&mut header(T::Link, 0o644, 0), path, target)
            }
            E::Char(path, mode, major, minor) | E::Block(path, mode, major, minor) => {
                let kind = if matches!(entry, E::Char(..)) {
                    T::Char
                } else {
                    T::Block
                };
                let mut h = header(kind, mode, 0);
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
                b.append_data(&mut h, path, &[][..])
            }
            E::Fifo(path, mode) => b.append_data(&mut header(T::Fifo, mode, 0), path, &[][..]),
            E::Xattr(path, data, key, value) => {
                let key = format!("SCHILY.xattr.{key}");
                b.append_pax_extensions([(key.as_str(), value.as_bytes())])
                    .unwrap();
                b.append_data(
                    &mut header(T::Regular, 0o644, data.len() as u64),
                    path,
                    data.as_bytes(),
                )
            }
            E::Whiteout(path) => {
                let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
                let marker = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                b.append_data(&mut header(T::Regular, 0o644, 0), marker, &[][..])
            }
        }
        .unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DockerSave,
    OciTar,
}

/// An image: layer tars bottom first, each with the build step that made
/// it, and which are shipped gzip-compressed.
struct Image {
    layers: Vec<(Vec<u8>, &'static str, bool)>,
    /// Replaces the true diff_ids in the config.
    diff_ids: Option<Vec<String>>,
}

impl Image {
    fn config(&self) -> Vec<u8> {
        let diff_ids = self
            .diff_ids
            .clone()
            .unwrap_or_else(|| self.layers.iter().map(|(tar, ..)| sha256(tar)).collect());
        let mut history = vec![json!({"created": "2024-05-01T10:00:00Z",
                                      "created_by": "LABEL maintainer=underhood", "empty_layer": true})];
        for (_, step, _) in &self.layers {
            history.push(json!({"created": "2024-05-01T10:01:00Z", "created_by": step}));
        }
        history.push(json!({"created_by": "CMD [\"/bin/sh\"]", "empty_layer": true}));
        serde_json::to_vec_pretty(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .unwrap()
    }

    fn blobs(&self) -> Vec<Vec<u8>> {
        self.layers
            .iter()
            .map(|(tar, _, gz)| if *gz { gzip(tar) } else { tar.clone() })
            .collect()
    }

    /// Writes the image as a tar at `path`, named `name`.
    fn write(&self, format: Format, path: &Path, name: &str) {
        let mut b = tar::Builder::new(fs::File::create(path).unwrap());
        let mut put = |member: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(MTIME);
            b.append_data(&mut h, member, data).unwrap();
        };
        let config = self.config();
        match format {
            Format::DockerSave => {
                let config_member = format!("{}.json", hex(&sha256(&config)));
                put(&config_member, &config);
                let mut layers = Vec::new();
                for (i, blob) in self.blobs().iter().enumerate() {
                    let member = format!("{:064x}/layer.tar", i + 1);
                    put(&member, blob);
                    layers.push(member);
                }
                let manifest =
                    json!([{"Config": config_member, "RepoTags": [name], "Layers": layers}]);
                put("manifest.json", &serde_json::to_vec(&manifest).unwrap());
            }
            Format::OciTar => {
                put("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#);
                let mut layers = Vec::new();
                for (blob, (_, _, gz)) in self.blobs().iter().zip(&self.layers) {
                    let media = if *gz {
                        "application/vnd.oci.image.layer.v1.tar+gzip"
                    } else {
                        "application/vnd.oci.image.layer.v1.tar"
                    };
                    let digest = sha256(blob);
                    put(&format!("blobs/sha256/{}", hex(&digest)), blob);
                    layers.push(json!({"mediaType": media, "digest": digest, "size": blob.len()}));
                }
                put(&format!("blobs/sha256/{}", hex(&sha256(&config))), &config);
                let manifest = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": sha256(&config), "size": config.len()},
                    "layers": layers,
                }))
                .unwrap();
                put(
                    &format!("blobs/sha256/{}", hex(&sha256(&manifest))),
                    &manifest,
                );
                let index = json!({"schemaVersion": 2, "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(&manifest), "size": manifest.len(),
                    "annotations": {"org.opencontainers.image.ref.name": name},
                }]});
                put("index.json", &serde_json::to_vec(&index).unwrap());
            }
        }
        b.finish().unwrap();
    }
}

const LONG_DIR: &str = "opt/a-directory-with-a-name-long-enough-that-with-its-file";
const LONG_FILE: &str = "opt/a-directory-with-a-name-long-enough-that-with-its-file/the-path-needs-more-than-one-hundred-bytes.txt";

/// Three layers that add, change and delete, in every way a layer can.
fn three_layers() -> Image {
    let base = layer(&[
        E::Dir("bin", 0o755),
        E::File("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
        E::File("bin/su", "su", 0o4755),
        E::Symlink("bin/sh", "tool"),
        E::Hardlink("bin/tool-again", "bin/tool"),
        E::Dir("dev", 0o755),
        E::Char("dev/null", 0o666, 1, 3),
        E::Block("dev/loop0", 0o660, 7, 0),
        E::Dir("etc", 0o755),
        E::File("etc/os-release", "ID=underhood\n", 0o644),
        E::File("etc/hostname", "box\n", 0o644),
        E::Owned("etc/shadow", Some("root:*:1::::::\n"), 0o640, 0, 42),
        E::Xattr("etc/labelled", "x", "user.note", "kept"),
        E::Dir("home", 0o755),
        E::Owned("home/user", None, 0o700, 1000, 1000),
        E::Owned("home/user/notes", Some("mine"), 0o600, 1000, 1000),
        E::Dir("tmp", 0o1777),
        E::Dir("usr", 0o755),
        E::Dir("usr/lib", 0o755),
        E::File("usr/lib/keep", "keep", 0o644),
        E::Dir("usr/lib/mod", 0o755),
        E::File("usr/lib/mod/a.so", "a", 0o644),
        E::File("usr/lib/mod/b.so", "b", 0o644),
        E::Dir("var", 0o755),
        E::Dir("var/log", 0o755),
        E::File("var/log/old.log", "old", 0o644),
    ]);
    let changes = layer(&[
        E::Dir("etc", 0o755),
        E::Whiteout("etc/hostname"),
        E::File("etc/os-release", "ID=underhood\nVERSION=2\n", 0o644),
        E::Dir("run", 0o755),
        E::Fifo("run/ctl", 0o600),
        E::Dir("usr", 0o755),
        E::Dir("usr/lib", 0o755),
        E::Dir("usr/lib/mod", 0o755),
        E::File("usr/lib/mod/.wh..wh..opq", "", 0o644),
        E::File("usr/lib/mod/c.so", "c", 0o644),
        E::Dir("var", 0o755),
        E::Whiteout("var/log"),
    ]);
    let top = layer(&[
        // Deleted and made again in one layer: only the new one shows.
        E::Whiteout("home"),
        E::Dir("home", 0o755),
        E::Dir("home/guest", 0o755),
        E::File("home/guest/readme", "welcome", 0o644),
        E::Dir("bin", 0o755),
        E::File("bin/new", "new", 0o755),
        E::Dir("opt", 0o755),
        E::Dir(LONG_DIR, 0o755),
        E::File(LONG_FILE, "long", 0o644),
    ]);
    Image {
        layers: vec![
            (base, "ADD rootfs.tar /", false),
            (changes, "RUN configure", false),
            (top, "RUN add-guest", true),
        ],
        diff_ids: None,
    }
}

/// The tree the three layers mean, as [`describe_tree`] writes it.
fn three_layers_merged() -> Vec<String> {
    let long_dir = LONG_DIR;
    let long_file = LONG_FILE;
    [
        "bin dir 755 0:0",
        "bin/new file 755 0:0 1 \"new\"",
        "bin/sh symlink 0:0 -> \"tool\"",
        "bin/su file 4755 0:0 1 \"su\"",
        "bin/tool file 755 0:0 2 \"#!/bin/sh\\necho tool\\n\"",
        "bin/tool-again file 755 0:0 2 \"#!/bin/sh\\necho tool\\n\"",
        "dev dir 755 0:0",
        "dev/loop0 block 660 0:0 7:0",
        "dev/null char 666 0:0 1:3",
        "etc dir 755 0:0",
        "etc/labelled file 644 0:0 1 \"x\"",
        "etc/os-release file 644 0:0 1 \"ID=underhood\\nVERSION=2\\n\"",
        "etc/shadow file 640 0:42 1 \"root:*:1::::::\\n\"",
        "home dir 755 0:0",
        "home/guest dir 755 0:0",
        "home/guest/readme file 644 0:0 1 \"welcome\"",
        "opt dir 755 0:0",
        &format!("{long_dir} dir 755 0:0"),
        &format!("{long_file} file 644 0:0 1 \"long\""),
        "run dir 755 0:0",
        "run/ctl fifo 600 0:0",
        "tmp dir 1777 0:0",
        "usr dir 755 0:0",
        "usr/lib dir 755 0:0",
        "usr/lib/keep file 644 0:0 1 \"keep\"",
        "usr/lib/mod dir 755 0:0",
        "usr/lib/mod/c.so file 644 0:0 1 \"c\"",
        "var dir 755 0:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

// ---------------------------------------------------------------------
// Looking at trees

/// One line per entry under `root`, sorted: path, type, mode, owner, and
/// link count with contents, link target or device number.
fn describe_tree(root: &Path) -> Result<Vec<String>, Failed> {
    let mut lines = BTreeMap::new();
    walk(root, root, &mut lines)?;
    Ok(lines.into_values().collect())
}

fn walk(root: &Path, dir: &Path, lines: &mut BTreeMap<String, String>) -> Result<(), Failed> {
    for entry in fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))? {
        let path = entry?.path();
        let rel = path.strip_prefix(root)?.display().to_string();
        let m = fs::symlink_metadata(&path)?;
        let t = m.file_type();
        let mode = m.mode() & 0o7777;
        let owner = format!("{}:{}", m.uid(), m.gid());
        let line = if t.is_dir() {
            walk(root, &path, lines)?;
            format!("{rel} dir {mode:o} {owner}")
        } else if t.is_symlink() {
            format!("{rel} symlink {owner} -> {:?}", fs::read_link(&path)?)
        } else if t.is_file() {
            let content = String::from_utf8_lossy(&fs::read(&path)?).into_owned();
            format!("{rel} file {mode:o} {owner} {} {content:?}", m.nlink())
        } else if t.is_fifo() {
            format!("{rel} fifo {mode:o} {owner}")
        } else {
            let kind = if t.is_char_device() { "char" } else { "block" };
            let (major, minor) = (
                nix::sys::stat::major(m.rdev()),
                nix::sys::stat::minor(m.rdev()),
            );
            format!("{rel} {kind} {mode:o} {owner} {major}:{minor}")
        };
        lines.insert(rel, line);
    }
    Ok(())
}

/// Compares two trees line by line, showing only the lines that differ.
fn ensure_trees(actual: &[String], expected: &[String], what: &str) -> Result<(), Failed> {
    if actual == expected {
        return Ok(());
    }
    let missing: Vec<&String> = expected.iter().filter(|l| !actual.contains(l)).collect();
    let extra: Vec<&String> = actual.iter().filter(|l| !expected.contains(l)).collect();
    Err(format!(
        "{what}\n  expected but missing: {missing:#?}\n  there but not expected: {extra:#?}"
    )
    .into())
}

/// Mounts an imported image's layers read-only at `merged`, top first.
fn mount_image(dest: &Path, merged: &Path) -> Result<MountGuard, Failed> {
    let record: serde_json::Value = serde_json::from_slice(&fs::read(dest.join("image.json"))?)?;
    let lowers: Vec<String> = record["layers"]
        .as_array()
        .ok_or("image.json has no layers")?
        .iter()
        .rev()
        .map(|l| {
            dest.join(l["dir"].as_str().unwrap_or_default())
                .display()
                .to_string()
        })
        .collect();
    fs::create_dir_all(merged)?;
    let output = run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lowers.join(":")))
        .arg(merged))?;
    ensure(output.status.success(), describe(&output))?;
    Ok(MountGuard(merged.to_path_buf()))
}

fn import(source: &Path, dest: &Path, reference: Option<&str>) -> Result<Output, Failed> {
    let mut command = cmd("overlay-stack");
    command.arg("import").arg(source).arg(dest);
    if let Some(reference) = reference {
        command.args(["--ref", reference]);
    }
    run_for(&mut command, 120)
}

/// Fails unless `output` is exit `code` with one line on stderr
/// containing every one of `wanted`; gives back that line.
fn one_line_error(output: &Output, code: i32, wanted: &[&str]) -> Result<String, Failed> {
    ensure_eq(
        output.status.code(),
        Some(code),
        &format!("exit status\n{}", describe(output)),
    )?;
    let err = stderr(output);
    ensure_eq(err.lines().count(), 1, &format!("lines on stderr\n{err}"))?;
    for w in wanted {
        ensure(err.contains(w), format!("stderr lacks {w:?}:\n{err}"))?;
    }
    Ok(err)
}

/// Names in `dir` that an import may have left: DEST and staging dirs.
fn leftovers(dir: &Path) -> Result<Vec<String>, Failed> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == "dest" || name.contains(".import-") {
            names.push(name);
        }
    }
    Ok(names)
}

// ---------------------------------------------------------------------
// Tests

fn merged_tree_of(format: Format) -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    three_layers().write(format, &source, "demo:1");
    let dest = tmp.path().join("dest");
    let output = import(&source, &dest, None)?;
    ensure(output.status.success(), describe(&output))?;
    ensure(
        stdout(&output).contains("imported 3 layers from "),
        format!("the summary line\n{}", describe(&output)),
    )?;
    ensure_eq(
        fs::read(dest.join("config.json"))?,
        three_layers().config(),
        "config.json is the image's config byte for byte",
    )?;

    let merged = tmp.path().join("merged");
    let guard = mount_image(&dest, &merged)?;
    ensure_trees(
        &describe_tree(&merged)?,
        &three_layers_merged(),
        "the merged tree",
    )?;
    let mut wrong_times = Vec::new();
    for line in describe_tree(&merged)? {
        let rel = line.split(' ').next().unwrap_or_default().to_string();
        if fs::symlink_metadata(merged.join(&rel))?.mtime() != MTIME as i64 {
            wrong_times.push(rel);
        }
    }
    ensure_eq(
        wrong_times,
        Vec::new(),
        "entries whose mtime is not the tar's",
    )?;
    drop(guard);

    // home was deleted and made again in layer 3, usr/lib/mod made opaque
    // in layer 2: the tree above shows neither home/user nor a.so, so
    // both directories hide what is below them.
    ensure(
        fs::symlink_metadata(dest.join("layers/3/home"))?.is_dir(),
        "layers/3/home is a directory",
    )?;
    let gone = fs::symlink_metadata(dest.join("layers/2/etc/hostname"))?;
    ensure(
        gone.file_type().is_char_device() && gone.rdev() == 0,
        "layers/2/etc/hostname is a 0:0 whiteout",
    )?;
    ensure_eq(
        leftovers(tmp.path())?,
        vec!["dest".to_string()],
        "what import left beside DEST",
    )
}

/// `umoci` makes an image in two rounds of edits; import must give back
/// exactly the tree umoci unpacks.
fn umoci_layout() -> Result<(), Failed> {
    let tmp = scratch();
    let layout = tmp.path().join("layout");
    let umoci = |args: &[&Path]| -> Result<(), Failed> {
        let output = run_for(Command::new("umoci").args(args), 120)?;
        ensure(output.status.success(), describe(&output))
    };
    let image = Path::new("--image");
    let tagged = PathBuf::from(format!("{}:t", layout.display()));
    umoci(&[Path::new("init"), Path::new("--layout"), &layout])?;
    umoci(&[Path::new("new"), image, &tagged])?;

    // Round one: a small tree.
    let one = tmp.path().join("one");
    umoci(&[Path::new("unpack"), image, &tagged, &one])?;
    let root = one.join("rootfs");
    fs::create_dir_all(root.join("etc"))?;
    fs::create_dir_all(root.join("srv/www"))?;
    fs::create_dir_all(root.join("gone/deep"))?;
    fs::write(root.join("etc/a"), "a\n")?;
    fs::write(root.join("etc/b"), "b\n")?;
    fs::write(root.join("srv/www/index.html"), "<h1>hi</h1>\n")?;
    fs::write(root.join("srv/www/old.html"), "old\n")?;
    fs::write(root.join("gone/deep/file"), "x\n")?;
    std::os::unix::fs::symlink("../etc/b", root.join("srv/b"))?;
    std::os::unix::fs::chown(root.join("srv/www"), Some(33), Some(33))?;
    umoci(&[Path::new("repack"), image, &tagged, &one])?;

    // Round two: change, add and delete files and a directory.
    let two = tmp.path().join("two");
    umoci(&[Path::new("unpack"), image, &tagged, &two])?;
    let root = two.join("rootfs");
    fs::remove_file(root.join("etc/a"))?;
    fs::write(root.join("etc/b"), "b, changed\n")?;
    fs::remove_file(root.join("srv/www/old.html"))?;
    fs::write(root.join("srv/www/new.html"), "new\n")?;
    fs::remove_dir_all(root.join("gone"))?;
    fs::create_dir(root.join("added"))?;
    fs::write(root.join("added/file"), "added\n")?;
    umoci(&[Path::new("repack"), image, &tagged, &two])?;

    let dest = tmp.path().join("dest");
    let output = import(&layout, &dest, Some("t"))?;
    ensure(output.status.success(), describe(&output))?;
    let record: serde_json::Value = serde_json::from_slice(&fs::read(dest.join("image.json"))?)?;
    ensure_eq(record["layers"].as_array().map(Vec::len), Some(2), "layers")?;
    ensure(
        fs::read_dir(dest.join("layers/2"))?.count() > 0,
        "layers/2 is empty",
    )?;
    let merged = tmp.path().join("merged");
    let _guard = mount_image(&dest, &merged)?;
    ensure_trees(
        &describe_tree(&merged)?,
        &describe_tree(&root)?,
        "the merged tree against umoci's own unpacked rootfs",
    )?;
    // The edited rootfs has sub-second mtimes the tar rounded; a fresh
    // unpack by umoci shows the times the image really holds.
    let check = tmp.path().join("check");
    umoci(&[Path::new("unpack"), image, &tagged, &check])?;
    ensure_trees(
        &times_and_root(&merged)?,
        &times_and_root(&check.join("rootfs"))?,
        "mtimes, and the root directory, against umoci's unpack of the same image",
    )
}

/// Each entry's mtime in seconds (a tar keeps no more), and the root
/// directory's mode, owner and mtime: a directory a layer's tar leaves
/// out must look as it did below.
fn times_and_root(root: &Path) -> Result<Vec<String>, Failed> {
    let mut lines = Vec::new();
    let m = fs::metadata(root)?;
    lines.push(format!(
        ". {:o} {}:{} {}",
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
        m.mtime()
    ));
    for line in describe_tree(root)? {
        let rel = line.split(' ').next().unwrap_or_default().to_string();
        let mtime = fs::symlink_metadata(root.join(&rel))?.mtime();
        lines.push(format!("{rel} {mtime}"));
    }
    Ok(lines)
}

/// A small image with no opaque directory or device, which an ordinary
/// user can import too.
fn small_image() -> Image {
    Image {
        layers: vec![
            (
                layer(&[
                    E::Dir("etc", 0o755),
                    E::File("etc/motd", &"hello\n".repeat(500), 0o644),
                ]),
                "ADD motd",
                true,
            ),
            (
                layer(&[E::Dir("etc", 0o755), E::Whiteout("etc/motd")]),
                "RUN rm /etc/motd",
                true,
            ),
        ],
        diff_ids: None,
    }
}

fn corrupt_blob() -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    let image = small_image();
    image.write(Format::OciTar, &source, "v1");
    // Flip one byte in the middle of the first layer's blob, in the tar.
    let blob = &image.blobs()[0];
    let mut bytes = fs::read(&source)?;
    let at = bytes
        .windows(blob.len())
        .position(|w| w == blob.as_slice())
        .ok_or("the blob is not in the tar")?
        + blob.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&source, bytes)?;

    let dest = tmp.path().join("dest");
    let output = import(&source, &dest, None)?;
    let digest = sha256(blob);
    one_line_error(
        &output,
        125,
        &[
            &format!(
                "layer 1 ({}:blobs/sha256/{})",
                source.display(),
                hex(&digest)
            ),
            &format!("sha256 mismatch: expected {digest}, got sha256:"),
        ],
    )?;
    ensure_eq(
        leftovers(tmp.path())?,
        Vec::new(),
        "what a failed import left",
    )
}

fn wrong_diff_id() -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    let mut image = small_image();
    let wrong = sha256(b"some other layer");
    image.diff_ids = Some(vec![sha256(&image.layers[0].0), wrong.clone()]);
    image.write(Format::DockerSave, &source, "demo:1");
    let output = import(&source, &tmp.path().join("dest"), None)?;
    one_line_error(
        &output,
        125,
        &[
            "layer 2 (",
            "rootfs.diff_ids: sha256 mismatch",
            &format!("expected {wrong}, got {}", sha256(&image.layers[1].0)),
        ],
    )?;
    ensure_eq(
        leftovers(tmp.path())?,
        Vec::new(),
        "what a failed import left",
    )
}

fn bad_input() -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    small_image().write(Format::OciTar, &source, "v1");

    let missing = tmp.path().join("no-such-image.tar");
    let output = import(&missing, &tmp.path().join("dest"), None)?;
    one_line_error(
        &output,
        2,
        &[&missing.display().to_string(), "no such file or directory"],
    )?;

    let full = tmp.path().join("full");
    fs::create_dir(&full)?;
    fs::write(full.join("mine"), "keep me")?;
    let output = import(&source, &full, None)?;
    one_line_error(&output, 2, &[&format!("{}: not empty", full.display())])?;
    ensure_eq(
        fs::read_to_string(full.join("mine"))?,
        "keep me".into(),
        "DEST's file",
    )?;

    let output = import(&source, &tmp.path().join("dest"), Some("v2"))?;
    one_line_error(&output, 2, &["no image named \"v2\"; it has: v1", "--ref"])?;

    let output = import(&full, &tmp.path().join("dest"), None)?;
    one_line_error(&output, 2, &["not an image"])?;
    ensure_eq(
        leftovers(tmp.path())?,
        Vec::new(),
        "what refused imports left",
    )
}

fn dry_run() -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    small_image().write(Format::OciTar, &source, "v1");
    let dest = tmp.path().join("dest");
    let output = run(cmd("overlay-stack")
        .arg("import")
        .arg("--dry-run")
        .arg(&source)
        .arg(&dest))?;
    ensure(output.status.success(), describe(&output))?;
    let out = stdout(&output);
    for wanted in [
        "would make 6 calls; nothing was done (--dry-run)",
        "unpack blobs/sha256/",
        &format!(
            "{:?}: check sha256 and diff_id, .wh.* → whiteouts",
            dest.join("layers/2")
        ),
        &format!("rename(\"{}/.dest.import-", tmp.path().display()),
    ] {
        ensure(
            out.contains(wanted),
            format!("--dry-run output lacks {wanted:?}\n{out}"),
        )?;
    }
    ensure_eq(leftovers(tmp.path())?, Vec::new(), "what --dry-run made")
}

fn explain() -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    small_image().write(Format::DockerSave, &source, "demo:1");
    let dest = tmp.path().join("dest");
    let output = run(cmd("overlay-stack")
        .arg("import")
        .arg("--explain")
        .arg(&source)
        .arg(&dest))?;
    ensure(output.status.success(), describe(&output))?;
    let err = stderr(&output);
    for wanted in [
        "[overlay-stack 2/6] unpack ",
        ": check diff_id, .wh.* → whiteouts",
        "layer 2: 2 entries, 0B in files, 1 whiteout, 0 opaque directories",
        "[overlay-stack 6/6] rename(",
    ] {
        ensure(
            err.contains(wanted),
            format!("--explain lacks {wanted:?}\n{err}"),
        )?;
    }
    Ok(())
}

fn history() -> Result<(), Failed> {
    let tmp = scratch();
    let source = tmp.path().join("image.tar");
    small_image().write(Format::DockerSave, &source, "demo:1");
    let dest = tmp.path().join("dest");
    let output = import(&source, &dest, None)?;
    ensure(output.status.success(), describe(&output))?;
    let output = run(cmd("overlay-stack").arg("history").arg(&dest))?;
    ensure(output.status.success(), describe(&output))?;
    let out = stdout(&output);
    let order: Vec<usize> = [
        "CMD [\"/bin/sh\"]",
        "RUN rm /etc/motd",
        "ADD motd",
        "LABEL maintainer",
    ]
    .iter()
    .map(|step| out.find(step).unwrap_or(usize::MAX))
    .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    ensure(
        order == sorted && !order.contains(&usize::MAX),
        format!("history is not the build steps newest first\n{out}"),
    )
}
