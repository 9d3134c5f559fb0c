//! The host's configuration: one TOML file, read in two stages. [`RawConfig`] mirrors the
//! file and only checks its shape (unknown keys and wrong types are errors with file, line
//! and key); [`Config`] is what the program uses (paths resolved against the file's
//! directory, defaults applied, secrets loaded, settings turned into the JSON the connector
//! ABI takes).
//!
//! Secrets are written `{ env = "NAME" }` or `{ file = "path" }`: in `upload.api_key`, and
//! as any value of `[connector.settings]`. They are resolved here, once, into [`Secret`]
//! values that never print their contents.

use crate::secret::{Secret, SecretSource};
use acdlink_connector_api::time::SourceTimeZone;
use serde::Deserialize;
use std::{
    collections::BTreeMap,
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
    pub upload: Option<Spanned<RawUpload>>,
    #[serde(default, rename = "connector")]
    pub connectors: Vec<RawConnector>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// Where the state store lives, relative to the config file.
    pub state_dir: Option<PathBuf>,
    /// Directories to load plugin libraries from, relative to the config file.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Load plugins even if other users can write to them.
    #[serde(default)]
    pub allow_insecure_plugins: bool,
    /// Reading pauses while the outbox holds more records than this.
    pub max_outbox_records: Option<Spanned<u64>>,
}

/// `[upload]`: where records go. One struct for both types (rather than a serde-tagged
/// enum, which would lose the positions of the keys); `resolve` checks which keys belong
/// to which type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    /// `http` (the WFM API) or `file` (NDJSON files).
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub base_url: Option<Spanned<String>>,
    pub api_key: Option<Spanned<RawSecret>>,
    pub integration_configuration_id: Option<i64>,
    pub external_system: Option<String>,
    pub batch_size: Option<Spanned<u32>>,
    pub concurrency: Option<Spanned<u32>>,
    pub timeout_secs: Option<Spanned<u64>>,
    /// Allow `http://` to hosts other than loopback.
    pub allow_plain_http: Option<Spanned<bool>>,
    /// The directory NDJSON files are written to (file sink), relative to the config file.
    pub path: Option<Spanned<PathBuf>>,
}

/// `{ env = "NAME" }` or `{ file = "path" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: Spanned<String>,
    pub plugin: Spanned<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub phonelink: Option<bool>,
    pub phonelink_form: Option<PhoneLinkForm>,
    pub timelink: Option<bool>,
    /// The source's time zone.
    pub timezone: Option<Spanned<String>>,
    pub interval_minutes: Option<Spanned<u32>>,
    pub delay_secs: Option<u64>,
    pub history_days: Option<Spanned<u32>>,
    pub reconcile_hours: Option<Spanned<u32>>,
    pub timelink_poll_secs: Option<Spanned<u64>>,
    pub call_timeout_secs: Option<Spanned<u64>>,
    pub max_records: Option<Spanned<u32>>,
    /// Handed to the connector as a JSON object, secrets resolved.
    pub settings: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub mapping: RawMapping,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// WFM activity for source activities without a mapping.
    pub default_activity: Option<String>,
    #[serde(default)]
    pub unmapped_queues: UnmappedPolicy,
    #[serde(default)]
    pub unmapped_agents: UnmappedPolicy,
    #[serde(default)]
    pub queues: BTreeMap<String, QueueMapping>,
    #[serde(default)]
    pub activities: BTreeMap<String, String>,
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
}

/// The form of PhoneLink to read from a connector that offers both: the WFM would count
/// the same contacts twice if it got both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhoneLinkForm {
    /// Queue intervals (`queue-intervals`).
    Intervals,
    /// Contact events (`contact-events`).
    Contacts,
}

/// What happens to a record whose queue or agent has no mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmappedPolicy {
    /// Sent with the source's own identifier.
    #[default]
    Pass,
    /// Not sent; counted and reported.
    Drop,
}

/// Where one external queue goes in the WFM.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueMapping {
    pub identifier: String,
    pub name: Option<String>,
    pub channel: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or `None` for the empty default.
    pub path: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    pub allow_insecure_plugins: bool,
    pub max_outbox_records: u64,
    pub upload: Option<UploadConfig>,
    pub connectors: Vec<ConnectorConfig>,
}

