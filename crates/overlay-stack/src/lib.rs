//! # overlay-stack
//!
//! OverlayFS by hand: stack read-only layers under one writable layer,
//! watch copy-on-write and whiteouts happen, turn a writable layer into a
//! new read-only one, build a small root filesystem, and unpack real
//! container images into layers — `mount -t overlay`, `docker diff`,
//! `docker history`, `docker commit` and `docker load`, built to be read.
//!
//! An overlay mount shows several directories as one: the *lower* layers,
//! read-only, topmost first, and one *upper* layer that takes every write.
//! A file changed through the mount is first copied up from the lower
//! layer it was in; a file deleted leaves a whiteout in the upper layer.
//! See <https://docs.kernel.org/filesystems/overlayfs.html>.
//!
//! * [`paths`] checks every path given before anything is made;
//! * [`stack`] checks a stack's directories and builds its mount options;
//! * [`plan`] turns `mount`/`umount` into the [`steps::Plan`] of calls that
//!   it also executes;
//! * [`interrupt`] is what may end a plan between two steps: a Ctrl-C,
//!   or a fault a test injects;
//! * [`mounts`] reads the overlay mounts back from `/proc/self/mountinfo`;
//! * [`whiteout`] is the on-disk format of deletions, in overlayfs and in
//!   image tars;
//! * [`diff`], [`history`] and [`commit`] look at and keep layers;
//! * [`staging`] is where `commit` and `import` make their result before
//!   renaming it into place, and how a killed one's is found again;
//! * [`rootfs`] builds a base root filesystem from the host's busybox;
//! * [`image`] unpacks OCI layouts and `docker save` tarballs into layers.

pub mod cli;
pub mod commit;
pub mod diff;
pub mod history;
pub mod image;
pub mod interrupt;
pub mod mounts;
pub mod paths;
pub mod plan;
pub mod rootfs;
pub mod stack;
pub mod staging;
pub mod tree;
pub mod whiteout;
