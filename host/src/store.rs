//! The state store: one SQLite file in the state directory that holds everything that must
//! survive a restart or a `kill -9`: checkpoints per connector and stream, the outbox of
//! bodies waiting for upload, the fingerprints of what was last enqueued per natural key
//! (for reconciliation), pause flags, the import log and quarantined batches.
//!
//! **Architecture invariant:** [`Store::store_read`] is the only way records enter the
//! outbox and the only way a checkpoint moves, and it does both (with the fingerprints) in
//! one transaction. A crash leaves either all of it or none of it.
//!
//! The file runs in WAL mode with `synchronous = NORMAL`: a committed transaction survives
//! a process kill at once, and a power cut once the log has been flushed to disk, which
//! happens at every checkpoint of the log and wherever [`Store::sync`] is called. A power
//! cut loses at most the last transactions, all of them whole, never part of one; the store
//! is then as it was a moment earlier, and everything that has left the machine is still in
//! it. That holds because [`Store::sync`] runs before each of the two things that act
//! outside the store on what it holds:
//!
//! - before an incremental connector is told to commit (it may then delete or move its
//!   source), so the records it handed over are on disk first;
//! - before the uploader sends batches it has just taken from the outbox, so a batch the WFM
//!   has seen can never be lost and its id (and with it its idempotency key) handed to
//!   different records.
//!
//! What a power cut can undo is only store-internal and is done again: a windowed read
//! (its checkpoint went back with its records) and the removal of delivered batches (sent
//! again under the same idempotency keys). Flushing at every commit instead would make
//! every reader wait for the disk once per page.
//!
//! The schema is versioned with `PRAGMA user_version`; each migration runs in its own
//! transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
};

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "acdlink.sqlite3";

/// Migrations, in order; `PRAGMA user_version` counts how many have run. Never edit one
/// that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE checkpoint (
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        -- windowed streams: everything before this instant (UTC ms) has been read
        window_reached_ms INTEGER,
        -- incremental streams: the connector's last stored opaque state
        state BLOB,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (connector, stream)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        connector TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        n_records INTEGER NOT NULL,
        body BLOB NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_ms, id);
    CREATE TABLE fingerprint (
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        natural_key TEXT NOT NULL,
        hash INTEGER NOT NULL,
        PRIMARY KEY (connector, stream, natural_key)
    ) WITHOUT ROWID;
    CREATE TABLE pause (
        connector TEXT PRIMARY KEY,
        paused_ms INTEGER NOT NULL
    );
    CREATE TABLE import_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        from_ms INTEGER,
        to_ms INTEGER,
        n_records INTEGER NOT NULL,
        n_enqueued INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        connector TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        n_records INTEGER NOT NULL,
        body BLOB NOT NULL,
        idempotency_key TEXT NOT NULL,
        status INTEGER,
        response TEXT NOT NULL,
        quarantined_ms INTEGER NOT NULL
    );
    ",
    // 2: fingerprints per connector, stream and UTC day, as one sorted blob of
    // (key hash, content hash) pairs: a day's read looks up and rewrites one row instead of
    // one row per record (the per-record table cost most of the pipeline's time). The old
    // per-key fingerprints are dropped: the first reconciliation after the upgrade sends
    // its window once more, which the WFM upserts by natural key.
    "
    DROP TABLE fingerprint;
    CREATE TABLE fingerprint_day (
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        day INTEGER NOT NULL,
        pairs BLOB NOT NULL,
        PRIMARY KEY (connector, stream, day)
    );
    ",
    // 3: the last failure of each stream's reads, until a read succeeds again.
    "
    CREATE TABLE stream_error (
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        error TEXT NOT NULL,
        n_failures INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (connector, stream)
    );
    ",
    // 4: bodies may be stored compressed (see `BodyEncoding`); those from before stay as
    // they are.
    "
    ALTER TABLE outbox ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE quarantine ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0;
    ",
    // 5: held pages (see `Held`): the outbox rows that wait for their read to release
    // them (a side table, so that a release does not rewrite the bodies), the held pages'
    // counts for the import log, and their fingerprints, kept apart until the release.
    "
    CREATE TABLE held_batch (
        id INTEGER PRIMARY KEY,
        connector TEXT NOT NULL,
        stream TEXT NOT NULL
    );
    CREATE INDEX held_batch_stream ON held_batch (connector, stream);
    CREATE TABLE held_read (
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        n_records INTEGER NOT NULL,
        n_enqueued INTEGER NOT NULL,
        PRIMARY KEY (connector, stream)
    );
    CREATE TABLE held_fingerprint_day (
        connector TEXT NOT NULL,
        stream TEXT NOT NULL,
        day INTEGER NOT NULL,
        pairs BLOB NOT NULL,
        PRIMARY KEY (connector, stream, day)
    );
    ",
];

/// How a body is stored (the `encoding` column of the outbox and the quarantine). JSON
/// bodies shrink to about a sixth with LZ4, and every byte of a body is written to the
/// log, copied into the file, read back for the upload and freed again: compressing costs
/// less than that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyEncoding {
    /// The body as it is sent.
    Plain = 0,
    /// LZ4 block format with the original length in front (`lz4_flex::compress_prepend_size`).
    Lz4 = 1,
}

/// No body is this big (a batch holds at most a few thousand records); a stored length
/// above it means the row is damaged.
const MAX_BODY_BYTES: usize = 1 << 30;

impl BodyEncoding {
    /// Encodes `body` into the start of `out` and returns the encoding and the encoded
    /// length. `out` is a buffer kept for reuse (fresh memory per body would be pages for
    /// the kernel to zero every time) and only ever grows.
    fn encode(body: &[u8], out: &mut Vec<u8>) -> (BodyEncoding, usize) {
        let needed = 4 + lz4_flex::block::get_maximum_output_size(body.len());
        if out.len() < needed {
            out.resize(needed, 0);
        }
        out[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let n = lz4_flex::block::compress_into(body, &mut out[4..needed])
            .expect("the output has the maximum compressed size");
        (BodyEncoding::Lz4, 4 + n)
    }

    fn decode(encoding: i64, stored: Vec<u8>) -> Result<Vec<u8>, String> {
        match encoding {
            plain if plain == BodyEncoding::Plain as i64 => Ok(stored),
            lz4 if lz4 == BodyEncoding::Lz4 as i64 => {
                let damaged = |what: String| format!("the compressed body is damaged: {what}");
                let (length, compressed) = stored
                    .split_first_chunk::<4>()
                    .map(|(length, rest)| (u32::from_le_bytes(*length) as usize, rest))
                    .ok_or_else(|| damaged("shorter than its length".to_string()))?;
                if length > MAX_BODY_BYTES {
                    return Err(damaged(format!("it claims {length} bytes")));
                }
                let body = lz4_flex::decompress(compressed, length)
                    .map_err(|error| damaged(error.to_string()))?;
                if body.len() != length {
                    return Err(damaged(format!("{} bytes instead of {length}", body.len())));
                }
                Ok(body)
            }
            other => Err(format!(
                "unknown body encoding {other} (written by a newer acdlink?)"
            )),
        }
    }
}

/// What the store remembers of an enqueued record: its UTC day (days since 1970-01-01), a
/// 64-bit hash of its natural key, and the hash of its content. Two natural keys of one day
/// sharing a key hash (odds about 1 in 10^10 for a day of 20,000 records) could only make
/// the store send a record again, never skip one, unless their content hashes also agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fingerprint {
    pub day: i64,
    pub key: u64,
    pub hash: i64,
}

