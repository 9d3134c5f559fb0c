//! The plugin registry: every connector the host can run, built in or loaded from a plugin
//! directory, behind one type ([`Plugin`]) so that both go through the same code path.
//!
//! Loading never stops at the first bad file: every failure is collected with the file and
//! the reason ([`LoadFailure`]) and the other plugins still load. Plugins are never
//! unloaded; upgrading one means restarting the host.

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule, RootModuleError};
use acdlink_connector_api::{sdk, ConnectorModuleRef, Manifest};
use std::{
    fmt,
    path::{Path, PathBuf},
};

/// A connector the host can open.
#[derive(Clone)]
pub struct Plugin {
    pub manifest: Manifest,
    pub origin: Origin,
    pub module: ConnectorModuleRef,
}

/// Where a connector comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into this binary by the named crate.
    Builtin { crate_name: &'static str },
    /// Loaded from a plugin library.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin { crate_name } => write!(f, "built-in ({crate_name})"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A plugin file (or directory) that could not be loaded, and why.
#[derive(Debug)]
pub struct LoadFailure {
    pub path: PathBuf,
    pub reason: LoadFailureReason,
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Why a plugin did not load. Each variant is one failure mode an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailureReason {
    /// The plugin directory itself could not be read.
    #[error("cannot read plugin directory: {0}")]
    Directory(std::io::Error),
    /// The file is not a shared library the system loader accepts.
    #[error("not a loadable library: {0}")]
    NotALibrary(String),
    /// A shared library, but it exports no acdlink root module.
    #[error("not an acdlink plugin: the library exports no `{symbol}` symbol ({detail})")]
    NotAPlugin { symbol: String, detail: String },
    /// Built against a connector-api version this host cannot load.
    #[error("incompatible connector-api version: the plugin was built against {found}, this host needs a version compatible with {expected}; rebuild the plugin against connector-api {expected}")]
    IncompatibleVersion { expected: String, found: String },
    /// The types crossing the boundary differ from the host's.
    #[error(
        "incompatible ABI layout: {summary}; rebuild the plugin against this host's connector-api"
    )]
    LayoutMismatch {
        summary: String,
        /// abi_stable's full report, for `--verbose`.
        detail: String,
    },
    /// The plugin's module initialisation panicked.
    #[error("module initialisation panicked")]
    InitPanicked,
    /// The plugin's module initialisation returned an error.
    #[error("module initialisation failed: {0}")]
    InitFailed(String),
    /// The connector's manifest could not be read or is invalid.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// Another plugin (or a built-in) already provides this connector kind.
    #[error("connector kind `{kind}` is already provided by {other}; remove one of them")]
    DuplicateKind { kind: String, other: String },
    /// The file or its directory is writable by other users (Unix), so anyone could
    /// replace the code the host runs.
    #[error("refused: {0} is writable by other users; fix its permissions (chmod o-w) or set host.allow_insecure_plugins")]
    InsecurePermissions(String),
}

/// What the registry should load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Directories whose `.so`/`.dll`/`.dylib` files are loaded as plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// Load plugin files even if other users can write to them (Unix).
    pub allow_insecure_plugins: bool,
    /// Include the connectors compiled into this binary.
    pub include_builtins: bool,
}

/// Every connector the host knows, and every plugin that failed to load.
#[derive(Default)]
pub struct Registry {
    plugins: Vec<Plugin>,
    failures: Vec<LoadFailure>,
}

impl Registry {
    /// Loads the built-ins (if asked) and then every plugin file of every directory, in
    /// directory order and file-name order.
    pub fn load(options: &LoadOptions) -> Registry {
        let mut registry = Registry::default();
        if options.include_builtins {
            for builtin in sdk::builtin_connectors() {
                let origin = Origin::Builtin {
                    crate_name: builtin.crate_name,
                };
                let path = PathBuf::from(format!("<built-in {}>", builtin.crate_name));
                registry.add_module(path, origin, (builtin.module)());
            }
        }
        for directory in &options.plugin_dirs {
            registry.load_directory(directory, options.allow_insecure_plugins);
        }
        registry
    }

    /// Every connector that loaded, built-ins first.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// Every plugin file that failed, with its reason.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// The connector of the given kind.
    pub fn find(&self, kind: &str) -> Option<&Plugin> {
        self.plugins
            .iter()
            .find(|plugin| plugin.manifest.kind == kind)
    }

