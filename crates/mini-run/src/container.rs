//! What a container is to be, checked: the flags of `mini-run run` turned
//! into a [`Container`] before anything is made. Everything a flag can get
//! wrong is refused here, with the flag named and the fix, so a bad run
//! leaves nothing behind because it never starts.

use std::path::{Component, Path, PathBuf};

use cg_limit::controller::Limits;
use cg_limit::units::{Bytes, parse_cpus, parse_size};
use overlay_stack::image::Image;
use steps::Error;

use crate::cli::RunArgs;

/// The `PATH` a container gets when neither the image nor `-e` sets one:
/// Docker's default.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// The default busybox rootfs (overlay-stack rootfs), as the one
    /// read-only layer under the container's own upper layer.
    Default,
    /// An image imported by `overlay-stack import`: its layers, top first.
    Image { dir: PathBuf, lowers: Vec<PathBuf> },
    /// `--rootfs DIR`: the directory itself, writable, no overlay.
    Dir(PathBuf),
}

/// How the container reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own with only loopback.
    None,
    /// The host's network namespace: no isolation at all.
    Host,
    /// A network namespace of its own, plugged into a bridge of the
    /// toolkit's by a veth pair: [`DEFAULT_BRIDGE`] (made on first use,
    /// with NAT, like docker0), or one made with `veth-bridge bridge add`.
    Bridge(String),
}

/// The bridge `--network bridge` means, made on first use: the toolkit's
/// docker0.
pub const DEFAULT_BRIDGE: &str = "underhood0";

/// A port published with `-p HOSTPORT:CTRPORT[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub host: u16,
    pub container: u16,
    pub proto: veth_bridge::nft::Proto,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.container, self.proto)
    }
}

/// What a `-v` mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `-v /host/path:…`: a bind mount of the host's own file or directory.
    Host(PathBuf),
    /// `-v NAME:…`: a named volume, kept by mini-run.
    Named(String),
}

/// `-v /host/path:/ctr/path[:ro]` or `-v NAME:/ctr/path[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: Source,
    /// Absolute, inside the container.
    pub target: PathBuf,
    pub read_only: bool,
}

/// A user and group to run as, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// A container as `mini-run run` was asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub root: Root,
    /// argv: never empty.
    pub command: Vec<String>,
    /// `NAME=VALUE`, in order; `PATH` always among them.
    pub env: Vec<String>,
    /// Absolute, inside the container.
    pub workdir: PathBuf,
    pub user: Option<User>,
    /// `None`: the container's short id, known once it has one.
    pub hostname: Option<String>,
    pub limits: Limits,
    pub network: Network,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    /// `--init`: pid 1 is mini-run's tiny init, the command pid 2.
    pub init: bool,
    /// `-t`: a terminal of the container's own.
    pub tty: bool,
    /// Rootless: a user namespace, its root standing for these host ids.
    pub userns: Option<crate::rootless::IdMap>,
    /// `--name`.
    pub name: Option<String>,
    /// `--rm`: its state goes when the command ends, instead of being kept
    /// for `ps -a`, `logs` and `inspect` until `mini-run rm`.
    pub remove: bool,
    /// `-d`: in the background, its output to a log.
    pub detach: bool,
}

