//! `mini-run run -f FILE`: a container's options kept in a YAML file, the
//! way `docker compose` keeps a service's. Each key is a flag of
//! `mini-run run` (`memory: 64m` is `--memory 64m`), and each value is
//! checked by the parser that checks the flag, *while the file is read*:
//! that is when the YAML parser still knows where the value is, so every
//! mistake is reported at its line and column,
//! `web.yaml:3:9: memory: 'lots' is not a size …`.
//!
//! The file fills a [`RunArgs`] from underneath ([`Spec::under`]): what
//! the command line says wins. The result goes through
//! [`Container::from_args`] like any command line, so a spec can ask for
//! nothing that the flags cannot.
//!
//! A hand-written [`Visitor`] reads the mapping rather than
//! `#[derive(Deserialize)]`: a derived struct could not hand its fields the
//! file's directory (relative paths are relative to it, as in compose), nor
//! refuse a value because of another key (`image` and `rootfs`; `ports` on
//! `network: none`) at the place where the second one is written. It still
//! refuses unknown keys with the list of known ones, as
//! `#[serde(deny_unknown_fields)]` would.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use steps::Error;

use crate::cli::RunArgs;
use crate::container::Container;

/// The keys a spec may have, in the order `--help` lists them.
pub const KEYS: &[&str] = &[
    "image", "rootfs", "command", "env", "workdir", "user", "hostname", "memory", "cpus", "pids",
    "volumes", "network", "ports", "init", "tty", "userns", "name", "rm",
];

/// What `mini-run run --help` says about `-f`.
pub const HELP: &str = "\
A spec file (-f FILE) holds the same options as YAML, one key per flag:
  image: ./alpine                 # or rootfs: ./tree
  command: [sh, -c, 'echo $GREETING from $(hostname)']
  env:
    GREETING: hello               # NAME: with no value passes the host's on
  workdir: /srv
  user: 1000:1000
  hostname: web
  memory: 64m
  cpus: 0.5
  pids: 20
  volumes: [./site:/www:ro]
  network: bridge                 # the default; or none, host, a bridge's name
  ports: ['8080:80']
  init: true                      # --init
  tty: true                       # -t
  userns: true                    # --userns
  name: web                       # --name
  rm: true                        # --rm
command is a list, as Docker's exec form: no shell splits it. Relative paths
(image, rootfs, a volume's host side written ./ or ../) are relative to the
file's directory. The command line wins: a flag replaces the file's value (an
IMAGE or --rootfs replaces both image and rootfs), -e, -v and -p add to the
file's env, volumes and ports, and a command after -- replaces the file's.
Errors name the file, line and column: web.yaml:8:9: memory: …";

/// A spec file, read and checked: each value as the flag would hold it,
/// paths made absolute. Unset keys are `None` or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub image: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    pub command: Vec<String>,
    /// `NAME=VALUE`, or `NAME` for the host's value, in the file's order.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<String>,
    pub pids: Option<String>,
    /// `HOST:CTR[:ro]`, the host side absolute.
    pub volumes: Vec<String>,
    pub network: Option<String>,
    pub ports: Vec<String>,
    pub init: bool,
    pub tty: bool,
    pub userns: bool,
    pub name: Option<String>,
    pub rm: bool,
}

/// The command line over its `-f` file, or the command line itself.
pub fn apply(args: &RunArgs) -> Result<RunArgs, Error> {
    match &args.file {
        Some(path) => Ok(Spec::load(path)?.under(args)),
        None => Ok(args.clone()),
    }
}

