//! Reading one CSV file as rows of raw bytes: byte-order mark, lines to skip, header, and
//! resuming at a byte offset. The `csv` crate parses the raw bytes (every supported
//! encoding is ASCII-compatible, so separators, quotes and line ends are single ASCII
//! bytes), and byte offsets are offsets into the file itself.

use crate::settings::Format;
use csv::ByteRecord;
use sha2::{Digest, Sha256};
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom},
    path::Path,
    sync::mpsc,
};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the rows of a file begin, and the header row if the format has one.
#[derive(Clone, Debug)]
pub struct FileStart {
    pub header: Option<Vec<String>>,
    /// Byte offset of the first row after the header.
    pub data_byte: u64,
    /// Line number (1-based) of the first row after the header.
    pub data_line: u64,
}

/// Rows of one file, read one at a time into `row`.
pub struct Rows<R: Read> {
    csv: csv::Reader<R>,
    byte_base: u64,
    line_base: u64,
    pub row: ByteRecord,
}

fn builder(format: &Format) -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder
        .has_headers(false)
        .flexible(true)
        .delimiter(format.separator)
        .quoting(format.quote.is_some())
        .quote(format.quote.unwrap_or(b'"'))
        // Only `\n` ends a line (a `\r` before it is trimmed with the cell): with the
        // default CRLF terminator the csv crate reports positions of CRLF files on the
        // `\n` of the previous line, one line too early.
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(256 * 1024);
    builder
}

/// Opens rows over `inner`, which is at the start of the file: skips the byte-order mark
/// and `skip_lines` lines, and reads the header if there is one.
pub fn start<R: Read>(inner: R, format: &Format) -> io::Result<(Rows<BufReader<R>>, FileStart)> {
    let mut buffered = BufReader::with_capacity(64 * 1024, inner);
    let mut byte_base = 0u64;
    if buffered.fill_buf()?.starts_with(UTF8_BOM) {
        buffered.consume(UTF8_BOM.len());
        byte_base += UTF8_BOM.len() as u64;
    }
    let mut line_base = 0u64;
    let mut skipped = Vec::new();
    for _ in 0..format.skip_lines {
        skipped.clear();
        let n_bytes = buffered.read_until(b'\n', &mut skipped)?;
        if n_bytes == 0 {
            break;
        }
        byte_base += n_bytes as u64;
        line_base += 1;
    }
    let mut rows = Rows {
        csv: builder(format).from_reader(buffered),
        byte_base,
        line_base,
        row: ByteRecord::new(),
    };
    let header = if format.header && rows.advance()? {
        Some(
            rows.row
                .iter()
                .map(|cell| match format.encoding.decode(cell) {
                    Some(text) => text.trim().to_string(),
                    None => String::from_utf8_lossy(cell).trim().to_string(),
                })
                .collect(),
        )
    } else {
        None
    };
    let file_start = FileStart {
        header,
        data_byte: rows.next_byte(),
        data_line: rows.next_line(),
    };
    Ok((rows, file_start))
}

/// Opens rows of the file at `path` from `byte`, where line `line` begins.
pub fn resume(
    path: &Path,
    format: &Format,
    byte: u64,
    line: u64,
) -> io::Result<Rows<BufReader<File>>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(byte))?;
    Ok(Rows {
        csv: builder(format).from_reader(BufReader::with_capacity(64 * 1024, file)),
        byte_base: byte,
        line_base: line.saturating_sub(1),
        row: ByteRecord::new(),
    })
}

impl<R: Read> Rows<R> {
    /// Reads the next row; `false` at the end of the file.
    pub fn advance(&mut self) -> io::Result<bool> {
        self.csv
            .read_byte_record(&mut self.row)
            .map_err(|error| match error.into_kind() {
                csv::ErrorKind::Io(error) => error,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            })
    }

    /// The line number (1-based) where the current row begins.
    pub fn line(&self) -> u64 {
        self.line_base + self.row.position().map_or(0, |position| position.line())
    }

    /// The byte offset where the next row begins.
    pub fn next_byte(&self) -> u64 {
        self.byte_base + self.csv.position().byte()
    }

    /// The line number where the next row begins.
    pub fn next_line(&self) -> u64 {
        self.line_base + self.csv.position().line()
    }

    /// Whether the current row is to be skipped (see [`is_skipped`]).
    pub fn is_skipped(&self, format: &Format) -> bool {
        is_skipped(&self.row, format)
    }

    /// Reads the next row into `record` instead of `self.row`: its line, and where the
    /// row after it begins (byte, line). `None` at the end of the file.
    fn read_into(&mut self, record: &mut ByteRecord) -> io::Result<Option<(u64, u64, u64)>> {
        let more = self
            .csv
            .read_byte_record(record)
            .map_err(|error| match error.into_kind() {
                csv::ErrorKind::Io(error) => error,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            })?;
        Ok(more.then(|| {
            let line = self.line_base + record.position().map_or(0, |position| position.line());
            (line, self.next_byte(), self.next_line())
        }))
    }
}