impl Container {
    /// Checks the flags; reads an image's record, nothing else.
    pub fn from_args(args: &RunArgs) -> Result<Self, Error> {
        let (root, image) = root(args)?;
        let config = image.as_ref().map(|i| i.config().clone());
        let command = match (&config, args.command.is_empty()) {
            (_, false) => match &config {
                // Docker: arguments after the image replace its CMD and
                // follow its ENTRYPOINT.
                Some(c) => c.entrypoint.iter().chain(&args.command).cloned().collect(),
                None => args.command.clone(),
            },
            (Some(c), true) => c.entrypoint.iter().chain(&c.cmd).cloned().collect(),
            (None, true) => vec!["sh".to_string()],
        };
        if command.is_empty() {
            return Err(Error::usage(
                "the image names no command (no Entrypoint or Cmd); give one after --",
            ));
        }
        if command[0].is_empty() {
            return Err(Error::usage(
                "the command is empty; give a program after --",
            ));
        }
        let mut env: Vec<String> = config.as_ref().map(|c| c.env.clone()).unwrap_or_default();
        for text in &args.env {
            set_env(&mut env, env_entry(text)?);
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let workdir = match args
            .workdir
            .as_deref()
            .or(config.as_ref().and_then(|c| c.working_dir.as_deref()))
        {
            Some(dir) => inside_path("--workdir", dir)?,
            None => PathBuf::from("/"),
        };
        let user = args.user.as_deref().map(parse_user).transpose()?;
        let hostname = args.hostname.as_deref().map(hostname).transpose()?;
        if let Some(name) = &args.name {
            crate::record::check_name(name).map_err(Error::usage)?;
        }
        if args.detach && (args.tty || args.interactive) {
            return Err(Error::usage(
                "-d with -i or -t: a detached container reads nothing, and mini-run cannot attach to it later; run -d without them, then mini-run exec -it ID sh",
            ));
        }
        Ok(Self {
            root,
            command,
            env,
            workdir,
            user,
            hostname,
            limits: limits(args)?,
            network: network(args.network())?,
            ports: ports(args)?,
            volumes: args
                .volumes
                .iter()
                .map(|v| volume(v))
                .collect::<Result<_, _>>()?,
            init: args.init,
            tty: args.tty,
            userns: None,
            name: args.name.clone(),
            remove: args.remove,
            detach: args.detach,
        })
    }
}

fn root(args: &RunArgs) -> Result<(Root, Option<Image>), Error> {
    if let Some(dir) = &args.rootfs {
        let shown = dir.display();
        let meta = std::fs::metadata(dir).map_err(|e| {
            Error::usage(format!(
                "--rootfs {shown}: {}; give a directory holding a root filesystem (overlay-stack rootfs DIR makes one)",
                steps::error::describe_io(&e)
            ))
        })?;
        if !meta.is_dir() {
            return Err(Error::usage(format!(
                "--rootfs {shown}: not a directory; give a directory holding a root filesystem"
            )));
        }
        let real =
            std::fs::canonicalize(dir).map_err(|e| Error::io(format!("realpath({shown})"), &e))?;
        if real == Path::new("/") {
            return Err(Error::usage(format!(
                "--rootfs {shown}: that is the host's own /; a container on it would share every host file; give a rootfs directory (overlay-stack rootfs DIR makes one)"
            )));
        }
        return Ok((Root::Dir(real), None));
    }
    match &args.image {
        None => Ok((Root::Default, None)),
        Some(dir) => {
            let image = Image::load(dir)?;
            let lowers = image.lowers(dir);
            Ok((
                Root::Image {
                    dir: std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
                    lowers,
                },
                Some(image),
            ))
        }
    }
}

fn limits(args: &RunArgs) -> Result<Limits, Error> {
    let memory = args
        .memory
        .as_deref()
        .map(|m| match parse_size(m) {
            Ok(Bytes::Limit(0)) => Err("0 would leave no memory at all".to_string()),
            other => other,
        })
        .transpose()
        .map_err(|e| Error::usage(format!("--memory: {e}")))?;
    let cpus = args
        .cpus
        .as_deref()
        .map(parse_cpus)
        .transpose()
        .map_err(|e| Error::usage(format!("--cpus: {e}")))?;
    let pids = args
        .pids
        .as_deref()
        .map(cg_limit::controller::pids::parse)
        .transpose()
        .map_err(|e| Error::usage(format!("--pids-limit: {e}")))?;
    Ok(Limits {
        memory,
        cpus,
        pids,
        ..Limits::default()
    })
}

/// `NAME=VALUE`, or `NAME` for the host's value (left out if unset), as
/// `docker run -e` reads it.
fn env_entry(text: &str) -> Result<Option<String>, Error> {
    let name = text.split_once('=').map_or(text, |(n, _)| n);
    if name.is_empty() || name.contains('\0') || text.contains('\0') {
        return Err(Error::usage(format!(
            "-e {text:?}: not NAME=VALUE; a variable needs a name"
        )));
    }
    if text.contains('=') {
        return Ok(Some(text.to_string()));
    }
    Ok(std::env::var(name)
        .ok()
        .map(|value| format!("{name}={value}")))
}

fn set_env(env: &mut Vec<String>, entry: Option<String>) {
    let Some(entry) = entry else { return };
    let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
    let prefix = format!("{name}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(old) => *old = entry,
        None => env.push(entry),
    }
}

/// An absolute path inside the container, without `..`: a mount target or
/// working directory, resolved later inside the rootfs.
fn inside_path(flag: &str, text: &str) -> Result<PathBuf, Error> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(Error::usage(format!(
            "{flag} {text:?}: a path inside the container must be absolute (start with /)"
        )));
    }
    if path.components().any(|c| c == Component::ParentDir) || text.contains('\0') {
        return Err(Error::usage(format!(
            "{flag} {text:?}: a path inside the container may not contain .."
        )));
    }
    Ok(path.to_path_buf())
}

