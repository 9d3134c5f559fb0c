//! Records on their way from the converting thread to `read`: encoded into blocks of
//! about 64 KB that go over a bounded channel, and decoded page by page on the thread
//! that calls `read`, so that the records are allocated and freed on the host's thread.
//!
//! The encoding is private to this module and to one process: fixed-width numbers in
//! native byte order; texts as a length and their UTF-8 bytes, and the texts that repeat
//! (queues, agents, activities) written once and referred to by number after. A record
//! never spans two blocks.

use crate::layout::Texts;
use acdlink_connector_api::{
    AgentStatus, Channel, ContactEvent, Extra, QueueInterval, RCowStr, ROption, RString, RVec,
    Records, StreamKind, UtcMillis,
};
use rustc_hash::FxHashMap;
use std::{
    io,
    sync::mpsc::{self, Receiver, SyncSender},
};

/// Records are encoded in blocks of about this many bytes, each handed over whole ...
const BLOCK_BYTES: usize = 64 * 1024;

/// ... and at most this many blocks wait to be decoded: about a megabyte in flight.
const BLOCKS_IN_FLIGHT: usize = 16;

/// A channel for the blocks of one file: the encoder for the converting thread, the
/// decoder for `read`.
pub fn channel() -> (Encoder, Decoder) {
    let (sender, receiver) = mpsc::sync_channel(BLOCKS_IN_FLIGHT);
    let encoder = Encoder {
        out: sender,
        block: Vec::with_capacity(BLOCK_BYTES + 1024),
        interned: FxHashMap::default(),
        numbered: Vec::new(),
        n_interned: 0,
        last_instant: 0,
    };
    let decoder = Decoder {
        input: receiver,
        block: Vec::new(),
        at: 0,
        ended: false,
        interned: Vec::new(),
        last_instant: 0,
    };
    (encoder, decoder)
}

/// At most this many distinct texts are written once and referred to after; texts beyond
/// are written each time, so that a file of ever new texts keeps memory flat.
const MAX_INTERNED: usize = 100_000;

/// The tag in a text's first number (its low two bits): the text is written once here,
/// its length follows ...
const ONCE: u64 = 0;
/// ... or it is a new interned text, its length follows ...
const INTERNED: u64 = 1;
/// ... or a reference to an interned text, its number follows.
const REFERENCE: u64 = 2;

