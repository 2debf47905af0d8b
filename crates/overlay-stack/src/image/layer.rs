//! One layer: a tar of changes, unpacked into a directory overlayfs can
//! stack as it is.
//!
//! A layer blob is a tar — often gzip-compressed — of what one build step
//! changed: the files it added or modified, with their modes, owners and
//! times, and a marker for each deletion (see [`crate::whiteout`]). Unpacking
//! it for overlayfs means writing the files as they are and turning each
//! marker into overlayfs's own form: `.wh.NAME` becomes a whiteout device
//! `NAME`, `.wh..wh..opq` the opaque attribute on its directory. See
//! <https://github.com/opencontainers/image-spec/blob/main/layer.md>.
//!
//! The blob is read once, as a stream: its bytes are hashed on the way
//! into the decompressor (the blob digest the manifest names), the tar that
//! comes out is hashed on the way into the unpacker (the `diff_id` the
//! config names), and each file is written as its entry passes.
//!
//! A tar is untrusted input: an entry named `../../etc/passwd`, or one that
//! goes through a symlink an earlier entry made (`evil -> /etc`, then
//! `evil/passwd`), would write outside the layer. Every entry's directory
//! is opened with
//! [`openat2(2)`](https://man7.org/linux/man-pages/man2/openat2.2.html)
//! and `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`, so the kernel itself refuses
//! a path that leaves the layer or follows any symlink, and the entry is
//! then made relative to that directory (`mkdirat`, `openat(O_EXCL)`,
//! `symlinkat`, `mknodat`, `linkat`), which never follows a symlink at the
//! last component either.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, fstatat,
    futimens, makedev, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use steps::Error;

use super::digest::{Digest, Hashing, Tally, mismatch};
use super::source::{Span, io_text};
use crate::whiteout::{self, TAR_OPAQUE_MARKER, TarName, XattrNamespace, tar_name};

/// How a layer blob is compressed, told by its first bytes rather than by
/// the media type, which tools do not always set right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    /// Recognised only to be refused with a clear message.
    Zstd,
}

impl Compression {
    /// gzip starts `1f 8b`, zstd `28 b5 2f fd`; anything else is read as a
    /// tar and fails there if it is not one.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::Uncompressed
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// What a layer's blob must turn out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// How the layer is named in errors: `layer 2 (L/blobs/sha256/…)`.
    pub label: String,
    /// The blob's digest, when the image names it (not in a legacy
    /// `docker save` tar, which names only diff_ids).
    pub blob: Option<Digest>,
    pub diff_id: Digest,
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub blob: Digest,
    pub blob_size: u64,
    pub diff_id: Digest,
    pub counts: Counts,
}

/// What a layer held, for the narration and the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    /// Bytes of regular files: the layer's unpacked size.
    pub bytes: u64,
    pub whiteouts: u64,
    pub opaque: u64,
    /// Owners or attributes this process may not set (not root).
    pub skipped: u64,
    /// Extended attributes the destination's filesystem cannot keep
    /// (`EOPNOTSUPP`: `user.*` on tmpfs before Linux 6.6, say): dropped, as
    /// containerd drops them.
    pub unsupported: u64,
}

