//! The structured error every connector call can return: a kind, a message, and whether
//! retrying the same call later may succeed.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// What went wrong, coarsely, so the host can decide what to do without parsing messages.
/// Integer newtype so that kinds added later are unknown values, not UB.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorKind(pub u16);

impl ErrorKind {
    /// The settings are invalid: fix the configuration; retrying will not help.
    pub const CONFIG: ErrorKind = ErrorKind(1);
    /// The source could not be reached (network, database server, share).
    pub const CONNECTION: ErrorKind = ErrorKind(2);
    /// The source refused the credentials.
    pub const AUTH: ErrorKind = ErrorKind(3);
    /// The source returned data that cannot be turned into records (a bad row or column).
    pub const SOURCE_DATA: ErrorKind = ErrorKind(4);
    /// A local I/O operation failed (file system).
    pub const IO: ErrorKind = ErrorKind(5);
    /// The call took too long.
    pub const TIMEOUT: ErrorKind = ErrorKind(6);
    /// The connector was asked for something it does not support (a stream, a read mode).
    pub const UNSUPPORTED: ErrorKind = ErrorKind(7);
    /// The connector panicked; the SDK caught it at the boundary. The instance is unusable
    /// afterwards and must be opened again.
    pub const PANICKED: ErrorKind = ErrorKind(8);
    /// A bug in the connector (a broken invariant), reported instead of crashing.
    pub const INTERNAL: ErrorKind = ErrorKind(9);

    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::CONFIG => "config",
            ErrorKind::CONNECTION => "connection",
            ErrorKind::AUTH => "auth",
            ErrorKind::SOURCE_DATA => "source-data",
            ErrorKind::IO => "io",
            ErrorKind::TIMEOUT => "timeout",
            ErrorKind::UNSUPPORTED => "unsupported",
            ErrorKind::PANICKED => "panicked",
            ErrorKind::INTERNAL => "internal",
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "error-kind({})", self.0),
        }
    }
}

impl fmt::Debug for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error from a connector. Messages follow the project style: lower case, no trailing
/// period, saying what was expected and what was found.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: RString,
    /// Whether the same call may succeed later (the source was down, a timeout).
    pub retryable: bool,
}

impl ConnectorError {
    /// An error that retrying will not fix, unless `kind` is one that usually passes
    /// ([`ErrorKind::CONNECTION`], [`ErrorKind::TIMEOUT`], [`ErrorKind::IO`]).
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> ConnectorError {
        let retryable = matches!(
            kind,
            ErrorKind::CONNECTION | ErrorKind::TIMEOUT | ErrorKind::IO
        );
        ConnectorError {
            kind,
            message: message.to_string().into(),
            retryable,
        }
    }

    pub fn config(message: impl fmt::Display) -> ConnectorError {
        ConnectorError::new(ErrorKind::CONFIG, message)
    }

    pub fn source_data(message: impl fmt::Display) -> ConnectorError {
        ConnectorError::new(ErrorKind::SOURCE_DATA, message)
    }

    pub fn unsupported(message: impl fmt::Display) -> ConnectorError {
        ConnectorError::new(ErrorKind::UNSUPPORTED, message)
    }

    pub fn internal(message: impl fmt::Display) -> ConnectorError {
        ConnectorError::new(ErrorKind::INTERNAL, message)
    }

    /// Overrides whether the error is worth retrying.
    pub fn with_retryable(mut self, retryable: bool) -> ConnectorError {
        self.retryable = retryable;
        self
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message first (it says what happened), the kind as a tag after it.
        write!(f, "{} [{}", self.message, self.kind)?;
        if self.retryable {
            f.write_str(", retryable")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConnectorError {}
