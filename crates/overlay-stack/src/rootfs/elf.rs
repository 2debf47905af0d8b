//! One fact read from an ELF executable: does it name a program
//! interpreter?
//!
//! An ELF file opens with a small header that says where its *program
//! headers* are: the table `execve(2)` reads to map the file into memory.
//! One entry type, `PT_INTERP`, holds a path — the dynamic loader, such as
//! `/lib64/ld-linux-x86-64.so.2`. When it is there the kernel maps the
//! loader as well and starts the process in the loader, which then maps the
//! shared libraries the program needs before jumping to it. When it is not
//! there the program is *static*: the kernel jumps straight into it, and it
//! needs no other file at all — which is why one static busybox is enough
//! for a whole root filesystem.
//!
//! Only the few fields needed for that are read here, at the offsets
//! elf(5) gives for 32- and 64-bit files of either byte order:
//! <https://man7.org/linux/man-pages/man5/elf.5.html>.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use steps::Error;

use super::io_error;

/// The four bytes every ELF file starts with.
pub const MAGIC: &[u8; 4] = b"\x7fELF";
/// The program header type that names the program interpreter.
pub const PT_INTERP: u32 = 3;
/// A longer interpreter path than this is not a path (`PATH_MAX`).
const MAX_INTERP: u64 = 4096;

/// What the kernel does to start a file, as far as a rootfs cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executable {
    /// An ELF file without `PT_INTERP`: needs nothing but itself.
    Static,
    /// An ELF file whose `PT_INTERP` names this loader.
    Dynamic { interpreter: PathBuf },
    /// Not ELF at all: a script, or not a program.
    NotElf,
}

/// Reads `path`'s ELF header and program headers.
pub fn read(path: &Path) -> Result<Executable, Error> {
    let file = File::open(path).map_err(|e| io_error(format!("open \"{}\"", path.display()), e))?;
    parse(|offset, len| {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    })
    .map_err(|e| match e {
        Malformed::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => Error::setup(format!(
            "\"{}\" is not a valid ELF file: it ends before its headers do (truncated?)",
            path.display()
        )),
        Malformed::Io(e) => io_error(format!("read \"{}\"", path.display()), e),
        Malformed::Header(what) => Error::setup(format!(
            "\"{}\" is not a valid ELF file: {what}",
            path.display()
        )),
    })
}

/// Why an ELF file could not be read.
#[derive(Debug)]
pub enum Malformed {
    Io(io::Error),
    Header(&'static str),
}

impl From<io::Error> for Malformed {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// The byte order and word size, from `e_ident[EI_CLASS]` and
/// `e_ident[EI_DATA]`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    wide: bool,
    big_endian: bool,
}

impl Layout {
    fn u16(self, bytes: &[u8], at: usize) -> u64 {
        let b = [bytes[at], bytes[at + 1]];
        u64::from(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> u64 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        u64::from(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(self, bytes: &[u8], at: usize) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }

    /// An address-sized field: 8 bytes in a 64-bit file, 4 in a 32-bit one.
    fn word(self, bytes: &[u8], at: usize) -> u64 {
        if self.wide {
            self.u64(bytes, at)
        } else {
            self.u32(bytes, at)
        }
    }
}

/// Reads the headers through `read_at(offset, len)`, which returns exactly
/// `len` bytes from `offset` or fails.
pub fn parse(read_at: impl Fn(u64, usize) -> io::Result<Vec<u8>>) -> Result<Executable, Malformed> {
    // e_ident is 16 bytes: the magic, EI_CLASS (1 = 32-bit, 2 = 64-bit),
    // EI_DATA (1 = little-endian, 2 = big-endian), then the version and ABI.
    let ident = match read_at(0, 16) {
        Ok(ident) => ident,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Executable::NotElf),
        Err(e) => return Err(e.into()),
    };
    if &ident[..4] != MAGIC {
        return Ok(Executable::NotElf);
    }
    let wide = match ident[4] {
        1 => false,
        2 => true,
        _ => return Err(Malformed::Header("unknown EI_CLASS")),
    };
    let big_endian = match ident[5] {
        1 => false,
        2 => true,
        _ => return Err(Malformed::Header("unknown EI_DATA")),
    };
    let layout = Layout { wide, big_endian };
    // The rest of the file header, Elf32_Ehdr (52 bytes) or Elf64_Ehdr (64):
    // where the program headers start (e_phoff), how big one is
    // (e_phentsize) and how many there are (e_phnum).
    let (size, phoff_at, phentsize_at, phnum_at) = if wide {
        (64, 0x20, 0x36, 0x38)
    } else {
        (52, 0x1c, 0x2a, 0x2c)
    };
    let header = read_at(0, size)?;
    let phoff = layout.word(&header, phoff_at);
    let phentsize = layout.u16(&header, phentsize_at);
    let phnum = layout.u16(&header, phnum_at);
    // Each program header starts with p_type; p_offset and p_filesz say
    // where in the file the segment's bytes are.
    let (min_entry, offset_at, filesz_at) = if wide { (56, 8, 32) } else { (32, 4, 16) };
    if phnum > 0 && phentsize < min_entry {
        return Err(Malformed::Header("e_phentsize is too small"));
    }
    for index in 0..phnum {
        let entry = read_at(phoff + index * phentsize, min_entry as usize)?;
        if layout.u32(&entry, 0) != u64::from(PT_INTERP) {
            continue;
        }
        let offset = layout.word(&entry, offset_at);
        let len = layout.word(&entry, filesz_at);
        if len == 0 || len > MAX_INTERP {
            return Err(Malformed::Header("PT_INTERP has an impossible size"));
        }
        // The segment is the path with its terminating NUL.
        let mut path = read_at(offset, len as usize)?;
        if let Some(end) = path.iter().position(|b| *b == 0) {
            path.truncate(end);
        }
        use std::os::unix::ffi::OsStringExt;
        let interpreter = PathBuf::from(std::ffi::OsString::from_vec(path));
        return Ok(Executable::Dynamic { interpreter });
    }
    Ok(Executable::Static)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: Vec<u8>) -> impl Fn(u64, usize) -> io::Result<Vec<u8>> {
        move |offset, len| {
            let start = offset as usize;
            bytes
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
        }
    }

