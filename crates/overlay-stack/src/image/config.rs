//! The image config: how to run the image, and how it was built.
//!
//! Besides its layers, an image has one JSON config. `config` holds what a
//! runtime needs to start a container (environment, entrypoint, command,
//! working directory, user); `rootfs.diff_ids` lists the digest of each
//! layer's *uncompressed* tar, bottom first; `history` has one entry per
//! build step, those that made no layer marked `empty_layer` — what
//! `docker history` shows. `docker save` and OCI layouts use the same
//! document. See <https://github.com/opencontainers/image-spec/blob/main/config.md>.

use serde::{Deserialize, Serialize};

/// The parts of the config document import reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Option<Vec<HistoryEntry>>,
}

/// `config` in the config document; Docker's capitalised keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One build step, as the config records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The step changed no file (`ENV`, `CMD`, …), so made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// How to run the image: what `mini-run` starts a container with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl From<&RunConfig> for ImageConfig {
    fn from(run: &RunConfig) -> Self {
        let text = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        Self {
            env: run.env.clone().unwrap_or_default(),
            cmd: run.cmd.clone().unwrap_or_default(),
            entrypoint: run.entrypoint.clone().unwrap_or_default(),
            working_dir: text(&run.working_dir),
            user: text(&run.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_config_reads_with_nulls_and_empty_strings() {
        let json = r#"{
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "Entrypoint": null,
                       "WorkingDir": "", "User": "nobody", "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD file"},
                        {"created_by": "CMD [\"/bin/sh\"]", "empty_layer": true}]
        }"#;
        let file: ConfigFile = serde_json::from_str(json).unwrap();
        let config = ImageConfig::from(file.config.as_ref().unwrap());
        assert_eq!(config.env, ["PATH=/usr/bin"]);
        assert_eq!(config.cmd, ["/bin/sh"]);
        assert!(config.entrypoint.is_empty());
        assert_eq!(config.working_dir, None);
        assert_eq!(config.user.as_deref(), Some("nobody"));
        let history = file.history.unwrap();
        assert!(history[1].empty_layer && !history[0].empty_layer);
        assert_eq!(file.rootfs.diff_ids, ["sha256:aa"]);
    }

    #[test]
    fn history_may_be_missing_or_null() {
        let file: ConfigFile = serde_json::from_str(
            r#"{"rootfs": {"type": "layers", "diff_ids": []}, "history": null}"#,
        )
        .unwrap();
        assert!(file.history.is_none() && file.config.is_none());
    }
}
