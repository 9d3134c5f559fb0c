//! Every way a plugin file can be wrong is reported with the file and a clear reason, and
//! the other plugins still load and work.

use super::*;
use acdlink::{registry::LoadFailureReason, session::Session};
use acdlink_tests::{stderr, stdout, Sandbox};
use std::collections::BTreeMap;

/// A plugin directory with one of each kind of bad file, plus two good plugins.
fn mixed_plugin_dir() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.add_file(
        &format!("garbage{}", std::env::consts::DLL_SUFFIX),
        b"this is not a library\n",
    );
    sandbox.add_file(
        "README.txt",
        b"files without the library extension are ignored\n",
    );
    for fixture in [
        "acdlink-fixture-no-export",
        "acdlink-fixture-wrong-version",
        "acdlink-fixture-wrong-layout",
        "acdlink-fixture-init-panics",
        "acdlink-fixture-read-panics",
        "acdlink-connector-demo-plugin",
    ] {
        sandbox.add_plugin(fixture);
    }
    sandbox
}

#[test]
fn each_bad_plugin_is_reported_and_the_rest_load_and_work() {
    let sandbox = mixed_plugin_dir();
    let registry = registry(Some(sandbox.plugin_dir()));
    let failures: BTreeMap<String, &LoadFailureReason> = registry
        .failures()
        .iter()
        .map(|failure| {
            let name = failure
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, &failure.reason)
        })
        .collect();
    let reason = |needle: &str| -> &LoadFailureReason {
        failures
            .iter()
            .find(|(name, _)| name.contains(needle))
            .map(|(_, reason)| *reason)
            .unwrap_or_else(|| panic!("no failure for {needle}: {failures:?}"))
    };
    assert_eq!(failures.len(), 5, "{failures:?}");
    assert!(matches!(
        reason("garbage"),
        LoadFailureReason::NotALibrary(_)
    ));
    assert!(matches!(
        reason("no_export"),
        LoadFailureReason::NotAPlugin { .. }
    ));
    match reason("wrong_version") {
        LoadFailureReason::IncompatibleVersion { expected, found } => {
            assert_eq!((expected.as_str(), found.as_str()), ("0.2.0", "1.0.0"));
        }
        other => panic!("expected a version failure, found {other}"),
    }
    match reason("wrong_layout") {
        LoadFailureReason::LayoutMismatch { summary, .. } => {
            assert!(
                summary.contains("`open`"),
                "the reason names the field: {summary}"
            );
        }
        other => panic!("expected a layout failure, found {other}"),
    }
    assert!(matches!(
        reason("init_panics"),
        LoadFailureReason::InitPanicked
    ));

    let kinds: Vec<&str> = registry
        .plugins()
        .iter()
        .map(|plugin| plugin.manifest.kind.as_str())
        .collect();
    assert_eq!(kinds, ["demo", "panicky"]);
    let demo = registry.find("demo").unwrap();
    let mut session =
        Session::open("demo", demo, &serde_json::json!({ "queues": 2 }), &utc()).unwrap();
    let records = read_json(
        &mut session,
        acdlink_connector_api::StreamKind::PHONELINK_INTERVALS,
        window("2024-03-04T00:00:00Z", "2024-03-04T06:00:00Z"),
        100,
    );
    assert_eq!(records.len(), 2 * 24);
}

#[test]
fn plugins_command_lists_connectors_and_failures_with_reasons() {
    let sandbox = mixed_plugin_dir();
    sandbox.write_config("");
    let output = sandbox.acdlink(&["plugins", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let document: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let connectors = document["connectors"].as_array().unwrap();
    let kinds: Vec<(&str, bool)> = connectors
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["builtin"].as_bool().unwrap()))
        .collect();
    // Built-ins first (csv and demo, in link order), then the plugin directory's.
    assert_eq!(kinds, [("csv", true), ("demo", true), ("panicky", false)]);
    let demo = connectors
        .iter()
        .find(|c| c["kind"] == "demo")
        .expect("the demo connector is listed");
    let demo_settings: Vec<&str> = demo["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|setting| setting["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        demo_settings,
        [
            "queues",
            "agents",
            "seed",
            "interval_minutes",
            "daily_volume",
            "corrections"
        ]
    );
    let failures: Vec<(String, String)> = document["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason_of = |needle: &str| {
        failures
            .iter()
            .find(|(path, _)| path.contains(needle))
            .map(|(_, reason)| reason.as_str())
            .unwrap_or_else(|| panic!("{needle} not reported: {failures:?}"))
    };
    assert!(reason_of("garbage").starts_with("not a loadable library"));
    assert!(reason_of("no_export").starts_with("not an acdlink plugin"));
    assert!(reason_of("wrong_version").contains("built against 1.0.0"));
    assert!(reason_of("wrong_layout").starts_with("incompatible ABI layout"));
    assert_eq!(reason_of("init_panics"), "module initialisation panicked");
    // With the built-ins loaded, the demo library duplicates the built-in demo.
    assert!(
        reason_of("demo_plugin").contains("connector kind `demo` is already provided by built-in")
    );
    assert_eq!(failures.len(), 6, "{failures:?}");

    let table = sandbox.acdlink(&["plugins"]);
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(text.contains("6 plugin file(s) failed to load:"), "{text}");
    assert!(text.contains("panicky"), "{text}");
}

#[cfg(unix)]
#[test]
fn plugins_writable_by_others_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let path = sandbox.add_plugin("acdlink-fixture-read-panics");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let strict = registry(Some(sandbox.plugin_dir()));
    assert!(strict.plugins().is_empty());
    assert!(matches!(
        strict.failures()[0].reason,
        LoadFailureReason::InsecurePermissions(_)
    ));
    let relaxed = Registry::load(&acdlink::registry::LoadOptions {
        plugin_dirs: vec![sandbox.plugin_dir()],
        allow_insecure_plugins: true,
        include_builtins: false,
    });
    assert!(relaxed.failures().is_empty(), "{:?}", relaxed.failures());
    assert!(relaxed.find("panicky").is_some());
}

#[test]
fn a_missing_plugin_directory_is_reported() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path().join("no-such-dir");
    let registry = registry(Some(missing.clone()));
    assert_eq!(registry.failures().len(), 1);
    assert_eq!(registry.failures()[0].path, missing);
    assert!(matches!(
        registry.failures()[0].reason,
        LoadFailureReason::Directory(_)
    ));
}
