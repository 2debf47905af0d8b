//! Content addresses.
//!
//! Every piece of an image — index, manifest, config, layer — is a *blob*
//! named by the SHA-256 of its bytes, written `sha256:` and 64 lower-case
//! hex digits, and referred to by a *descriptor* that gives that digest and
//! the blob's size. A reader that checks both knows it has exactly the bytes
//! the image's author meant: a changed byte changes the digest. A layer has
//! two digests: the blob's (compressed, as shipped) in the manifest, and the
//! *diff_id* (the uncompressed tar) in the config's `rootfs.diff_ids`. See
//! <https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests>.
//!
//! Import reads each blob once and hashes it as it goes: [`Hashing`] sits in
//! the stream and feeds a [`Tally`] every byte that passes.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};
use steps::Error;

/// A `sha256:…` digest, checked to be 64 lower-case hex digits — so it is
/// also safe to use as a file name under `blobs/sha256/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(format!("{text:?} is not a digest (algorithm:hex)"));
        };
        if algorithm != "sha256" {
            return Err(format!(
                "{text:?} uses {algorithm}; only sha256 digests are read"
            ));
        }
        Self::from_hex(hex).ok_or_else(|| format!("{text:?} is not 64 lower-case hex digits"))
    }

    /// A digest from its 64 hex digits alone.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let well_formed = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Self {
            hex: hex.to_string(),
        })
    }

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        let bytes = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in bytes {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self { hex }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// `sha256:3f1a2b3c4d5e`: the short form `docker history` shows.
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex[..12])
    }

    /// `3f1a2b3c4d5e…`: enough to tell blobs apart in a plan.
    pub fn abbrev(&self) -> String {
        format!("{}…", &self.hex[..12])
    }

    /// Where an OCI image layout keeps this blob.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A running SHA-256 and byte count.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    hasher: Sha256,
    bytes: u64,
}

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest and size of everything seen.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.bytes)
    }
}

/// A reader that feeds every byte it passes on to a [`Tally`].
#[derive(Debug)]
pub struct Hashing<'a, R> {
    inner: R,
    tally: &'a mut Tally,
}

impl<'a, R: Read> Hashing<'a, R> {
    pub fn new(inner: R, tally: &'a mut Tally) -> Self {
        Self { inner, tally }
    }

    /// Reads to the end, so that the tally covers the whole stream even
    /// when its consumer stopped early (a tar ends before its padding).
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.update(&buf[..n]);
        Ok(n)
    }
}

/// The error for a blob whose bytes are not the ones its descriptor names.
pub fn mismatch(what: &str, expected: &Digest, actual: &Digest) -> Error {
    Error::setup(format!(
        "{what}: sha256 mismatch: expected {expected}, got {actual}"
    ))
    .hint("the blob is corrupt or was changed after the image was made; get the image again")
}

/// The error for a blob whose size is not the one its descriptor gives.
pub fn size_mismatch(what: &str, expected: u64, actual: u64) -> Error {
    Error::setup(format!(
        "{what}: size mismatch: the descriptor says {expected} bytes, the blob has {actual}"
    ))
    .hint("the blob is truncated or was changed after the image was made; get the image again")
}

/// Checks bytes read whole (a manifest, a config) against a descriptor.
pub fn verify(what: &str, bytes: &[u8], expected: &Digest, size: Option<u64>) -> Result<(), Error> {
    if let Some(size) = size
        && size != bytes.len() as u64
    {
        return Err(size_mismatch(what, size, bytes.len() as u64));
    }
    let actual = Digest::of(bytes);
    if &actual != expected {
        return Err(mismatch(what, expected, &actual));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_parse_only_when_well_formed() {
        let digest = Digest::parse(EMPTY).unwrap();
        assert_eq!(digest.to_string(), EMPTY);
        assert_eq!(digest.short(), "sha256:e3b0c44298fc");
        assert_eq!(digest.abbrev(), "e3b0c44298fc…");
        assert_eq!(
            digest.blob_path(),
            "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(Digest::parse("e3b0").unwrap_err().contains("not a digest"));
        assert!(
            Digest::parse("sha512:abcd")
                .unwrap_err()
                .contains("only sha256")
        );
        assert!(
            Digest::parse("sha256:E3B0")
                .unwrap_err()
                .contains("64 lower-case")
        );
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(Digest::parse(&upper).is_err());
        assert!(Digest::parse("sha256:../../../../etc/passwd").is_err());
    }

    #[test]
    fn the_digest_of_nothing_is_the_well_known_one() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(Tally::new().finish(), (Digest::parse(EMPTY).unwrap(), 0));
    }

    #[test]
    fn hashing_sees_every_byte_even_those_nobody_read() {
        let data = vec![7u8; 100_000];
        let mut tally = Tally::new();
        let mut reader = Hashing::new(&data[..], &mut tally);
        let mut first = [0u8; 10];
        reader.read_exact(&mut first).unwrap();
        reader.drain().unwrap();
        assert_eq!(tally.finish(), (Digest::of(&data), 100_000));
    }

    #[test]
    fn verify_names_expected_and_actual() {
        let expected = Digest::of(b"hello");
        assert!(verify("config", b"hello", &expected, Some(5)).is_ok());
        let error = verify("config sha256:2cf2", b"hellO", &expected, Some(5)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("config sha256:2cf2: sha256 mismatch: expected sha256:2cf24d"),
            "{text}"
        );
        assert!(
            text.contains(&format!("got {}", Digest::of(b"hellO"))),
            "{text}"
        );
        assert_eq!(error.code(), steps::exit::SETUP);
        let error = verify("config", b"hello", &expected, Some(6)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the descriptor says 6 bytes, the blob has 5")
        );
    }
}
