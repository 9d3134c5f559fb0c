//! Reading one CSV file as rows of raw bytes: byte-order mark, lines to skip, header, and
//! parsing ahead on a second thread. The `csv` crate parses the raw bytes (every supported
//! encoding is ASCII-compatible, so separators, quotes and line ends are single ASCII
//! bytes), and line numbers are those of the file itself.

use crate::settings::Format;
use csv::ByteRecord;
use sha2::{Digest, Sha256};
use std::{
    io::{self, BufRead, BufReader, Read},
    sync::mpsc::{self, Receiver, SyncSender},
    thread::{Scope, ScopedJoinHandle},
};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the rows of a file begin, and the header row if the format has one.
#[derive(Clone, Debug)]
pub struct FileStart {
    pub header: Option<Vec<String>>,
    /// Line number (1-based) of the first row after the header.
    pub data_line: u64,
}

/// Rows of one file, read one at a time into `row`.
pub struct Rows<R: Read> {
    csv: csv::Reader<R>,
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
    if buffered.fill_buf()?.starts_with(UTF8_BOM) {
        buffered.consume(UTF8_BOM.len());
    }
    let mut line_base = 0u64;
    let mut skipped = Vec::new();
    for _ in 0..format.skip_lines {
        skipped.clear();
        let n_bytes = buffered.read_until(b'\n', &mut skipped)?;
        if n_bytes == 0 {
            break;
        }
        line_base += 1;
    }
    let mut rows = Rows {
        csv: builder(format).from_reader(buffered),
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
        data_line: rows.next_line(),
    };
    Ok((rows, file_start))
}

impl<R: Read> Rows<R> {
    /// Reads the next row; `false` at the end of the file.
    pub fn advance(&mut self) -> io::Result<bool> {
        read_row(&mut self.csv, &mut self.row)
    }

    /// The line number where the next row begins.
    pub fn next_line(&self) -> u64 {
        self.line_base + self.csv.position().line()
    }

    /// The reader under the rows.
    pub fn into_inner(self) -> R {
        self.csv.into_inner()
    }

    /// Whether the current row is to be skipped (see [`is_skipped`]).
    pub fn is_skipped(&self, format: &Format) -> bool {
        is_skipped(&self.row, format)
    }
}

fn read_row<R: Read>(csv: &mut csv::Reader<R>, row: &mut ByteRecord) -> io::Result<bool> {
    csv.read_byte_record(row)
        .map_err(|error| match error.into_kind() {
            csv::ErrorKind::Io(error) => error,
            other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
        })
}

/// Rows handed over by [`parse_ahead`] at a time: enough that handing over costs nothing
/// per row, few enough that the chunks in flight stay small.
const CHUNK_ROWS: usize = 4096;

/// Rows parsed on a second thread while this one converts them: parsing is a third of
/// a row's cost, and the machine has a second core. Rows to skip are skipped there.
pub struct RowsAhead<'scope, R> {
    full: Receiver<io::Result<Vec<ByteRecord>>>,
    empty: SyncSender<Vec<ByteRecord>>,
    line_base: u64,
    chunk: Vec<ByteRecord>,
    /// The parsing thread, which gives back the reader under the rows when it ends.
    parser: ScopedJoinHandle<'scope, R>,
}

/// Parses `rows` to their end on a thread of `scope`, skipping what `format` says to.
pub fn parse_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    rows: Rows<R>,
    format: &'scope Format,
) -> RowsAhead<'scope, R> {
    let (full_sender, full) = mpsc::sync_channel::<io::Result<Vec<ByteRecord>>>(2);
    let (empty, empty_receiver) = mpsc::sync_channel::<Vec<ByteRecord>>(4);
    let Rows {
        mut csv, line_base, ..
    } = rows;
    let parser = scope.spawn(move || {
        // Chunks come back to be filled again; the spare records keep their buffers.
        let mut spare = Vec::new();
        loop {
            let mut chunk = empty_receiver
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK_ROWS));
            spare.append(&mut chunk);
            let mut at_end = false;
            while chunk.len() < CHUNK_ROWS {
                let mut row = spare.pop().unwrap_or_default();
                match read_row(&mut csv, &mut row) {
                    Ok(true) if is_skipped(&row, format) => spare.push(row),
                    Ok(true) => chunk.push(row),
                    Ok(false) => {
                        at_end = true;
                        break;
                    }
                    Err(error) => {
                        let _ = full_sender.send(Err(error));
                        return csv.into_inner();
                    }
                }
            }
            // A closed channel: the converting side stopped early.
            if (!chunk.is_empty() && full_sender.send(Ok(chunk)).is_err()) || at_end {
                return csv.into_inner();
            }
        }
    });
    RowsAhead {
        full,
        empty,
        line_base,
        chunk: Vec::new(),
        parser,
    }
}

impl<R> RowsAhead<'_, R> {
    /// The next rows to convert; `None` at the end of the file.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[ByteRecord]>> {
        let done = std::mem::take(&mut self.chunk);
        if done.capacity() > 0 {
            // The parser may have stopped already: then the chunk is simply dropped.
            let _ = self.empty.try_send(done);
        }
        match self.full.recv() {
            Ok(chunk) => {
                self.chunk = chunk?;
                Ok(Some(&self.chunk))
            }
            Err(_) => Ok(None),
        }
    }

    /// The line numbers of the rows.
    pub fn lines(&self) -> Lines {
        Lines {
            base: self.line_base,
        }
    }

    /// The reader under the rows, once the parsing thread has ended (after
    /// [`RowsAhead::next_chunk`] gave `None` or an error).
    pub fn into_inner(self) -> R {
        drop(self.full);
        self.parser
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The line numbers of the rows of [`RowsAhead`].
#[derive(Clone, Copy, Debug)]
pub struct Lines {
    base: u64,
}

impl Lines {
    /// The line number (1-based) where `row` begins.
    pub fn of(self, row: &ByteRecord) -> u64 {
        self.base + row.position().map_or(0, |position| position.line())
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

/// A reader that hashes every byte read through it, so that the checksum of a file
/// comes from the same reads that parse it: the file is read once, on one thread.
pub struct Checksummed<R> {
    inner: R,
    hasher: Sha256,
    n_bytes: u64,
}

impl<R: Read> Checksummed<R> {
    pub fn new(inner: R) -> Checksummed<R> {
        Checksummed {
            inner,
            hasher: Sha256::new(),
            n_bytes: 0,
        }
    }

    /// Reads what is left to the end, and gives the checksum of everything read and the
    /// number of bytes.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            match self.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok((hex(&self.hasher.finalize()), self.n_bytes))
    }
}

impl<R: Read> Read for Checksummed<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n_read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..n_read]);
        self.n_bytes += n_read as u64;
        Ok(n_read)
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
