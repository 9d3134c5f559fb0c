//! Reading one CSV file as rows of raw bytes: byte-order mark, lines to skip, header, and
//! parsing ahead on a second thread, which also computes the file's checksum from the same
//! reads. Rows go into [`RowBuf`]s: the cells of thousands of rows in one buffer, handed to
//! the converting thread as a whole.
//!
//! Every supported encoding is ASCII-compatible, so separators, quotes and line ends are
//! single ASCII bytes and the raw bytes are parsed. A line without a quote is split at its
//! separators, eight bytes at a time; `csv-core` parses the others (quoted cells, line
//! breaks in cells, the last line without its line end), and a test holds both to what
//! the `csv` crate reads. Line numbers are those of the file itself.

use crate::settings::Format;
use csv_core::ReadRecordResult;
use std::{
    io::{self, BufRead, BufReader, Read},
    ops::Index,
    sync::mpsc::{self, Receiver, SyncSender},
    thread::{Scope, ScopedJoinHandle},
};
use xxhash_rust::xxh3::Xxh3Default;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the rows of a file begin, and the header row if the format has one.
#[derive(Clone, Debug)]
pub struct FileStart {
    pub header: Option<Vec<String>>,
    /// Line number (1-based) of the first row after the header.
    pub data_line: u64,
}

/// Rows one after another: the bytes of their cells in one buffer, where each cell is in
/// another, so that filling it allocates nothing once it has grown to its work.
#[derive(Default)]
pub struct RowBuf {
    /// Room for cells; the first `n_bytes` are used.
    bytes: Vec<u8>,
    n_bytes: usize,
    /// Start and end of each cell, relative to its row's first byte.
    cells: Vec<(u32, u32)>,
    /// Room for the parser's cell ends of one row.
    ends: Vec<usize>,
    rows: Vec<RowAt>,
}

/// Where a row of a [`RowBuf`] is.
#[derive(Clone, Copy)]
struct RowAt {
    bytes: usize,
    n_bytes: usize,
    cells: usize,
    n_cells: usize,
    line: u64,
}

/// One row: its cells as raw bytes, and the line it begins on.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    bytes: &'a [u8],
    cells: &'a [(u32, u32)],
    line: u64,
}

impl<'a> Row<'a> {
    /// The number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the row has no cells (never: a row read has at least one).
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The line number (1-based) where the row begins.
    pub fn line(&self) -> u64 {
        self.line
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.cells
            .iter()
            .map(move |&(start, end)| &bytes[start as usize..end as usize])
    }
}

impl Index<usize> for Row<'_> {
    type Output = [u8];

    /// The cell in `column` (0-based), which must exist.
    fn index(&self, column: usize) -> &[u8] {
        let (start, end) = self.cells[column];
        &self.bytes[start as usize..end as usize]
    }
}

/// A mask with the high bit set in each byte of `word` that equals `byte`, and no other
/// bit: `(b & 0x7f) + 0x7f` carries into the high bit of a byte exactly when its low
/// seven bits are not all zero, and never into the next byte.
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let zero_where_equal = word ^ (0x0101_0101_0101_0101 * u64::from(byte));
    !(((zero_where_equal & LOWS) + LOWS) | zero_where_equal) & !LOWS
}

/// The error for a row too long to read, at `line`.
fn too_long(line: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("line {line}: a row longer than 4 GB (is the file CSV, with line ends?)"),
    )
}

