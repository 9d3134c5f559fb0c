//! The conformance kit: one call that holds a connector to the contracts of this crate.
//! Every connector, built-in or vendor, runs it in its own tests:
//!
//! ```text
//! #[test]
//! fn conforms() {
//!     let window = TimeWindow::new(/* from */, /* to */);
//!     acdlink_connector_api::conformance::check::<MyConnector>(
//!         &serde_json::json!({ "path": "tests/data" }),
//!         window,
//!     )
//!     .unwrap();
//! }
//! ```
//!
//! What it checks, through the same FFI entry points the host uses:
//!
//! - the manifest: kind, names, version, at least one stream, no duplicates;
//! - `open` refuses settings that are not a JSON object with a config error;
//! - `check` and `discover` succeed, and discovered identifiers are unique;
//! - reading a stream the manifest does not declare is an `unsupported` error;
//! - every batch passes [`crate::validate::check_batch`] (right stream, at most
//!   `max_records`, records inside the window and well-formed, cursor advances);
//! - cursor paging terminates within `max_pages`;
//! - windowed streams: reading the window in small pages, in one large page, and as two
//!   halves yields the same records;
//! - incremental streams: a batch read but not committed is read again by a fresh
//!   instance (the crash case, also between a `HOLD` batch and the batch that releases
//!   it), and reading again from the committed state yields nothing that was already
//!   read; held records count once released, and not at all when discarded;
//! - `commit` accepts every state the connector returned.
//!
//! The source must not change while the kit runs.

use crate::{
    sdk::{module_for, Connector, OpenContext},
    time::SourceTimeZone,
    validate::check_batch,
    ConnectorBox, ConnectorModuleRef, Delivery, ErrorKind, Manifest, ReadBatch, ReadMode,
    ReadRequest, Records, StreamKind, TimeWindow, UtcMillis,
};
use abi_stable::std_types::{ROption, RSlice, RVec};
use std::{collections::HashSet, fmt};

/// Runs the kit on connector `C` with default options. `settings` is what an operator
/// would put in `[connector.settings]`, as JSON.
pub fn check<C: Connector>(
    settings: &serde_json::Value,
    window: TimeWindow,
) -> Result<ConformanceReport, ConformanceFailure> {
    Conformance::new(settings, window).run::<C>()
}

/// Options of a conformance run.
#[derive(Clone, Debug)]
pub struct Conformance {
    settings_json: String,
    context_json: String,
    window: TimeWindow,
    max_records: u32,
    max_pages: usize,
}

/// What a passing run saw, per stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceReport {
    pub kind: String,
    pub streams: Vec<StreamReport>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReport {
    pub stream: StreamKind,
    pub mode: ReadMode,
    pub n_records: usize,
    pub n_pages: usize,
}