/// Appends `value` as a LEB128 number: most of a record's numbers are small.
fn put_number(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a signed `value`, zigzag-encoded so that small negative values stay short.
fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_number(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Encodes the records of a file as the converting thread makes them.
pub struct Encoder {
    out: SyncSender<Vec<u8>>,
    block: Vec<u8>,
    /// Queue, agent and activity texts repeat on most rows: each is written once.
    interned: FxHashMap<Box<str>, u32>,
    /// The encoding's numbers of the converter's numbered queue texts ([`Texts`]), once
    /// written.
    numbered: Vec<Option<u32>>,
    n_interned: u32,
    last_instant: i64,
}

/// A record's queue texts as the converter numbered them, instead of the record's own
/// (empty) texts.
#[derive(Clone, Copy)]
pub struct NumberedQueue<'t> {
    pub texts: &'t Texts,
    pub numbers: [u32; 2],
}

/// The records of a file, decoded page by page as their blocks arrive.
pub struct Decoder {
    input: Receiver<Vec<u8>>,
    block: Vec<u8>,
    /// Where the next record begins in `block`.
    at: usize,
    /// The encoder finished (or went away): no block will come any more.
    ended: bool,
    interned: Vec<RString>,
    last_instant: i64,
}

impl Encoder {
    pub fn interval(
        &mut self,
        record: &QueueInterval,
        queue: Option<NumberedQueue>,
    ) -> io::Result<()> {
        self.queue(&record.queue_id, &record.queue_name, queue)?;
        self.block.push(record.channel.0);
        self.instant(record.start);
        put_number(&mut self.block, u64::from(record.interval_minutes));
        put_number(&mut self.block, u64::from(record.offered));
        put_number(&mut self.block, u64::from(record.handled));
        put_number(&mut self.block, u64::from(record.abandoned));
        self.block
            .extend_from_slice(&record.handle_time_secs.to_ne_bytes());
        put_number(&mut self.block, record.extras.len() as u64);
        for extra in &record.extras {
            self.interned_text(extra.name.as_str())?;
            self.block.extend_from_slice(&extra.value.to_ne_bytes());
        }
        self.end_record()
    }

    pub fn contact(
        &mut self,
        record: &ContactEvent,
        queue: Option<NumberedQueue>,
    ) -> io::Result<()> {
        self.queue(&record.queue_id, &record.queue_name, queue)?;
        self.block.push(record.channel.0);
        self.instant(record.timestamp);
        self.block.push(
            u8::from(record.offered)
                | u8::from(record.handled) << 1
                | u8::from(record.contact_id.is_some()) << 2,
        );
        self.block
            .extend_from_slice(&record.duration_secs.to_ne_bytes());
        if let ROption::RSome(contact_id) = &record.contact_id {
            // Contact identifiers do not repeat: not interned.
            self.text(contact_id, ONCE);
        }
        self.end_record()
    }

    pub fn status(&mut self, record: &AgentStatus) -> io::Result<()> {
        self.interned_text(&record.agent_id)?;
        self.interned_text(&record.activity_id)?;
        self.block
            .push(u8::from(record.activity_name.is_some()) | u8::from(record.end.is_some()) << 1);
        self.instant(record.start);
        if let ROption::RSome(end) = record.end {
            put_signed(&mut self.block, end.0 - record.start.0);
        }
        if let ROption::RSome(name) = &record.activity_name {
            self.interned_text(name)?;
        }
        self.end_record()
    }

    fn queue(&mut self, id: &str, name: &str, numbered: Option<NumberedQueue>) -> io::Result<()> {
        let Some(NumberedQueue { texts, numbers }) = numbered else {
            self.interned_text(id)?;
            return self.interned_text(name);
        };
        for number in numbers {
            let slot = number as usize;
            if self.numbered.len() <= slot {
                self.numbered.resize(slot + 1, None);
            }
            match self.numbered[slot] {
                Some(index) => self.reference(index),
                None => {
                    self.numbered[slot] = Some(self.n_interned);
                    self.n_interned += 1;
                    self.text(texts.get(number), INTERNED);
                }
            }
        }
        Ok(())
    }

    fn reference(&mut self, index: u32) {
        put_number(&mut self.block, u64::from(index) << 2 | REFERENCE);
    }

    /// An instant, as the difference to the one before: rows of a file are close in time.
    fn instant(&mut self, instant: UtcMillis) {
        put_signed(&mut self.block, instant.0.wrapping_sub(self.last_instant));
        self.last_instant = instant.0;
    }

    fn interned_text(&mut self, text: &str) -> io::Result<()> {
        if let Some(&index) = self.interned.get(text) {
            self.reference(index);
            return Ok(());
        }
        if self.interned.len() < MAX_INTERNED {
            self.interned.insert(text.into(), self.n_interned);
            self.n_interned += 1;
            self.text(text, INTERNED);
        } else {
            self.text(text, ONCE);
        }
        Ok(())
    }

    fn text(&mut self, text: &str, tag: u64) {
        put_number(&mut self.block, (text.len() as u64) << 2 | tag);
        self.block.extend_from_slice(text.as_bytes());
    }

    fn end_record(&mut self) -> io::Result<()> {
        if self.block.len() >= BLOCK_BYTES {
            self.send_block()?;
        }
        Ok(())
    }

    /// Fails (`BrokenPipe`) when the decoder was dropped: the read stopped, and the
    /// converting thread stops with it.
    fn send_block(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES + 1024));
        self.out.send(block).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the read stopped taking records")
        })
    }

    /// Hands over the last block: the decoder ends after it.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.block.is_empty() {
            self.send_block()?;
        }
        Ok(())
    }
}

fn damaged() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the records handed over by the converting thread are damaged",
    )
}

impl Decoder {
    /// Whether every record has been decoded: the encoder finished and its last block is
    /// used up (only known once a page came back short).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The next page: `max_records` records of stream `kind`, waiting for the converting
    /// thread as needed; fewer only at the end.
    pub fn page(&mut self, kind: StreamKind, max_records: usize) -> io::Result<Records> {
        let mut records = Records::empty(kind)
            .ok_or_else(|| io::Error::other(format!("no records of stream {kind}")))?;
        let reserve = max_records.min(1 << 16);
        match &mut records {
            Records::QueueIntervals(out) => {
                out.reserve(reserve);
                while out.len() < max_records && self.fill() {
                    out.push(self.interval()?);
                }
            }
            Records::ContactEvents(out) => {
                out.reserve(reserve);
                while out.len() < max_records && self.fill() {
                    out.push(self.contact()?);
                }
            }
            Records::AgentStatuses(out) => {
                out.reserve(reserve);
                while out.len() < max_records && self.fill() {
                    out.push(self.status()?);
                }
            }
        }
        Ok(records)
    }