    /// Loads one directory's plugin files.
    pub fn load_directory(&mut self, directory: &Path, allow_insecure: bool) {
        let entries = match std::fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) => {
                self.fail(directory, LoadFailureReason::Directory(error));
                return;
            }
        };
        if !allow_insecure {
            if let Some(reason) = insecure(directory) {
                self.fail(directory, reason);
                return;
            }
        }
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| is_plugin_file_name(path) && path.is_file())
            .collect();
        files.sort();
        for file in files {
            self.load_file(&file, allow_insecure);
        }
    }

    /// Loads one plugin file, recording a failure instead of returning it.
    pub fn load_file(&mut self, path: &Path, allow_insecure: bool) {
        if !allow_insecure {
            if let Some(reason) = insecure(path) {
                self.fail(path, reason);
                return;
            }
        }
        match load_module(path) {
            Ok(module) => {
                self.add_module(path.to_path_buf(), Origin::File(path.to_path_buf()), module)
            }
            Err(reason) => self.fail(path, reason),
        }
    }

    fn add_module(&mut self, path: PathBuf, origin: Origin, module: ConnectorModuleRef) {
        let manifest = match (module.manifest())().into_result() {
            Ok(manifest) => manifest,
            Err(error) => return self.fail(&path, LoadFailureReason::Manifest(error.to_string())),
        };
        let problems = manifest.problems();
        if !problems.is_empty() {
            return self.fail(&path, LoadFailureReason::Manifest(problems.join("; ")));
        }
        if let Some(other) = self.find(&manifest.kind) {
            let reason = LoadFailureReason::DuplicateKind {
                kind: manifest.kind.to_string(),
                other: other.origin.to_string(),
            };
            return self.fail(&path, reason);
        }
        tracing::debug!(kind = %manifest.kind, %origin, "connector loaded");
        self.plugins.push(Plugin {
            manifest,
            origin,
            module,
        });
    }

    fn fail(&mut self, path: &Path, reason: LoadFailureReason) {
        tracing::debug!(path = %path.display(), %reason, "plugin not loaded");
        self.failures.push(LoadFailure {
            path: path.to_path_buf(),
            reason,
        });
    }
}

/// Whether the file name has this platform's shared-library extension.
fn is_plugin_file_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension == std::env::consts::DLL_EXTENSION)
}

#[cfg(unix)]
fn insecure(path: &Path) -> Option<LoadFailureReason> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o002 != 0).then(|| LoadFailureReason::InsecurePermissions(path.display().to_string()))
}

#[cfg(not(unix))]
fn insecure(_path: &Path) -> Option<LoadFailureReason> {
    None
}

/// Loads a library and its root module with abi_stable's checks (version, then layout).
/// Uses `lib_header_from_path` + `init_root_module` rather than `load_from_directory`,
/// which caches a single library per root-module type.
fn load_module(path: &Path) -> Result<ConnectorModuleRef, LoadFailureReason> {
    let header = lib_header_from_path(path).map_err(classify)?;
    header
        .init_root_module::<ConnectorModuleRef>()
        .map_err(classify)
}

fn classify(error: LibraryError) -> LoadFailureReason {
    match error {
        LibraryError::OpenError { err, .. } => LoadFailureReason::NotALibrary(err.to_string()),
        LibraryError::GetSymbolError { symbol, err, .. } => LoadFailureReason::NotAPlugin {
            symbol: String::from_utf8_lossy(&symbol)
                .trim_end_matches('\0')
                .to_string(),
            detail: err.to_string(),
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadFailureReason::IncompatibleVersion {
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::ParseVersionError(error) => LoadFailureReason::IncompatibleVersion {
            expected: ConnectorModuleRef::VERSION_STRINGS.version.to_string(),
            found: format!("an unreadable version ({error})"),
        },
        LibraryError::RootModule { err, .. } => match err {
            RootModuleError::Unwound => LoadFailureReason::InitPanicked,
            RootModuleError::Returned(error) => LoadFailureReason::InitFailed(error.to_string()),
        },
        LibraryError::AbiInstability(error) => {
            let detail = error.to_string();
            LoadFailureReason::LayoutMismatch {
                summary: summarize_layout_error(&detail),
                detail,
            }
        }
        LibraryError::InvalidAbiHeader(header) => LoadFailureReason::LayoutMismatch {
            summary: format!(
                "the plugin uses abi_stable ABI header {}.{}, this host another one",
                header.abi_major, header.abi_minor
            ),
            detail: format!("{header:?}"),
        },
        LibraryError::InvalidCAbi { expected, found } => LoadFailureReason::LayoutMismatch {
            summary: "the plugin was compiled with a different C ABI".to_string(),
            detail: format!("expected {expected}, found {found}"),
        },
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => classify(first),
            None => LoadFailureReason::InitFailed("unknown loading error".to_string()),
        },
    }
}

/// abi_stable's layout report is many lines long; the one-line reason names the first
/// error and, where the report shows it, the field of the root module where it was found.
fn summarize_layout_error(detail: &str) -> String {
    let lines: Vec<&str> = detail.lines().map(str::trim).collect();
    let error = lines
        .iter()
        .find_map(|line| line.strip_prefix("Error:"))
        .or_else(|| lines.iter().copied().find(|line| !line.is_empty()))
        .unwrap_or("the plugin's types differ from the host's")
        .trim();
    // The report lists the path to the mismatch after "error(s)inside:" as `field_name:`
    // lines; numeric names are wrapper fields, the first named one is the root module's.
    let field = lines
        .iter()
        .rposition(|line| line.ends_with("error(s)inside:"))
        .and_then(|start| {
            lines[start..]
                .iter()
                .take_while(|line| !line.starts_with("Layout of expected type"))
                .filter_map(|line| line.strip_prefix("field_name:"))
                .find(|name| !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()))
        });
    match field {
        Some(field) => format!("{error} (at root module field `{field}`)"),
        None => error.to_string(),
    }
}