impl Spec {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Spec, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::InvalidData => "not a text file (UTF-8)".to_string(),
                _ => steps::error::describe_io(&e),
            };
            Error::usage(format!(
                "-f {}: {why}; give a YAML file of run options (mini-run run --help shows one)",
                path.display()
            ))
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = absolute.parent().unwrap_or(Path::new("/"));
        Spec::parse(&text, path, dir)
    }

    /// Checks `text`, the file `name`, whose relative paths are relative
    /// to `dir`.
    pub fn parse(text: &str, name: &Path, dir: &Path) -> Result<Spec, Error> {
        let at = |line: usize, column: usize, message: &str| {
            Error::usage(format!("{}:{line}:{column}: {message}", name.display()))
        };
        if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            return Err(at(
                1,
                1,
                "the file holds no options; write one per line, like memory: 64m",
            ));
        }
        let deserializer = yaml_serde::Deserializer::from_str(text);
        SpecVisitor { dir }.deserialize(deserializer).map_err(|e| {
            let message = e.to_string();
            match e.location() {
                // The parser puts the place at the end (or, for a syntax
                // error, before its context); we give it in front.
                Some(l) => {
                    let place = format!(" at line {} column {}", l.line(), l.column());
                    at(l.line(), l.column(), &message.replacen(&place, "", 1))
                }
                // Only what concerns the whole file has no place.
                None => at(1, 1, &message),
            }
        })
    }

    /// The command line `cli` over this file: a flag given there replaces
    /// the file's value, `-e`, `-v` and `-p` come after the file's, and a
    /// command after `--` replaces the file's, as `docker compose run`
    /// does. `IMAGE` and `--rootfs` are one choice, the root: either on the
    /// command line replaces both keys of the file.
    pub fn under(self, cli: &RunArgs) -> RunArgs {
        let (image, rootfs) = if cli.image.is_some() || cli.rootfs.is_some() {
            (cli.image.clone(), cli.rootfs.clone())
        } else {
            (self.image, self.rootfs)
        };
        let then = |file: Vec<String>, flags: &[String]| [file, flags.to_vec()].concat();
        RunArgs {
            image,
            rootfs,
            command: if cli.command.is_empty() {
                self.command
            } else {
                cli.command.clone()
            },
            env: then(self.env, &cli.env),
            workdir: cli.workdir.clone().or(self.workdir),
            user: cli.user.clone().or(self.user),
            hostname: cli.hostname.clone().or(self.hostname),
            memory: cli.memory.clone().or(self.memory),
            cpus: cli.cpus.clone().or(self.cpus),
            pids: cli.pids.clone().or(self.pids),
            volumes: then(self.volumes, &cli.volumes),
            network: cli.network.clone().or(self.network),
            publish: then(self.ports, &cli.publish),
            // A switch given on the command line is on; the file cannot
            // turn one off that the command line turned on.
            init: cli.init || self.init,
            tty: cli.tty || self.tty,
            userns: cli.userns || self.userns,
            name: cli.name.clone().or(self.name),
            remove: cli.remove || self.rm,
            // Whatever a spec cannot say, the command line says alone.
            ..cli.clone()
        }
    }
}

/// The top-level mapping, key by key.
struct SpecVisitor<'a> {
    /// The file's directory, which relative paths are relative to.
    dir: &'a Path,
}

impl<'de> DeserializeSeed<'de> for SpecVisitor<'_> {
    type Value = Spec;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Spec, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SpecVisitor<'_> {
    type Value = Spec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("run options, one per line, like memory: 64m")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spec, A::Error> {
        let mut spec = Spec::default();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(key) = map.next_key_seed(Key { seen: &seen })? {
            seen.push(key);
            self.read_value(key, &mut map, &mut spec)?;
        }
        Ok(spec)
    }
}