impl RowBuf {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.n_bytes = 0;
        self.cells.clear();
        self.rows.clear();
    }

    fn row_at(&self, at: RowAt) -> Row<'_> {
        Row {
            bytes: &self.bytes[at.bytes..at.bytes + at.n_bytes],
            cells: &self.cells[at.cells..at.cells + at.n_cells],
            line: at.line,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|&at| self.row_at(at))
    }

    fn last(&self) -> Option<Row<'_>> {
        self.rows.last().map(|&at| self.row_at(at))
    }

    /// Forgets the last row.
    fn pop(&mut self) {
        if let Some(at) = self.rows.pop() {
            self.n_bytes = at.bytes;
            self.cells.truncate(at.cells);
        }
    }

    /// Makes room for `n` more bytes.
    fn reserve(&mut self, n: usize) {
        if self.bytes.len() - self.n_bytes < n {
            let room = (self.bytes.len() * 2).max(self.n_bytes + n).max(64 * 1024);
            self.bytes.resize(room, 0);
        }
    }

    /// Adds the row in `line` if it has no `quote`: its cells are then what lies between
    /// the separators. `false` when it has a quote, for the parser to read.
    ///
    /// Eight bytes are looked at a time: a mask marks the separators among them, and
    /// each is found by counting the zeros before it.
    fn push_line(
        &mut self,
        line: &[u8],
        separator: u8,
        quote: Option<u8>,
        line_number: u64,
    ) -> io::Result<bool> {
        let n_bytes = u32::try_from(line.len()).map_err(|_| too_long(line_number))?;
        let at = RowAt {
            bytes: self.n_bytes,
            n_bytes: line.len(),
            cells: self.cells.len(),
            n_cells: 0,
            line: line_number,
        };
        // Adds the cells that end in the eight bytes of `word`, at `word_at` in the line;
        // `false` when one of them is a quote.
        let mut start = 0u32;
        let cells = &mut self.cells;
        let mut split = |word: u64, word_at: u32| {
            if quote.is_some_and(|quote| bytes_equal(word, quote) != 0) {
                return false;
            }
            let mut separators = bytes_equal(word, separator);
            while separators != 0 {
                let end = word_at + separators.trailing_zeros() / 8;
                cells.push((start, end));
                start = end + 1;
                separators &= separators - 1;
            }
            true
        };
        let words = line.chunks_exact(8);
        let rest = words.remainder();
        let mut word_at = 0u32;
        let mut has_quote = false;
        for word in words {
            if !split(
                u64::from_le_bytes(word.try_into().expect("8 bytes")),
                word_at,
            ) {
                has_quote = true;
                break;
            }
            word_at += 8;
        }
        // The last bytes, padded with zeros: a separator is never zero, and a quote that
        // is leaves the line to the parser, which reads it right.
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        if has_quote || !split(u64::from_le_bytes(last), word_at) {
            self.cells.truncate(at.cells);
            return Ok(false);
        }
        self.cells.push((start, n_bytes));
        self.reserve(line.len());
        self.bytes[at.bytes..at.bytes + line.len()].copy_from_slice(line);
        self.n_bytes += line.len();
        self.rows.push(RowAt {
            n_cells: self.cells.len() - at.cells,
            ..at
        });
        Ok(true)
    }
}

/// Rows of one file, parsed from the bytes of `R`.
pub struct Rows<R> {
    input: BufReader<R>,
    parser: csv_core::Reader,
    separator: u8,
    quote: Option<u8>,
    /// Lines before the parser's first (skipped lines).
    line_base: u64,
    /// The row [`Rows::advance`] read last.
    current: RowBuf,
}

/// The parser for `format`. Only `\n` ends a line: a `\r` before it stays in the last
/// cell, which is trimmed, and the line numbers of CRLF files are right.
fn parser(format: &Format) -> csv_core::Reader {
    let mut parser = csv_core::ReaderBuilder::new()
        .delimiter(format.separator)
        .quoting(format.quote.is_some())
        .quote(format.quote.unwrap_or(b'"'))
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build();
    // The parser removes a byte-order mark from the first bytes it is given, which may
    // be in the middle of the file here (the mark at its start is removed before): it
    // is given a first byte it cannot take, which leaves it as it was otherwise.
    parser.read_record(b"\0", &mut [], &mut []);
    parser
}