/// Where records go.
#[derive(Debug, Clone)]
pub enum UploadConfig {
    Http(HttpUpload),
    File(FileUpload),
}

#[derive(Debug, Clone)]
pub struct HttpUpload {
    pub base_url: String,
    pub api_key: Secret,
    pub integration_configuration_id: i64,
    pub external_system: Option<String>,
    pub batch_size: u32,
    pub concurrency: u32,
    pub timeout_secs: u64,
    pub allow_plain_http: bool,
}

#[derive(Debug, Clone)]
pub struct FileUpload {
    pub path: PathBuf,
    pub integration_configuration_id: i64,
    pub external_system: Option<String>,
    pub batch_size: u32,
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
    /// `None`: whatever the connector can read.
    pub phonelink: Option<bool>,
    /// Which PhoneLink stream to read when the connector offers both (`None`: intervals).
    pub phonelink_form: Option<PhoneLinkForm>,
    pub timelink: Option<bool>,
    pub timezone: SourceTimeZone,
    pub interval_minutes: u32,
    pub delay_secs: u64,
    pub history_days: u32,
    pub reconcile_hours: u32,
    pub timelink_poll_secs: u64,
    pub call_timeout_secs: u64,
    pub max_records: u32,
    pub settings: ConnectorSettings,
    pub mapping: MappingConfig,
}

/// A connector's settings: the JSON handed to the connector (secrets resolved), and a
/// view with every secret redacted, which is all that `Debug` and `config show` print.
#[derive(Clone)]
pub struct ConnectorSettings {
    resolved: serde_json::Value,
    redacted: serde_json::Value,
}

impl ConnectorSettings {
    /// Settings without secrets (tools and tests).
    pub fn plain(settings: serde_json::Value) -> ConnectorSettings {
        ConnectorSettings {
            resolved: settings.clone(),
            redacted: settings,
        }
    }

    /// What the connector gets: secrets resolved. Never log or print this.
    pub fn resolved(&self) -> &serde_json::Value {
        &self.resolved
    }

    /// What may be shown: each secret replaced by where it comes from.
    pub fn redacted(&self) -> &serde_json::Value {
        &self.redacted
    }
}

impl fmt::Debug for ConnectorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.redacted)
    }
}

/// The resolved `[connector.mapping]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingConfig {
    pub default_activity: Option<String>,
    pub unmapped_queues: UnmappedPolicy,
    pub unmapped_agents: UnmappedPolicy,
    pub queues: BTreeMap<String, QueueMapping>,
    pub activities: BTreeMap<String, String>,
    pub agents: BTreeMap<String, String>,
}

/// Defaults, in one place so that the reference documentation can point here.
pub mod defaults {
    pub const STATE_DIR: &str = "state";
    pub const MAX_OUTBOX_RECORDS: u64 = 5_000_000;
    pub const BATCH_SIZE: u32 = 500;
    pub const CONCURRENCY: u32 = 2;
    pub const TIMEOUT_SECS: u64 = 30;
    pub const INTERVAL_MINUTES: u32 = 15;
    pub const DELAY_SECS: u64 = 300;
    pub const HISTORY_DAYS: u32 = 1095;
    pub const RECONCILE_HOURS: u32 = 24;
    pub const CALL_TIMEOUT_SECS: u64 = 300;
    pub const MAX_RECORDS: u32 = 8192;
}

impl Config {
    /// The configuration when there is no file: built-in connectors only.
    pub fn empty() -> Config {
        Config {
            path: None,
            state_dir: PathBuf::from(defaults::STATE_DIR),
            plugin_dirs: Vec::new(),
            allow_insecure_plugins: false,
            max_outbox_records: defaults::MAX_OUTBOX_RECORDS,
            upload: None,
            connectors: Vec::new(),
        }
    }

