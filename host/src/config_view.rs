//! The resolved configuration as TOML, for `acdlink config show`: every default filled in,
//! every path resolved, every secret replaced by where it comes from.

use crate::config::{Config, ConnectorConfig, UploadConfig};
use toml::{Table, Value};

/// The resolved configuration as TOML text.
pub fn to_toml(config: &Config) -> anyhow::Result<String> {
    let mut document = Table::new();
    let mut host = Table::new();
    host.insert("state_dir".into(), path(&config.state_dir));
    host.insert(
        "plugin_dirs".into(),
        Value::Array(config.plugin_dirs.iter().map(|dir| path(dir)).collect()),
    );
    host.insert(
        "allow_insecure_plugins".into(),
        Value::Boolean(config.allow_insecure_plugins),
    );
    host.insert(
        "max_outbox_records".into(),
        integer(config.max_outbox_records),
    );
    document.insert("host".into(), Value::Table(host));
    if let Some(upload) = &config.upload {
        document.insert("upload".into(), Value::Table(upload_table(upload)));
    }
    let connectors: Result<Vec<Value>, anyhow::Error> = config
        .connectors
        .iter()
        .map(|connector| connector_table(connector).map(Value::Table))
        .collect();
    document.insert("connector".into(), Value::Array(connectors?));
    Ok(format!(
        "# The resolved configuration: defaults filled in, paths resolved, secrets shown by\n# where they come from. A connector without `phonelink`/`timelink` reads whatever\n# its plugin offers.\n\n{}",
        toml::to_string_pretty(&document)?
    ))
}

fn path(path: &std::path::Path) -> Value {
    Value::String(path.display().to_string())
}

fn integer(number: impl TryInto<i64>) -> Value {
    Value::Integer(number.try_into().unwrap_or(i64::MAX))
}

fn upload_table(upload: &UploadConfig) -> Table {
    let mut table = Table::new();
    match upload {
        UploadConfig::Http(http) => {
            table.insert("type".into(), Value::String("http".into()));
            table.insert("base_url".into(), Value::String(http.base_url.clone()));
            table.insert("api_key".into(), Value::String(http.api_key.to_string()));
            table.insert(
                "integration_configuration_id".into(),
                integer(http.integration_configuration_id),
            );
            if let Some(system) = &http.external_system {
                table.insert("external_system".into(), Value::String(system.clone()));
            }
            table.insert("batch_size".into(), integer(http.batch_size));
            table.insert("concurrency".into(), integer(http.concurrency));
            table.insert("timeout_secs".into(), integer(http.timeout_secs));
            table.insert(
                "allow_plain_http".into(),
                Value::Boolean(http.allow_plain_http),
            );
        }
        UploadConfig::File(file) => {
            table.insert("type".into(), Value::String("file".into()));
            table.insert("path".into(), path(&file.path));
            table.insert(
                "integration_configuration_id".into(),
                integer(file.integration_configuration_id),
            );
            if let Some(system) = &file.external_system {
                table.insert("external_system".into(), Value::String(system.clone()));
            }
            table.insert("batch_size".into(), integer(file.batch_size));
        }
    }
    table
}

fn connector_table(connector: &ConnectorConfig) -> anyhow::Result<Table> {
    let mut table = Table::new();
    table.insert("name".into(), Value::String(connector.name.clone()));
    table.insert("plugin".into(), Value::String(connector.plugin.clone()));
    table.insert("enabled".into(), Value::Boolean(connector.enabled));
    // Unset switches stay unset (the connector's streams decide); the header says so.
    for (key, switch) in [
        ("phonelink", connector.phonelink),
        ("timelink", connector.timelink),
    ] {
        if let Some(flag) = switch {
            table.insert(key.into(), Value::Boolean(flag));
        }
    }
    if let Some(form) = connector.phonelink_form {
        table.insert(
            "phonelink_form".into(),
            Value::String(
                match form {
                    crate::config::PhoneLinkForm::Intervals => "intervals",
                    crate::config::PhoneLinkForm::Contacts => "contacts",
                }
                .into(),
            ),
        );
    }
    table.insert(
        "timezone".into(),
        Value::String(connector.timezone.name().to_string()),
    );
    table.insert(
        "interval_minutes".into(),
        integer(connector.interval_minutes),
    );
    table.insert("delay_secs".into(), integer(connector.delay_secs));
    table.insert("history_days".into(), integer(connector.history_days));
    table.insert("reconcile_hours".into(), integer(connector.reconcile_hours));
    table.insert(
        "timelink_poll_secs".into(),
        integer(connector.timelink_poll_secs),
    );
    table.insert(
        "call_timeout_secs".into(),
        integer(connector.call_timeout_secs),
    );
    table.insert("max_records".into(), integer(connector.max_records));
    table.insert(
        "settings".into(),
        Value::try_from(connector.settings.redacted())?,
    );
    let mapping = &connector.mapping;
    let mut mapping_table = Table::new();
    if let Some(activity) = &mapping.default_activity {
        mapping_table.insert("default_activity".into(), Value::String(activity.clone()));
    }
    mapping_table.insert(
        "unmapped_queues".into(),
        Value::try_from(mapping.unmapped_queues)?,
    );
    mapping_table.insert(
        "unmapped_agents".into(),
        Value::try_from(mapping.unmapped_agents)?,
    );
    mapping_table.insert("queues".into(), Value::try_from(&mapping.queues)?);
    mapping_table.insert("activities".into(), Value::try_from(&mapping.activities)?);
    mapping_table.insert("agents".into(), Value::try_from(&mapping.agents)?);
    table.insert("mapping".into(), Value::Table(mapping_table));
    Ok(table)
}
