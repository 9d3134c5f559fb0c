//! The examples of docs/connectors/csv.md, run: every configuration in the guide is
//! accepted, and the sample file shown above it imports without a bad row.

mod common;

use acdlink_connector_api::StreamKind;
use acdlink_connector_csv::format::Encoding;
use common::{open, read_all, Folder};
use serde_json::Value;

/// `(text, toml)` for each TOML block of the guide that configures the connector, with
/// the text block shown before it (the sample file).
fn examples() -> Vec<(String, String)> {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/connectors/csv.md"),
    )
    .expect("the guide");
    let mut examples = Vec::new();
    let mut last_text = String::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let kind = match line.trim() {
            "```text" => "text",
            "```toml" => "toml",
            _ => continue,
        };
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|line| line.trim() != "```")
            .collect();
        let block = block.join("\n") + "\n";
        if kind == "text" {
            last_text = block;
        } else if block.contains("[connector.settings") {
            examples.push((last_text.clone(), block));
        }
    }
    examples
}

#[test]
fn every_example_in_the_guide_is_accepted_and_imports_its_sample_file() {
    let examples = examples();
    assert_eq!(examples.len(), 7, "the guide's configuration examples");
    for (text, toml_text) in examples {
        let document: toml::Value =
            toml::from_str(&toml_text).unwrap_or_else(|error| panic!("{error}\n{toml_text}"));
        let mut document = serde_json::to_value(document).unwrap();
        let connector = match &mut document["connector"] {
            Value::Array(connectors) => connectors.remove(0),
            other => other.take(),
        };
        let timezone = connector["timezone"].as_str().unwrap_or("UTC").to_string();
        let mut settings = connector["settings"].clone();
        let folder = Folder::new();
        settings["settle_secs"] = 0.into();
        settings["archive_dir"] = folder.import_dir.join("archive").to_string_lossy().into();
        settings["error_dir"] = folder.import_dir.join("error").to_string_lossy().into();
        let (stream_key, stream) = if settings.get("phonelink").is_some() {
            let events = settings["phonelink"]["contacts_as"] == "events";
            (
                "phonelink",
                if events {
                    StreamKind::PHONELINK_CONTACTS
                } else {
                    StreamKind::PHONELINK_INTERVALS
                },
            )
        } else {
            ("timelink", StreamKind::TIMELINK)
        };
        settings[stream_key]["import_dir"] = folder.import_dir.to_string_lossy().into();
        let encoding = settings[stream_key]["format"]["encoding"]
            .as_str()
            .unwrap_or("utf-8");
        let bytes = Encoding::from_name(encoding)
            .and_then(|encoding| encoding.encode(&text))
            .expect("the sample can be written in its encoding");
        std::fs::write(folder.import_dir.join("sample.csv"), bytes).unwrap();

        let mut connector =
            open(&settings, &timezone).unwrap_or_else(|error| panic!("{error}\n{toml_text}"));
        let result = read_all(&mut connector, stream, None, 1000, true).unwrap();
        assert!(
            folder.names("error").is_empty(),
            "{:?}\n{toml_text}",
            std::fs::read_to_string(folder.import_dir.join("error/sample.csv.error.txt"))
        );
        assert!(result.rejects.is_empty(), "{:?}", result.rejects);
        assert!(!result.records.is_empty(), "{toml_text}");
        assert_eq!(folder.names("archive"), ["sample.csv"]);
    }
}