    /// Reads and resolves the file at `path`, with secrets from the process environment.
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
        Resolver { path, text }.resolve()
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

impl ConnectorConfig {
    /// A connector with every default, for a kind named on the command line.
    pub fn with_defaults(name: &str, plugin: &str) -> ConnectorConfig {
        ConnectorConfig {
            name: name.to_string(),
            plugin: plugin.to_string(),
            plugin_position: None,
            enabled: true,
            phonelink: None,
            phonelink_form: None,
            timelink: None,
            timezone: SourceTimeZone::utc(),
            interval_minutes: defaults::INTERVAL_MINUTES,
            delay_secs: defaults::DELAY_SECS,
            history_days: defaults::HISTORY_DAYS,
            reconcile_hours: defaults::RECONCILE_HOURS,
            timelink_poll_secs: u64::from(defaults::INTERVAL_MINUTES) * 60,
            call_timeout_secs: defaults::CALL_TIMEOUT_SECS,
            max_records: defaults::MAX_RECORDS,
            settings: ConnectorSettings::plain(serde_json::json!({})),
            mapping: MappingConfig::default(),
        }
    }
}

/// Turns the raw file into the resolved configuration, with positions for every error.
struct Resolver<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Resolver<'_> {
    fn error(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            position: span.map(|span| line_and_column(self.text, span.start)),
            message,
        }
    }

    /// The value of an optional number, checked against `range`, or `default`.
    fn number<T>(
        &self,
        key: &str,
        value: &Option<Spanned<T>>,
        range: std::ops::RangeInclusive<T>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: Copy + PartialOrd + fmt::Display,
    {
        match value {
            None => Ok(default),
            Some(spanned) if range.contains(spanned.get_ref()) => Ok(*spanned.get_ref()),
            Some(spanned) => Err(self.error(
                Some(spanned.span()),
                format!(
                    "key `{key}`: expected {} to {}, found {}",
                    range.start(),
                    range.end(),
                    spanned.get_ref()
                ),
            )),
        }
    }

    fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// `path` relative to the configuration file's directory, with `.` and `..` resolved
    /// lexically (so messages show `demo-out/upload`, not `examples/../demo-out/upload`).
    fn relative(&self, path: &Path) -> PathBuf {
        let mut resolved = PathBuf::new();
        for component in self.base().join(path).components() {
            match component {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir
                    if matches!(
                        resolved.components().next_back(),
                        Some(std::path::Component::Normal(_))
                    ) =>
                {
                    resolved.pop();
                }
                other => resolved.push(other),
            }
        }
        if resolved.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            resolved
        }
    }

    fn resolve(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text)
            .map_err(|error| self.error(error.span(), error.message().to_string()))?;
        let upload = match &raw.upload {
            Some(upload) => Some(self.upload(upload)?),
            None => None,
        };
        let mut connectors: Vec<ConnectorConfig> = Vec::new();
        for raw_connector in &raw.connectors {
            let connector = self.connector(raw_connector)?;
            if connectors.iter().any(|other| other.name == connector.name) {
                return Err(self.error(
                    Some(raw_connector.name.span()),
                    format!(
                        "connector name `{}` is used twice; names must be unique",
                        connector.name
                    ),
                ));
            }
            connectors.push(connector);
        }
        Ok(Config {
            path: Some(self.path.to_path_buf()),
            state_dir: self.relative(
                raw.host
                    .state_dir
                    .as_deref()
                    .unwrap_or(Path::new(defaults::STATE_DIR)),
            ),
            plugin_dirs: raw
                .host
                .plugin_dirs
                .iter()
                .map(|dir| self.relative(dir))
                .collect(),
            allow_insecure_plugins: raw.host.allow_insecure_plugins,
            max_outbox_records: self.number(
                "host.max_outbox_records",
                &raw.host.max_outbox_records,
                1_000..=u64::MAX,
                defaults::MAX_OUTBOX_RECORDS,
            )?,
            upload,
            connectors,
        })
    }

    fn upload(&self, upload: &Spanned<RawUpload>) -> Result<UploadConfig, ConfigError> {
        let raw = upload.get_ref();
        let kind = raw.kind.get_ref().as_str();
        let missing = |key: &str| {
            self.error(
                Some(upload.span()),
                format!("key `upload.{key}` is required for type = \"{kind}\""),
            )
        };
        let not_for = |key: &str, span: Range<usize>| {
            self.error(
                Some(span),
                format!("key `upload.{key}` does not apply to type = \"{kind}\""),
            )
        };
        match kind {
            "http" => {
                if let Some(path) = &raw.path {
                    return Err(not_for("path", path.span()));
                }
                let base_url_spanned = raw.base_url.as_ref().ok_or_else(|| missing("base_url"))?;
                let base_url = base_url_spanned.get_ref().trim_end_matches('/').to_string();
                let allow_plain_http = raw
                    .allow_plain_http
                    .as_ref()
                    .is_some_and(|flag| *flag.get_ref());
                let url_error =
                    |message: String| self.error(Some(base_url_spanned.span()), message);
                let (scheme, rest) = base_url.split_once("://").ok_or_else(|| {
                    url_error(format!(
                        "key `upload.base_url`: expected an http(s) URL such as https://wfm.example.com, found {base_url:?}"
                    ))
                })?;
                let authority = rest.split('/').next().unwrap_or("");
                let host = match authority.strip_prefix('[') {
                    // An IPv6 literal: `[::1]:8080`.
                    Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
                    None => authority.split(':').next().unwrap_or(""),
                };
                match scheme {
                    "https" => {}
                    "http" if allow_plain_http || is_loopback(host) => {}
                    "http" => {
                        return Err(url_error(format!(
                            "key `upload.base_url`: plain http is only allowed to loopback ({host} is not); use https, or set upload.allow_plain_http = true"
                        )))
                    }
                    other => {
                        return Err(url_error(format!(
                            "key `upload.base_url`: expected an http or https URL, found scheme {other:?}"
                        )))
                    }
                }
                let api_key = raw.api_key.as_ref().ok_or_else(|| missing("api_key"))?;
                Ok(UploadConfig::Http(HttpUpload {
                    base_url,
                    api_key: self.secret("upload.api_key", api_key)?,
                    integration_configuration_id: raw
                        .integration_configuration_id
                        .ok_or_else(|| missing("integration_configuration_id"))?,
                    external_system: raw.external_system.clone(),
                    batch_size: self.number(
                        "upload.batch_size",
                        &raw.batch_size,
                        1..=10_000,
                        defaults::BATCH_SIZE,
                    )?,
                    concurrency: self.number(
                        "upload.concurrency",
                        &raw.concurrency,
                        1..=64,
                        defaults::CONCURRENCY,
                    )?,
                    timeout_secs: self.number(
                        "upload.timeout_secs",
                        &raw.timeout_secs,
                        1..=3_600,
                        defaults::TIMEOUT_SECS,
                    )?,
                    allow_plain_http,
                }))
            }
            "file" => {
                for (key, span) in [
                    ("base_url", raw.base_url.as_ref().map(Spanned::span)),
                    ("api_key", raw.api_key.as_ref().map(Spanned::span)),
                    ("concurrency", raw.concurrency.as_ref().map(Spanned::span)),
                    ("timeout_secs", raw.timeout_secs.as_ref().map(Spanned::span)),
                    (
                        "allow_plain_http",
                        raw.allow_plain_http.as_ref().map(Spanned::span),
                    ),
                ] {
                    if let Some(span) = span {
                        return Err(not_for(key, span));
                    }
                }
                let path = raw.path.as_ref().ok_or_else(|| missing("path"))?;
                Ok(UploadConfig::File(FileUpload {
                    path: self.relative(path.get_ref()),
                    integration_configuration_id: raw.integration_configuration_id.unwrap_or(0),
                    external_system: raw.external_system.clone(),
                    batch_size: self.number(
                        "upload.batch_size",
                        &raw.batch_size,
                        1..=100_000,
                        defaults::BATCH_SIZE,
                    )?,
                }))
            }
            other => Err(self.error(
                Some(raw.kind.span()),
                format!("key `upload.type`: expected \"http\" or \"file\", found {other:?}"),
            )),
        }
    }

    /// The queue mappings, each channel checked against the WFM's channels.
    fn queue_mappings(
        &self,
        mapping: &RawMapping,
        span: Range<usize>,
    ) -> Result<BTreeMap<String, QueueMapping>, ConfigError> {
        for (queue, target) in &mapping.queues {
            if let Some(channel) = &target.channel {
                if acdlink_connector_api::Channel::from_name(channel).is_none() {
                    return Err(self.error(
                        Some(span),
                        format!(
                            "key `mapping.queues.{queue}.channel`: expected one of {}, found {channel:?}",
                            acdlink_connector_api::Channel::known_names().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(mapping.queues.clone())
    }

    fn secret(&self, key: &str, raw: &Spanned<RawSecret>) -> Result<Secret, ConfigError> {
        let source = match (&raw.get_ref().env, &raw.get_ref().file) {
            (Some(name), None) => SecretSource::Env(name.clone()),
            (None, Some(path)) => SecretSource::File(self.relative(path)),
            _ => {
                return Err(self.error(
                    Some(raw.span()),
                    format!("key `{key}`: expected {{ env = \"NAME\" }} or {{ file = \"path\" }}"),
                ))
            }
        };
        source
            .load()
            .map_err(|problem| self.error(Some(raw.span()), format!("key `{key}`: {problem}")))
    }

    fn connector(&self, raw: &RawConnector) -> Result<ConnectorConfig, ConfigError> {
        let name = raw.name.get_ref().clone();
        if name.trim().is_empty() {
            return Err(self.error(Some(raw.name.span()), "connector name is empty".to_string()));
        }
        let timezone = match &raw.timezone {
            Some(zone) => SourceTimeZone::new(zone.get_ref()).map_err(|error| {
                self.error(
                    Some(zone.span()),
                    format!("key `timezone`: {}", error.message),
                )
            })?,
            None => SourceTimeZone::utc(),
        };
        let interval_minutes = self.number(
            "interval_minutes",
            &raw.interval_minutes,
            15..=60,
            defaults::INTERVAL_MINUTES,
        )?;
        if ![15, 30, 60].contains(&interval_minutes) {
            let span = raw.interval_minutes.as_ref().map(Spanned::span);
            return Err(self.error(
                span,
                format!("key `interval_minutes`: expected 15, 30 or 60, found {interval_minutes}"),
            ));
        }
        let empty = toml::Table::new();
        let (table, settings_span) = match &raw.settings {
            Some(settings) => (settings.get_ref(), settings.span()),
            None => (&empty, raw.name.span()),
        };
        let (resolved, redacted) = self.settings(&name, table, settings_span)?;
        Ok(ConnectorConfig {
            name,
            plugin: raw.plugin.get_ref().clone(),
            plugin_position: Some(line_and_column(self.text, raw.plugin.span().start)),
            enabled: raw.enabled,
            phonelink: raw.phonelink,
            phonelink_form: raw.phonelink_form,
            timelink: raw.timelink,
            timezone,
            interval_minutes,
            delay_secs: raw.delay_secs.unwrap_or(defaults::DELAY_SECS),
            history_days: self.number(
                "history_days",
                &raw.history_days,
                0..=1096,
                defaults::HISTORY_DAYS,
            )?,
            reconcile_hours: self.number(
                "reconcile_hours",
                &raw.reconcile_hours,
                0..=24 * 31,
                defaults::RECONCILE_HOURS,
            )?,
            timelink_poll_secs: self.number(
                "timelink_poll_secs",
                &raw.timelink_poll_secs,
                1..=86_400,
                u64::from(interval_minutes) * 60,
            )?,
            call_timeout_secs: self.number(
                "call_timeout_secs",
                &raw.call_timeout_secs,
                1..=86_400,
                defaults::CALL_TIMEOUT_SECS,
            )?,
            max_records: self.number(
                "max_records",
                &raw.max_records,
                1..=1_000_000,
                defaults::MAX_RECORDS,
            )?,
            settings: ConnectorSettings { resolved, redacted },
            mapping: MappingConfig {
                queues: self.queue_mappings(&raw.mapping, raw.plugin.span())?,
                default_activity: raw.mapping.default_activity.clone(),
                unmapped_queues: raw.mapping.unmapped_queues,
                unmapped_agents: raw.mapping.unmapped_agents,
                activities: raw.mapping.activities.clone(),
                agents: raw.mapping.agents.clone(),
            },
        })
    }

    /// The settings as the connector gets them and as they may be shown.
    fn settings(
        &self,
        connector: &str,
        table: &toml::Table,
        span: Range<usize>,
    ) -> Result<(serde_json::Value, serde_json::Value), ConfigError> {
        let mut resolved = serde_json::Map::new();
        let mut redacted = serde_json::Map::new();
        for (key, value) in table {
            let (shown, given) =
                self.setting_value(connector, &format!("settings.{key}"), value, &span)?;
            resolved.insert(key.clone(), given);
            redacted.insert(key.clone(), shown);
        }
        Ok((
            serde_json::Value::Object(resolved),
            serde_json::Value::Object(redacted),
        ))
    }

    /// One setting value: (as shown, as given to the connector).
    fn setting_value(
        &self,
        connector: &str,
        key: &str,
        value: &toml::Value,
        span: &Range<usize>,
    ) -> Result<(serde_json::Value, serde_json::Value), ConfigError> {
        if let Some(source) = secret_reference(value) {
            let source = match source {
                SecretSource::File(path) => SecretSource::File(self.relative(&path)),
                env => env,
            };
            let secret = source.load().map_err(|problem| {
                self.error(
                    Some(span.clone()),
                    format!("connector `{connector}`: key `{key}`: {problem}"),
                )
            })?;
            return Ok((
                serde_json::Value::String(secret.to_string()),
                serde_json::Value::String(secret.expose().to_string()),
            ));
        }
        Ok(match value {
            toml::Value::Table(table) => {
                let mut shown = serde_json::Map::new();
                let mut given = serde_json::Map::new();
                for (inner, value) in table {
                    let (inner_shown, inner_given) =
                        self.setting_value(connector, &format!("{key}.{inner}"), value, span)?;
                    shown.insert(inner.clone(), inner_shown);
                    given.insert(inner.clone(), inner_given);
                }
                (
                    serde_json::Value::Object(shown),
                    serde_json::Value::Object(given),
                )
            }
            toml::Value::Array(items) => {
                let mut shown = Vec::new();
                let mut given = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let (item_shown, item_given) =
                        self.setting_value(connector, &format!("{key}[{index}]"), item, span)?;
                    shown.push(item_shown);
                    given.push(item_given);
                }
                (
                    serde_json::Value::Array(shown),
                    serde_json::Value::Array(given),
                )
            }
            scalar => {
                let json = scalar_to_json(scalar);
                (json.clone(), json)
            }
        })
    }
}

/// A settings value that is a secret reference: a table with exactly one key, `env` or
/// `file`, whose value is a string.
fn secret_reference(value: &toml::Value) -> Option<SecretSource> {
    let table = value.as_table()?;
    if table.len() != 1 {
        return None;
    }
    let (key, value) = table.iter().next()?;
    let text = value.as_str()?;
    match key.as_str() {
        "env" => Some(SecretSource::Env(text.to_string())),
        "file" => Some(SecretSource::File(PathBuf::from(text))),
        _ => None,
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
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

/// A TOML scalar as JSON; dates and times become RFC 3339 strings.
fn scalar_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(text) => serde_json::Value::String(text.clone()),
        toml::Value::Integer(number) => serde_json::Value::from(*number),
        toml::Value::Float(number) => serde_json::Value::from(*number),
        toml::Value::Boolean(flag) => serde_json::Value::Bool(*flag),
        toml::Value::Datetime(datetime) => serde_json::Value::String(datetime.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            unreachable!("setting_value handles arrays and tables before scalars")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/acdlink/acdlink.toml"), text)
    }

    #[test]
    fn resolves_paths_settings_and_defaults() {
        let config = parse(
            "[host]\nplugin_dirs = [\"plugins\"]\n\n[[connector]]\nname = \"hq\"\nplugin = \"demo\"\ntimezone = \"Europe/Berlin\"\n[connector.settings]\nqueues = 3\nstart = 2024-01-01\n",
        )
        .unwrap();
        assert_eq!(
            config.plugin_dirs,
            vec![PathBuf::from("/etc/acdlink/plugins")]
        );
        assert_eq!(config.state_dir, PathBuf::from("/etc/acdlink/state"));
        let connector = config.connector("hq").unwrap();
        assert_eq!(connector.timezone.name(), "Europe/Berlin");
        assert_eq!(
            connector.settings.resolved(),
            &serde_json::json!({ "queues": 3, "start": "2024-01-01" })
        );
        assert_eq!(connector.plugin_position, Some((6, 10)));
        assert_eq!(connector.interval_minutes, 15);
        assert_eq!(connector.history_days, 1095);
        assert_eq!(connector.reconcile_hours, 24);
        assert_eq!(connector.timelink_poll_secs, 900);
        assert!(config.upload.is_none());

        let relative = parse(
            "[host]\nstate_dir = \"../demo-out/./state\"\nplugin_dirs = [\"../lib/plugins\"]\n",
        )
        .unwrap();
        assert_eq!(relative.state_dir, PathBuf::from("/etc/demo-out/state"));
        assert_eq!(
            relative.plugin_dirs,
            vec![PathBuf::from("/etc/lib/plugins")]
        );
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

        let error =
            parse("[[connector]]\nname = \"a\"\nplugin = \"demo\"\ninterval_minutes = 20\n")
                .unwrap_err();
        assert_eq!(error.position, Some((4, 20)));
        assert_eq!(
            error.message,
            "key `interval_minutes`: expected 15, 30 or 60, found 20"
        );

        let error = parse("[[connector]]\nname = \"a\"\nplugin = \"demo\"\nhistory_days = 5000\n")
            .unwrap_err();
        assert_eq!(
            error.message,
            "key `history_days`: expected 0 to 1096, found 5000"
        );
    }

    #[test]
    fn secrets_resolve_from_env_and_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.txt"), "s3cr3t-key\n").unwrap();
        // Unique names: tests run in parallel in one process.
        std::env::set_var("ACDLINK_TEST_CMS_PASSWORD", "pa55word");
        let text = "[upload]\ntype = \"http\"\nbase_url = \"https://wfm.example.com/\"\napi_key = { file = \"key.txt\" }\nintegration_configuration_id = 7\n\n[[connector]]\nname = \"cms\"\nplugin = \"demo\"\n[connector.settings]\ndsn = \"CMS\"\npassword = { env = \"ACDLINK_TEST_CMS_PASSWORD\" }\n";
        let config = Config::parse(&dir.path().join("acdlink.toml"), text).unwrap();
        let Some(UploadConfig::Http(http)) = &config.upload else {
            panic!("expected an http upload")
        };
        assert_eq!(http.api_key.expose(), "s3cr3t-key");
        assert_eq!(http.base_url, "https://wfm.example.com");
        let connector = config.connector("cms").unwrap();
        assert_eq!(connector.settings.resolved()["password"], "pa55word");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("pa55word") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert_eq!(
            connector.settings.redacted()["password"],
            "<redacted: environment variable ACDLINK_TEST_CMS_PASSWORD>"
        );
    }

    #[test]
    fn missing_secrets_and_plain_http_are_errors_with_position() {
        let error = parse("[upload]\ntype = \"http\"\nbase_url = \"https://wfm.example.com\"\napi_key = { env = \"ACDLINK_TEST_SURELY_UNSET\" }\nintegration_configuration_id = 7\n").unwrap_err();
        assert_eq!(error.position, Some((4, 11)));
        assert_eq!(
            error.message,
            "key `upload.api_key`: environment variable ACDLINK_TEST_SURELY_UNSET is not set"
        );
        let error = parse("[upload]\ntype = \"http\"\nbase_url = \"http://wfm.example.com\"\napi_key = { env = \"X\" }\nintegration_configuration_id = 7\n").unwrap_err();
        assert!(
            error
                .message
                .contains("plain http is only allowed to loopback"),
            "{error}"
        );
        assert_eq!(error.position, Some((3, 12)));
        let ipv6 = parse("[upload]\ntype = \"http\"\nbase_url = \"http://[::1]:8080\"\napi_key = { env = \"ACDLINK_TEST_SURELY_UNSET\" }\nintegration_configuration_id = 7\n").unwrap_err();
        assert!(
            ipv6.message.contains("environment variable"),
            "[::1] is loopback: {ipv6}"
        );
        let error = parse("[[connector]]\nname = \"a\"\nplugin = \"demo\"\n[connector.mapping.queues.Q1]\nidentifier = \"x\"\nchannel = \"fax\"\n").unwrap_err();
        assert!(
            error
                .message
                .starts_with("key `mapping.queues.Q1.channel`: expected one of calls, chats"),
            "{error}"
        );
        let error = parse("[upload]\ntype = \"ftp\"\n").unwrap_err();
        assert_eq!(
            error.message,
            "key `upload.type`: expected \"http\" or \"file\", found \"ftp\""
        );
        assert_eq!(error.position, Some((2, 8)));
        let error =
            parse("[upload]\ntype = \"file\"\npath = \"out\"\nconcurrency = 4\n").unwrap_err();
        assert_eq!(
            error.message,
            "key `upload.concurrency` does not apply to type = \"file\""
        );
        assert_eq!(error.position, Some((4, 15)));
    }
}
