//! Helpers for the end-to-end tests: where the built `acdlink` binary and plugin libraries
//! are, and temporary plugin directories and configurations that use them.
//!
//! The tests use the artifacts of `cargo build --workspace` (the README's test command
//! runs it before the tests): cdylib crates and the binary are not built by `cargo test`.

pub mod receiver;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The directory holding the built binary and plugin libraries (`target/debug`): the test
/// executable lives in its `deps/` subdirectory.
pub fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe
        .parent()
        .expect("the test executable is in target/<profile>/deps");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// The built plugin library of workspace crate `crate_name` (e.g.
/// `acdlink-connector-demo-plugin`).
pub fn plugin_library(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = artifact_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// The built `acdlink` binary.
pub fn acdlink_binary() -> PathBuf {
    let path = artifact_dir().join(format!("acdlink{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// A temporary directory with a plugin directory and a configuration file.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("plugins")).expect("plugins directory");
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// Copies the built plugin of `crate_name` into the plugin directory; returns its path.
    pub fn add_plugin(&self, crate_name: &str) -> PathBuf {
        let source = plugin_library(crate_name);
        let target = self
            .plugin_dir()
            .join(source.file_name().expect("a library has a file name"));
        std::fs::copy(&source, &target).expect("copy the plugin");
        target
    }

    /// Writes a file into the plugin directory; returns its path.
    pub fn add_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let target = self.plugin_dir().join(name);
        std::fs::write(&target, contents).expect("write a file");
        target
    }

    /// Writes `acdlink.toml` with `[host] plugin_dirs = ["plugins"]` followed by `rest`;
    /// returns its path.
    pub fn write_config(&self, rest: &str) -> PathBuf {
        let path = self.path().join("acdlink.toml");
        std::fs::write(
            &path,
            format!("[host]\nplugin_dirs = [\"plugins\"]\n\n{rest}"),
        )
        .expect("write the configuration");
        path
    }

    /// Runs the real binary with `--config <sandbox>/acdlink.toml` and `args`.
    pub fn acdlink(&self, args: &[&str]) -> Output {
        self.acdlink_with_env(args, &[])
    }

    /// Runs the real binary like [`Sandbox::acdlink`], with extra environment variables.
    pub fn acdlink_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(acdlink_binary())
            .envs(env.iter().copied())
            .arg("--config")
            .arg(self.path().join("acdlink.toml"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env_remove("RUST_LOG")
            .output()
            .expect("run acdlink")
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// Stdout of a finished command as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a finished command as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