/// A day's fingerprints as stored: (key hash, content hash) pairs sorted by key hash, 16
/// little-endian bytes each.
struct DayFingerprints(Vec<(u64, i64)>);

impl DayFingerprints {
    fn decode(blob: &[u8]) -> DayFingerprints {
        DayFingerprints(
            blob.chunks_exact(16)
                .map(|pair| {
                    let (key, hash) = pair.split_at(8);
                    (
                        u64::from_le_bytes(key.try_into().expect("8 bytes")),
                        i64::from_le_bytes(hash.try_into().expect("8 bytes")),
                    )
                })
                .collect(),
        )
    }

    fn encode(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(self.0.len() * 16);
        for (key, hash) in &self.0 {
            blob.extend_from_slice(&key.to_le_bytes());
            blob.extend_from_slice(&hash.to_le_bytes());
        }
        blob
    }

    fn get(&self, key: u64) -> Option<i64> {
        self.0
            .binary_search_by_key(&key, |(key, _)| *key)
            .ok()
            .map(|index| self.0[index].1)
    }

    /// Sets the given pairs (sorted by key, no key twice), keeping the others.
    fn merge(&mut self, updates: &[(u64, i64)]) {
        let mut merged = Vec::with_capacity(self.0.len() + updates.len());
        let (mut old, mut new) = (self.0.iter().peekable(), updates.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (Some(a), Some(b)) if a.0 < b.0 => merged.push(*old.next().expect("peeked")),
                (Some(a), Some(b)) if a.0 == b.0 => {
                    old.next();
                    merged.push(*new.next().expect("peeked"));
                }
                (_, Some(_)) => merged.push(*new.next().expect("peeked")),
                (Some(_), None) => merged.push(*old.next().expect("peeked")),
                (None, None) => break,
            }
        }
        self.0 = merged;
    }
}

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {error}")]
    CreateDirectory {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file exists but is not a usable store (not SQLite, corrupt, from a newer
    /// acdlink). Nothing is changed in it.
    #[error("the state store {path} is not usable: {reason}. Keep the file for diagnosis and move it away to start with an empty store (its outbox and checkpoints would be lost)")]
    Unusable { path: PathBuf, reason: String },
    #[error("cannot flush the state store's log {path} to disk: {error}")]
    Sync {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state store {path}: {error}")]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
}

/// Where a connector's stream has got to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Windowed streams: everything before this instant has been read.
    pub window_reached_ms: Option<i64>,
    /// Incremental streams: the connector's last stored state.
    pub state: Option<Vec<u8>>,
}

/// One body for the outbox: what one upload request will send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBody {
    /// The API endpoint, e.g. `queue-intervals`.
    pub endpoint: String,
    pub n_records: usize,
    pub body: Vec<u8>,
}

/// Everything one read produced, stored together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    pub connector: String,
    pub stream: String,
    /// The checkpoint after this read.
    pub checkpoint: Checkpoint,
    /// The bodies to upload (only new or changed records).
    pub bodies: Vec<NewBody>,
    /// The fingerprint of every record read: the next reconciliation compares against
    /// these.
    pub fingerprints: Vec<Fingerprint>,
    /// For the import log: the window read, and how many records were read in all.
    pub window_ms: Option<(i64, i64)>,
    pub n_records_read: usize,
    /// What this read does with the pages of the stream that are held.
    pub held: Held,
}

/// Held pages: records a connector hands over before it knows whether they may go out
/// (a file that is rejected whole if one row is bad). They are stored like any others,
/// but not sent, their fingerprints are kept apart, and the checkpoint does not move,
/// until the read ends the hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Held {
    /// This page is held too: stored, not sent, the checkpoint left alone.
    Keep,
    /// This page goes out, and with it every held page of the stream (the usual case,
    /// which releases nothing when nothing is held).
    #[default]
    Release,
    /// The held pages of the stream are dropped; this page goes out.
    Discard,
}

/// A body waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxBatch {
    pub id: i64,
    pub connector: String,
    pub endpoint: String,
    pub n_records: usize,
    /// Shared, so that a sink can hand it to its client without copying it.
    pub body: bytes::Bytes,
    /// Sent with every attempt of this batch, so a receiver that honours it never applies
    /// the batch twice.
    pub idempotency_key: String,
    pub attempts: u32,
}

/// What became of an outbox batch, to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxUpdate {
    /// The WFM has it: it leaves the outbox.
    Delivered { id: i64 },
    /// Try again at `next_attempt_ms`.
    Retry {
        id: i64,
        next_attempt_ms: i64,
        error: String,
    },
    /// Refused for good: moved to quarantine with the response.
    Quarantine {
        id: i64,
        status: Option<u16>,
        response: String,
    },
}

/// A batch the WFM refused for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantinedBatch {
    pub id: i64,
    pub connector: String,
    pub endpoint: String,
    pub n_records: usize,
    pub status: Option<u16>,
    pub response: String,
    pub quarantined_ms: i64,
}

/// A stream whose reads fail: the last error, since when, how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub connector: String,
    pub stream: String,
    pub error: String,
    pub n_failures: u32,
    pub first_ms: i64,
    pub at_ms: i64,
}

/// A connector's batches that wait for a retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub n_batches: usize,
    pub next_attempt_ms: i64,
    pub last_error: String,
}

/// The outbox at a glance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// The batches to upload, and their records ...
    pub n_batches: usize,
    pub n_records: usize,
    /// ... besides the records of held pages, which wait for their read to release them.
    pub n_held_records: usize,
}

/// The state store.
pub struct Store {
    connection: Connection,
    path: PathBuf,
    /// Random per store file; makes idempotency keys unique across stores.
    instance: String,
    /// Shared by the stores of this file in this process; see [`write_gate`].
    gate: Arc<Mutex<()>>,
    /// Reused for compressing bodies.
    scratch: Vec<u8>,
}

/// The write transactions of the stores of one file in this process (a reader task and the
/// uploader, say) take turns here instead of in SQLite's busy handler, which polls with
/// sleeps of a millisecond and more: a writer waits exactly as long as the other's commit.
/// Other processes still meet the busy timeout.
fn write_gate(path: &Path) -> Arc<Mutex<()>> {
    static GATES: std::sync::LazyLock<Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>> =
        std::sync::LazyLock::new(Default::default);
    let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
    gates.retain(|_, gate| gate.strong_count() > 0);
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(gate) = gates.get(&key).and_then(Weak::upgrade) {
        return gate;
    }
    let gate = Arc::new(Mutex::new(()));
    gates.insert(key, Arc::downgrade(&gate));
    gate
}

