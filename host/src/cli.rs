//! The `acdlink` command line: argument parsing and the commands (`plugins`, `check`,
//! `discover`, `read`, `config`, and the service commands in [`crate::commands`]). The
//! binary's `main` only decides what an error means for the exit code.

use crate::{
    config::{Config, ConnectorConfig},
    registry::{LoadFailureReason, LoadOptions, Origin, Plugin, Registry},
    session::{streams_of, Session},
};
use acdlink_connector_api::{
    time::SourceTimeZone, Delivery, DiscoveredItem, ReadBatch, ReadMode, StreamKind, TimeWindow,
    UtcMillis,
};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::{
    io::{BufWriter, Seek, Write},
    ops::ControlFlow,
    path::PathBuf,
    time::Instant,
};

/// Moves contact-centre data (PhoneLink, TimeLink) from telephony systems into workforce
/// management.
#[derive(Debug, Parser)]
#[command(name = "acdlink", version, about, propagate_version = true)]
pub struct Cli {
    /// The configuration file. Without it, `acdlink.toml` in the current directory is used
    /// if it exists, else only the built-in connectors with default settings.
    #[arg(long, short, env = "ACDLINK_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides it.
    #[arg(long, short, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate or show the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List every connector (built in or loaded from the plugin directories) and every
    /// plugin file that failed to load, with the reason.
    Plugins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Open a connector and test its source, like an ODBC "test" button.
    Check {
        /// A connector name from the configuration, or a connector kind (default settings).
        connector: String,
    },
    /// List the queues, agents and activities a connector's source knows.
    Discover {
        /// A connector name from the configuration, or a connector kind (default settings).
        connector: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Read normalized records and print them as JSON lines on stdout (or into a file).
    /// Nothing is uploaded and nothing is committed: an incremental source is left
    /// untouched.
    Read(ReadArgs),
    /// Import a date range of a connector into the outbox (history, or again after a
    /// mapping change): only new or changed records are enqueued. The checkpoint does not
    /// move; the service uploads what was enqueued.
    Import(ImportArgs),
    /// Run the service: read every enabled connector on its schedule and upload. With
    /// --once: catch every enabled connector up to now, drain the outbox, and exit
    /// (non-zero if anything failed).
    Run {
        #[arg(long)]
        once: bool,
    },
    /// Per connector: paused or not, checkpoints, outbox depth, last errors; quarantined
    /// batches.
    Status,
    /// Send quarantined batches again (after the cause was fixed in the WFM): they go back
    /// into the outbox with a new idempotency key, and the service uploads them.
    Requeue {
        /// Batch numbers as `status` lists them.
        #[arg(required_unless_present = "all")]
        batches: Vec<i64>,
        /// Every quarantined batch.
        #[arg(long, conflicts_with = "batches")]
        all: bool,
    },
    /// Pause a connector: the service stops reading it until `resume` (persisted).
    Pause { connector: String },
    /// Resume a paused connector: its next read imports everything it missed.
    Resume { connector: String },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A configured connector name.
    pub connector: String,
    /// First day (or instant) to import, in the connector's time zone.
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive), in the same forms.
    #[arg(long)]
    pub to: String,
    /// Only this stream (default: every stream the configuration switches on).
    #[arg(long, value_enum)]
    pub stream: Option<StreamArg>,
    /// Show what would be enqueued (the bodies, as JSON lines on stdout) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the file and open every connector with its settings (reading no data);
    /// exit 1 if anything is wrong.
    Check,
    /// Print the resolved configuration (defaults applied, paths resolved) with every
    /// secret redacted.
    Show,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// A connector name from the configuration, or a connector kind (default settings).
    pub connector: String,
    /// What to read. `phonelink` means the connector's interval stream if it has one,
    /// else its contact stream.
    #[arg(long, value_enum)]
    pub stream: StreamArg,
    /// Start of the window: a date (local midnight in the connector's time zone), a
    /// local date and time (2024-03-01T08:00), or an instant (2024-03-01T07:00:00Z).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (exclusive), in the same forms as --from.
    #[arg(long)]
    pub to: Option<String>,
    /// The most records per batch asked of the connector.
    #[arg(long, default_value_t = 4096)]
    pub max_records: u32,
    /// Write the JSON lines into this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamArg {
    Phonelink,
    PhonelinkIntervals,
    PhonelinkContacts,
    Timelink,
}