impl SpecVisitor<'_> {
    /// Reads the value of `key` into `spec`, checked inside the parser's
    /// call, where an error gets the value's line and column.
    fn read_value<'de, A: MapAccess<'de>>(
        &self,
        key: &str,
        map: &mut A,
        spec: &mut Spec,
    ) -> Result<(), A::Error> {
        let dir = self.dir;
        match key {
            "image" => {
                let seed = Scalar::new(IMAGE, |text| image(spec, dir, text));
                spec.image = Some(map.next_value_seed(seed)?);
            }
            "rootfs" => {
                let seed = Scalar::new(ROOTFS, |text| rootfs(spec, dir, text));
                spec.rootfs = Some(map.next_value_seed(seed)?);
            }
            "command" => spec.command = map.next_value_seed(Command)?,
            "env" => spec.env = map.next_value_seed(Env)?,
            "workdir" => spec.workdir = Some(map.next_value_seed(Scalar::new(WORKDIR, workdir))?),
            "user" => spec.user = Some(map.next_value_seed(Scalar::new(USER, user))?),
            "hostname" => spec.hostname = Some(map.next_value_seed(Scalar::new(HOST, hostname))?),
            "memory" => spec.memory = Some(map.next_value_seed(Scalar::new(MEMORY, memory))?),
            "cpus" => spec.cpus = Some(map.next_value_seed(Scalar::new(CPUS, cpus))?),
            "pids" => spec.pids = Some(map.next_value_seed(Scalar::new(PIDS, pids))?),
            "volumes" => {
                let seed = List::new(VOLUMES, VOLUME, |text, _| volume(dir, text));
                spec.volumes = map.next_value_seed(seed)?;
            }
            "network" => {
                let seed = Scalar::new(NETWORK, |text| network(spec, text));
                spec.network = Some(map.next_value_seed(seed)?);
            }
            "ports" => {
                let seed = List::new(PORTS, PORT, |text, before| port(spec, text, before));
                spec.ports = map.next_value_seed(seed)?;
            }
            "init" => spec.init = map.next_value_seed(Scalar::new(SWITCH, switch))?,
            "tty" => spec.tty = map.next_value_seed(Scalar::new(SWITCH, switch))?,
            "userns" => spec.userns = map.next_value_seed(Scalar::new(SWITCH, switch))?,
            "name" => spec.name = Some(map.next_value_seed(Scalar::new(NAME, name))?),
            "rm" => spec.rm = map.next_value_seed(Scalar::new(SWITCH, switch))?,
            _ => unreachable!("Key lets only KEYS through"),
        }
        Ok(())
    }
}

/// A key of the mapping: one of [`KEYS`], once.
struct Key<'a> {
    seen: &'a [&'static str],
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of the keys {}", KEYS.join(", "))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match KEYS.iter().find(|k| **k == text) {
            None => Err(E::unknown_field(text, KEYS)),
            Some(key) if self.seen.contains(key) => {
                Err(E::custom(format!("{key} is given twice; give it once")))
            }
            Some(key) => Ok(key),
        }
    }
}

/// One value written as a string, a number or a boolean (`cpus: 0.5` is a
/// number to YAML, and `0.5` to us), checked by `check`.
struct Scalar<F> {
    expecting: &'static str,
    check: F,
}

impl<F> Scalar<F> {
    fn new<T>(expecting: &'static str, check: F) -> Self
    where
        F: FnOnce(&str) -> Result<T, String>,
    {
        Self { expecting, check }
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> DeserializeSeed<'de> for Scalar<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Scalar<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        if text.contains('\0') {
            return Err(E::custom(format!("{text:?} holds a NUL byte")));
        }
        (self.check)(text).map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(E::custom(format!(
            "no value; give {}, or leave it out",
            self.expecting
        )))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<T, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        self.visit_str(&value.to_string())
    }
}

/// A list of values, each checked by `check` with the ones before it
/// (the values it returned).
struct List<F> {
    /// What the list holds: `a list of …`.
    expecting: &'static str,
    /// What one item is.
    item: &'static str,
    check: F,
}

impl<F> List<F> {
    fn new(expecting: &'static str, item: &'static str, check: F) -> Self
    where
        F: FnMut(&str, &[String]) -> Result<String, String>,
    {
        Self {
            expecting,
            item,
            check,
        }
    }
}

impl<'de, F: FnMut(&str, &[String]) -> Result<String, String>> DeserializeSeed<'de> for List<F> {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&str, &[String]) -> Result<String, String>> Visitor<'de> for List<F> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<S: SeqAccess<'de>>(mut self, mut seq: S) -> Result<Vec<String>, S::Error> {
        let mut items = Vec::new();
        loop {
            let check = &mut self.check;
            let seed = Scalar::new(self.item, |text| check(text, &items));
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
    }
}

/// `command:`, a list of strings: Docker's exec form, never split.
struct Command;

const COMMAND: &str = "a list, like [sh, -c, 'echo hello']";