/// Waits for this process's turn to write to the file of `gate`.
fn take_turn(gate: &Mutex<()>) -> MutexGuard<'_, ()> {
    gate.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir` and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|error| StoreError::CreateDirectory {
            path: state_dir.to_path_buf(),
            error,
        })?;
        let path = state_dir.join(FILE_NAME);
        let unusable = |reason: String| StoreError::Unusable {
            path: path.clone(),
            reason,
        };
        let connection = Connection::open(&path).map_err(|error| unusable(error.to_string()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|error| unusable(error.to_string()))?;
        // The first statement that reads the file tells whether it is a database at all.
        let journal_mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|error| unusable(error.to_string()))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(unusable(format!(
                "cannot switch to WAL mode (got {journal_mode})"
            )));
        }
        connection
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|error| unusable(error.to_string()))?;
        let integrity: String = connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|error| unusable(error.to_string()))?;
        if integrity != "ok" {
            return Err(unusable(format!("integrity check failed: {integrity}")));
        }
        let gate = write_gate(&path);
        let mut store = Store {
            connection,
            path,
            instance: String::new(),
            gate,
            scratch: Vec::new(),
        };
        store.migrate()?;
        store.instance = store.instance_id()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves checkpoints of the write-ahead log (copying it into the file, with two
    /// flushes to disk) mostly to the other connections: this one checkpoints only when the
    /// log has grown past 64 MiB. For the readers of the scheduler, so that they do not
    /// wait for the disk while the uploader, whose commits checkpoint at SQLite's default
    /// of about 4 MiB, is there to do it.
    pub fn leave_checkpoints_to_others(&self) -> Result<(), StoreError> {
        self.connection
            .pragma_update(None, "wal_autocheckpoint", 16_384)
            .map_err(self.sqlite())
    }

    /// Flushes every committed transaction (of any connection to this file) to disk, so
    /// that a power cut cannot undo it: the write-ahead log holds whatever has not been
    /// checkpointed into the file, and a checkpoint flushes the file before it empties the
    /// log. See the module documentation for where this must run.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut log = self.path.clone().into_os_string();
        log.push("-wal");
        let log = PathBuf::from(log);
        // Opened for writing: Windows flushes only through a handle that may write.
        match std::fs::OpenOptions::new().write(true).open(&log) {
            Ok(file) => file.sync_data(),
            // No log: everything is in the file, flushed by the checkpoint that removed it.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
        .map_err(|error| StoreError::Sync { path: log, error })
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError {
        sqlite_error(&self.path)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(self.sqlite())?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Unusable {
                path: self.path.clone(),
                reason: format!(
                    "its schema version is {version}, this acdlink knows up to {known}; it was written by a newer acdlink"
                ),
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let sqlite = sqlite_error(&self.path);
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Exclusive)
                .map_err(&sqlite)?;
            transaction.execute_batch(migration).map_err(&sqlite)?;
            transaction
                .execute_batch(&format!("PRAGMA user_version = {}", index + 1))
                .map_err(&sqlite)?;
            transaction.commit().map_err(&sqlite)?;
            tracing::info!(path = %self.path.display(), version = index + 1, "state store migrated");
        }
        Ok(())
    }

    fn instance_id(&self) -> Result<String, StoreError> {
        let existing: Option<String> = self
            .connection
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.sqlite())?;
        if let Some(instance) = existing {
            return Ok(instance);
        }
        let instance = format!("{:016x}", random_u64());
        self.connection
            .execute(
                "INSERT INTO meta (key, value) VALUES ('instance', ?1)",
                params![instance],
            )
            .map_err(self.sqlite())?;
        Ok(instance)
    }

    /// The checkpoint of a connector's stream (`None` before its first read).
    pub fn checkpoint(
        &self,
        connector: &str,
        stream: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.connection
            .query_row(
                "SELECT window_reached_ms, state FROM checkpoint WHERE connector = ?1 AND stream = ?2",
                params![connector, stream],
                |row| {
                    Ok(Checkpoint {
                        window_reached_ms: row.get(0)?,
                        state: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// For each fingerprint, whether the store holds the same one: the record has not
    /// changed since it was last enqueued (in a held page too).
    pub fn unchanged(
        &self,
        connector: &str,
        stream: &str,
        fingerprints: &[Fingerprint],
    ) -> Result<Vec<bool>, StoreError> {
        let mut days: std::collections::HashMap<i64, DayFingerprints> = Default::default();
        let mut unchanged = Vec::with_capacity(fingerprints.len());
        for fingerprint in fingerprints {
            let day = match days.entry(fingerprint.day) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                    load_day_with_held(&self.connection, connector, stream, fingerprint.day)
                        .map_err(self.sqlite())?,
                ),
            };
            unchanged.push(day.get(fingerprint.key) == Some(fingerprint.hash));
        }
        Ok(unchanged)
    }

    /// Stores one read: its bodies into the outbox, its fingerprints, its checkpoint and an
    /// import log line, in one transaction. Returns the outbox ids of the new bodies.
    pub fn store_read(&mut self, outcome: &ReadOutcome) -> Result<Vec<i64>, StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let now = now_ms();
        let sqlite = sqlite_error(&self.path);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sqlite)?;
        let (connector, stream) = (&outcome.connector, &outcome.stream);
        if outcome.held == Held::Discard {
            discard_held(&transaction, connector, stream).map_err(&sqlite)?;
        }
        let mut ids = Vec::with_capacity(outcome.bodies.len());
        for body in &outcome.bodies {
            let (encoding, length) = BodyEncoding::encode(&body.body, &mut self.scratch);
            let stored = StoredBody {
                connector: &outcome.connector,
                endpoint: &body.endpoint,
                n_records: body.n_records as i64,
                body: &self.scratch[..length],
                encoding: encoding as i64,
            };
            ids.push(enqueue(&transaction, &self.instance, &stored, now).map_err(&sqlite)?);
        }
        let n_enqueued: usize = outcome.bodies.iter().map(|body| body.n_records).sum();
        if outcome.held == Held::Keep {
            hold(&transaction, outcome, &ids, n_enqueued).map_err(&sqlite)?;
            transaction.commit().map_err(&sqlite)?;
            return Ok(ids);
        }
        let (n_held_read, n_held_enqueued) =
            release_held(&transaction, connector, stream).map_err(&sqlite)?;
        store_fingerprints(
            &transaction,
            FingerprintTable::Committed,
            connector,
            stream,
            &outcome.fingerprints,
        )
        .map_err(&sqlite)?;
        transaction
            .execute(
                "INSERT INTO checkpoint (connector, stream, window_reached_ms, state, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connector, stream) DO UPDATE SET
                     window_reached_ms = excluded.window_reached_ms, state = excluded.state, updated_ms = excluded.updated_ms",
                params![
                    outcome.connector,
                    outcome.stream,
                    outcome.checkpoint.window_reached_ms,
                    outcome.checkpoint.state,
                    now
                ],
            )
            .map_err(&sqlite)?;
        transaction
            .execute(
                "INSERT INTO import_log (connector, stream, from_ms, to_ms, n_records, n_enqueued, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    outcome.connector,
                    outcome.stream,
                    outcome.window_ms.map(|window| window.0),
                    outcome.window_ms.map(|window| window.1),
                    (outcome.n_records_read as u64 + n_held_read) as i64,
                    (n_enqueued as u64 + n_held_enqueued) as i64,
                    now
                ],
            )
            .map_err(&sqlite)?;
        transaction.commit().map_err(&sqlite)?;
        Ok(ids)
    }

    /// Drops what a stream holds: the held pages of a read that never ended its hold (the
    /// process stopped, or the read failed). The connector reads that data again from
    /// the committed state. Returns how many outbox batches were dropped.
    pub fn discard_held(&mut self, connector: &str, stream: &str) -> Result<usize, StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let sqlite = sqlite_error(&self.path);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sqlite)?;
        let n_batches = discard_held(&transaction, connector, stream).map_err(&sqlite)?;
        transaction.commit().map_err(&sqlite)?;
        Ok(n_batches)
    }

    /// When the next outbox batch falls due (`None` with an empty outbox).
    pub fn next_attempt_ms(&self) -> Result<Option<i64>, StoreError> {
        self.connection
            .query_row(
                "SELECT MIN(next_attempt_ms) FROM outbox WHERE NOT EXISTS (SELECT 1 FROM held_batch WHERE held_batch.id = outbox.id)",
                [],
                |row| row.get(0),
            )
            .map_err(self.sqlite())
    }

    /// Up to `limit` outbox batches due for an attempt at `now_ms` with an id above
    /// `after_id`, oldest first.
    pub fn due_batches(
        &mut self,
        now_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OutboxBatch>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT id, connector, endpoint, n_records, body, idempotency_key, attempts, encoding FROM outbox
                 WHERE id > ?3 AND next_attempt_ms <= ?1
                     AND NOT EXISTS (SELECT 1 FROM held_batch WHERE held_batch.id = outbox.id)
                 ORDER BY id LIMIT ?2",
            )
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map(params![now_ms, limit as i64, after_id], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(4)?,
                    row.get::<_, i64>(7)?,
                    OutboxBatch {
                        id: row.get(0)?,
                        connector: row.get(1)?,
                        endpoint: row.get(2)?,
                        n_records: row.get::<_, i64>(3)? as usize,
                        body: bytes::Bytes::new(),
                        idempotency_key: row.get(5)?,
                        attempts: row.get(6)?,
                    },
                ))
            })
            .map_err(self.sqlite())?;
        let mut due = Vec::new();
        let mut damaged = Vec::new();
        for row in rows {
            let (stored, encoding, mut batch) = row.map_err(self.sqlite())?;
            match BodyEncoding::decode(encoding, stored) {
                Ok(body) => {
                    batch.body = body.into();
                    due.push(batch);
                }
                Err(reason) => damaged.push(OutboxUpdate::Quarantine {
                    id: batch.id,
                    status: None,
                    response: format!(
                        "not sent: acdlink cannot read this batch back from the state store ({reason})"
                    ),
                }),
            }
        }
        drop(statement);
        if !damaged.is_empty() {
            // One damaged row must not stop the upload of everything else: it goes where
            // `status` shows it.
            tracing::error!(n_batches = damaged.len(), path = %self.path.display(), "outbox batches cannot be read back; quarantined");
            self.apply(&damaged)?;
        }
        Ok(due)
    }

    /// Applies the outcomes of several delivery attempts in one transaction.
    pub fn apply(&mut self, updates: &[OutboxUpdate]) -> Result<(), StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let sqlite = sqlite_error(&self.path);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sqlite)?;
        for update in updates {
            match update {
                OutboxUpdate::Delivered { id } => {
                    transaction.execute("DELETE FROM outbox WHERE id = ?1", params![id])
                }
                OutboxUpdate::Retry {
                    id,
                    next_attempt_ms,
                    error,
                } => transaction.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, next_attempt_ms, error],
                ),
                OutboxUpdate::Quarantine {
                    id,
                    status,
                    response,
                } => transaction
                    .execute(
                        "INSERT INTO quarantine (id, connector, endpoint, n_records, body, encoding, idempotency_key, status, response, quarantined_ms)
                         SELECT id, connector, endpoint, n_records, body, encoding, idempotency_key, ?2, ?3, ?4 FROM outbox WHERE id = ?1",
                        params![id, status, response, now_ms()],
                    )
                    .and_then(|_| transaction.execute("DELETE FROM outbox WHERE id = ?1", params![id])),
            }
            .map_err(&sqlite)?;
        }
        transaction.commit().map_err(&sqlite)
    }

    /// The WFM has the batch: it leaves the outbox.
    pub fn batch_delivered(&mut self, id: i64) -> Result<(), StoreError> {
        self.apply(&[OutboxUpdate::Delivered { id }])
    }

    /// An attempt failed in a way that may pass: try again at `next_attempt_ms`.
    pub fn batch_failed(
        &mut self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.apply(&[OutboxUpdate::Retry {
            id,
            next_attempt_ms,
            error: error.to_string(),
        }])
    }

    /// The WFM refused the batch for good: it moves to quarantine with the response, and is
    /// never retried or deleted silently.
    pub fn quarantine_batch(
        &mut self,
        id: i64,
        status: Option<u16>,
        response: &str,
    ) -> Result<(), StoreError> {
        self.apply(&[OutboxUpdate::Quarantine {
            id,
            status,
            response: response.to_string(),
        }])
    }

    /// Records how a read of a stream ended: a failure is kept (counted, with its time)
    /// until a read succeeds.
    pub fn record_read_result(
        &mut self,
        connector: &str,
        stream: &str,
        result: Result<(), &str>,
    ) -> Result<(), StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let now = now_ms();
        match result {
            Ok(()) => self.connection.execute(
                "DELETE FROM stream_error WHERE connector = ?1 AND stream = ?2",
                params![connector, stream],
            ),
            Err(error) => self.connection.execute(
                "INSERT INTO stream_error (connector, stream, error, n_failures, first_ms, at_ms) VALUES (?1, ?2, ?3, 1, ?4, ?4)
                 ON CONFLICT (connector, stream) DO UPDATE SET
                     error = excluded.error, n_failures = n_failures + 1, at_ms = excluded.at_ms",
                params![connector, stream, error, now],
            ),
        }
        .map(|_| ())
        .map_err(self.sqlite())
    }

    /// Forgets what no scheduled read will look at again: a stream's fingerprints of days
    /// before `before_day` (UTC days since 1970) and its import log before
    /// `log_before_ms`. Returns how many rows went.
    pub fn prune(
        &mut self,
        connector: &str,
        stream: &str,
        before_day: i64,
        log_before_ms: i64,
    ) -> Result<usize, StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let sqlite = sqlite_error(&self.path);
        let transaction = self.connection.transaction().map_err(&sqlite)?;
        let n = transaction
            .execute(
                "DELETE FROM fingerprint_day WHERE connector = ?1 AND stream = ?2 AND day < ?3",
                params![connector, stream, before_day],
            )
            .map_err(&sqlite)?
            + transaction
                .execute(
                    "DELETE FROM import_log WHERE connector = ?1 AND stream = ?2 AND at_ms < ?3",
                    params![connector, stream, log_before_ms],
                )
                .map_err(&sqlite)?;
        transaction.commit().map_err(&sqlite)?;
        Ok(n)
    }

    /// Every stream whose last read failed.
    pub fn stream_errors(&self) -> Result<Vec<StreamError>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT connector, stream, error, n_failures, first_ms, at_ms FROM stream_error ORDER BY connector, stream",
            )
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |row| {
                Ok(StreamError {
                    connector: row.get(0)?,
                    stream: row.get(1)?,
                    error: row.get(2)?,
                    n_failures: row.get(3)?,
                    first_ms: row.get(4)?,
                    at_ms: row.get(5)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sqlite())
    }

    /// A connector's batches that failed and wait for a retry (`None` if there are none).
    pub fn waiting(&self, connector: &str) -> Result<Option<Waiting>, StoreError> {
        self.connection
            .query_row(
                "SELECT COUNT(*), MIN(next_attempt_ms),
                        (SELECT last_error FROM outbox WHERE connector = ?1 AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
                 FROM outbox WHERE connector = ?1 AND attempts > 0",
                params![connector],
                |row| {
                    let n_batches = row.get::<_, i64>(0)? as usize;
                    Ok((n_batches > 0).then(|| -> rusqlite::Result<Waiting> {
                        Ok(Waiting {
                            n_batches,
                            next_attempt_ms: row.get(1)?,
                            last_error: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        })
                    }))
                },
            )
            .map_err(self.sqlite())?
            .transpose()
            .map_err(self.sqlite())
    }

    /// Moves quarantined batches (the given ones, or all) back into the outbox, due now,
    /// each under a new idempotency key: a WFM may remember the refusal under the old one.
    /// Returns the new outbox ids.
    pub fn requeue_quarantined(&mut self, ids: Option<&[i64]>) -> Result<Vec<i64>, StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let sqlite = sqlite_error(&self.path);
        let now = now_ms();
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sqlite)?;
        let chosen: Vec<i64> = {
            let mut statement = transaction
                .prepare("SELECT id FROM quarantine ORDER BY id")
                .map_err(&sqlite)?;
            let all = statement
                .query_map([], |row| row.get::<_, i64>(0))
                .map_err(&sqlite)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sqlite)?;
            all.into_iter()
                .filter(|id| ids.is_none_or(|ids| ids.contains(id)))
                .collect()
        };
        let mut new_ids = Vec::with_capacity(chosen.len());
        for id in chosen {
            let (connector, endpoint, n_records, body, encoding) = transaction
                .query_row(
                    "SELECT connector, endpoint, n_records, body, encoding FROM quarantine WHERE id = ?1",
                    params![id],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, Vec<u8>>(3)?,
                            row.get::<_, i64>(4)?,
                        ))
                    },
                )
                .map_err(&sqlite)?;
            let stored = StoredBody {
                connector: &connector,
                endpoint: &endpoint,
                n_records,
                body: &body,
                encoding,
            };
            new_ids.push(enqueue(&transaction, &self.instance, &stored, now).map_err(&sqlite)?);
            transaction
                .execute("DELETE FROM quarantine WHERE id = ?1", params![id])
                .map_err(&sqlite)?;
        }
        transaction.commit().map_err(&sqlite)?;
        Ok(new_ids)
    }

    /// Every quarantined batch, oldest first.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedBatch>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT id, connector, endpoint, n_records, status, response, quarantined_ms FROM quarantine ORDER BY id",
            )
            .map_err(self.sqlite())?;
        let rows = statement
            .query_map([], |row| {
                Ok(QuarantinedBatch {
                    id: row.get(0)?,
                    connector: row.get(1)?,
                    endpoint: row.get(2)?,
                    n_records: row.get::<_, i64>(3)? as usize,
                    status: row.get(4)?,
                    response: row.get(5)?,
                    quarantined_ms: row.get(6)?,
                })
            })
            .map_err(self.sqlite())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sqlite())
    }

    /// How much waits in the outbox (all connectors, or one).
    pub fn outbox_depth(&self, connector: Option<&str>) -> Result<OutboxDepth, StoreError> {
        self.connection
            .query_row(
                "SELECT COUNT(*) FILTER (WHERE NOT held), COALESCE(SUM(n_records) FILTER (WHERE NOT held), 0),
                        COALESCE(SUM(n_records) FILTER (WHERE held), 0)
                 FROM (SELECT n_records, EXISTS (SELECT 1 FROM held_batch WHERE held_batch.id = outbox.id) AS held
                       FROM outbox WHERE ?1 IS NULL OR connector = ?1)",
                params![connector],
                |row| {
                    Ok(OutboxDepth {
                        n_batches: row.get::<_, i64>(0)? as usize,
                        n_records: row.get::<_, i64>(1)? as usize,
                        n_held_records: row.get::<_, i64>(2)? as usize,
                    })
                },
            )
            .map_err(self.sqlite())
    }

    /// Pauses or resumes a connector; the flag survives restarts.
    pub fn set_paused(&mut self, connector: &str, paused: bool) -> Result<(), StoreError> {
        let gate = Arc::clone(&self.gate);
        let _turn = take_turn(&gate);
        let statement = if paused {
            "INSERT INTO pause (connector, paused_ms) VALUES (?1, ?2) ON CONFLICT (connector) DO NOTHING"
        } else {
            "DELETE FROM pause WHERE connector = ?1 AND ?2 IS NOT NULL"
        };
        self.connection
            .execute(statement, params![connector, now_ms()])
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Since when a connector is paused (UTC ms), or `None` if it is not.
    pub fn paused_since(&self, connector: &str) -> Result<Option<i64>, StoreError> {
        self.connection
            .query_row(
                "SELECT paused_ms FROM pause WHERE connector = ?1",
                params![connector],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.sqlite())
    }
}

/// Turns a SQLite error into a [`StoreError`] naming the store's file. It owns its copy of
/// the path, so it can be used while a transaction borrows the connection.
/// A body as the outbox stores it.
struct StoredBody<'a> {
    connector: &'a str,
    endpoint: &'a str,
    n_records: i64,
    /// Encoded as `encoding` says.
    body: &'a [u8],
    encoding: i64,
}

/// Puts one body into the outbox, due now, under an idempotency key of its own made of the
/// store's instance and the row id. The id is chosen before the insert (the caller holds
/// the write transaction), so the row is written once: updating the key afterwards would
/// write the whole row, body included, a second time. Returns the row id.
fn enqueue(
    connection: &Connection,
    instance: &str,
    body: &StoredBody<'_>,
    now: i64,
) -> rusqlite::Result<i64> {
    // AUTOINCREMENT never reuses an id, so the next one is above the highest ever used.
    let id: i64 = connection
        .prepare_cached(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0) + 1",
        )?
        .query_row([], |row| row.get(0))?;
    connection
        .prepare_cached(
            "INSERT INTO outbox (id, connector, endpoint, n_records, body, encoding, idempotency_key, next_attempt_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )?
        .execute(params![
            id,
            body.connector,
            body.endpoint,
            body.n_records,
            body.body,
            body.encoding,
            format!("acdlink-{instance}-{id}"),
            now
        ])?;
    Ok(id)
}

/// Where fingerprints are kept: those of committed records, or those of held pages.
#[derive(Clone, Copy)]
enum FingerprintTable {
    Committed,
    Held,
}

impl FingerprintTable {
    fn select(self) -> &'static str {
        match self {
            FingerprintTable::Committed => {
                "SELECT pairs FROM fingerprint_day WHERE connector = ?1 AND stream = ?2 AND day = ?3"
            }
            FingerprintTable::Held => {
                "SELECT pairs FROM held_fingerprint_day WHERE connector = ?1 AND stream = ?2 AND day = ?3"
            }
        }
    }

    fn upsert(self) -> &'static str {
        match self {
            FingerprintTable::Committed => {
                "INSERT INTO fingerprint_day (connector, stream, day, pairs) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connector, stream, day) DO UPDATE SET pairs = excluded.pairs"
            }
            FingerprintTable::Held => {
                "INSERT INTO held_fingerprint_day (connector, stream, day, pairs) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connector, stream, day) DO UPDATE SET pairs = excluded.pairs"
            }
        }
    }
}

/// A day's stored fingerprints (none yet: empty).
fn load_day(
    connection: &Connection,
    table: FingerprintTable,
    connector: &str,
    stream: &str,
    day: i64,
) -> rusqlite::Result<DayFingerprints> {
    let blob: Option<Vec<u8>> = connection
        .prepare_cached(table.select())?
        .query_row(params![connector, stream, day], |row| row.get(0))
        .optional()?;
    Ok(DayFingerprints::decode(blob.as_deref().unwrap_or_default()))
}

/// A day's committed fingerprints with the held ones over them.
fn load_day_with_held(
    connection: &Connection,
    connector: &str,
    stream: &str,
    day: i64,
) -> rusqlite::Result<DayFingerprints> {
    let mut stored = load_day(
        connection,
        FingerprintTable::Committed,
        connector,
        stream,
        day,
    )?;
    let held = load_day(connection, FingerprintTable::Held, connector, stream, day)?;
    if !held.0.is_empty() {
        stored.merge(&held.0);
    }
    Ok(stored)
}

/// Stores a held page's parts: its outbox rows as held, its fingerprints apart, its
/// counts for the import line the release writes.
fn hold(
    connection: &Connection,
    outcome: &ReadOutcome,
    ids: &[i64],
    n_enqueued: usize,
) -> rusqlite::Result<()> {
    let (connector, stream) = (&outcome.connector, &outcome.stream);
    let mut insert = connection
        .prepare_cached("INSERT INTO held_batch (id, connector, stream) VALUES (?1, ?2, ?3)")?;
    for id in ids {
        insert.execute(params![id, connector, stream])?;
    }
    store_fingerprints(
        connection,
        FingerprintTable::Held,
        connector,
        stream,
        &outcome.fingerprints,
    )?;
    connection
        .prepare_cached(
            "INSERT INTO held_read (connector, stream, n_records, n_enqueued) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connector, stream) DO UPDATE SET
                 n_records = n_records + excluded.n_records, n_enqueued = n_enqueued + excluded.n_enqueued",
        )?
        .execute(params![
            connector,
            stream,
            outcome.n_records_read as i64,
            n_enqueued as i64
        ])?;
    Ok(())
}

/// Lets a stream's held pages go out: their fingerprints become the committed ones.
/// Returns the held pages' counts (records read, records enqueued).
fn release_held(
    connection: &Connection,
    connector: &str,
    stream: &str,
) -> rusqlite::Result<(u64, u64)> {
    let counts: Option<(i64, i64)> = connection
        .prepare_cached(
            "DELETE FROM held_read WHERE connector = ?1 AND stream = ?2 RETURNING n_records, n_enqueued",
        )?
        .query_row(params![connector, stream], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((n_read, n_enqueued)) = counts else {
        return Ok((0, 0));
    };
    connection
        .prepare_cached("DELETE FROM held_batch WHERE connector = ?1 AND stream = ?2")?
        .execute(params![connector, stream])?;
    let held_days: Vec<(i64, Vec<u8>)> = connection
        .prepare_cached(
            "DELETE FROM held_fingerprint_day WHERE connector = ?1 AND stream = ?2 RETURNING day, pairs",
        )?
        .query_map(params![connector, stream], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut write = connection.prepare_cached(FingerprintTable::Committed.upsert())?;
    for (day, pairs) in held_days {
        let mut stored = load_day(
            connection,
            FingerprintTable::Committed,
            connector,
            stream,
            day,
        )?;
        stored.merge(&DayFingerprints::decode(&pairs).0);
        write.execute(params![connector, stream, day, stored.encode()])?;
    }
    Ok((n_read as u64, n_enqueued as u64))
}

/// Drops a stream's held pages: their bodies, fingerprints and counts. Returns how many
/// outbox batches went.
fn discard_held(connection: &Connection, connector: &str, stream: &str) -> rusqlite::Result<usize> {
    let n_batches = connection
        .prepare_cached(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM held_batch WHERE connector = ?1 AND stream = ?2)",
        )?
        .execute(params![connector, stream])?;
    for table in ["held_batch", "held_read", "held_fingerprint_day"] {
        connection
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE connector = ?1 AND stream = ?2"
            ))?
            .execute(params![connector, stream])?;
    }
    Ok(n_batches)
}

/// Merges fingerprints into their days' rows: one read and one write per day touched.
fn store_fingerprints(
    connection: &Connection,
    table: FingerprintTable,
    connector: &str,
    stream: &str,
    fingerprints: &[Fingerprint],
) -> rusqlite::Result<()> {
    let mut sorted = fingerprints.to_vec();
    sorted.sort_by_key(|fp| (fp.day, fp.key));
    // A key read twice in one batch: the later read wins, as it would in the WFM.
    sorted.dedup_by(|later, earlier| {
        later.day == earlier.day && later.key == earlier.key && {
            *earlier = *later;
            true
        }
    });
    let mut write = connection.prepare_cached(table.upsert())?;
    for day in sorted.chunk_by(|a, b| a.day == b.day) {
        let mut stored = load_day(connection, table, connector, stream, day[0].day)?;
        let updates: Vec<(u64, i64)> = day.iter().map(|fp| (fp.key, fp.hash)).collect();
        stored.merge(&updates);
        write.execute(params![connector, stream, day[0].day, stored.encode()])?;
    }
    Ok(())
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    move |error| StoreError::Sqlite {
        path: path.clone(),
        error,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A random number from the standard library's per-process random hash keys; enough to
/// tell store files apart, no cryptography needed.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(now_ms());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(day: i64, key: u64, hash: i64) -> Fingerprint {
        Fingerprint { day, key, hash }
    }

    fn outcome(connector: &str, window_reached_ms: i64, bodies: &[&str]) -> ReadOutcome {
        ReadOutcome {
            connector: connector.to_string(),
            stream: "phonelink-intervals".to_string(),
            checkpoint: Checkpoint {
                window_reached_ms: Some(window_reached_ms),
                state: None,
            },
            bodies: bodies
                .iter()
                .map(|body| NewBody {
                    endpoint: "queue-intervals".to_string(),
                    n_records: 2,
                    body: body.as_bytes().to_vec(),
                })
                .collect(),
            fingerprints: vec![fp(0, 1, 11), fp(0, 2, 22)],
            window_ms: Some((0, window_reached_ms)),
            n_records_read: 2,
            held: Held::Release,
        }
    }

    /// A page of stream `timelink` of connector `hq`, with one body per fingerprint.
    fn held_page(held: Held, state: &str, fingerprints: &[Fingerprint]) -> ReadOutcome {
        ReadOutcome {
            connector: "hq".to_string(),
            stream: "timelink".to_string(),
            checkpoint: Checkpoint {
                window_reached_ms: None,
                state: Some(state.as_bytes().to_vec()),
            },
            bodies: fingerprints
                .iter()
                .map(|fp| NewBody {
                    endpoint: "agent-statuses".to_string(),
                    n_records: 1,
                    body: format!("{{\"key\":{}}}", fp.key).into_bytes(),
                })
                .collect(),
            fingerprints: fingerprints.to_vec(),
            window_ms: None,
            n_records_read: fingerprints.len() + 1,
            held,
        }
    }

    fn due_bodies(store: &mut Store) -> Vec<String> {
        store
            .due_batches(now_ms(), 0, 100)
            .unwrap()
            .into_iter()
            .map(|batch| String::from_utf8(batch.body.to_vec()).unwrap())
            .collect()
    }

    fn import_lines(store: &Store) -> Vec<(i64, i64)> {
        let mut statement = store
            .connection
            .prepare("SELECT n_records, n_enqueued FROM import_log ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn held_pages_wait_unsent_and_go_out_with_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .store_read(&held_page(
                Held::Keep,
                "held",
                &[fp(0, 1, 11), fp(0, 2, 22)],
            ))
            .unwrap();
        store
            .store_read(&held_page(Held::Keep, "held", &[fp(1, 3, 33)]))
            .unwrap();
        // Stored, counted apart, not due, and the checkpoint did not move.
        assert_eq!(due_bodies(&mut store), Vec::<String>::new());
        assert_eq!(store.next_attempt_ms().unwrap(), None);
        assert_eq!(
            store.outbox_depth(None).unwrap(),
            OutboxDepth {
                n_batches: 0,
                n_records: 0,
                n_held_records: 3
            }
        );
        assert_eq!(store.checkpoint("hq", "timelink").unwrap(), None);
        assert!(import_lines(&store).is_empty());
        // A key seen again in the same hold is judged against its held value ...
        assert_eq!(
            store
                .unchanged(
                    "hq",
                    "timelink",
                    &[fp(0, 1, 11), fp(0, 2, 99), fp(1, 4, 44)]
                )
                .unwrap(),
            [true, false, false]
        );
        store
            .store_read(&held_page(Held::Release, "done", &[fp(1, 4, 44)]))
            .unwrap();
        assert_eq!(
            due_bodies(&mut store),
            ["{\"key\":1}", "{\"key\":2}", "{\"key\":3}", "{\"key\":4}"]
        );
        assert_eq!(
            store.checkpoint("hq", "timelink").unwrap().unwrap().state,
            Some(b"done".to_vec())
        );
        // ... and after the release, the held fingerprints are the committed ones.
        assert_eq!(
            store
                .unchanged(
                    "hq",
                    "timelink",
                    &[fp(0, 1, 11), fp(1, 3, 33), fp(1, 4, 44)]
                )
                .unwrap(),
            [true, true, true]
        );
        let held_left: i64 = store
            .connection
            .query_row(
                "SELECT (SELECT COUNT(*) FROM held_batch) + (SELECT COUNT(*) FROM held_read) + (SELECT COUNT(*) FROM held_fingerprint_day)",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(held_left, 0);
        // One import line for the whole hold: 3 + 2 + 2 records read, 4 enqueued.
        assert_eq!(import_lines(&store), [(7, 4)]);
    }

    #[test]
    fn a_discarded_hold_leaves_no_body_and_no_fingerprint_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .store_read(&held_page(Held::Release, "before", &[fp(0, 1, 11)]))
            .unwrap();
        store
            .store_read(&held_page(
                Held::Keep,
                "held",
                &[fp(0, 1, 12), fp(0, 2, 22)],
            ))
            .unwrap();
        store
            .store_read(&held_page(Held::Discard, "rejected", &[]))
            .unwrap();
        assert_eq!(due_bodies(&mut store), ["{\"key\":1}"]);
        assert_eq!(
            store
                .unchanged("hq", "timelink", &[fp(0, 1, 11), fp(0, 2, 22)])
                .unwrap(),
            [true, false]
        );
        assert_eq!(
            store.checkpoint("hq", "timelink").unwrap().unwrap().state,
            Some(b"rejected".to_vec())
        );
        // What a read that never ended left held is dropped before the next one; other
        // streams' holds stay.
        store
            .store_read(&held_page(Held::Keep, "held", &[fp(0, 5, 55)]))
            .unwrap();
        let mut other = held_page(Held::Keep, "held", &[fp(0, 6, 66)]);
        other.stream = "phonelink-intervals".to_string();
        store.store_read(&other).unwrap();
        assert_eq!(store.discard_held("hq", "timelink").unwrap(), 1);
        assert_eq!(store.discard_held("hq", "timelink").unwrap(), 0);
        assert_eq!(
            store.outbox_depth(None).unwrap(),
            OutboxDepth {
                n_batches: 1,
                n_records: 1,
                n_held_records: 1
            }
        );
        assert_eq!(
            store.unchanged("hq", "timelink", &[fp(0, 5, 55)]).unwrap(),
            [false]
        );
    }

    #[test]
    fn a_read_is_stored_whole_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let mut store = Store::open(dir.path()).unwrap();
            assert_eq!(store.checkpoint("hq", "phonelink-intervals").unwrap(), None);
            store
                .store_read(&outcome("hq", 900_000, &["{\"a\":1}", "{\"b\":2}"]))
                .unwrap()
        };
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.checkpoint("hq", "phonelink-intervals").unwrap(),
            Some(Checkpoint {
                window_reached_ms: Some(900_000),
                state: None
            })
        );
        let due = store.due_batches(now_ms(), 0, 10).unwrap();
        assert_eq!(due.iter().map(|batch| batch.id).collect::<Vec<_>>(), ids);
        assert_eq!(&due[0].body[..], b"{\"a\":1}");
        assert_ne!(due[0].idempotency_key, due[1].idempotency_key);
        assert!(
            due[0].idempotency_key.starts_with("acdlink-"),
            "{}",
            due[0].idempotency_key
        );
        assert_eq!(
            store.outbox_depth(None).unwrap(),
            OutboxDepth {
                n_batches: 2,
                n_records: 4,
                n_held_records: 0
            }
        );
    }

    #[test]
    fn fingerprints_tell_unchanged_records_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.store_read(&outcome("hq", 900_000, &[])).unwrap();
        let again = [fp(0, 1, 11), fp(0, 2, 23), fp(0, 3, 33), fp(1, 1, 11)];
        let unchanged = store
            .unchanged("hq", "phonelink-intervals", &again)
            .unwrap();
        // Same key and content; changed content; a new key; the same key on another day.
        assert_eq!(unchanged, [true, false, false, false]);
        // Another connector's fingerprints are its own.
        assert_eq!(
            store
                .unchanged("other", "phonelink-intervals", &again)
                .unwrap(),
            [false; 4]
        );
        // Storing merges: changed and new keys are set, the others kept; within one read
        // the later fingerprint of a key wins.
        let mut read = outcome("hq", 900_000, &[]);
        read.fingerprints = vec![fp(0, 2, 23), fp(0, 3, 1), fp(0, 3, 33), fp(1, 1, 11)];
        store.store_read(&read).unwrap();
        assert_eq!(
            store
                .unchanged("hq", "phonelink-intervals", &again)
                .unwrap(),
            [true; 4]
        );
    }

    #[test]
    fn a_failing_stream_is_remembered_until_a_read_succeeds_and_retries_show_their_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .record_read_result("hq", "timelink", Err("source down"))
            .unwrap();
        store
            .record_read_result("hq", "timelink", Err("still down"))
            .unwrap();
        let errors = store.stream_errors().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].n_failures, errors[0].error.as_str()),
            (2, "still down")
        );
        store.record_read_result("hq", "timelink", Ok(())).unwrap();
        assert!(store.stream_errors().unwrap().is_empty());

        assert_eq!(store.waiting("hq").unwrap(), None);
        let ids = store
            .store_read(&outcome("hq", 900_000, &["{}", "{}"]))
            .unwrap();
        store
            .apply(&[OutboxUpdate::Retry {
                id: ids[1],
                next_attempt_ms: 5_000,
                error: "HTTP 503".to_string(),
            }])
            .unwrap();
        assert_eq!(
            store.waiting("hq").unwrap(),
            Some(Waiting {
                n_batches: 1,
                next_attempt_ms: 5_000,
                last_error: "HTTP 503".to_string()
            })
        );
    }

    #[test]
    fn pruning_forgets_old_days_of_one_stream_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut read = outcome("hq", 900_000, &[]);
        read.fingerprints = vec![fp(10, 1, 11), fp(20, 1, 11)];
        store.store_read(&read).unwrap();
        read.stream = "timelink".to_string();
        store.store_read(&read).unwrap();
        // Day 10 and the import log go; day 20 and the other stream stay.
        assert_eq!(
            store
                .prune("hq", "phonelink-intervals", 15, i64::MAX)
                .unwrap(),
            2
        );
        let both = [fp(10, 1, 11), fp(20, 1, 11)];
        assert_eq!(
            store.unchanged("hq", "phonelink-intervals", &both).unwrap(),
            [false, true]
        );
        assert_eq!(
            store.unchanged("hq", "timelink", &both).unwrap(),
            [true, true]
        );
    }

    #[test]
    fn the_upgrade_from_per_key_fingerprints_keeps_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection
                .execute_batch(
                    "PRAGMA user_version = 1;
                     INSERT INTO fingerprint VALUES ('hq', 'phonelink-intervals', 'Q1|calls|0', 11);
                     INSERT INTO checkpoint VALUES ('hq', 'phonelink-intervals', 900000, NULL, 0);",
                )
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .checkpoint("hq", "phonelink-intervals")
                .unwrap()
                .unwrap()
                .window_reached_ms,
            Some(900_000)
        );
        assert_eq!(
            store
                .unchanged("hq", "phonelink-intervals", &[fp(0, 1, 11)])
                .unwrap(),
            [false]
        );
    }

    #[test]
    fn bodies_stored_plain_before_compression_and_damaged_ones_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let body = br#"{"data":[{"queueIdentifier":"Q1"}]}"#.repeat(50);
        store
            .store_read(&ReadOutcome {
                connector: "hq".to_string(),
                stream: "phonelink-intervals".to_string(),
                bodies: vec![NewBody {
                    endpoint: "queue-intervals".to_string(),
                    n_records: 1,
                    body: body.clone(),
                }],
                ..ReadOutcome::default()
            })
            .unwrap();
        let stored: Vec<u8> = store
            .connection
            .query_row("SELECT body FROM outbox", [], |row| row.get(0))
            .unwrap();
        assert!(stored.len() < body.len() / 4, "stored compressed");
        assert_eq!(store.due_batches(now_ms(), 0, 10).unwrap()[0].body, body);
        // A row from before migration 4 has no encoding: it is sent as it is.
        store
            .connection
            .execute(
                "INSERT INTO outbox (connector, endpoint, n_records, body, idempotency_key, next_attempt_ms, created_ms)
                 VALUES ('hq', 'queue-intervals', 1, X'7B7D', 'old-key', 0, 0)",
                [],
            )
            .unwrap();
        let due = store.due_batches(now_ms(), 0, 10).unwrap();
        assert_eq!(&due[1].body[..], b"{}");
        // A damaged compressed body is quarantined with the reason, and the rest goes on.
        store
            .connection
            .execute(
                "UPDATE outbox SET body = X'FFFFFF7F00' WHERE encoding = 1",
                [],
            )
            .unwrap();
        let now_due = store.due_batches(now_ms(), 0, 10).unwrap();
        assert_eq!(now_due.len(), 1);
        assert_eq!(now_due[0].idempotency_key, "old-key");
        let quarantined = store.quarantined().unwrap();
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].id, due[0].id);
        assert!(
            quarantined[0].response.contains(
                "cannot read this batch back from the state store (the compressed body is damaged"
            ),
            "{:?}",
            quarantined[0].response
        );
    }

    #[test]
    fn retries_keep_the_idempotency_key_and_quarantine_keeps_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let ids = store
            .store_read(&outcome("hq", 900_000, &["{\"a\":1}", "{\"b\":2}"]))
            .unwrap();
        let key = store.due_batches(now_ms(), 0, 1).unwrap()[0]
            .idempotency_key
            .clone();
        store
            .batch_failed(ids[0], now_ms() + 60_000, "503 service unavailable")
            .unwrap();
        let due = store.due_batches(now_ms(), 0, 10).unwrap();
        assert_eq!(due.len(), 1, "the failed batch waits for its next attempt");
        let later = store.due_batches(now_ms() + 120_000, 0, 10).unwrap();
        assert_eq!(later[0].id, ids[0]);
        assert_eq!(later[0].idempotency_key, key);
        assert_eq!(later[0].attempts, 1);

        store
            .quarantine_batch(ids[1], Some(400), "{\"error\":\"bad queue\"}")
            .unwrap();
        let quarantined = store.quarantined().unwrap();
        assert_eq!(quarantined.len(), 1);
        assert_eq!(
            (quarantined[0].id, quarantined[0].status),
            (ids[1], Some(400))
        );
        assert_eq!(quarantined[0].response, "{\"error\":\"bad queue\"}");
        store.batch_delivered(ids[0]).unwrap();
        assert_eq!(store.outbox_depth(None).unwrap(), OutboxDepth::default());
    }

    #[test]
    fn an_outbox_id_and_its_idempotency_key_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let first = store
            .store_read(&outcome("hq", 900_000, &["{\"a\":1}", "{\"b\":2}"]))
            .unwrap();
        let keys: Vec<String> = store
            .due_batches(now_ms(), 0, 10)
            .unwrap()
            .into_iter()
            .map(|batch| batch.idempotency_key)
            .collect();
        assert_eq!(keys.len(), 2);
        for (id, key) in first.iter().zip(&keys) {
            assert!(key.ends_with(&format!("-{id}")), "{key} names batch {id}");
        }
        // Delivered and gone; the next body still gets a new id and key.
        for id in &first {
            store.batch_delivered(*id).unwrap();
        }
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let next = store
            .store_read(&outcome("hq", 1_800_000, &["{\"c\":3}"]))
            .unwrap();
        assert!(next[0] > first[1], "{next:?} after {first:?}");
        let key = &store.due_batches(now_ms(), 0, 10).unwrap()[0].idempotency_key;
        assert!(!keys.contains(key), "{key} was used before");
    }

    #[test]
    fn the_stores_of_one_file_share_their_write_gate_and_flush_their_log() {
        let dir = tempfile::tempdir().unwrap();
        let one = Store::open(dir.path()).unwrap();
        let two = Store::open(dir.path()).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = Store::open(other_dir.path()).unwrap();
        assert!(Arc::ptr_eq(&one.gate, &two.gate));
        assert!(!Arc::ptr_eq(&one.gate, &other.gate));
        // The log is flushed through its own path: with the log there it works, without it
        // there is nothing to flush, and when the path cannot be written the error names it.
        let log = dir.path().join(format!("{FILE_NAME}-wal"));
        assert!(log.exists());
        one.sync().unwrap();
        std::fs::remove_file(&log).unwrap();
        one.sync().unwrap();
        std::fs::create_dir(&log).unwrap();
        let error = one.sync().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "cannot flush the state store's log {} to disk",
                log.display()
            )),
            "{error}"
        );
        drop((one, two, other));
    }

    #[test]
    fn pause_flags_persist() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(dir.path()).unwrap();
            store.set_paused("hq", true).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.paused_since("hq").unwrap().is_some());
        store.set_paused("hq", false).unwrap();
        assert_eq!(store.paused_since("hq").unwrap(), None);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = b"this is not a database, it is a shopping list\n".repeat(100);
        std::fs::write(dir.path().join(FILE_NAME), &garbage).unwrap();
        let error = Store::open(dir.path()).err().expect("garbage is refused");
        let message = error.to_string();
        assert!(
            message.contains("is not usable: file is not a database"),
            "{message}"
        );
        assert!(message.contains("move it away"), "{message}");
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), garbage);
    }

    #[test]
    fn a_store_from_a_newer_acdlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        connection
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        drop(connection);
        let message = Store::open(dir.path()).err().expect("refused").to_string();
        assert!(
            message.contains(&format!(
                "schema version is 99, this acdlink knows up to {}",
                MIGRATIONS.len()
            )),
            "{message}"
        );
    }
}