impl StreamArg {
    /// The stream meant: `phonelink` is the connector's interval stream if it has one,
    /// else its contact stream.
    pub fn kind(self, manifest: &acdlink_connector_api::Manifest) -> StreamKind {
        match self {
            StreamArg::PhonelinkIntervals => StreamKind::PHONELINK_INTERVALS,
            StreamArg::PhonelinkContacts => StreamKind::PHONELINK_CONTACTS,
            StreamArg::Timelink => StreamKind::TIMELINK,
            StreamArg::Phonelink
                if manifest
                    .read_mode(StreamKind::PHONELINK_INTERVALS)
                    .is_some() =>
            {
                StreamKind::PHONELINK_INTERVALS
            }
            StreamArg::Phonelink => StreamKind::PHONELINK_CONTACTS,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(cli.config)?;
    let registry = Registry::load(&LoadOptions {
        plugin_dirs: config.plugin_dirs.clone(),
        allow_insecure_plugins: config.allow_insecure_plugins,
        include_builtins: true,
    });
    if !matches!(cli.command, Command::Plugins { .. }) && !registry.failures().is_empty() {
        eprintln!(
            "warning: {} plugin file(s) failed to load; `acdlink plugins` shows why",
            registry.failures().len()
        );
    }
    match cli.command {
        Command::Plugins { json } => plugins(&registry, json, cli.verbose > 0),
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&config, &registry),
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            print!("{}", crate::config_view::to_toml(&config)?);
            Ok(())
        }
        Command::Check { connector } => check(&config, &registry, &connector),
        Command::Discover { connector, json } => discover(&config, &registry, &connector, json),
        Command::Read(args) => read(&config, &registry, &args),
        Command::Import(args) => crate::commands::import(&config, &registry, &args),
        Command::Run { once } => crate::commands::run(config, registry, once),
        Command::Status => crate::commands::status(&config),
        Command::Requeue { batches, all } => {
            crate::commands::requeue(&config, (!all).then_some(&batches[..]))
        }
        Command::Pause { connector } => crate::commands::set_paused(&config, &connector, true),
        Command::Resume { connector } => crate::commands::set_paused(&config, &connector, false),
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(&path)?),
        None => {
            let default = PathBuf::from("acdlink.toml");
            if default.is_file() {
                Ok(Config::load(&default)?)
            } else {
                Ok(Config::empty())
            }
        }
    }
}

fn plugins(registry: &Registry, json: bool, verbose: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let connectors: Vec<serde_json::Value> = registry
            .plugins()
            .iter()
            .map(|plugin| {
                let manifest = &plugin.manifest;
                serde_json::json!({
                    "kind": manifest.kind.as_str(),
                    "display_name": manifest.display_name.as_str(),
                    "vendor": manifest.vendor.as_str(),
                    "version": manifest.version.as_str(),
                    "streams": manifest.streams.iter().map(|info| serde_json::json!({
                        "stream": info.stream.to_string(),
                        "mode": info.mode.to_string(),
                    })).collect::<Vec<_>>(),
                    "settings": manifest.settings.iter().map(|setting| serde_json::json!({
                        "name": setting.name.as_str(),
                        "description": setting.description.as_str(),
                        "required": setting.required,
                        "secret": setting.secret,
                    })).collect::<Vec<_>>(),
                    "builtin": matches!(plugin.origin, Origin::Builtin { .. }),
                    "source": plugin.origin.to_string(),
                })
            })
            .collect();
        let failures: Vec<serde_json::Value> = registry
            .failures()
            .iter()
            .map(|failure| {
                serde_json::json!({
                    "path": failure.path.display().to_string(),
                    "reason": failure.reason.to_string(),
                })
            })
            .collect();
        let document = serde_json::json!({ "connectors": connectors, "failures": failures });
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = registry
        .plugins()
        .iter()
        .map(|plugin| {
            let manifest = &plugin.manifest;
            let streams: Vec<String> = manifest
                .streams
                .iter()
                .map(|info| format!("{} ({})", info.stream, info.mode))
                .collect();
            [
                manifest.kind.to_string(),
                manifest.version.to_string(),
                manifest.vendor.to_string(),
                streams.join(", "),
                plugin.origin.to_string(),
            ]
        })
        .collect();
    write_table(
        &mut out,
        ["CONNECTOR", "VERSION", "VENDOR", "STREAMS", "SOURCE"],
        &rows,
    )?;
    if !registry.failures().is_empty() {
        writeln!(
            out,
            "\n{} plugin file(s) failed to load:",
            registry.failures().len()
        )?;
        for failure in registry.failures() {
            writeln!(out, "  {failure}")?;
            if let (true, LoadFailureReason::LayoutMismatch { detail, .. }) =
                (verbose, &failure.reason)
            {
                for line in detail.lines().filter(|line| !line.trim().is_empty()) {
                    writeln!(out, "      {line}")?;
                }
            }
        }
    }
    Ok(())
}