impl<'de> DeserializeSeed<'de> for Command {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Command {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(COMMAND)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
        Err(E::custom(format!(
            "{text:?} is a string; give the command as {COMMAND}: mini-run runs it as Docker's \
             exec form does, with no shell to split a string into words"
        )))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Vec<String>, S::Error> {
        let words = List::new(COMMAND, "a word", |word: &str, before: &[String]| {
            if before.is_empty() && word.is_empty() {
                return Err("the program is empty; give one first in the list".to_string());
            }
            Ok(word.to_string())
        });
        words.visit_seq(seq)
    }
}

/// `env:`, a mapping `NAME: value`, as compose writes it. A name with no
/// value passes the host's value on, as `-e NAME` does.
struct Env;

const ENV: &str = "a mapping of NAME: value, one per line";

impl<'de> DeserializeSeed<'de> for Env {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<String>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Env {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ENV)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut names: Vec<String> = Vec::new();
        let mut env = Vec::new();
        loop {
            let seed = Scalar::new("a variable's name", |name: &str| {
                if names.iter().any(|n| n == name) {
                    return Err(format!("{name} is given twice; give it once"));
                }
                match name.is_empty() || name.contains('=') {
                    true => Err(format!(
                        "{name:?} is not a variable's name; give one without ="
                    )),
                    false => Ok(name.to_string()),
                }
            });
            let Some(name) = map.next_key_seed(seed)? else {
                return Ok(env);
            };
            let value = map.next_value_seed(Value)?;
            env.push(match value {
                Some(value) => format!("{name}={value}"),
                None => name.clone(),
            });
            names.push(name);
        }
    }
}

/// A variable's value: a scalar, or nothing for the host's.
struct Value;

impl<'de> DeserializeSeed<'de> for Value {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Value {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value, or nothing for the host's")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        Scalar::new("a value, or nothing for the host's", |text: &str| {
            Ok(text.to_string())
        })
        .deserialize(d)
        .map(Some)
    }
}

// What each key holds, as the parser's "expected …" says it.
const IMAGE: &str = "a directory made by overlay-stack import";
const ROOTFS: &str = "a directory holding a root filesystem";
const WORKDIR: &str = "an absolute path inside the container";
const USER: &str = "UID[:GID], by number";
const HOST: &str = "a hostname";
const NAME: &str = "a container name";
const MEMORY: &str = "a size like 64m";
const CPUS: &str = "a number of CPUs like 0.5";
const PIDS: &str = "a number of processes, or max";
const VOLUMES: &str = "a list of HOST:CTR[:ro], one per line after -";
const VOLUME: &str = "HOST:CTR[:ro]";
const NETWORK: &str = "bridge, none, host or a bridge's name";
const PORTS: &str = "a list of HOSTPORT:CTRPORT[/udp], one per line after -";
const PORT: &str = "HOSTPORT:CTRPORT[/udp]";
const SWITCH: &str = "true or false";

// Each key's check: the flag's parser, and the other keys it depends on.

/// `init: true`, `tty: false`: YAML's booleans only.
fn switch(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{text:?} is not a switch; give true or false")),
    }
}

fn image(spec: &Spec, dir: &Path, text: &str) -> Result<PathBuf, String> {
    one_root(spec, "rootfs")?;
    let path = beside(dir, text);
    overlay_stack::image::Image::load(&path).map_err(|e| e.to_string())?;
    Ok(path)
}

fn rootfs(spec: &Spec, dir: &Path, text: &str) -> Result<PathBuf, String> {
    one_root(spec, "image")?;
    let path = beside(dir, text);
    as_flag("--rootfs", text, |a| a.rootfs = Some(path.clone()))?;
    Ok(path)
}

/// `image` and `rootfs` both choose the root: one may be given.
fn one_root(spec: &Spec, other: &str) -> Result<(), String> {
    let given = match other {
        "image" => spec.image.is_some(),
        _ => spec.rootfs.is_some(),
    };
    match given {
        true => Err(format!(
            "{other} is given too, and both choose the root; keep one"
        )),
        false => Ok(()),
    }
}

fn workdir(text: &str) -> Result<String, String> {
    as_flag("--workdir", text, |a| a.workdir = Some(text.into()))
}

fn user(text: &str) -> Result<String, String> {
    as_flag("-u", text, |a| a.user = Some(text.into()))
}

fn hostname(text: &str) -> Result<String, String> {
    as_flag("--hostname", text, |a| a.hostname = Some(text.into()))
}

