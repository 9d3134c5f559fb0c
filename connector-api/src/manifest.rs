//! What a connector says about itself: its kind, vendor, version, the streams it can read
//! (its capabilities, each with a read mode) and the settings it accepts.

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};
use std::fmt;

/// A stream of records, which is also a capability: a connector that declares a stream can
/// read it. Integer newtype so that streams added later are unknown values, not UB.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKind(pub u8);

impl StreamKind {
    /// PhoneLink, aggregated per queue and interval ([`crate::QueueInterval`]).
    pub const PHONELINK_INTERVALS: StreamKind = StreamKind(1);
    /// PhoneLink, one record per contact ([`crate::ContactEvent`]).
    pub const PHONELINK_CONTACTS: StreamKind = StreamKind(2);
    /// TimeLink, agent status spans ([`crate::AgentStatus`]).
    pub const TIMELINK: StreamKind = StreamKind(3);

    /// Every stream this version knows (a slice, so that adding one is not a breaking
    /// change of its type).
    pub const ALL: &'static [StreamKind] = &[
        StreamKind::PHONELINK_INTERVALS,
        StreamKind::PHONELINK_CONTACTS,
        StreamKind::TIMELINK,
    ];

    /// The stream's name in configuration, output and messages.
    pub fn name(self) -> Option<&'static str> {
        match self {
            StreamKind::PHONELINK_INTERVALS => Some("phonelink-intervals"),
            StreamKind::PHONELINK_CONTACTS => Some("phonelink-contacts"),
            StreamKind::TIMELINK => Some("timelink"),
            _ => None,
        }
    }

    /// Parses a stream name as printed by [`StreamKind::name`].
    pub fn from_name(name: &str) -> Option<StreamKind> {
        StreamKind::ALL
            .iter()
            .copied()
            .find(|stream| stream.name() == Some(name))
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "stream({})", self.0),
        }
    }
}

impl fmt::Debug for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How the host asks a stream for data.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadMode(pub u8);

impl ReadMode {
    /// The host asks for a time window `[from, to)` and owns the checkpoint; it may read
    /// any window again (backfill, reconciliation). Databases work this way.
    pub const WINDOWED: ReadMode = ReadMode(1);
    /// The host asks for what is new since the connector's last committed state, an opaque
    /// value the connector returned with an earlier batch. Import folders and feeds work
    /// this way.
    pub const INCREMENTAL: ReadMode = ReadMode(2);

    pub fn name(self) -> Option<&'static str> {
        match self {
            ReadMode::WINDOWED => Some("windowed"),
            ReadMode::INCREMENTAL => Some("incremental"),
            _ => None,
        }
    }
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "mode({})", self.0),
        }
    }
}

impl fmt::Debug for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One stream a connector can read, and how.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream: StreamKind,
    pub mode: ReadMode,
}

/// One setting a connector accepts, for documentation and `acdlink plugins --json`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct SettingInfo {
    pub name: RString,
    pub description: RString,
    pub required: bool,
    /// The host redacts secret settings wherever configuration is shown.
    pub secret: bool,
}

/// What a connector says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The name operators put in `plugin = ".."`: lower case letters, digits and `-`.
    pub kind: RString,
    pub display_name: RString,
    pub vendor: RString,
    /// The connector's own version (`major.minor.patch`), not the ABI version.
    pub version: RString,
    pub description: RString,
    /// The streams the connector can read: its capabilities.
    pub streams: RVec<StreamInfo>,
    pub settings: RVec<SettingInfo>,
}

impl Manifest {
    /// A manifest with no streams and no settings yet; add them with the builder methods.
    pub fn new(kind: &str, display_name: &str, vendor: &str, version: &str) -> Manifest {
        Manifest {
            kind: kind.into(),
            display_name: display_name.into(),
            vendor: vendor.into(),
            version: version.into(),
            description: RString::new(),
            streams: RVec::new(),
            settings: RVec::new(),
        }
    }

    pub fn description(mut self, description: &str) -> Manifest {
        self.description = description.into();
        self
    }

    /// Declares a stream the connector can read.
    pub fn stream(mut self, stream: StreamKind, mode: ReadMode) -> Manifest {
        self.streams.push(StreamInfo { stream, mode });
        self
    }

    /// Declares a setting.
    pub fn setting(mut self, name: &str, description: &str, required: bool) -> Manifest {
        self.settings.push(SettingInfo {
            name: name.into(),
            description: description.into(),
            required,
            secret: false,
        });
        self
    }

