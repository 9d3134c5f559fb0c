//! The host's configuration: one TOML file, read in two stages. [`RawConfig`] mirrors the
//! file and only checks its shape (unknown keys and wrong types are errors with file, line
//! and key); [`Config`] is what the program uses (paths resolved against the file's
//! directory, defaults applied, settings turned into the JSON the connector ABI takes).
//!
//! This is the part of the configuration the foundation needs (`[host]` plugin settings
//! and `[[connector]]` entries); the pipeline adds its own sections.

use acdlink_connector_api::time::SourceTimeZone;
use serde::Deserialize;
use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};
use toml::Spanned;

/// A configuration error, pointing at the file, line and column where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the error has a position.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub host: RawHost,
    #[serde(default, rename = "connector")]
    pub connectors: Vec<RawConnector>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// Directories to load plugin libraries from, relative to the config file.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Load plugins even if other users can write to them.
    #[serde(default)]
    pub allow_insecure_plugins: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: Spanned<String>,
    pub plugin: Spanned<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The source's time zone: how local dates on the command line are read.
    pub timezone: Option<Spanned<String>>,
    /// Handed to the connector as a JSON object.
    #[serde(default)]
    pub settings: toml::Table,
}

fn enabled_by_default() -> bool {
    true
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or `None` for the empty default.
    pub path: Option<PathBuf>,
    pub plugin_dirs: Vec<PathBuf>,
    pub allow_insecure_plugins: bool,
    pub connectors: Vec<ConnectorConfig>,
}

/// One configured connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    /// The connector kind, as in the plugin's manifest.
    pub plugin: String,
    /// Where `plugin = ..` stands in the file, for errors about the plugin.
    pub plugin_position: Option<(usize, usize)>,
    pub enabled: bool,
    pub timezone: SourceTimeZone,
    pub settings: serde_json::Value,
}

impl Config {
    /// The configuration when there is no file: built-in connectors only.
    pub fn empty() -> Config {
        Config {
            path: None,
            plugin_dirs: Vec::new(),
            allow_insecure_plugins: false,
            connectors: Vec::new(),
        }
    }

    /// Reads and resolves the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            path: path.to_path_buf(),
            position: None,
            message: format!("cannot read the configuration file: {error}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and resolves configuration `text` that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let error_at = |span: Option<Range<usize>>, message: String| ConfigError {
            path: path.to_path_buf(),
            position: span.map(|span| line_and_column(text, span.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|error| error_at(error.span(), error.message().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut connectors: Vec<ConnectorConfig> = Vec::new();
        for raw_connector in raw.connectors {
            let name = raw_connector.name.get_ref().clone();
            if name.trim().is_empty() {
                return Err(error_at(
                    Some(raw_connector.name.span()),
                    "connector name is empty".to_string(),
                ));
            }
            if connectors.iter().any(|other| other.name == name) {
                return Err(error_at(
                    Some(raw_connector.name.span()),
                    format!("connector name `{name}` is used twice; names must be unique"),
                ));
            }
            let timezone = match &raw_connector.timezone {
                Some(zone) => SourceTimeZone::new(zone.get_ref()).map_err(|error| {
                    error_at(
                        Some(zone.span()),
                        format!("key `timezone`: {}", error.message),
                    )
                })?,
                None => SourceTimeZone::utc(),
            };
            connectors.push(ConnectorConfig {
                name,
                plugin: raw_connector.plugin.get_ref().clone(),
                plugin_position: Some(line_and_column(text, raw_connector.plugin.span().start)),
                enabled: raw_connector.enabled,
                timezone,
                settings: toml_to_json(toml::Value::Table(raw_connector.settings)),
            });
        }
        Ok(Config {
            path: Some(path.to_path_buf()),
            plugin_dirs: raw
                .host
                .plugin_dirs
                .iter()
                .map(|dir| base.join(dir))
                .collect(),
            allow_insecure_plugins: raw.host.allow_insecure_plugins,
            connectors,
        })
    }

    /// The configured connector called `name`.
    pub fn connector(&self, name: &str) -> Option<&ConnectorConfig> {
        self.connectors
            .iter()
            .find(|connector| connector.name == name)
    }

    /// An error about a connector entry, pointing at its `plugin = ..` line.
    pub fn error_at_plugin(&self, connector: &ConnectorConfig, message: String) -> ConfigError {
        ConfigError {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("<no config file>")),
            position: connector.plugin_position,
            message,
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

/// TOML to the JSON the connector ABI takes; dates and times become RFC 3339 strings.
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(text) => serde_json::Value::String(text),
        toml::Value::Integer(number) => serde_json::Value::from(number),
        toml::Value::Float(number) => serde_json::Value::from(number),
        toml::Value::Boolean(flag) => serde_json::Value::Bool(flag),
        toml::Value::Datetime(datetime) => serde_json::Value::String(datetime.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(toml_to_json).collect())
        }
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .into_iter()
                .map(|(key, value)| (key, toml_to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/acdlink/acdlink.toml"), text)
    }

    #[test]
    fn resolves_paths_and_settings() {
        let config = parse(
            "[host]\nplugin_dirs = [\"plugins\"]\n\n[[connector]]\nname = \"hq\"\nplugin = \"demo\"\ntimezone = \"Europe/Berlin\"\n[connector.settings]\nqueues = 3\nstart = 2024-01-01\n",
        )
        .unwrap();
        assert_eq!(
            config.plugin_dirs,
            vec![PathBuf::from("/etc/acdlink/plugins")]
        );
        let connector = config.connector("hq").unwrap();
        assert_eq!(connector.timezone.name(), "Europe/Berlin");
        assert_eq!(
            connector.settings,
            serde_json::json!({ "queues": 3, "start": "2024-01-01" })
        );
        assert_eq!(connector.plugin_position, Some((6, 10)));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let error = parse("[host]\nplugin_dir = [\"x\"]\n").unwrap_err();
        assert_eq!(error.position, Some((2, 1)));
        assert!(
            error.message.contains("unknown field `plugin_dir`"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("/etc/acdlink/acdlink.toml:2:1: "),
            "{error}"
        );

        let error = parse("[[connector]]\nname = \"a\"\nplugin = 3\n").unwrap_err();
        assert_eq!(error.position, Some((3, 10)));
        assert!(error.message.contains("expected a string"), "{error}");

        let error =
            parse("[[connector]]\nname = \"a\"\nplugin = \"demo\"\ntimezone = \"Mars/Base\"\n")
                .unwrap_err();
        assert_eq!(error.position, Some((4, 12)));
        assert!(
            error
                .message
                .contains("key `timezone`: unknown time zone `Mars/Base`"),
            "{error}"
        );

        let error = parse("[[connector]]\nname = \"a\"\nplugin = \"demo\"\n[[connector]]\nname = \"a\"\nplugin = \"demo\"\n").unwrap_err();
        assert_eq!(error.position, Some((5, 8)));
        assert!(error.message.contains("used twice"), "{error}");
    }
}