/// Reads a layer's blob once — hashing it, decompressing it, hashing the
/// tar, unpacking each entry into `dir` — then checks both digests.
pub fn unpack_blob(
    span: &Span,
    compression: Compression,
    target: &Target,
    expected: &Expected,
) -> Result<Unpacked, Error> {
    let label = &expected.label;
    let file = span
        .open()
        .map_err(|e| Error::setup(format!("{label}: open: {}", io_text(&e))))?;
    let mut raw = BufReader::with_capacity(1 << 20, file);
    let mut blob = Tally::new();
    let mut diff = Tally::new();
    let outcome = (|| {
        let hashed = Hashing::new(&mut raw, &mut blob);
        let stream: Box<dyn Read + '_> = match compression {
            Compression::Uncompressed => Box::new(hashed),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(hashed)),
            Compression::Zstd => return Err(zstd_refused(label)),
        };
        let mut tar_stream = Hashing::new(stream, &mut diff);
        let counts = unpack_tar(BufReader::with_capacity(256 << 10, &mut tar_stream), target)?;
        // The tar ends before its zero padding; the diff_id covers it all.
        tar_stream
            .drain()
            .map_err(|e| Error::setup(format!("reading the layer's tar: {}", io_text(&e))))?;
        Ok(counts)
    })();
    // Whatever happened, read the blob to its end: a corrupt blob is then
    // reported as corrupt, not as whatever the decompressor made of it.
    let _ = Hashing::new(&mut raw, &mut blob).drain();
    let (blob_digest, blob_size) = blob.finish();
    if let Some(want) = &expected.blob
        && *want != blob_digest
    {
        return Err(mismatch(label, want, &blob_digest));
    }
    let counts = outcome.map_err(|e| e.context(label))?;
    let (diff_id, _) = diff.finish();
    if diff_id != expected.diff_id {
        return Err(mismatch(
            &format!("{label}: uncompressed tar vs the config's rootfs.diff_ids"),
            &expected.diff_id,
            &diff_id,
        ));
    }
    Ok(Unpacked {
        blob: blob_digest,
        blob_size,
        diff_id,
        counts,
    })
}

pub fn zstd_refused(label: &str) -> Error {
    Error::usage(format!(
        "{label}: zstd-compressed; import reads only gzip and uncompressed layers"
    ))
    .hint("convert the image, e.g. skopeo copy --dest-compress-format gzip")
}

/// Where a layer is unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The layer's own directory, empty.
    pub dir: PathBuf,
    /// The layers unpacked before it, top first: a directory its tar
    /// needs but does not list takes its attributes from there.
    pub below: Vec<PathBuf>,
    /// Where overlayfs's opaque marker goes.
    pub namespace: XattrNamespace,
}