    /// Declares a secret setting (a password, a key): redacted wherever config is shown.
    pub fn secret_setting(mut self, name: &str, description: &str, required: bool) -> Manifest {
        self.settings.push(SettingInfo {
            name: name.into(),
            description: description.into(),
            required,
            secret: true,
        });
        self
    }

    /// What is wrong with the manifest (empty when nothing is): the kind's form, empty
    /// names, the version's form, no or duplicate streams, duplicate settings. The host
    /// refuses a plugin whose manifest has problems; streams and read modes it does not
    /// know are not problems (they come from newer plugins).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let kind = self.kind.as_str();
        let kind_ok = kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !kind_ok {
            problems.push(format!(
                "kind must be lower case letters, digits and `-`, starting with a letter, found {kind:?}"
            ));
        }
        if self.display_name.trim().is_empty() {
            problems.push("display_name is empty".to_string());
        }
        if self.vendor.trim().is_empty() {
            problems.push("vendor is empty".to_string());
        }
        let version_parts: Vec<&str> = self.version.split('.').collect();
        let version_ok = version_parts.len() == 3
            && version_parts
                .iter()
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
        if !version_ok {
            problems.push(format!(
                "version must be major.minor.patch, found {:?}",
                self.version.as_str()
            ));
        }
        if self.streams.is_empty() {
            problems.push("declares no stream, expected at least one of phonelink-intervals, phonelink-contacts, timelink".to_string());
        }
        for (index, info) in self.streams.iter().enumerate() {
            if self.streams[..index]
                .iter()
                .any(|earlier| earlier.stream == info.stream)
            {
                problems.push(format!("stream {} is declared twice", info.stream));
            }
        }
        for (index, setting) in self.settings.iter().enumerate() {
            if setting.name.trim().is_empty() {
                problems.push("a setting has an empty name".to_string());
            } else if self.settings[..index]
                .iter()
                .any(|earlier| earlier.name == setting.name)
            {
                problems.push(format!(
                    "setting {:?} is declared twice",
                    setting.name.as_str()
                ));
            }
        }
        problems
    }

    /// How the connector reads `stream`, or `None` if it cannot read it.
    pub fn read_mode(&self, stream: StreamKind) -> Option<ReadMode> {
        self.streams
            .iter()
            .find(|info| info.stream == stream)
            .map(|info| info.mode)
    }

    /// Whether the connector has any PhoneLink stream.
    pub fn has_phonelink(&self) -> bool {
        self.read_mode(StreamKind::PHONELINK_INTERVALS).is_some()
            || self.read_mode(StreamKind::PHONELINK_CONTACTS).is_some()
    }

    /// Whether the connector has the TimeLink stream.
    pub fn has_timelink(&self) -> bool {
        self.read_mode(StreamKind::TIMELINK).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_manifest_has_no_problems() {
        let manifest = Manifest::new("avaya-cms", "Avaya CMS", "acdlink", "1.2.3")
            .stream(StreamKind::TIMELINK, ReadMode::WINDOWED)
            .setting("dsn", "ODBC data source", true);
        assert_eq!(manifest.problems(), Vec::<String>::new());
    }

    #[test]
    fn problems_say_what_was_expected() {
        let manifest = Manifest::new("Avaya CMS", " ", "acdlink", "1.2")
            .stream(StreamKind::TIMELINK, ReadMode::WINDOWED)
            .stream(StreamKind::TIMELINK, ReadMode::INCREMENTAL)
            .setting("dsn", "", true)
            .secret_setting("dsn", "", true);
        assert_eq!(
            manifest.problems(),
            [
                "kind must be lower case letters, digits and `-`, starting with a letter, found \"Avaya CMS\"",
                "display_name is empty",
                "version must be major.minor.patch, found \"1.2\"",
                "stream timelink is declared twice",
                "setting \"dsn\" is declared twice",
            ]
        );
        let empty = Manifest::new("x", "X", "v", "0.0.1");
        assert!(empty.problems()[0].starts_with("declares no stream"));
        // A stream from a newer plugin is not a problem for this host.
        let newer =
            Manifest::new("x", "X", "v", "0.0.1").stream(StreamKind(42), ReadMode::WINDOWED);
        assert!(newer.problems().is_empty());
    }
}
