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