    /// A 64-bit little-endian header with one PT_LOAD and, if given, a
    /// PT_INTERP pointing at `interp`.
    fn elf64(interp: Option<&str>) -> Vec<u8> {
        let mut file = vec![0u8; 64];
        file[..4].copy_from_slice(MAGIC);
        file[4] = 2;
        file[5] = 1;
        let phnum: u16 = if interp.is_some() { 2 } else { 1 };
        file[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        file[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        file[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        let mut load = vec![0u8; 56];
        load[..4].copy_from_slice(&1u32.to_le_bytes());
        file.extend(load);
        if let Some(path) = interp {
            let at = 64 + 2 * 56;
            let mut entry = vec![0u8; 56];
            entry[..4].copy_from_slice(&PT_INTERP.to_le_bytes());
            entry[8..16].copy_from_slice(&(at as u64).to_le_bytes());
            entry[32..40].copy_from_slice(&(path.len() as u64 + 1).to_le_bytes());
            file.extend(entry);
            file.extend(path.as_bytes());
            file.push(0);
        }
        file
    }

    /// The same in a 32-bit big-endian file (as on MIPS or old PowerPC).
    fn elf32_be(interp: &str) -> Vec<u8> {
        let mut file = vec![0u8; 52];
        file[..4].copy_from_slice(MAGIC);
        file[4] = 1;
        file[5] = 2;
        file[0x1c..0x20].copy_from_slice(&52u32.to_be_bytes());
        file[0x2a..0x2c].copy_from_slice(&32u16.to_be_bytes());
        file[0x2c..0x2e].copy_from_slice(&1u16.to_be_bytes());
        let mut entry = vec![0u8; 32];
        entry[..4].copy_from_slice(&PT_INTERP.to_be_bytes());
        entry[4..8].copy_from_slice(&84u32.to_be_bytes());
        entry[16..20].copy_from_slice(&(interp.len() as u32 + 1).to_be_bytes());
        file.extend(entry);
        file.extend(interp.as_bytes());
        file.push(0);
        file
    }

    #[test]
    fn a_pt_interp_names_the_loader() {
        assert_eq!(
            parse(reader(elf64(Some("/lib64/ld-linux-x86-64.so.2")))).unwrap(),
            Executable::Dynamic {
                interpreter: "/lib64/ld-linux-x86-64.so.2".into()
            }
        );
        assert_eq!(
            parse(reader(elf32_be("/lib/ld.so.1"))).unwrap(),
            Executable::Dynamic {
                interpreter: "/lib/ld.so.1".into()
            }
        );
    }

    #[test]
    fn no_pt_interp_is_static() {
        assert_eq!(parse(reader(elf64(None))).unwrap(), Executable::Static);
    }

    #[test]
    fn scripts_and_short_files_are_not_elf() {
        assert_eq!(
            parse(reader(b"#!/bin/sh\necho hello from a script\n".to_vec())).unwrap(),
            Executable::NotElf
        );
        assert_eq!(
            parse(reader(b"\x7fEL".to_vec())).unwrap(),
            Executable::NotElf
        );
    }

    #[test]
    fn a_truncated_header_is_malformed() {
        let mut file = elf64(Some("/lib/ld.so"));
        file.truncate(100);
        assert!(matches!(parse(reader(file)), Err(Malformed::Io(_))));
        let mut file = elf64(None);
        file[4] = 9;
        assert!(matches!(parse(reader(file)), Err(Malformed::Header(_))));
    }

    #[test]
    fn the_hosts_ls_is_dynamic_and_its_loader_exists() {
        let ls = ["/bin/ls", "/usr/bin/ls"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("ls");
        match read(ls).unwrap() {
            Executable::Dynamic { interpreter } => {
                assert!(interpreter.is_absolute(), "{interpreter:?}");
                assert!(interpreter.exists(), "{interpreter:?}");
            }
            // A host built statically (rare) is fine too.
            Executable::Static => {}
            Executable::NotElf => panic!("{ls:?} is not ELF"),
        }
    }

    #[test]
    fn a_static_busybox_has_no_loader() {
        let Some(busybox) = super::super::busybox::find() else {
            eprintln!("skipped: no busybox on $PATH");
            return;
        };
        let seen = read(&busybox).unwrap();
        // `file` says the same thing in its own words.
        let file = std::process::Command::new("file")
            .arg("-L")
            .arg(&busybox)
            .output();
        if let Ok(out) = file {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("statically linked") {
                assert_eq!(seen, Executable::Static, "{text}");
            } else if text.contains("interpreter") {
                assert!(matches!(seen, Executable::Dynamic { .. }), "{text}");
            }
        }
    }
}