fn name(text: &str) -> Result<String, String> {
    as_flag("--name", text, |a| a.name = Some(text.into()))
}

fn memory(text: &str) -> Result<String, String> {
    cg_limit::units::parse_size(text).map(|_| text.to_string())
}

fn cpus(text: &str) -> Result<String, String> {
    cg_limit::units::parse_cpus(text).map(|_| text.to_string())
}

fn pids(text: &str) -> Result<String, String> {
    cg_limit::controller::pids::parse(text).map(|_| text.to_string())
}

/// `HOST:CTR[:ro]`, the host side relative to the file's directory when
/// it is written `./…` or `../…` (as compose reads it; a bare name would be
/// a named volume).
fn volume(dir: &Path, text: &str) -> Result<String, String> {
    let (source, rest) = text.split_once(':').unwrap_or((text, ""));
    let relative =
        [".", ".."].contains(&source) || source.starts_with("./") || source.starts_with("../");
    let checked = match relative {
        true => format!("{}:{rest}", beside(dir, source).display()),
        false => text.to_string(),
    };
    // The flag's message quotes the value checked; the file's, as written.
    let as_written = |e: String| match e.strip_prefix(&format!("{checked:?}: ")) {
        Some(why) => format!("{text:?}: {why}"),
        None => e,
    };
    if relative && beside(dir, source).to_string_lossy().contains(':') {
        return Err(format!(
            "{text:?}: the file's directory has a ':' in its path, which HOST:CTR cannot \
             hold; give the host side as an absolute path"
        ));
    }
    as_flag("-v", &checked, |a| a.volumes = vec![checked.clone()]).map_err(as_written)
}

fn network(spec: &Spec, text: &str) -> Result<String, String> {
    let network = as_flag("--network", text, |a| a.network = Some(text.into()))?;
    if !["none", "host", "bridge"].contains(&text) {
        // A bridge of the toolkit's must exist already.
        crate::network::check(text).map_err(|e| e.to_string())?;
    }
    if !spec.ports.is_empty() {
        bridged(&network)?;
    }
    Ok(network)
}

/// `HOSTPORT:CTRPORT[/PROTO]`, each host port once, on a bridge.
fn port(spec: &Spec, text: &str, before: &[String]) -> Result<String, String> {
    bridged(spec.network.as_deref().unwrap_or("bridge"))?;
    let parse = veth_bridge::nft::parse_mapping;
    let (host, _, proto) = parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if before
        .iter()
        .filter_map(|b| parse(b).ok())
        .any(|(h, _, p)| (h, p) == (host, proto))
    {
        return Err(format!(
            "{text:?}: host port {host}/{proto} is published twice; give each host port once"
        ));
    }
    Ok(text.to_string())
}

/// Ports are published on a bridge: refused on `network: none` or `host`.
fn bridged(network: &str) -> Result<(), String> {
    match network {
        "none" | "host" => Err(format!(
            "ports are published on a bridge, and network: {network} has none; leave network \
             out (bridge is the default), or the ports"
        )),
        _ => Ok(()),
    }
}

/// Checks one value as `mini-run run` checks its flag: by
/// [`Container::from_args`] on a command line with that flag alone, so the
/// file and the flags can never be held to different rules. The flag's
/// message is reworded for the file: `--hostname "a b": …` becomes
/// `"a b": …`, after the key the YAML parser puts in front.
fn as_flag(flag: &str, text: &str, set: impl FnOnce(&mut RunArgs)) -> Result<String, String> {
    let mut args = RunArgs {
        network: Some("none".into()),
        ..RunArgs::default()
    };
    set(&mut args);
    match Container::from_args(&args) {
        Ok(_) => Ok(text.to_string()),
        Err(error) => {
            let message = error.to_string();
            Err(match message.strip_prefix(&format!("{flag} ")) {
                Some(rest) => rest.to_string(),
                None => message,
            })
        }
    }
}

/// A path of the file's, relative to the file's directory unless absolute.
fn beside(dir: &Path, text: &str) -> PathBuf {
    // `components` drops the `.`s of `./x`, which would only clutter the
    // path in plans and messages.
    dir.join(text).components().collect()
}

#[cfg(test)]
mod tests;