/// Opens rows over `inner`, which is at the start of the file: skips the byte-order mark
/// and `skip_lines` lines, and reads the header if there is one.
pub fn start<R: Read>(inner: R, format: &Format) -> io::Result<(Rows<R>, FileStart)> {
    let mut input = BufReader::with_capacity(256 * 1024, inner);
    if input.fill_buf()?.starts_with(UTF8_BOM) {
        input.consume(UTF8_BOM.len());
    }
    let mut line_base = 0u64;
    let mut skipped = Vec::new();
    for _ in 0..format.skip_lines {
        skipped.clear();
        let n_bytes = input.read_until(b'\n', &mut skipped)?;
        if n_bytes == 0 {
            break;
        }
        line_base += 1;
    }
    let mut rows = Rows {
        input,
        parser: parser(format),
        separator: format.separator,
        quote: format.quote,
        line_base,
        current: RowBuf::default(),
    };
    let header = if format.header && rows.advance()? {
        Some(
            rows.row()
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
        let mut current = std::mem::take(&mut self.current);
        current.clear();
        let more = self.read_into(&mut current);
        self.current = current;
        more
    }

    /// The row [`Rows::advance`] read last.
    pub fn row(&self) -> Row<'_> {
        self.current
            .last()
            .expect("advance() read a row before row() is asked for")
    }

    /// The line number where the next row begins.
    pub fn next_line(&self) -> u64 {
        self.line_base + self.parser.line()
    }

    /// Whether the current row is to be skipped (see [`is_skipped`]).
    pub fn is_skipped(&self, format: &Format) -> bool {
        is_skipped(&self.row(), format)
    }

    /// The reader under the rows.
    pub fn into_inner(self) -> R {
        self.input.into_inner()
    }

    /// Parses the next row onto the end of `buf`; `false` at the end of the file.
    ///
    /// A line without quotes is split at its separators, which is what the parser would
    /// make of it, only several times faster; the parser takes the rest: quoted cells,
    /// a line longer than the buffer, the last line without its line end.
    fn read_into(&mut self, buf: &mut RowBuf) -> io::Result<bool> {
        // As the `csv` crate counts: the line after the previous row, blank lines before
        // this row included.
        let line = self.next_line();
        loop {
            let input = self.input.fill_buf()?;
            let Some(end) = memchr::memchr(b'\n', input) else {
                break;
            };
            let text = &input[..end];
            // A blank line is no row, as for the parser.
            let is_row = !text.is_empty();
            if is_row && !buf.push_line(text, self.separator, self.quote, line)? {
                break;
            }
            self.input.consume(end + 1);
            self.parser.set_line(self.parser.line() + 1);
            if is_row {
                return Ok(true);
            }
        }
        let (start, first_cell) = (buf.n_bytes, buf.cells.len());
        let mut n_ends = 0;
        loop {
            // An empty input tells the parser that the file has ended.
            let input = self.input.fill_buf()?;
            if buf.n_bytes == buf.bytes.len() {
                buf.reserve(64 * 1024);
            }
            if n_ends == buf.ends.len() {
                buf.ends.resize((n_ends * 2).max(1024), 0);
            }
            let (result, n_in, n_out, n_new_ends) = self.parser.read_record(
                input,
                &mut buf.bytes[buf.n_bytes..],
                &mut buf.ends[n_ends..],
            );
            self.input.consume(n_in);
            buf.n_bytes += n_out;
            n_ends += n_new_ends;
            match result {
                ReadRecordResult::InputEmpty
                | ReadRecordResult::OutputFull
                | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    let n_bytes = buf.n_bytes - start;
                    u32::try_from(n_bytes).map_err(|_| too_long(line))?;
                    let mut cell_start = 0;
                    for &end in &buf.ends[..n_ends] {
                        buf.cells.push((cell_start as u32, end as u32));
                        cell_start = end;
                    }
                    buf.rows.push(RowAt {
                        bytes: start,
                        n_bytes,
                        cells: first_cell,
                        n_cells: n_ends,
                        line,
                    });
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }
}

/// Rows handed over by [`parse_ahead`] at a time: each hand-over may wake a thread, which
/// on a virtual machine costs microseconds. In the benchmark, chunks of 512 rows were a
/// fifth slower than 4096; 16384 were not clearly faster and took the peak RSS from 20 to
/// 56 MB.
const CHUNK_ROWS: usize = 4096;

/// ... or fewer, when their cells reach this many bytes: a file of very wide rows keeps
/// the chunks in flight small too.
const CHUNK_BYTES: usize = 1 << 20;

/// Rows read (and hashed, by a [`Checksummed`] reader) and parsed on a second thread while
/// this one converts them: the two halves of the work take about as long. Rows to skip
/// are skipped there.
pub struct RowsAhead<'scope, R> {
    full: Receiver<io::Result<RowBuf>>,
    empty: SyncSender<RowBuf>,
    chunk: RowBuf,
    /// The parsing thread, which gives back the reader under the rows when it ends.
    parser: ScopedJoinHandle<'scope, R>,
}

/// Parses `rows` to their end on a thread of `scope`, skipping what `format` says to.
pub fn parse_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut rows: Rows<R>,
    format: &'scope Format,
) -> RowsAhead<'scope, R> {
    let (full_sender, full) = mpsc::sync_channel::<io::Result<RowBuf>>(2);
    let (empty, empty_receiver) = mpsc::sync_channel::<RowBuf>(4);
    let parser = scope.spawn(move || loop {
        // Chunks come back to be filled again, with the room they have grown.
        let mut chunk = empty_receiver.try_recv().unwrap_or_default();
        chunk.clear();
        let mut at_end = false;
        while chunk.len() < CHUNK_ROWS && chunk.n_bytes < CHUNK_BYTES {
            match rows.read_into(&mut chunk) {
                Ok(true) => {
                    if chunk.last().is_some_and(|row| is_skipped(&row, format)) {
                        chunk.pop();
                    }
                }
                Ok(false) => {
                    at_end = true;
                    break;
                }
                Err(error) => {
                    let _ = full_sender.send(Err(error));
                    return rows.into_inner();
                }
            }
        }
        // A closed channel: the converting side stopped early.
        if (chunk.len() > 0 && full_sender.send(Ok(chunk)).is_err()) || at_end {
            return rows.into_inner();
        }
    });
    RowsAhead {
        full,
        empty,
        chunk: RowBuf::default(),
        parser,
    }
}