    /// Takes the next block when the current one is used up; `false` at the end.
    fn fill(&mut self) -> bool {
        while self.at >= self.block.len() {
            match self.input.recv() {
                Ok(block) => {
                    self.block = block;
                    self.at = 0;
                }
                Err(_) => {
                    self.ended = true;
                    return false;
                }
            }
        }
        true
    }

    #[inline]
    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let bytes = self
            .block
            .get(self.at..self.at + N)
            .ok_or_else(damaged)?
            .try_into()
            .expect("N bytes");
        self.at += N;
        Ok(bytes)
    }

    #[inline]
    fn byte(&mut self) -> io::Result<u8> {
        self.bytes::<1>().map(|[byte]| byte)
    }

    /// A LEB128 number; most are a single byte.
    #[inline]
    fn number(&mut self) -> io::Result<u64> {
        match self.block.get(self.at) {
            Some(&byte) if byte < 0x80 => {
                self.at += 1;
                Ok(u64::from(byte))
            }
            _ => self.long_number(),
        }
    }

    fn long_number(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(damaged())
    }

    #[inline]
    fn u32(&mut self) -> io::Result<u32> {
        u32::try_from(self.number()?).map_err(|_| damaged())
    }

    #[inline]
    fn signed(&mut self) -> io::Result<i64> {
        let zigzag = self.number()?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    #[inline]
    fn instant(&mut self) -> io::Result<UtcMillis> {
        self.last_instant = self.last_instant.wrapping_add(self.signed()?);
        Ok(UtcMillis(self.last_instant))
    }

    #[inline]
    fn f64(&mut self) -> io::Result<f64> {
        self.bytes().map(f64::from_ne_bytes)
    }

    /// Inlined always: an `RString` returned in a `Result` from a call, and moved on at
    /// once, stalled the processor (a store forwarded to a wider load) for a third of the
    /// read-back; inlined, its parts go straight into the record.
    #[inline(always)]
    fn text(&mut self) -> io::Result<RString> {
        let word = self.number()?;
        let (tag, value) = (word & 3, usize::try_from(word >> 2).map_err(|_| damaged())?);
        if tag == REFERENCE {
            return self.interned.get(value).cloned().ok_or_else(damaged);
        }
        let bytes = self
            .block
            .get(self.at..self.at.saturating_add(value))
            .ok_or_else(damaged)?;
        self.at += value;
        let text = RString::from(std::str::from_utf8(bytes).map_err(|_| damaged())?);
        match tag {
            INTERNED => self.interned.push(text.clone()),
            ONCE => {}
            _ => return Err(damaged()),
        }
        Ok(text)
    }

    fn interval(&mut self) -> io::Result<QueueInterval> {
        let queue_id = self.text()?;
        let queue_name = self.text()?;
        let channel = Channel(self.byte()?);
        let start = self.instant()?;
        let interval_minutes = self.u32()?;
        let offered = self.u32()?;
        let handled = self.u32()?;
        let abandoned = self.u32()?;
        let handle_time_secs = self.f64()?;
        let n_extras = self.u32()?;
        let mut extras = RVec::new();
        for _ in 0..n_extras {
            let name = self.text()?;
            let value = self.f64()?;
            extras.push(Extra {
                name: RCowStr::Owned(name),
                value,
            });
        }
        Ok(QueueInterval {
            queue_id,
            queue_name,
            channel,
            start,
            interval_minutes,
            offered,
            handled,
            abandoned,
            handle_time_secs,
            extras,
        })
    }

    fn contact(&mut self) -> io::Result<ContactEvent> {
        let queue_id = self.text()?;
        let queue_name = self.text()?;
        let channel = Channel(self.byte()?);
        let timestamp = self.instant()?;
        let flags = self.byte()?;
        let duration_secs = self.f64()?;
        let contact_id = if flags & 4 != 0 {
            ROption::RSome(self.text()?)
        } else {
            ROption::RNone
        };
        Ok(ContactEvent {
            queue_id,
            queue_name,
            channel,
            timestamp,
            offered: flags & 1 != 0,
            handled: flags & 2 != 0,
            duration_secs,
            contact_id,
        })
    }

    fn status(&mut self) -> io::Result<AgentStatus> {
        let agent_id = self.text()?;
        let activity_id = self.text()?;
        let flags = self.byte()?;
        let start = self.instant()?;
        let end = if flags & 2 != 0 {
            ROption::RSome(UtcMillis(start.0.wrapping_add(self.signed()?)))
        } else {
            ROption::RNone
        };
        let activity_name = if flags & 1 != 0 {
            ROption::RSome(self.text()?)
        } else {
            ROption::RNone
        };
        Ok(AgentStatus {
            agent_id,
            activity_id,
            activity_name,
            start,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(queue: &str, extras: Vec<Extra>) -> QueueInterval {
        QueueInterval {
            queue_id: queue.into(),
            queue_name: format!("{queue} Störung").into(),
            channel: Channel::CHATS,
            start: UtcMillis(1_700_000_000_000),
            interval_minutes: 15,
            offered: 12,
            handled: 10,
            abandoned: 2,
            handle_time_secs: 1870.5,
            extras: extras.into(),
        }
    }

    /// Encodes `records` with `encode` on a thread of its own, as the converting thread
    /// does, and decodes them in pages of `max_records`.
    fn round_trip<T: Send + Sync>(
        records: &[T],
        encode: impl Fn(&mut Encoder, &T) -> io::Result<()> + Send + Sync,
        kind: StreamKind,
        max_records: usize,
    ) -> Vec<Records> {
        let (mut encoder, mut decoder) = channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for record in records {
                    encode(&mut encoder, record).unwrap();
                }
                encoder.finish().unwrap();
            });
            let mut pages = Vec::new();
            while !decoder.ended() {
                pages.push(decoder.page(kind, max_records).unwrap());
            }
            pages
        })
    }

    #[test]
    fn every_record_kind_reads_back_as_written_page_by_page() {
        let intervals = vec![
            interval("Q1", vec![]),
            interval("", vec![Extra::fixed(Extra::HOLD_SECS, 3.25)]),
            interval("Q3", vec![]),
        ];
        let pages = round_trip(
            &intervals,
            |encoder, record| encoder.interval(record, None),
            StreamKind::PHONELINK_INTERVALS,
            2,
        );
        assert_eq!(
            pages,
            [
                Records::QueueIntervals(intervals[..2].to_vec().into()),
                Records::QueueIntervals(intervals[2..].to_vec().into())
            ]
        );

        let contacts = [
            ContactEvent {
                queue_id: "Q1".into(),
                queue_name: "Kö".into(),
                channel: Channel::CALLS,
                timestamp: UtcMillis(-5),
                offered: true,
                handled: false,
                duration_secs: 0.0,
                contact_id: ROption::RSome("c-1".into()),
            },
            ContactEvent {
                queue_id: "Q2".into(),
                queue_name: "Q2".into(),
                channel: Channel::EMAILS,
                timestamp: UtcMillis(7),
                offered: true,
                handled: true,
                duration_secs: 61.5,
                contact_id: ROption::RNone,
            },
        ];
        // Enough records for many blocks, and pages that end inside blocks.
        let many: Vec<ContactEvent> = (0..20_000)
            .map(|index| contacts[index % 2].clone())
            .collect();
        let pages = round_trip(
            &many,
            |encoder, record| encoder.contact(record, None),
            StreamKind::PHONELINK_CONTACTS,
            777,
        );
        assert_eq!(pages.len(), 20_000 / 777 + 1);
        let decoded: Vec<ContactEvent> = pages
            .into_iter()
            .flat_map(|page| match page {
                Records::ContactEvents(records) => records.into_vec(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(decoded, many);

        let statuses = vec![
            AgentStatus {
                agent_id: "4711".into(),
                activity_id: "AUX 3".into(),
                activity_name: ROption::RSome("Pause".into()),
                start: UtcMillis(1000),
                end: ROption::RSome(UtcMillis(2000)),
            },
            AgentStatus {
                agent_id: "4712".into(),
                activity_id: "ACD".into(),
                activity_name: ROption::RNone,
                start: UtcMillis(3000),
                end: ROption::RNone,
            },
        ];
        let pages = round_trip(
            &statuses,
            |encoder, record| encoder.status(record),
            StreamKind::TIMELINK,
            10,
        );
        assert_eq!(pages, [Records::AgentStatuses(statuses.into())]);
    }

    #[test]
    fn a_stopped_read_stops_the_encoder_and_a_cut_block_is_an_error() {
        let (mut encoder, decoder) = channel();
        drop(decoder);
        let record = interval("Q1", vec![]);
        let error = (0..100_000)
            .map(|_| encoder.interval(&record, None))
            .find_map(Result::err)
            .expect("the encoder notices that nobody decodes");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);

        let (encoder, mut decoder) = channel();
        encoder.out.send(vec![0x05, b'Q']).unwrap();
        drop(encoder);
        let error = decoder
            .page(StreamKind::PHONELINK_INTERVALS, 5)
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