/// Unpacks a layer's tar stream into the empty directory `target.dir`, in
/// the overlayfs on-disk format.
pub fn unpack_tar(reader: impl Read, target: &Target) -> Result<Counts, Error> {
    let mut writer = LayerWriter::open(target)?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| Error::setup(format!("reading the layer's tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::setup(format!("reading the layer's tar: {e}")))?;
        writer.entry(&mut entry)?;
    }
    writer.finish()?;
    Ok(writer.counts)
}

/// The components of a tar entry's path, or why it is refused: `./a//b/`
/// is `[a, b]`; an absolute path or one with `..` is refused outright,
/// before anything is written.
pub fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("an absolute path");
    }
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("a path with \"..\""),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// The mode, owner, time and extended attributes of one entry.
#[derive(Debug)]
struct Meta {
    mode: Mode,
    uid: u64,
    gid: u64,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    /// From the header, overridden by PAX records where they are given
    /// (large ids, sub-second times, `SCHILY.xattr.NAME`).
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Self, Error> {
        let header = entry.header();
        let corrupt = |e: std::io::Error| Error::setup(format!("corrupt tar header: {e}"));
        let mut meta = Meta {
            mode: Mode::from_bits_truncate(header.mode().map_err(corrupt)? & 0o7777),
            uid: header.uid().map_err(corrupt)?,
            gid: header.gid().map_err(corrupt)?,
            mtime: TimeSpec::new(header.mtime().map_err(corrupt)? as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions().map_err(corrupt)? {
            for record in pax {
                let record = record.map_err(corrupt)?;
                let value = record.value_bytes();
                let number = || std::str::from_utf8(value).ok()?.parse::<u64>().ok();
                match record.key_bytes() {
                    b"uid" => meta.uid = number().unwrap_or(meta.uid),
                    b"gid" => meta.gid = number().unwrap_or(meta.gid),
                    b"mtime" => meta.mtime = pax_time(value).unwrap_or(meta.mtime),
                    key => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.")
                            && !is_overlay_xattr(name)
                        {
                            meta.xattrs
                                .push((OsStr::from_bytes(name).to_owned(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }
}

/// `trusted.overlay.*` and `user.overlay.*` would tell overlayfs itself
/// what to do (redirect a directory, hide one); a layer's files do not get
/// to do that, so such attributes are not copied.
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// `1700000000.25` → 1700000000 s 250000000 ns.
fn pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    Some(TimeSpec::new(secs, nanos))
}

/// A directory's mode and time, set after everything inside it is written:
/// writing into it changes its time, and a read-only mode would stop an
/// unprivileged import from writing into it at all.
#[derive(Debug)]
struct Deferred {
    rel: Vec<u8>,
    mode: Mode,
    mtime: TimeSpec,
}

impl Deferred {
    /// The mode and time of a directory of a layer below.
    fn from_stat(rel: Vec<u8>, stat: &FileStat) -> Self {
        Self {
            rel,
            mode: Mode::from_bits_truncate(stat.st_mode & 0o7777),
            mtime: TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec),
        }
    }
}

/// A special file an entry makes with `mknodat`.
#[derive(Debug, Clone, Copy)]
enum Node {
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// What a node made by name still needs once made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// Owner and attributes; its mode and time wait for the end.
    Directory,
    /// Owner, attributes and time: a symlink's mode means nothing.
    Symlink,
    /// Owner, mode, attributes and time: a device or FIFO.
    Special,
}

/// What stood at a name before an entry took it.
#[derive(Debug, PartialEq, Eq)]
enum Was {
    Nothing,
    /// A directory, kept: a directory entry over it only sets its metadata.
    Dir,
    /// A whiteout this layer made: a directory over it must be opaque.
    Whiteout,
    Other,
}

/// Writes the entries of one layer into its directory.
#[derive(Debug)]
struct LayerWriter {
    root_path: PathBuf,
    root: Rc<OwnedFd>,
    /// The layers below, top first, opened.
    below: Vec<OwnedFd>,
    namespace: XattrNamespace,
    /// Root outside a user namespace: an owner or attribute that cannot be
    /// set is then an error, not something to skip.
    strict: bool,
    euid: u64,
    egid: u64,
    /// The directory of the last entry: tars list a directory's files
    /// together, so most entries reuse it.
    parent: Option<(Vec<u8>, Rc<OwnedFd>)>,
    deferred: Vec<Deferred>,
    counts: Counts,
    buffer: Vec<u8>,
}

fn dir_flags() -> OFlag {
    OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC
}

/// Beneath the layer, following no symlink: the kernel checks the path.
fn beneath() -> OpenHow {
    OpenHow::new()
        .flags(dir_flags())
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn refused(why: impl std::fmt::Display) -> Error {
    Error::setup(format!("refused: {why}"))
        .hint("no well-made image has such an entry; do not use this one")
}

impl LayerWriter {
    fn open(target: &Target) -> Result<Self, Error> {
        let open = |dir: &Path| {
            openat(nix::fcntl::AT_FDCWD, dir, dir_flags(), Mode::empty())
                .map_err(|errno| Error::sys(format!("open({:?})", dir.display()), errno))
        };
        let root = open(&target.dir)?;
        let below = target
            .below
            .iter()
            .map(|d| open(d))
            .collect::<Result<_, _>>()?;
        let mut writer = Self {
            root_path: target.dir.clone(),
            root: Rc::new(root),
            below,
            namespace: target.namespace,
            strict: Uid::effective().is_root() && !whiteout::in_user_namespace(),
            euid: Uid::effective().as_raw().into(),
            egid: Gid::effective().as_raw().into(),
            parent: None,
            deferred: Vec::new(),
            counts: Counts::default(),
            buffer: vec![0; 256 << 10],
        };
        writer.inherit_root()?;
        Ok(writer)
    }

    /// The layer's root is a directory the tar need not list either: until
    /// a `./` entry says otherwise, it is the one below unchanged.
    fn inherit_root(&mut self) -> Result<(), Error> {
        let Some(stat) = self.below.first().and_then(|below| fstat(below).ok()) else {
            return Ok(());
        };
        let result = self.chown_to(self.root.as_fd(), stat.st_uid.into(), stat.st_gid.into());
        self.allow(result, || {
            format!("fchown(\".\", {}, {})", stat.st_uid, stat.st_gid)
        })?;
        self.deferred.push(Deferred::from_stat(Vec::new(), &stat));
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let raw = entry.path_bytes().into_owned();
        self.entry_at(entry, &raw)
            .map_err(|e| e.context(format!("entry {:?}", lossy(&raw))))
    }

    fn entry_at<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<(), Error> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            // Records about other entries, which the tar crate has already
            // folded into them.
            return Ok(());
        }
        let parts = components(raw).map_err(refused)?;
        self.counts.entries += 1;
        let meta = Meta::of(entry)?;
        let Some((name, parent)) = parts.split_last() else {
            return self.root_entry(kind, &meta);
        };
        let name = OsStr::from_bytes(name);
        if name.as_bytes().starts_with(b".wh..wh.") && name != TAR_OPAQUE_MARKER {
            // aufs's own bookkeeping (`.wh..wh.plnk`), not part of the tree.
            return Ok(());
        }
        match tar_name(name) {
            TarName::Opaque => return self.opaque(parent),
            TarName::Whiteout(target) => return self.whiteout(parent, target),
            TarName::Plain => {}
        }
        let dir = self.parent(parent)?;
        let rel = [parent, &[name.as_bytes()]].concat().join(&b'/');
        let link = || entry.link_name_bytes().unwrap_or_default().into_owned();
        match kind {
            T::Directory => self.directory(&dir, name, rel, &meta),
            // An old tar's way of saying directory: a name ending in `/`.
            T::Regular | T::Continuous if raw.ends_with(b"/") => {
                self.directory(&dir, name, rel, &meta)
            }
            T::Symlink => self.symlink(&dir, name, &rel, &link(), &meta),
            T::Link => self.hard_link(&dir, name, &rel, &link()),
            T::Char | T::Block | T::Fifo => {
                let header = entry.header();
                let number = |n: std::io::Result<Option<u32>>| n.ok().flatten().unwrap_or(0);
                let node = match kind {
                    T::Char => {
                        Node::Char(number(header.device_major()), number(header.device_minor()))
                    }
                    T::Block => {
                        Node::Block(number(header.device_major()), number(header.device_minor()))
                    }
                    _ => Node::Fifo,
                };
                self.special(&dir, name, &rel, node, &meta)
            }
            // Regular files, and — as POSIX asks — any type not known.
            _ => self.regular(&dir, name, &rel, entry, &meta),
        }
    }

    fn symlink(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), Error> {
        if target.is_empty() {
            return Err(Error::setup("a symlink with an empty target"));
        }
        // The target is not checked: it is only ever followed inside the
        // container, never while unpacking.
        self.make(dir, name, rel, |dir| {
            symlinkat(OsStr::from_bytes(target), dir, name)
        })
        .map_err(|errno| {
            Error::sys(
                format!("symlinkat({:?}, {:?})", lossy(target), lossy(rel)),
                errno,
            )
        })?;
        self.finish_node(dir, name, rel, meta, Finish::Symlink)
    }

    /// A device or a FIFO: `mknodat`.
    fn special(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        node: Node,
        meta: &Meta,
    ) -> Result<(), Error> {
        let (kind, dev, shown) = match node {
            Node::Char(major, minor) => (
                SFlag::S_IFCHR,
                makedev(major.into(), minor.into()),
                format!("S_IFCHR, {major}:{minor}"),
            ),
            Node::Block(major, minor) => (
                SFlag::S_IFBLK,
                makedev(major.into(), minor.into()),
                format!("S_IFBLK, {major}:{minor}"),
            ),
            Node::Fifo => (SFlag::S_IFIFO, 0, "S_IFIFO".to_string()),
        };
        self.make(dir, name, rel, |dir| {
            mknodat(dir, name, kind, Mode::from_bits_truncate(0o600), dev)
        })
        .map_err(|errno| {
            let error = Error::sys(format!("mknodat({:?}, {shown})", lossy(rel)), errno);
            if errno == Errno::EPERM {
                error.hint("device files need CAP_MKNOD: import as root")
            } else {
                error
            }
        })?;
        self.finish_node(dir, name, rel, meta, Finish::Special)
    }

    /// `./` in the tar: the layer's own root directory.
    fn root_entry(&mut self, kind: tar::EntryType, meta: &Meta) -> Result<(), Error> {
        if !kind.is_dir() {
            return Err(refused(
                "an entry for the layer's root that is not a directory",
            ));
        }
        let result = self.chown_to(self.root.as_fd(), meta.uid, meta.gid);
        self.allow(result, || "fchown(\".\")".to_string())?;
        self.deferred.push(Deferred {
            rel: Vec::new(),
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    /// The directory an entry goes in, made if the tar did not list it.
    fn parent(&mut self, parts: &[&[u8]]) -> Result<Rc<OwnedFd>, Error> {
        let rel = parts.join(&b'/');
        if let Some((cached, fd)) = &self.parent
            && *cached == rel
        {
            return Ok(fd.clone());
        }
        let fd = if rel.is_empty() {
            self.root.clone()
        } else {
            match openat2(self.root.as_fd(), OsStr::from_bytes(&rel), beneath()) {
                Ok(fd) => Rc::new(fd),
                // Missing, or refused: walk it one component at a time, to
                // make what is missing or to say which component is wrong.
                Err(_) => Rc::new(self.walk(parts)?),
            }
        };
        self.parent = Some((rel, fd.clone()));
        Ok(fd)
    }

    fn walk(&mut self, parts: &[&[u8]]) -> Result<OwnedFd, Error> {
        let root = self.root.clone();
        let mut dir: Option<OwnedFd> = None;
        for (i, part) in parts.iter().enumerate() {
            let here = parts[..=i].join(&b'/');
            let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
            let part = OsStr::from_bytes(part);
            let open = |at| openat(at, part, dir_flags() | OFlag::O_NOFOLLOW, Mode::empty());
            let next = match open(at) {
                Err(Errno::ENOENT) => {
                    mkdirat(at, part, Mode::from_bits_truncate(0o755)).map_err(|errno| {
                        Error::sys(format!("mkdirat({:?})", lossy(&here)), errno)
                    })?;
                    self.inherit(at, part, &here)?;
                    open(at)
                }
                other => other,
            };
            dir = Some(next.map_err(|errno| match errno {
                // O_DIRECTORY|O_NOFOLLOW on a symlink: ENOTDIR (or ELOOP).
                Errno::ELOOP | Errno::ENOTDIR => match readlinkat(at, part) {
                    Ok(target) => refused(format!(
                        "it goes through the symlink {:?} (→ {:?}) an earlier entry made; a layer may not write through a symlink",
                        lossy(&here),
                        lossy(target.as_bytes())
                    )),
                    Err(_) => Error::setup(format!("{:?} is not a directory", lossy(&here))),
                },
                errno => Error::sys(format!("openat({:?}, O_DIRECTORY|O_NOFOLLOW)", lossy(&here)), errno),
            })?);
        }
        Ok(dir.unwrap_or_else(|| unreachable!("walk is given at least one component")))
    }

    /// A directory the tar needs but does not list (`srv/www/new.html`
    /// without `srv/www/`) is unchanged from the layers below. overlayfs
    /// shows a directory with the owner, mode and time of the topmost
    /// layer that has it, so this one takes them from there rather than
    /// from `mkdir`'s defaults, or the merged view would change them.
    fn inherit(&mut self, at: BorrowedFd<'_>, name: &OsStr, rel: &[u8]) -> Result<(), Error> {
        let Some(stat) = self.below_dir(rel) else {
            return Ok(());
        };
        if (u64::from(stat.st_uid), u64::from(stat.st_gid)) != (self.euid, self.egid) {
            let result = fchownat(
                at,
                name,
                Some(Uid::from_raw(stat.st_uid)),
                Some(Gid::from_raw(stat.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            self.allow(result, || {
                format!("lchown({:?}, {}, {})", lossy(rel), stat.st_uid, stat.st_gid)
            })?;
        }
        self.deferred.push(Deferred::from_stat(rel.to_vec(), &stat));
        Ok(())
    }

    /// The directory `rel` as the layers below show it: the first that has
    /// it, unless one above hides it — with a file or whiteout on the way,
    /// or an opaque directory over where it is missing.
    fn below_dir(&self, rel: &[u8]) -> Option<FileStat> {
        let parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
        'layers: for layer in &self.below {
            let mut dir: Option<File> = None;
            let mut opaque = false;
            for part in &parts {
                let at = dir.as_ref().map_or(layer.as_fd(), |d| d.as_fd());
                let flags = dir_flags() | OFlag::O_NOFOLLOW;
                match openat(at, OsStr::from_bytes(part), flags, Mode::empty()) {
                    Ok(fd) => {
                        let file = File::from(fd);
                        opaque = matches!(
                            xattr::FileExt::get_xattr(&file, self.namespace.opaque()),
                            Ok(Some(v)) if v == b"y"
                        );
                        dir = Some(file);
                    }
                    Err(Errno::ENOENT) if opaque => return None,
                    Err(Errno::ENOENT) => continue 'layers,
                    Err(_) => return None,
                }
            }
            return dir.and_then(|d| fstat(d.as_fd()).ok());
        }
        None
    }

    /// Makes a node with `create`; if the name is taken, clears it first.
    fn make(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        create: impl Fn(&OwnedFd) -> nix::Result<()>,
    ) -> nix::Result<Was> {
        match create(dir) {
            Err(Errno::EEXIST) => {
                let was = self.clear(dir, name, rel, false)?;
                create(dir).map(|()| was)
            }
            other => other.map(|()| Was::Nothing),
        }
    }

    /// Removes what is at `name`, unless it is a directory and `keep_dir`.
    /// A later entry for the same path replaces an earlier one, as tar does.
    fn clear(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        keep_dir: bool,
    ) -> nix::Result<Was> {
        let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => return Ok(Was::Nothing),
            other => other?,
        };
        let format = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        if format == SFlag::S_IFDIR {
            if keep_dir {
                return Ok(Was::Dir);
            }
            // `dir` was opened beneath the layer without symlinks, so this
            // path has none either; remove_dir_all follows none inside.
            let path = self.path_of(rel);
            self.parent = None;
            std::fs::remove_dir_all(&path)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
            return Ok(Was::Other);
        }
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
        if format == SFlag::S_IFCHR && stat.st_rdev == 0 {
            Ok(Was::Whiteout)
        } else {
            Ok(Was::Other)
        }
    }

    /// The path of an entry, for the calls that take a path. Only used
    /// once the entry's directory was opened beneath the layer without
    /// symlinks: this process is the only writer, so the path has none.
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        self.root_path.join(OsStr::from_bytes(rel))
    }

    fn directory(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: Vec<u8>,
        meta: &Meta,
    ) -> Result<(), Error> {
        let mkdir = |dir: &OwnedFd| mkdirat(dir, name, Mode::from_bits_truncate(0o700));
        let was = match mkdir(dir) {
            Err(Errno::EEXIST) => {
                let was = self.clear(dir, name, &rel, true);
                match was {
                    Ok(Was::Dir) => Ok(Was::Dir),
                    Ok(was) => mkdir(dir).map(|()| was),
                    Err(errno) => Err(errno),
                }
            }
            other => other.map(|()| Was::Nothing),
        }
        .map_err(|errno| Error::sys(format!("mkdirat({:?})", lossy(&rel)), errno))?;
        if was == Was::Whiteout {
            // The layer deleted the lower directory, then made its own:
            // only the new one's contents may show.
            self.set_opaque(&rel)?;
        }
        self.finish_node(dir, name, &rel, meta, Finish::Directory)?;
        self.deferred.push(Deferred {
            rel,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
    ) -> Result<(), Error> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let created = Cell::new(None);
        self.make(dir, name, rel, |dir| {
            created.set(Some(openat(
                dir,
                name,
                flags,
                Mode::from_bits_truncate(0o600),
            )?));
            Ok(())
        })
        .map_err(|errno| Error::sys(format!("openat({:?}, O_CREAT|O_EXCL)", lossy(rel)), errno))?;
        let mut file = File::from(created.into_inner().unwrap_or_else(|| unreachable!()));
        loop {
            let n = entry
                .read(&mut self.buffer)
                .map_err(|e| Error::setup(format!("reading the layer's tar: {}", io_text(&e))))?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buffer[..n])
                .map_err(|e| Error::setup(format!("write {:?}: {}", lossy(rel), io_text(&e))))?;
            self.counts.bytes += n as u64;
        }
        let owned = self.chown_to(file.as_fd(), meta.uid, meta.gid);
        self.allow(owned, || {
            format!("fchown({:?}, {}, {})", lossy(rel), meta.uid, meta.gid)
        })?;
        // After chown, which clears set-user-ID.
        fchmod(&file, meta.mode).map_err(|errno| {
            Error::sys(
                format!("fchmod({:?}, {:o})", lossy(rel), meta.mode.bits()),
                errno,
            )
        })?;
        for (key, value) in &meta.xattrs {
            let result = xattr::FileExt::set_xattr(&file, key, value).map_err(errno_of);
            if result == Err(Errno::EOPNOTSUPP) {
                self.counts.unsupported += 1;
                continue;
            }
            self.allow(result, || format!("fsetxattr({:?}, {key:?})", lossy(rel)))?;
        }
        futimens(&file, &meta.mtime, &meta.mtime)
            .map_err(|errno| Error::sys(format!("futimens({:?})", lossy(rel)), errno))
    }

    /// Owner, attributes, and — as the kind of node allows — mode and time
    /// of a node made by name (a regular file is finished through its fd).
    fn finish_node(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        meta: &Meta,
        kind: Finish,
    ) -> Result<(), Error> {
        if (meta.uid, meta.gid) != (self.euid, self.egid) {
            let result = fchownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid as u32)),
                Some(Gid::from_raw(meta.gid as u32)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            );
            self.allow(result, || {
                format!("lchown({:?}, {}, {})", lossy(rel), meta.uid, meta.gid)
            })?;
        }
        if kind == Finish::Special {
            fchmodat(dir, name, meta.mode, FchmodatFlags::FollowSymlink).map_err(|errno| {
                Error::sys(
                    format!("chmod({:?}, {:o})", lossy(rel), meta.mode.bits()),
                    errno,
                )
            })?;
        }
        if !meta.xattrs.is_empty() {
            let path = self.path_of(rel);
            for (key, value) in &meta.xattrs {
                let result = xattr::set(&path, key, value).map_err(errno_of);
                if result == Err(Errno::EOPNOTSUPP) {
                    self.counts.unsupported += 1;
                    continue;
                }
                self.allow(result, || format!("lsetxattr({:?}, {key:?})", lossy(rel)))?;
            }
        }
        if kind == Finish::Directory {
            return Ok(());
        }
        utimensat(
            dir,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|errno| Error::sys(format!("utimensat({:?})", lossy(rel)), errno))
    }

    fn chown_to(&self, fd: impl AsFd, uid: u64, gid: u64) -> nix::Result<()> {
        if (uid, gid) == (self.euid, self.egid) {
            return Ok(());
        }
        fchown(
            fd,
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
        )
    }

    /// An owner or attribute that could not be set: an error as root,
    /// skipped (and counted) for an ordinary user, who may not give files
    /// away or set `trusted.*` attributes.
    fn allow(
        &mut self,
        result: nix::Result<()>,
        call: impl FnOnce() -> String,
    ) -> Result<(), Error> {
        match result {
            Ok(()) => Ok(()),
            Err(Errno::EPERM | Errno::EINVAL | Errno::EOPNOTSUPP) if !self.strict => {
                self.counts.skipped += 1;
                Ok(())
            }
            Err(errno) => Err(Error::sys(call(), errno)),
        }
    }

    fn hard_link(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &[u8],
        target: &[u8],
    ) -> Result<(), Error> {
        let parts = components(target).map_err(|why| refused(format!("a hard link to {why}")))?;
        let Some((source_name, source_parent)) = parts.split_last() else {
            return Err(refused("a hard link to the layer's root"));
        };
        if parts.join(&b'/') == rel {
            return Ok(());
        }
        let source_dir = self.parent(source_parent)?;
        let source_name = OsStr::from_bytes(source_name);
        // Without AT_SYMLINK_FOLLOW: a link to a symlink is another symlink.
        self.make(dir, name, rel, |dir| {
            linkat(&*source_dir, source_name, dir, name, AtFlags::empty())
        })
        .map_err(|errno| {
            let error = Error::sys(
                format!("linkat({:?}, {:?})", lossy(target), lossy(rel)),
                errno,
            );
            if errno == Errno::ENOENT {
                error.hint("a hard link must point to a file earlier in the same layer")
            } else {
                error
            }
        })?;
        Ok(())
    }

    /// `.wh.NAME`: NAME is deleted from the layers below.
    fn whiteout(&mut self, parent: &[&[u8]], target: &OsStr) -> Result<(), Error> {
        if target.is_empty() || target == "." || target == ".." {
            return Err(refused(format!(
                "a whiteout of {:?} would delete the directory it is in",
                target
            )));
        }
        let dir = self.parent(parent)?;
        let rel = [parent, &[target.as_bytes()]].concat().join(&b'/');
        match fstatat(&*dir, target, AtFlags::AT_SYMLINK_NOFOLLOW) {
            // The layer has its own NAME already: a file hides the one
            // below by itself, a directory must be made opaque to.
            Ok(stat) if stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => {
                self.set_opaque(&rel)
            }
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => {
                whiteout::make_whiteout(&self.path_of(&rel)).map_err(|errno| {
                    Error::sys(format!("mknod({:?}, S_IFCHR, 0:0)", lossy(&rel)), errno)
                })?;
                self.counts.whiteouts += 1;
                Ok(())
            }
            Err(errno) => Err(Error::sys(format!("fstatat({:?})", lossy(&rel)), errno)),
        }
    }

    /// `.wh..wh..opq`: the directory it is in hides everything below it.
    fn opaque(&mut self, parent: &[&[u8]]) -> Result<(), Error> {
        // The marker may come before its directory's own entry.
        self.parent(parent)?;
        self.set_opaque(&parent.join(&b'/'))
    }

    fn set_opaque(&mut self, rel: &[u8]) -> Result<(), Error> {
        // `rel` was just opened or made beneath the layer without symlinks.
        let path = self.path_of(rel);
        whiteout::make_opaque(&path, self.namespace).map_err(|e| {
            let errno = errno_of(e);
            let error = Error::sys(
                format!(
                    "setxattr({:?}, \"{}\", \"y\")",
                    lossy(rel),
                    self.namespace.opaque()
                ),
                errno,
            );
            if errno == Errno::EPERM {
                error.hint("trusted.* attributes need CAP_SYS_ADMIN: import as root")
            } else {
                error
            }
        })?;
        self.counts.opaque += 1;
        Ok(())
    }

    /// Sets each directory's mode and time, deepest first, so that a
    /// directory made read-only does not stop the ones inside it.
    fn finish(&mut self) -> Result<(), Error> {
        self.parent = None;
        let mut deferred = std::mem::take(&mut self.deferred);
        deferred.sort_by_key(|d| std::cmp::Reverse(depth(&d.rel)));
        for d in &deferred {
            let fd = if d.rel.is_empty() {
                openat(self.root.as_fd(), ".", dir_flags(), Mode::empty())
            } else {
                openat2(self.root.as_fd(), OsStr::from_bytes(&d.rel), beneath())
            };
            // Gone: a later entry replaced the directory.
            let Ok(fd) = fd else { continue };
            fchmod(&fd, d.mode).map_err(|errno| {
                Error::sys(
                    format!("fchmod({:?}, {:o})", lossy(&d.rel), d.mode.bits()),
                    errno,
                )
            })?;
            futimens(&fd, &d.mtime, &d.mtime)
                .map_err(|errno| Error::sys(format!("futimens({:?})", lossy(&d.rel)), errno))?;
        }
        Ok(())
    }
}

fn depth(rel: &[u8]) -> usize {
    if rel.is_empty() {
        0
    } else {
        1 + rel.iter().filter(|b| **b == b'/').count()
    }
}

fn errno_of(error: std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(Errno::EIO as i32))
}