pub(crate) fn parse_user(text: &str) -> Result<User, Error> {
    let number = |part: &str| part.parse::<u32>().ok().filter(|n| *n != u32::MAX);
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (number(u), number(g)),
        None => (number(text), number(text)),
    };
    match (uid, gid) {
        (Some(uid), Some(gid)) => Ok(User { uid, gid }),
        _ => Err(Error::usage(format!(
            "-u {text:?}: give the user and group by number, UID[:GID] (mini-run does not read the image's /etc/passwd)"
        ))),
    }
}

/// A hostname as sethostname(2) and RFC 1123 take it.
fn hostname(text: &str) -> Result<String, Error> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(text.to_string())
    } else {
        Err(Error::usage(format!(
            "--hostname {text:?}: use letters, digits, '-' and '.', at most 63, not starting with '-'"
        )))
    }
}

/// `-v /host/path:/ctr/path[:ro|:rw]`.
fn volume(text: &str) -> Result<Volume, Error> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => {
            return Err(Error::usage(format!(
                "-v {text:?}: give HOST:CTR or NAME:CTR, with :ro to make it read-only, e.g. -v /srv/data:/data:ro"
            )));
        }
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => {
            return Err(Error::usage(format!(
                "-v {text:?}: {other:?} is not a mode; use ro or rw"
            )));
        }
    };
    let source = if source.starts_with('/') {
        let path = std::fs::canonicalize(source).map_err(|e| {
            Error::usage(format!(
                "-v {text:?}: {source}: {}; the host side must exist",
                steps::error::describe_io(&e)
            ))
        })?;
        Source::Host(path)
    } else if source.contains('/') {
        return Err(Error::usage(format!(
            "-v {text:?}: give the host side as an absolute path, or a volume's name"
        )));
    } else {
        crate::volume::check_name(source).map_err(|e| Error::usage(format!("-v {text:?}: {e}")))?;
        Source::Named(source.to_string())
    };
    let target = inside_path("-v", target)?;
    // As runc: / is the image's, and /proc the container's own proc.
    if target == Path::new("/") {
        return Err(Error::usage(format!(
            "-v {text:?}: the target cannot be /, which is the image's root; bind to a directory below it, e.g. -v {}:/data",
            text.split(':').next().unwrap_or("")
        )));
    }
    if target.starts_with("/proc") {
        return Err(Error::usage(format!(
            "-v {text:?}: {} is in /proc, which the container's own proc covers; bind elsewhere",
            target.display()
        )));
    }
    Ok(Volume {
        source,
        target,
        read_only,
    })
}

/// `--network none|host|bridge|BRIDGE`.
fn network(text: &str) -> Result<Network, Error> {
    match text {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "bridge" => Ok(Network::Bridge(DEFAULT_BRIDGE.into())),
        name => match veth_bridge::cli::interface_name("--network", name) {
            Ok(()) => Ok(Network::Bridge(name.into())),
            Err(_) if name.len() > 15 => Err(Error::usage(format!(
                "--network {name:?}: a bridge's name is at most 15 bytes (the kernel's IFNAMSIZ), \
                 this is {}; use bridge (the default), none, host, or a bridge made with veth-bridge bridge add",
                name.len()
            ))),
            Err(_) => Err(Error::usage(format!(
                "--network {name:?}: not a network; use bridge (the default), none, host, \
                 or a bridge made with veth-bridge bridge add"
            ))),
        },
    }
}

