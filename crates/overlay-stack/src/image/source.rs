//! Where an image's files are read from: a directory, or a tar of one.
//!
//! `docker save` writes a tar, and an OCI image layout is often passed
//! around as one too. Extracting it first would write every layer twice, so
//! the tar is *indexed* instead: one pass over its headers (seeking over the
//! contents) records where each member's bytes start and how long they are.
//! An uncompressed tar stores a member's bytes contiguously, so a blob is
//! then read straight from the tar file as a [`Span`] — open, seek, read
//! `len` bytes. See <https://www.gnu.org/software/tar/manual/html_node/Standard.html>
//! for the format: 512-byte headers, each followed by the member's data.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use steps::Error;

/// How much of a JSON document (index, manifest, config) is read at most:
/// real ones are kilobytes; this stops a wrong file from filling memory.
const JSON_LIMIT: u64 = 16 << 20;

/// Where one file's bytes are: a whole file, or a stretch of an outer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl Span {
    /// A reader of exactly these bytes.
    pub fn open(&self) -> io::Result<io::Take<File>> {
        let mut file = File::open(&self.file)?;
        if self.offset > 0 {
            file.seek(SeekFrom::Start(self.offset))?;
        }
        Ok(file.take(self.len))
    }

    /// The first bytes, to tell a gzip stream from a tar by its magic.
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        self.open()?.take(n as u64).read_to_end(&mut head)?;
        Ok(head)
    }
}

/// A member of an indexed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    File {
        offset: u64,
        len: u64,
    },
    /// A symbolic or hard link, by the member path it leads to
    /// (`docker save` links a layer shared by two images).
    Link(String),
}

#[derive(Debug)]
enum Kind {
    Dir,
    Tar(HashMap<String, Member>),
}

/// An image source, opened and (for a tar) indexed.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    kind: Kind,
}

impl Source {
    /// Opens a directory as it is, or indexes a tar.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let metadata = std::fs::metadata(path).map_err(|e| {
            Error::usage(format!("{}: {}", path.display(), io_text(&e))).hint(
                "give an OCI image layout (a directory with index.json), \
                 or a tar made by docker save or of an OCI layout",
            )
        })?;
        if metadata.is_dir() {
            return Ok(Self {
                path: path.to_path_buf(),
                kind: Kind::Dir,
            });
        }
        let head = Span {
            file: path.to_path_buf(),
            offset: 0,
            len: 512,
        }
        .head(512)
        .map_err(|e| Error::usage(format!("{}: {}", path.display(), io_text(&e))))?;
        if head.starts_with(&[0x1f, 0x8b]) {
            return Err(Error::usage(format!(
                "{}: a gzip-compressed file; import reads the tar inside it by offset, so it must be uncompressed",
                path.display()
            ))
            .hint(format!("gunzip it first: gunzip -k {}", path.display())));
        }
        if head.len() < 512 || &head[257..262] != b"ustar" {
            return Err(Error::usage(format!(
                "{}: not an image: neither a directory nor a tar",
                path.display()
            ))
            .hint("give an OCI image layout directory, or a tar from docker save"));
        }
        let members = index_tar(path).map_err(|e| {
            Error::usage(format!("{}: cannot read it as a tar: {e}", path.display()))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            kind: Kind::Tar(members),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_tar(&self) -> bool {
        matches!(self.kind, Kind::Tar(_))
    }

    /// How a file of the image is named in messages: `L/index.json` for a
    /// directory, `image.tar:index.json` for a member of a tar.
    pub fn name(&self, member: &str) -> String {
        match self.kind {
            Kind::Dir => self.path.join(member).display().to_string(),
            Kind::Tar(_) => format!("{}:{member}", self.path.display()),
        }
    }

    /// Where a file of the image is, if it is there. `member` is a relative
    /// path from the image itself; one that leaves the image is refused.
    pub fn locate(&self, member: &str) -> Result<Option<Span>, Error> {
        let Some(clean) = normalize(member) else {
            return Err(Error::usage(format!(
                "{}: the path {member:?} leaves the image",
                self.path.display()
            )));
        };
        match &self.kind {
            Kind::Dir => {
                let file = self.path.join(&clean);
                match std::fs::metadata(&file) {
                    Ok(m) if m.is_file() => Ok(Some(Span {
                        file,
                        offset: 0,
                        len: m.len(),
                    })),
                    _ => Ok(None),
                }
            }
            Kind::Tar(members) => {
                let mut name = clean;
                // A link may lead to a link; a loop ends after a few hops.
                for _ in 0..16 {
                    match members.get(&name) {
                        Some(Member::File { offset, len }) => {
                            return Ok(Some(Span {
                                file: self.path.clone(),
                                offset: *offset,
                                len: *len,
                            }));
                        }
                        Some(Member::Link(target)) => name = target.clone(),
                        None => return Ok(None),
                    }
                }
                Ok(None)
            }
        }
    }

    pub fn has(&self, member: &str) -> bool {
        matches!(self.locate(member), Ok(Some(_)))
    }

    /// Reads a small file of the image whole (a JSON document).
    pub fn read(&self, member: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(span) = self.locate(member)? else {
            return Ok(None);
        };
        if span.len > JSON_LIMIT {
            return Err(Error::usage(format!(
                "{}: {} bytes is too big for image metadata",
                self.name(member),
                span.len
            )));
        }
        let mut bytes = Vec::with_capacity(span.len as usize);
        span.open()
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .map_err(|e| Error::setup(format!("read {}: {}", self.name(member), io_text(&e))))?;
        Ok(Some(bytes))
    }
}

/// One pass over a tar's headers: where each member's data is.
fn index_tar(path: &Path) -> io::Result<HashMap<String, Member>> {
    let mut archive = tar::Archive::new(File::open(path)?);
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let raw = entry.path_bytes();
        let Some(name) = std::str::from_utf8(&raw).ok().and_then(normalize) else {
            continue;
        };
        let header = entry.header();
        let member = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                offset: entry.raw_file_position(),
                len: entry.size(),
            },
            tar::EntryType::Symlink => {
                let target = link_target(&entry);
                let parent = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                match normalize(&format!("{parent}/{target}")) {
                    Some(target) => Member::Link(target),
                    None => continue,
                }
            }
            tar::EntryType::Link => match normalize(&link_target(&entry)) {
                Some(target) => Member::Link(target),
                None => continue,
            },
            _ => continue,
        };
        members.insert(name, member);
    }
    Ok(members)
}

