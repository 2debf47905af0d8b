//! How a layer records what it deletes.
//!
//! A read-only lower layer cannot lose a file, so a deletion is written
//! into the layer above as a marker. Two formats exist, and this module is
//! where both are spelled out:
//!
//! * **overlayfs on disk** (what the kernel reads from an upper or lower
//!   directory): a deleted file or directory is a *whiteout*, a character
//!   device with device number 0:0 under the same name; a directory that
//!   was deleted and made again is *opaque*, marked by the extended
//!   attribute `trusted.overlay.opaque="y"` (`user.overlay.opaque` when the
//!   stack is mounted with `userxattr` inside a user namespace), and hides
//!   everything beneath it in the layers below. See
//!   <https://docs.kernel.org/filesystems/overlayfs.html#whiteouts-and-opaque-directories>.
//! * **image layers in a tar** (OCI and `docker save`), where a device
//!   number cannot be trusted to survive: `.wh.NAME` deletes `NAME`, and
//!   `.wh..wh..opq` in a directory makes it opaque. See
//!   <https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>.
//!
//! Import turns the second into the first; a layer dir is always in the
//! overlayfs format.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

/// The prefix of a deletion marker in an image layer's tar.
pub const TAR_WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the marker that makes its directory opaque in an image
/// layer's tar.
pub const TAR_OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Which extended-attribute namespace overlayfs keeps its markers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrNamespace {
    /// `trusted.overlay.*`: the default; only a process with
    /// `CAP_SYS_ADMIN` in the initial user namespace may read or write it.
    Trusted,
    /// `user.overlay.*`: with the mount option `userxattr`, which an
    /// overlay mounted inside a user namespace (Linux 5.11+) must use.
    User,
}

impl XattrNamespace {
    /// The namespace a stack mounted by this process uses: `user` inside a
    /// user namespace, `trusted` otherwise.
    pub fn for_this_process() -> Self {
        if in_user_namespace() {
            Self::User
        } else {
            Self::Trusted
        }
    }

    /// The attribute that marks a directory opaque.
    pub fn opaque(self) -> &'static str {
        match self {
            Self::Trusted => "trusted.overlay.opaque",
            Self::User => "user.overlay.opaque",
        }
    }
}

/// Whether `dir`'s filesystem keeps `user.*` attributes, which overlayfs
/// needs for its marks when mounted in a user namespace (tmpfs keeps them
/// only from Linux 6.6). Asking for an attribute that is not there tells,
/// without writing anything: `ENODATA` where the namespace is kept,
/// `EOPNOTSUPP` where it is not.
pub fn keeps_user_xattrs(dir: &Path) -> bool {
    !matches!(
        xattr::get(dir, "user.underhood.probe"),
        Err(e) if e.raw_os_error() == Some(Errno::EOPNOTSUPP as i32)
    )
}

/// Whether this process runs in a user namespace other than the initial
/// one: there, `/proc/self/uid_map` maps less than the whole range of ids.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let whole = map
                .split_whitespace()
                .collect::<Vec<_>>()
                .eq(&["0", "0", "4294967295"]);
            !whole
        }
        Err(_) => false,
    }
}

/// Whether a directory entry is an overlayfs whiteout: a character device
/// numbered 0:0.
pub fn is_whiteout(metadata: &Metadata) -> bool {
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

/// Makes `path` a whiteout: `mknod(path, S_IFCHR|0000, makedev(0, 0))`.
/// Since Linux 5.8 this needs no `CAP_MKNOD`.
pub fn make_whiteout(path: &Path) -> Result<(), Errno> {
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
}

/// Whether a directory is opaque in either namespace.
pub fn is_opaque(dir: &Path) -> bool {
    [XattrNamespace::Trusted, XattrNamespace::User]
        .iter()
        .any(|ns| is_opaque_in(dir, *ns))
}

/// Whether a directory carries the opaque marker of one namespace.
pub fn is_opaque_in(dir: &Path, namespace: XattrNamespace) -> bool {
    matches!(xattr::get(dir, namespace.opaque()), Ok(Some(value)) if value == b"y")
}

/// Marks a directory opaque: `setxattr(dir, "trusted.overlay.opaque", "y")`.
pub fn make_opaque(dir: &Path, namespace: XattrNamespace) -> std::io::Result<()> {
    xattr::set(dir, namespace.opaque(), b"y")
}

/// What a tar entry's file name means for the layer, by the OCI rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarName<'a> {
    /// A file to unpack as it is.
    Plain,
    /// `.wh..wh..opq`: the directory it is in is opaque.
    Opaque,
    /// `.wh.NAME`: `NAME` is deleted.
    Whiteout(&'a OsStr),
}

/// Classifies the last component of a tar entry's path.
pub fn tar_name(name: &OsStr) -> TarName<'_> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes == TAR_OPAQUE_MARKER.as_bytes() {
        TarName::Opaque
    } else if let Some(rest) = bytes.strip_prefix(TAR_WHITEOUT_PREFIX.as_bytes()) {
        TarName::Whiteout(OsStr::from_bytes(rest))
    } else {
        TarName::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_names_follow_the_oci_rules() {
        assert_eq!(tar_name(OsStr::new("motd")), TarName::Plain);
        assert_eq!(tar_name(OsStr::new(".wh..wh..opq")), TarName::Opaque);
        assert_eq!(
            tar_name(OsStr::new(".wh.motd")),
            TarName::Whiteout(OsStr::new("motd"))
        );
        assert_eq!(
            tar_name(OsStr::new(".wh..profile")),
            TarName::Whiteout(OsStr::new(".profile"))
        );
        assert_eq!(tar_name(OsStr::new(".whatever")), TarName::Plain);
    }

    #[test]
    fn opaque_attribute_names() {
        assert_eq!(XattrNamespace::Trusted.opaque(), "trusted.overlay.opaque");
        assert_eq!(XattrNamespace::User.opaque(), "user.overlay.opaque");
    }
}