/// Writes rows under a header, each column as wide as its widest cell.
pub(crate) fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(|title| title.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; N]| -> std::io::Result<()> {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header)?;
    for row in rows {
        line(row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// The configured connector called `name`, or the plugin of kind `name` with default
/// settings, and its plugin.
pub(crate) fn resolve<'r>(
    config: &Config,
    registry: &'r Registry,
    name: &str,
) -> anyhow::Result<(ConnectorConfig, &'r Plugin)> {
    let known_kinds = || {
        let kinds: Vec<&str> = registry
            .plugins()
            .iter()
            .map(|plugin| plugin.manifest.kind.as_str())
            .collect();
        kinds.join(", ")
    };
    if let Some(connector) = config.connector(name) {
        let plugin = registry.find(&connector.plugin).ok_or_else(|| {
            config.error_at_plugin(
                connector,
                format!(
                    "connector `{name}`: no plugin of kind `{}` is loaded; loaded kinds: {}{}",
                    connector.plugin,
                    known_kinds(),
                    if registry.failures().is_empty() {
                        ""
                    } else {
                        " (some plugin files failed to load: see `acdlink plugins`)"
                    }
                ),
            )
        })?;
        return Ok((connector.clone(), plugin));
    }
    if let Some(plugin) = registry.find(name) {
        let connector = ConnectorConfig::with_defaults(name, name);
        return Ok((connector, plugin));
    }
    let configured: Vec<&str> = config
        .connectors
        .iter()
        .map(|connector| connector.name.as_str())
        .collect();
    bail!(
        "no connector `{name}`: configured connectors: {}; connector kinds: {}",
        if configured.is_empty() {
            "none".to_string()
        } else {
            configured.join(", ")
        },
        known_kinds()
    )
}

fn open(
    config: &Config,
    registry: &Registry,
    name: &str,
) -> anyhow::Result<(ConnectorConfig, Session)> {
    let (connector, plugin) = resolve(config, registry, name)?;
    let session = Session::open(
        &connector.name,
        plugin,
        connector.settings.resolved(),
        &connector.timezone,
    )?;
    Ok((connector, session))
}

/// Checks every configured connector: its plugin is loaded, it can read the streams the
/// configuration switches on, and it opens with its settings.
fn config_check(config: &Config, registry: &Registry) -> anyhow::Result<()> {
    let path = config
        .path
        .as_ref()
        .map_or("<no config file>".to_string(), |path| {
            path.display().to_string()
        });
    println!("{path}: syntax and values ok");
    match &config.upload {
        Some(crate::config::UploadConfig::Http(http)) => println!(
            "upload: http to {} (integration {}, api key {})",
            http.base_url, http.integration_configuration_id, http.api_key
        ),
        Some(crate::config::UploadConfig::File(file)) => {
            println!("upload: NDJSON files in {}", file.path.display())
        }
        None => println!("upload: none configured (`run` needs an [upload] section)"),
    }
    for failure in registry.failures() {
        println!("warning: plugin {failure}");
    }
    let mut n_failed = 0;
    for connector in &config.connectors {
        match check_connector(config, registry, connector) {
            Ok(summary) => println!("connector `{}`: ok: {summary}", connector.name),
            Err(error) => {
                n_failed += 1;
                // Every error of a connector check names the connector already.
                println!("error: {error:#}");
            }
        }
    }
    if n_failed > 0 {
        bail!(
            "{n_failed} of {} connector(s) have errors",
            config.connectors.len()
        );
    }
    Ok(())
}

fn check_connector(
    config: &Config,
    registry: &Registry,
    connector: &ConnectorConfig,
) -> anyhow::Result<String> {
    let (_, plugin) = resolve(config, registry, &connector.name)?;
    let manifest = &plugin.manifest;
    for (switch, wanted, available) in [
        ("phonelink", connector.phonelink, manifest.has_phonelink()),
        ("timelink", connector.timelink, manifest.has_timelink()),
    ] {
        if wanted == Some(true) && !available {
            return Err(config
                .error_at_plugin(
                    connector,
                    format!(
                        "connector `{}`: {switch} = true, but the {} connector reads only {}",
                        connector.name,
                        manifest.kind,
                        streams_of(manifest)
                    ),
                )
                .into());
        }
    }
    if connector.phonelink_form == Some(crate::config::PhoneLinkForm::Contacts)
        && manifest
            .read_mode(acdlink_connector_api::StreamKind::PHONELINK_CONTACTS)
            .is_none()
    {
        return Err(config
            .error_at_plugin(
                connector,
                format!(
                    "connector `{}`: phonelink_form = \"contacts\", but the {} connector reads only {}",
                    connector.name,
                    manifest.kind,
                    streams_of(manifest)
                ),
            )
            .into());
    }
    Session::open(
        &connector.name,
        plugin,
        connector.settings.resolved(),
        &connector.timezone,
    )?;
    Ok(format!(
        "{} {} ({}), reads {}{}",
        manifest.kind,
        manifest.version,
        plugin.origin,
        streams_of(manifest),
        if connector.enabled { "" } else { "; disabled" }
    ))
}

fn check(config: &Config, registry: &Registry, name: &str) -> anyhow::Result<()> {
    let (_, mut session) = open(config, registry, name)?;
    let report = session.check()?;
    println!("{}: ok: {}", session.name(), report.message);
    Ok(())
}

fn discover(config: &Config, registry: &Registry, name: &str, json: bool) -> anyhow::Result<()> {
    let (_, mut session) = open(config, registry, name)?;
    let discovery = session.discover()?;
    let mut out = std::io::stdout().lock();
    let items = |items: &[DiscoveredItem]| -> Vec<[String; 2]> {
        items
            .iter()
            .map(|item| [item.id.to_string(), item.name.to_string()])
            .collect()
    };
    if json {
        let document = serde_json::json!({
            "queues": discovery.queues.iter().map(|queue| serde_json::json!({
                "id": queue.id.as_str(), "name": queue.name.as_str(), "channel": queue.channel.to_string(),
            })).collect::<Vec<_>>(),
            "agents": items(&discovery.agents).iter().map(|[id, name]| serde_json::json!({ "id": id, "name": name })).collect::<Vec<_>>(),
            "activities": items(&discovery.activities).iter().map(|[id, name]| serde_json::json!({ "id": id, "name": name })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
        return Ok(());
    }
    let queues: Vec<[String; 3]> = discovery
        .queues
        .iter()
        .map(|queue| {
            [
                queue.id.to_string(),
                queue.name.to_string(),
                queue.channel.to_string(),
            ]
        })
        .collect();
    writeln!(out, "{} queue(s):", queues.len())?;
    write_table(&mut out, ["QUEUE", "NAME", "CHANNEL"], &queues)?;
    writeln!(out, "\n{} agent(s):", discovery.agents.len())?;
    write_table(&mut out, ["AGENT", "NAME"], &items(&discovery.agents))?;
    writeln!(out, "\n{} activit(y/ies):", discovery.activities.len())?;
    write_table(
        &mut out,
        ["ACTIVITY", "NAME"],
        &items(&discovery.activities),
    )?;
    Ok(())
}

fn read(config: &Config, registry: &Registry, args: &ReadArgs) -> anyhow::Result<()> {
    let ReadArgs {
        connector: name,
        stream,
        from,
        to,
        max_records,
        output,
    } = args;
    let (stream, max_records) = (*stream, *max_records);
    if max_records == 0 {
        bail!("--max-records must be at least 1");
    }
    let (connector, mut session) = open(config, registry, name)?;
    let manifest = session.manifest();
    let stream = stream.kind(manifest);
    let Some(mode) = manifest.read_mode(stream) else {
        bail!(
            "connector `{}` ({}) cannot read {stream}; it reads {}",
            connector.name,
            manifest.kind,
            streams_of(manifest)
        );
    };
    let window = match (from.as_deref(), to.as_deref()) {
        (Some(_), _) | (_, Some(_)) if mode == ReadMode::INCREMENTAL => bail!(
            "{stream} of connector `{}` is incremental: it reads what is new, not a time window; leave out --from and --to",
            connector.name
        ),
        (Some(from), Some(to)) => {
            let from = parse_instant(from, &connector.timezone).context("--from")?;
            let to = parse_instant(to, &connector.timezone).context("--to")?;
            if to <= from {
                bail!("--to ({to}) must be after --from ({from})");
            }
            Some(TimeWindow::new(from, to))
        }
        (None, None) if mode == ReadMode::INCREMENTAL => None,
        _ => bail!(
            "{stream} of connector `{}` is read by time window: give both --from and --to",
            connector.name
        ),
    };

    let started = Instant::now();
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .expect("the progress template is valid"),
    );
    let destination = match output {
        Some(path) => format!("{}", path.display()),
        None => "stdout".to_string(),
    };
    let mut out: BufWriter<Box<dyn Write>> = BufWriter::new(match output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {destination}"))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    });
    let mut write_error: Option<std::io::Error> = None;
    let mut n_records = 0usize;
    let mut held = HeldLines::default();
    let write_batch = |batch: ReadBatch| {
        for reject in batch.rejects.iter() {
            progress.suspend(|| eprintln!("rejected {}: {}", reject.position, reject.message));
        }
        let written = (|| -> std::io::Result<()> {
            let lines = batch.records.to_json_values();
            match batch.delivery {
                // Written out only if the connector releases them, as the host sends them.
                Delivery::HOLD => return held.keep(&lines),
                Delivery::DISCARD => held.discard()?,
                _ => n_records += held.release(&mut out)?,
            }
            for value in &lines {
                writeln!(out, "{value}")?;
            }
            n_records += lines.len();
            Ok(())
        })();
        if let Err(error) = written {
            write_error = Some(error);
            return ControlFlow::Break(());
        }
        progress.set_message(format!("{n_records} records"));
        progress.tick();
        ControlFlow::Continue(())
    };
    let summary = session.read_pages(stream, window, None, max_records, write_batch);
    progress.finish_and_clear();
    let summary = summary?;
    let written = match write_error {
        Some(error) => Err(error),
        None => out.flush(),
    };
    match written {
        // The reader went away (`acdlink read .. | head`): not an error of ours.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        written => written.with_context(|| format!("writing records to {destination}"))?,
    }
    let what = match window {
        Some(window) => format!("for {window}"),
        None => "since the beginning (nothing committed)".to_string(),
    };
    let discarded = match held.n_discarded {
        0 => String::new(),
        n => format!(", {n} dropped with the files they came from (rejected, or imported before)"),
    };
    eprintln!(
        "read {n_records} {stream} record(s) from `{}` {what} into {destination} in {} batch(es), {} rejected{discarded}, in {:.2} s",
        connector.name,
        summary.n_batches,
        summary.n_rejects,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The records of held pages, as output lines in a temporary file until the connector
/// releases them (then they are written out) or drops them: `acdlink read` shows what the
/// host would send, with memory bounded by a page however large the file.
#[derive(Default)]
struct HeldLines {
    file: Option<BufWriter<std::fs::File>>,
    n_held: usize,
    n_discarded: usize,
}

impl HeldLines {
    fn keep(&mut self, lines: &[serde_json::Value]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(BufWriter::new(tempfile::tempfile()?)),
        };
        for value in lines {
            writeln!(file, "{value}")?;
        }
        self.n_held += lines.len();
        Ok(())
    }

    /// Writes what is held to `out`; returns how many records.
    fn release(&mut self, out: &mut impl Write) -> std::io::Result<usize> {
        if let Some(file) = &mut self.file {
            file.flush()?;
            let file = file.get_mut();
            file.rewind()?;
            std::io::copy(file, out)?;
            file.set_len(0)?;
            file.rewind()?;
        }
        Ok(std::mem::take(&mut self.n_held))
    }

    fn discard(&mut self) -> std::io::Result<()> {
        if let Some(file) = &mut self.file {
            file.flush()?;
            let file = file.get_mut();
            file.set_len(0)?;
            file.rewind()?;
        }
        self.n_discarded += std::mem::take(&mut self.n_held);
        Ok(())
    }
}

/// Reads a command-line time: an instant with an offset, a local date and time, or a local
/// date (its midnight), in the connector's time zone.
pub fn parse_instant(text: &str, zone: &SourceTimeZone) -> anyhow::Result<UtcMillis> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp.into());
    }
    if let Ok(local) = text.parse::<jiff::civil::DateTime>() {
        return Ok(zone.to_utc(local)?);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return Ok(zone.start_of_day(date)?);
    }
    bail!(
        "expected a date (2024-03-01), a local date and time (2024-03-01T08:00) or an instant (2024-03-01T07:00:00Z), found {text:?}"
    )
}