/// Why a run failed: every broken contract found, each saying what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceFailure {
    pub kind: String,
    pub failures: Vec<String>,
}

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connector `{}` broke {} contract(s):",
            self.kind,
            self.failures.len()
        )?;
        for failure in &self.failures {
            write!(f, "\n- {failure}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConformanceFailure {}

impl Conformance {
    pub fn new(settings: &serde_json::Value, window: TimeWindow) -> Conformance {
        Conformance {
            settings_json: settings.to_string(),
            context_json: OpenContext::new("conformance", SourceTimeZone::utc()).to_json(),
            window,
            max_records: 50,
            max_pages: 10_000,
        }
    }

    /// The source's time zone handed to `open` (default UTC).
    pub fn timezone(mut self, timezone: SourceTimeZone) -> Conformance {
        self.context_json = OpenContext::new("conformance", timezone).to_json();
        self
    }

    /// The page size of the paging checks (default 50): small, so paging is exercised.
    pub fn max_records(mut self, max_records: u32) -> Conformance {
        self.max_records = max_records.max(1);
        self
    }

    /// After this many pages a read counts as never ending (default 10 000).
    pub fn max_pages(mut self, max_pages: usize) -> Conformance {
        self.max_pages = max_pages.max(1);
        self
    }

    /// Runs the kit on connector `C` through its FFI module.
    pub fn run<C: Connector>(&self) -> Result<ConformanceReport, ConformanceFailure> {
        self.run_module(module_for::<C>())
    }

    /// Runs the kit on a loaded root module (a built-in or a plugin library).
    pub fn run_module(
        &self,
        module: ConnectorModuleRef,
    ) -> Result<ConformanceReport, ConformanceFailure> {
        let mut run = Run {
            options: self,
            module,
            failures: Vec::new(),
        };
        let manifest = match (module.manifest())().into_result() {
            Ok(manifest) => manifest,
            Err(error) => {
                return Err(ConformanceFailure {
                    kind: "?".to_string(),
                    failures: vec![format!("manifest() failed: {error}")],
                })
            }
        };
        run.check_manifest(&manifest);
        let streams = run.check_instance(&manifest);
        if run.failures.is_empty() {
            Ok(ConformanceReport {
                kind: manifest.kind.to_string(),
                streams,
            })
        } else {
            Err(ConformanceFailure {
                kind: manifest.kind.to_string(),
                failures: run.failures,
            })
        }
    }
}

struct Run<'a> {
    options: &'a Conformance,
    module: ConnectorModuleRef,
    failures: Vec<String>,
}

/// Records of a read, each as its JSON text (records hold floats, so they are compared by
/// their serialized form).
type RecordKeys = Vec<String>;

fn record_keys(records: &Records) -> RecordKeys {
    records
        .to_json_values()
        .into_iter()
        .map(|value| value.to_string())
        .collect()
}

/// The outcome of paging through one read.
struct Pages {
    /// The records that went out: those of held batches once released.
    records: RecordKeys,
    /// Every record yielded, held or not, in order.
    yielded: RecordKeys,
    n_pages: usize,
    /// The state of the last batch that had one.
    last_state: Option<Vec<u8>>,
}

impl Run<'_> {
    fn fail(&mut self, message: impl Into<String>) {
        self.failures.push(message.into());
    }

    fn check_manifest(&mut self, manifest: &Manifest) {
        for problem in manifest.problems() {
            self.fail(format!("manifest: {problem}"));
        }
        // A host tolerates streams and modes it does not know (from newer plugins); a
        // connector checked against its own SDK version must only use known ones.
        for info in manifest.streams.iter() {
            if info.stream.name().is_none() {
                self.fail(format!("manifest: unknown stream {}", info.stream));
            }
            if info.mode.name().is_none() {
                self.fail(format!(
                    "manifest: stream {} has unknown read mode {}",
                    info.stream, info.mode
                ));
            }
        }
    }

    fn open(&mut self) -> Option<ConnectorBox> {
        match (self.module.open())(
            self.options.settings_json.as_str().into(),
            self.options.context_json.as_str().into(),
        )
        .into_result()
        {
            Ok(instance) => Some(instance),
            Err(error) => {
                self.fail(format!("open() with the given settings failed: {error}"));
                None
            }
        }
    }

    fn check_instance(&mut self, manifest: &Manifest) -> Vec<StreamReport> {
        match (self.module.open())("42".into(), self.options.context_json.as_str().into())
            .into_result()
        {
            Ok(_) => self.fail(
                "open() accepted settings that are not a JSON object (42); expected a config error",
            ),
            Err(error) if error.kind != ErrorKind::CONFIG => self.fail(format!(
                "open() with settings 42 failed with kind {}, expected config: {error}",
                error.kind
            )),
            Err(_) => {}
        }
        let Some(mut instance) = self.open() else {
            return Vec::new();
        };
        if let Err(error) = instance.check().into_result() {
            self.fail(format!("check() failed: {error}"));
        }
        match instance.discover().into_result() {
            Ok(discovery) => {
                self.unique(
                    "discover(): queue",
                    discovery.queues.iter().map(|q| q.id.as_str()),
                );
                self.unique(
                    "discover(): agent",
                    discovery.agents.iter().map(|a| a.id.as_str()),
                );
                self.unique(
                    "discover(): activity",
                    discovery.activities.iter().map(|a| a.id.as_str()),
                );
            }
            Err(error) => self.fail(format!("discover() failed: {error}")),
        }
        for &undeclared in StreamKind::ALL
            .iter()
            .filter(|stream| manifest.read_mode(**stream).is_none())
        {
            let request =
                ReadRequest::windowed(undeclared, self.options.window, self.options.max_records);
            match instance.read(&request).into_result() {
                Ok(_) => self.fail(format!(
                    "read() of undeclared stream {undeclared} returned a batch, expected an unsupported error"
                )),
                Err(error) if error.kind != ErrorKind::UNSUPPORTED => self.fail(format!(
                    "read() of undeclared stream {undeclared} failed with kind {}, expected unsupported: {error}",
                    error.kind
                )),
                Err(_) => {}
            }
        }
        drop(instance);

        let mut reports = Vec::new();
        for info in manifest.streams.iter() {
            let report = match info.mode {
                ReadMode::WINDOWED => self.check_windowed(info.stream),
                ReadMode::INCREMENTAL => self.check_incremental(info.stream),
                _ => None,
            };
            if let Some((n_records, n_pages)) = report {
                reports.push(StreamReport {
                    stream: info.stream,
                    mode: info.mode,
                    n_records,
                    n_pages,
                });
            }
        }
        reports
    }

    fn unique<'s>(&mut self, what: &str, ids: impl Iterator<Item = &'s str>) {
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id) {
                self.fail(format!("{what} identifier {id:?} appears twice"));
            }
        }
    }

    /// Pages through one read, validating each batch and committing each state when asked.
    /// `None` when the read failed (the failure is recorded).
    fn read_all(
        &mut self,
        instance: &mut ConnectorBox,
        first: ReadRequest,
        commit: bool,
        what: &str,
    ) -> Option<Pages> {
        let mut request = first;
        let mut pages = Pages {
            records: Vec::new(),
            yielded: Vec::new(),
            n_pages: 0,
            last_state: request.state.clone().into_option().map(RVec::into_vec),
        };
        let mut held = Vec::new();
        loop {
            if pages.n_pages == self.options.max_pages {
                self.fail(format!(
                    "{what}: cursor paging did not terminate after {} pages (last cursor {:?})",
                    self.options.max_pages, request.cursor
                ));
                return None;
            }
            let batch: ReadBatch = match instance.read(&request).into_result() {
                Ok(batch) => batch,
                Err(error) => {
                    self.fail(format!(
                        "{what}: read() failed on page {}: {error}",
                        pages.n_pages + 1
                    ));
                    return None;
                }
            };
            pages.n_pages += 1;
            let violations = check_batch(&request, &batch);
            if !violations.is_empty() {
                for violation in violations {
                    self.fail(format!("{what}: page {}: {violation}", pages.n_pages));
                }
                return None;
            }
            pages.yielded.extend(record_keys(&batch.records));
            // Held records count once released, and not at all when the hold is dropped.
            match batch.delivery {
                Delivery::HOLD => held.extend(record_keys(&batch.records)),
                Delivery::DISCARD => {
                    held.clear();
                    pages.records.extend(record_keys(&batch.records));
                }
                _ => {
                    pages.records.append(&mut held);
                    pages.records.extend(record_keys(&batch.records));
                }
            }
            if let Some(state) = batch.state.clone().into_option() {
                if commit {
                    if let Err(error) = instance.commit(RSlice::from_slice(&state)).into_result() {
                        self.fail(format!(
                            "{what}: commit() of the state of page {} failed: {error}",
                            pages.n_pages
                        ));
                        return None;
                    }
                }
                pages.last_state = Some(state.into_vec());
            }
            match batch.next_cursor.into_option() {
                // The state stays the one the read began with, even after commits.
                Some(cursor) => request.cursor = ROption::RSome(cursor),
                None => return Some(pages),
            }
        }
    }

    fn check_windowed(&mut self, stream: StreamKind) -> Option<(usize, usize)> {
        let window = self.options.window;
        let mut instance = self.open()?;
        let large = ReadRequest::windowed(stream, window, 1_000_000);
        let whole = self.read_all(
            &mut instance,
            large,
            false,
            &format!("{stream} in one page"),
        )?;
        // Pages small enough that even a short window is read in several of them.
        let page_size = self
            .options
            .max_records
            .min((whole.records.len() / 4).max(1) as u32);
        let small = ReadRequest::windowed(stream, window, page_size);
        let paged = self.read_all(
            &mut instance,
            small,
            true,
            &format!("{stream} in pages of {page_size}"),
        )?;
        if sorted(&paged.records) != sorted(&whole.records) {
            self.fail(format!(
                "{stream}: reading {window} in pages of {page_size} gave {} records, in one page {}; expected the same records",
                paged.records.len(),
                whole.records.len()
            ));
        }
        // Split on a whole hour so that interval starts stay aligned.
        let middle =
            UtcMillis((window.from.0 + (window.to.0 - window.from.0) / 2) / 3_600_000 * 3_600_000);
        if window.from < middle && middle < window.to {
            let mut halves = Vec::new();
            for half in [
                TimeWindow::new(window.from, middle),
                TimeWindow::new(middle, window.to),
            ] {
                let request = ReadRequest::windowed(stream, half, 1_000_000);
                halves.extend(
                    self.read_all(
                        &mut instance,
                        request,
                        false,
                        &format!("{stream} in {half}"),
                    )?
                    .records,
                );
            }
            if sorted(&halves) != sorted(&paged.records) {
                self.fail(format!(
                    "{stream}: reading {window} as two halves split at {middle} gave {} records, as a whole {}; expected the same records",
                    halves.len(),
                    paged.records.len()
                ));
            }
        }
        Some((paged.records.len(), paged.n_pages))
    }

    fn check_incremental(&mut self, stream: StreamKind) -> Option<(usize, usize)> {
        let max_records = self.options.max_records;
        // A host that crashes after reading a batch and before committing it: a fresh
        // instance must yield that batch again.
        let crashed_first_batch = {
            let mut instance = self.open()?;
            let request = ReadRequest::incremental(stream, None, max_records);
            match instance.read(&request).into_result() {
                Ok(batch) => record_keys(&batch.records),
                Err(error) => {
                    self.fail(format!("{stream}: first read() failed: {error}"));
                    return None;
                }
            }
        };
        let mut instance = self.open()?;
        let request = ReadRequest::incremental(stream, None, max_records);
        let first = self.read_all(
            &mut instance,
            request,
            true,
            &format!("{stream} from the start"),
        )?;
        // Held or not: a held first batch is yielded again too (it may still be discarded).
        if !first.yielded.starts_with(&crashed_first_batch) {
            self.fail(format!(
                "{stream}: after a read that was never committed, a fresh instance did not yield the same first batch again ({} records before, {} now); uncommitted data must be read again",
                crashed_first_batch.len(),
                first.yielded.len().min(crashed_first_batch.len())
            ));
        }
        let mut seen = HashSet::new();
        for key in &first.records {
            if !seen.insert(key.as_str()) {
                self.fail(format!(
                    "{stream}: the same record was yielded twice in one read: {key}"
                ));
                break;
            }
        }
        let again = ReadRequest::incremental(stream, first.last_state.clone(), max_records);
        let second = self.read_all(
            &mut instance,
            again,
            true,
            &format!("{stream} from the committed state"),
        )?;
        if let Some(repeated) = second
            .records
            .iter()
            .find(|key| seen.contains(key.as_str()))
        {
            self.fail(format!(
                "{stream}: reading again from the committed state yielded a record that was already committed: {repeated}"
            ));
        }
        Some((first.records.len(), first.n_pages))
    }
}

fn sorted(keys: &RecordKeys) -> RecordKeys {
    let mut keys = keys.clone();
    keys.sort_unstable();
    keys
}