impl<R> RowsAhead<'_, R> {
    /// The next rows to convert; `None` at the end of the file.
    pub fn next_chunk(&mut self) -> io::Result<Option<&RowBuf>> {
        let done = std::mem::take(&mut self.chunk);
        if done.bytes.capacity() > 0 {
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

    /// The reader under the rows, once the parsing thread has ended (after
    /// [`RowsAhead::next_chunk`] gave `None` or an error).
    pub fn into_inner(self) -> R {
        drop(self.full);
        self.parser
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Whether a row is to be skipped: a blank line, or what the format says to skip: empty
/// (every cell blank) or containing one of the configured strings.
pub fn is_skipped(row: &Row, format: &Format) -> bool {
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
///
/// The checksum is XXH3-128, in the canonical hex form `xxhsum -H2` prints. It recognises
/// content seen before; nothing relies on it being hard to forge, and SHA-256 (which the
/// connector used before) took a third of the reading thread's time, XXH3 a fiftieth.
pub struct Checksummed<R> {
    inner: R,
    /// Boxed: the streaming state holds a buffer of its own.
    hasher: Box<Xxh3Default>,
    n_bytes: u64,
}

impl<R: Read> Checksummed<R> {
    pub fn new(inner: R) -> Checksummed<R> {
        Checksummed {
            inner,
            hasher: Box::default(),
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
        Ok((xxh128_hex(self.hasher.digest128()), self.n_bytes))
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

/// An XXH3-128 hash in its canonical form: 32 hex digits, high half first.
fn xxh128_hex(hash: u128) -> String {
    format!("{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::FormatSettings;

    fn format(quote: &str) -> Format {
        FormatSettings {
            separator: ";".into(),
            quote: quote.into(),
            header: false,
            ..FormatSettings::default()
        }
        .resolve("test")
        .expect("a valid format")
    }

    /// Quoted separators, line breaks and quotes, CRLF, blank lines, a cell larger and a
    /// row wider than the first room of a [`RowBuf`], a quote inside a cell, more rows
    /// than a chunk, and a last line without its line end.
    fn nasty_input() -> String {
        let mut input = String::from(
            "a;b;c\r\n\"quoted;sep\";\"line\nbreak\";\"say \"\"hi\"\"\"\n\n\nab\"c;d\n  \n",
        );
        // Longer than the read buffer.
        input.push_str(&format!("long;{}\n", "x".repeat(300_000)));
        input.push_str(&format!("{}\r\n", vec!["c"; 3000].join(";")));
        for n in 0..5000 {
            input.push_str(&format!("{n};{}\n", n * 7));
        }
        input.push_str("truncated;row");
        input
    }

    /// (line, cells) of each row as the `csv` crate reads it with the same settings.
    fn as_csv_crate_reads(input: &str, quoting: bool) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(b';')
            .quoting(quoting)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(input.as_bytes());
        let mut record = csv::ByteRecord::new();
        let mut rows = Vec::new();
        while reader.read_byte_record(&mut record).expect("a row") {
            let line = record.position().expect("a position").line();
            rows.push((line, record.iter().map(<[u8]>::to_vec).collect()));
        }
        rows
    }

    fn cells(row: &Row) -> (u64, Vec<Vec<u8>>) {
        (row.line(), row.iter().map(<[u8]>::to_vec).collect())
    }

    #[test]
    fn rows_are_those_the_csv_crate_reads_one_by_one_and_ahead() {
        let input = nasty_input();
        for quote in ["\"", ""] {
            let format = format(quote);
            let expected = as_csv_crate_reads(&input, !quote.is_empty());
            let (mut rows, _) = start(input.as_bytes(), &format).expect("start");
            let mut one_by_one = Vec::new();
            while rows.advance().expect("a row") {
                one_by_one.push(cells(&rows.row()));
            }
            assert_eq!(one_by_one.len(), expected.len(), "quote {quote:?}");
            for (got, expected) in one_by_one.iter().zip(&expected) {
                assert_eq!(got, expected, "quote {quote:?}");
            }

            let (rows, _) = start(input.as_bytes(), &format).expect("start");
            let ahead = std::thread::scope(|scope| {
                let mut ahead = parse_ahead(scope, rows, &format);
                let mut got = Vec::new();
                while let Some(chunk) = ahead.next_chunk().expect("a chunk") {
                    got.extend(chunk.iter().map(|row| cells(&row)));
                }
                got
            });
            let not_skipped: Vec<_> = one_by_one
                .iter()
                .filter(|(_, cells)| !(cells.len() == 1 && cells[0].trim_ascii().is_empty()))
                .cloned()
                .collect();
            assert_eq!(ahead.len(), not_skipped.len(), "quote {quote:?}");
            assert!(
                ahead == not_skipped,
                "quote {quote:?}: rows parsed ahead differ"
            );
        }
    }

    /// Rows and line numbers as [`Rows::advance`] reads them from `input`.
    fn as_read(input: &[u8], format: &Format) -> Vec<(u64, Vec<Vec<u8>>)> {
        let (mut rows, _) = start(input, format).expect("start");
        let mut got = Vec::new();
        while rows.advance().expect("a row") {
            got.push(cells(&rows.row()));
        }
        got
    }

    #[test]
    fn random_bytes_give_the_rows_the_csv_crate_reads() {
        // A fixed xorshift sequence: the same inputs every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ab;;;\"\"\n\n\r ";
        for quote in ["\"", ""] {
            let format = format(quote);
            for _ in 0..1000 {
                let len = (next() % 60) as usize;
                let input: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                let text = String::from_utf8(input.clone()).expect("ASCII");
                assert_eq!(
                    as_read(&input, &format),
                    as_csv_crate_reads(&text, !quote.is_empty()),
                    "input {text:?}, quote {quote:?}"
                );
            }
        }
    }

    #[test]
    fn chunks_of_wide_rows_stay_near_a_megabyte() {
        let row = format!("{};x\n", "w".repeat(10_000));
        let input = row.repeat(500);
        let format = format("\"");
        let (rows, _) = start(input.as_bytes(), &format).expect("start");
        let chunk_rows = std::thread::scope(|scope| {
            let mut ahead = parse_ahead(scope, rows, &format);
            let mut chunk_rows = Vec::new();
            while let Some(chunk) = ahead.next_chunk().expect("a chunk") {
                chunk_rows.push(chunk.len());
            }
            chunk_rows
        });
        assert_eq!(chunk_rows.iter().sum::<usize>(), 500);
        // Each chunk ends with the row that takes it past a megabyte.
        assert!(
            chunk_rows.iter().all(|&n| n <= CHUNK_BYTES / 10_000 + 1),
            "{chunk_rows:?}"
        );
    }

    #[test]
    fn bytes_equal_marks_exactly_the_equal_bytes() {
        for byte in 0..=255u8 {
            for other in 0..=255u8 {
                for position in 0..8 {
                    // `other` everywhere but at `position`, where `byte` is.
                    let mut bytes = [other; 8];
                    bytes[position] = byte;
                    let expected = bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, &b)| b == byte)
                        .fold(0u64, |mask, (at, _)| mask | 0x80 << (8 * at));
                    assert_eq!(
                        bytes_equal(u64::from_le_bytes(bytes), byte),
                        expected,
                        "{bytes:?} for {byte}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_checksum_is_the_one_xxhsum_prints() {
        // `printf 'hello world\n' | xxhsum -H2` (xxhash 0.8)
        let (checksum, n_bytes) = Checksummed::new(&b"hello world\n"[..])
            .finish()
            .expect("read");
        assert_eq!(checksum, "eefac9d87100cd1336b2e733a5484425");
        assert_eq!(n_bytes, 12);
    }

    #[test]
    fn the_checksum_covers_every_byte_however_much_was_parsed() {
        let input = nasty_input();
        let expected = xxh128_hex(xxhash_rust::xxh3::xxh3_128(input.as_bytes()));
        let (mut rows, _) =
            start(Checksummed::new(input.as_bytes()), &format("\"")).expect("start");
        rows.advance().expect("a row");
        let (checksum, n_bytes) = rows.into_inner().finish().expect("the rest");
        assert_eq!((checksum, n_bytes), (expected, input.len() as u64));
    }
}
