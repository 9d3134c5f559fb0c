//! The demo connector loaded as a plugin library yields exactly what the built-in yields.

use super::*;
use acdlink::session::Session;
use acdlink_tests::Sandbox;
use serde_json::json;

#[test]
fn demo_library_yields_the_same_records_as_the_builtin() {
    let sandbox = Sandbox::new();
    let library_path = sandbox.add_plugin("acdlink-connector-demo-plugin");
    let from_file = registry(Some(sandbox.plugin_dir()));
    assert!(
        from_file.failures().is_empty(),
        "{:?}",
        from_file.failures()
    );
    let builtin = registry(None);
    let file_plugin = from_file
        .find("demo")
        .expect("the demo plugin library loaded");
    let builtin_plugin = builtin
        .find("demo")
        .expect("the demo connector is built in");
    assert_eq!(
        file_plugin.origin,
        acdlink::registry::Origin::File(library_path)
    );
    assert_eq!(file_plugin.manifest, builtin_plugin.manifest);

    // Across the autumn DST change in Berlin, with odd batch sizes.
    let settings = json!({ "queues": 5, "agents": 9, "seed": 42 });
    let window = window("2024-10-26T00:00:00Z", "2024-10-28T00:00:00Z");
    let mut from_library = Session::open("dll", file_plugin, &settings, &zone("Europe/Berlin"))
        .expect("open the library's demo");
    let mut compiled_in =
        Session::open("builtin", builtin_plugin, &settings, &zone("Europe/Berlin"))
            .expect("open the built-in demo");
    for &stream in StreamKind::ALL {
        for max_records in [1_000, 7] {
            let expected = read_json(&mut compiled_in, stream, window, 4096);
            let actual = read_json(&mut from_library, stream, window, max_records);
            assert!(!expected.is_empty(), "{stream}: the window has data");
            assert_eq!(
                actual.len(),
                expected.len(),
                "{stream} in batches of {max_records}"
            );
            assert!(
                actual == expected,
                "{stream} in batches of {max_records}: records differ"
            );
        }
    }
}

#[test]
fn demo_library_passes_the_conformance_kit() {
    let sandbox = Sandbox::new();
    sandbox.add_plugin("acdlink-connector-demo-plugin");
    let registry = registry(Some(sandbox.plugin_dir()));
    let plugin = registry
        .find("demo")
        .expect("the demo plugin library loaded");
    let report = acdlink_connector_api::conformance::Conformance::new(
        &json!({ "queues": 2, "agents": 3 }),
        window("2024-03-09T12:00:00Z", "2024-03-11T12:00:00Z"),
    )
    .timezone(zone("America/New_York"))
    .run_module(plugin.module)
    .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.streams.len(), 3);
    assert!(
        report.streams.iter().all(|stream| stream.n_records > 0),
        "{report:?}"
    );
}