/// Whether a row is to be skipped: a blank line, or what the format says to skip: empty
/// (every cell blank) or containing one of the configured strings.
pub fn is_skipped(row: &ByteRecord, format: &Format) -> bool {
    // A blank line (with CRLF, a lone `\r`) is never a row, whatever the settings.
    let is_blank_line = row.len() == 1 && row[0].trim_ascii().is_empty();
    if is_blank_line
        || (format.skip_empty_rows && row.iter().all(|cell| cell.trim_ascii().is_empty()))
    {
        return true;
    }
    !format.skip_rows_containing.is_empty()
        && row.iter().any(|cell| {
            format
                .skip_rows_containing
                .iter()
                .any(|needle| memchr::memmem::find(cell, needle).is_some())
        })
}

/// Rows parsed ahead on a thread of their own, so that parsing the CSV and converting
/// rows into records run on two cores. Batches of rows go through a channel of two, so
/// at most three batches are in memory; their buffers are sent back to be reused.
pub struct ReadAhead {
    batches: mpsc::Receiver<io::Result<RowBatch>>,
    recycle: mpsc::SyncSender<RowBatch>,
    current: RowBatch,
    /// How many rows of `current` have been handed out.
    n_taken: usize,
    /// Where the row after the last one handed out begins (byte, line).
    next: (u64, u64),
    parser: Option<std::thread::JoinHandle<()>>,
}

/// Rows parsed ahead: each with its line and where the row after it begins.
#[derive(Default)]
pub struct RowBatch {
    rows: Vec<ByteRecord>,
    positions: Vec<(u64, u64, u64)>,
    len: usize,
    at_end: bool,
}

/// Rows per batch: enough to make a channel hand-over rare, small enough to stay in cache.
const ROWS_PER_BATCH: usize = 256;

impl ReadAhead {
    /// Parses `rows` on a new thread from where they are now.
    pub fn spawn<R: Read + Send + 'static>(mut rows: Rows<R>) -> ReadAhead {
        let next = (rows.next_byte(), rows.next_line());
        let (sender, batches) = mpsc::sync_channel::<io::Result<RowBatch>>(2);
        let (recycle, recycled) = mpsc::sync_channel::<RowBatch>(4);
        let parser = std::thread::Builder::new()
            .name("csv-read-ahead".to_string())
            .spawn(move || loop {
                let mut batch = recycled.try_recv().unwrap_or_default();
                batch.len = 0;
                batch.at_end = false;
                while batch.len < ROWS_PER_BATCH {
                    if batch.rows.len() == batch.len {
                        batch.rows.push(ByteRecord::new());
                        batch.positions.push((0, 0, 0));
                    }
                    match rows.read_into(&mut batch.rows[batch.len]) {
                        Ok(Some(position)) => {
                            batch.positions[batch.len] = position;
                            batch.len += 1;
                        }
                        Ok(None) => {
                            batch.at_end = true;
                            break;
                        }
                        Err(error) => {
                            // The reader has gone away if this fails: nothing to do.
                            let _ = sender.send(Err(error));
                            return;
                        }
                    }
                }
                let at_end = batch.at_end;
                // Fails only when the reader has gone away (the file is left).
                if sender.send(Ok(batch)).is_err() || at_end {
                    return;
                }
            })
            .expect("the system can start a thread");
        ReadAhead {
            batches,
            recycle,
            current: RowBatch::default(),
            n_taken: 0,
            next,
            parser: Some(parser),
        }
    }

    /// Moves to the next row; `false` at the end of the file.
    pub fn advance(&mut self) -> io::Result<bool> {
        loop {
            if self.n_taken < self.current.len {
                let (_, next_byte, next_line) = self.current.positions[self.n_taken];
                self.next = (next_byte, next_line);
                self.n_taken += 1;
                return Ok(true);
            }
            if self.current.at_end {
                return Ok(false);
            }
            let batch = match self.batches.recv() {
                Ok(batch) => batch?,
                Err(_) => {
                    return Err(io::Error::other(
                        "the CSV read-ahead thread stopped before the end of the file",
                    ))
                }
            };
            let used = std::mem::replace(&mut self.current, batch);
            // The parser may have enough buffers already: then this one is dropped.
            let _ = self.recycle.try_send(used);
            self.n_taken = 0;
        }
    }

    /// The current row (after `advance` gave `true`).
    pub fn row(&self) -> &ByteRecord {
        &self.current.rows[self.n_taken - 1]
    }

    /// The line number (1-based) where the current row begins.
    pub fn line(&self) -> u64 {
        self.current.positions[self.n_taken - 1].0
    }

    /// The byte offset where the next row begins.
    pub fn next_byte(&self) -> u64 {
        self.next.0
    }

    /// The line number where the next row begins.
    pub fn next_line(&self) -> u64 {
        self.next.1
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Unblock a parser waiting to send (its send fails once the receiver is gone),
        // then wait for it so that the file is closed when this returns.
        let (_, placeholder) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.batches, placeholder));
        if let Some(parser) = self.parser.take() {
            let _ = parser.join();
        }
    }
}

/// The checksum of a whole file, without parsing it: read in large blocks straight into
/// the hasher.
pub fn checksum(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut n_bytes = 0u64;
    loop {
        let n_read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n_read) => n_read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..n_read]);
        n_bytes += n_read as u64;
    }
    Ok((hex(&hasher.finalize()), n_bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