/// `-p HOSTPORT:CTRPORT[/PROTO]`, each host port once.
fn ports(args: &RunArgs) -> Result<Vec<Port>, Error> {
    let mut ports: Vec<Port> = Vec::new();
    for text in &args.publish {
        let (host, container, proto) = veth_bridge::nft::parse_mapping(text)
            .map_err(|e| Error::usage(format!("-p {text}: {e}")))?;
        if ports.iter().any(|p| p.host == host && p.proto == proto) {
            return Err(Error::usage(format!(
                "-p {text}: host port {host}/{proto} is published twice; give each host port once"
            )));
        }
        ports.push(Port {
            host,
            container,
            proto,
        });
    }
    if !ports.is_empty() && !matches!(network(args.network())?, Network::Bridge(_)) {
        return Err(Error::usage(format!(
            "-p publishes a port on a bridge, and --network {} has none; leave --network out \
             (bridge is the default)",
            args.network()
        )));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: impl FnOnce(&mut RunArgs)) -> RunArgs {
        let mut args = RunArgs {
            network: Some("none".into()),
            ..RunArgs::default()
        };
        extra(&mut args);
        args
    }

    #[test]
    fn the_default_is_sh_on_the_busybox_rootfs_with_dockers_path() {
        let c = Container::from_args(&args(|_| {})).unwrap();
        assert_eq!(c.root, Root::Default);
        assert_eq!(c.command, ["sh"]);
        assert_eq!(c.env, [format!("PATH={DEFAULT_PATH}")]);
        assert_eq!(c.workdir, Path::new("/"));
    }

    #[test]
    fn env_replaces_by_name_and_keeps_order() {
        let c = Container::from_args(&args(|a| {
            a.env = vec!["A=1".into(), "B=2".into(), "A=3".into(), "PATH=/bin".into()];
        }))
        .unwrap();
        assert_eq!(c.env, ["A=3", "B=2", "PATH=/bin"]);
        let error = Container::from_args(&args(|a| a.env = vec!["=x".into()])).unwrap_err();
        assert!(error.to_string().contains("-e"), "{error}");
    }

    #[test]
    fn users_are_numbers() {
        assert_eq!(
            parse_user("1000").unwrap(),
            User {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(parse_user("1:2").unwrap(), User { uid: 1, gid: 2 });
        for bad in ["nobody", "1:", ":1", "-1", "4294967295"] {
            assert!(parse_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_need_an_existing_absolute_source_and_a_clean_target() {
        let v = volume("/tmp:/data:ro").unwrap();
        assert_eq!(v.target, Path::new("/data"));
        assert!(v.read_only);
        let named = volume("data:/data").unwrap();
        assert_eq!(named.source, Source::Named("data".into()));
        for bad in [
            "/tmp",
            "/tmp:data",
            "/tmp:/a/../b",
            "/tmp:/data:rx",
            "./data:/data",
            "x:/data",
            "-x:/data",
            "/no/such/dir:/data",
            "/tmp:/data:ro:x",
        ] {
            let error = volume(bad).unwrap_err();
            assert_eq!(error.code(), steps::exit::USAGE, "{bad}");
        }
    }

    #[test]
    fn limits_are_checked_by_cg_limit_s_parsers() {
        let c = Container::from_args(&args(|a| {
            a.memory = Some("64m".into());
            a.pids = Some("20".into());
        }))
        .unwrap();
        assert_eq!(c.limits.memory, Some(Bytes::Limit(64 << 20)));
        for (memory, cpus, pids) in [
            (Some("abc"), None, None),
            (Some("0"), None, None),
            (Some("-1"), None, None),
            (None, Some("0"), None),
            (None, None, Some("0")),
        ] {
            let error = Container::from_args(&args(|a| {
                a.memory = memory.map(Into::into);
                a.cpus = cpus.map(Into::into);
                a.pids = pids.map(Into::into);
            }))
            .unwrap_err();
            assert_eq!(
                error.code(),
                steps::exit::USAGE,
                "{memory:?} {cpus:?} {pids:?}"
            );
        }
    }

    #[test]
    fn a_rootfs_must_be_a_directory_and_not_the_host_root() {
        for bad in ["/", "/etc/passwd", "/no/such/dir"] {
            let error = Container::from_args(&args(|a| a.rootfs = Some(bad.into()))).unwrap_err();
            assert!(error.to_string().starts_with("--rootfs"), "{error}");
        }
    }

    #[test]
    fn hostnames_and_workdirs_are_checked() {
        assert!(hostname("web-1").is_ok());
        for bad in ["", "-x", "a b", &"x".repeat(64)] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
        assert!(inside_path("-w", "relative").is_err());
        assert!(inside_path("-w", "/a/../..").is_err());
    }
}
