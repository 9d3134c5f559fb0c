//! Secrets (API keys, database passwords): loaded once from the environment or a file, and
//! never printed. `Debug` and `Display` say where a secret came from, not what it is.

use std::{fmt, path::PathBuf};

/// Where a secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file; its content without the trailing line break.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret; the error says which variable or file and what is wrong with it.
    pub fn load(self) -> Result<Secret, String> {
        let value = match &self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("environment variable {name} is not set"))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("environment variable {name} is not valid UTF-8"))
                }
            },
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read secret file {}: {error}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(Secret {
            value,
            source: self,
        })
    }

    fn describe(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("environment variable {name}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// A loaded secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    source: SecretSource,
}

impl Secret {
    /// The secret itself, for the one place that needs it (a header, a connector's
    /// settings). Never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted: {}>", self.source.describe())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