fn link_target(entry: &tar::Entry<'_, File>) -> String {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `./blobs//sha256/x` → `blobs/sha256/x`; `a/../b` → `b`; `None` for a
/// path that climbs out of the image or is absolute.
fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// `no such file or directory`: an io error the way the C library words it.
pub use steps::error::describe_io as io_text;

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(members: &[(&str, &[u8])], links: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        for (name, target) in links {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, name, target).unwrap();
        }
        builder.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn a_tar_is_read_by_offset_and_links_are_followed() {
        let (_dir, path) = tar_with(
            &[("./index.json", b"{}"), ("abc/layer.tar", b"layer bytes")],
            &[("def/layer.tar", "../abc/layer.tar")],
        );
        let source = Source::open(&path).unwrap();
        assert!(source.is_tar());
        assert_eq!(source.read("index.json").unwrap().unwrap(), b"{}");
        let span = source.locate("def/layer.tar").unwrap().unwrap();
        assert_eq!(span.len, 11);
        assert_eq!(span.offset % 512, 0);
        let mut text = String::new();
        span.open().unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "layer bytes");
        assert!(source.locate("missing").unwrap().is_none());
        assert_eq!(
            source.name("index.json"),
            format!("{}:index.json", path.display())
        );
    }

    #[test]
    fn paths_that_leave_the_image_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::open(dir.path()).unwrap();
        assert!(source.locate("../etc/passwd").is_err());
        assert!(source.locate("/etc/passwd").is_err());
        assert_eq!(normalize("./a//b/./c"), Some("a/b/c".into()));
        assert_eq!(normalize("a/../b"), Some("b".into()));
        assert_eq!(normalize("a/../../b"), None);
    }

    #[test]
    fn what_is_not_an_image_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Source::open(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.code(), steps::exit::USAGE);
        assert!(
            missing
                .to_string()
                .contains("no such file or directory (ENOENT); hint: give an OCI image layout")
        );

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let error = Source::open(&text).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not an image: neither a directory nor a tar"),
            "{error}"
        );

        let gz = dir.path().join("image.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        let error = Source::open(&gz).unwrap_err();
        assert!(error.to_string().contains("gzip-compressed"), "{error}");
        assert!(
            error.to_string().contains("hint: gunzip it first"),
            "{error}"
        );
    }
}
