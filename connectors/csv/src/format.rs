//! Reading cells: text in the file's encoding, whole numbers, decimals with a point or a
//! comma, durations, and dates and times in the operator's format tokens
//! (`YYYY YY MM M DD D hh h mm m ss s`, `[...]` for an optional part, or `unix`).
//!
//! Every function works on the raw bytes of one cell, so the hot path allocates only for
//! the text it keeps.

use std::borrow::Cow;

/// A file encoding. All of them are ASCII-compatible, which is why the CSV parser can work
/// on the raw bytes and only text cells are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
    /// True ISO-8859-1 (every byte is the code point of the same value).
    Latin1,
    /// ISO-8859-9 (Turkish), decoded as its superset windows-1254.
    Latin5,
}

impl Encoding {
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "windows-1252" | "cp1252" => Some(Encoding::Windows1252),
            "iso-8859-1" | "latin1" | "latin-1" => Some(Encoding::Latin1),
            "iso-8859-9" | "latin5" | "latin-5" => Some(Encoding::Latin5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Latin1 => "iso-8859-1",
            Encoding::Latin5 => "iso-8859-9",
        }
    }

    /// The text of a cell, or `None` when the bytes are not valid in this encoding.
    pub fn decode(self, bytes: &[u8]) -> Option<Cow<'_, str>> {
        match self {
            Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Encoding::Windows1252 => {
                encoding_rs::WINDOWS_1252.decode_without_bom_handling_and_without_replacement(bytes)
            }
            Encoding::Latin1 => Some(encoding_rs::mem::decode_latin1(bytes)),
            Encoding::Latin5 => {
                encoding_rs::WINDOWS_1254.decode_without_bom_handling_and_without_replacement(bytes)
            }
        }
    }

    /// `text` in this encoding, or `None` when it cannot be written in it.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        let encoding = match self {
            Encoding::Utf8 => return Some(text.as_bytes().to_vec()),
            Encoding::Latin1 => {
                return text
                    .chars()
                    .map(|character| u8::try_from(u32::from(character)).ok())
                    .collect()
            }
            Encoding::Windows1252 => encoding_rs::WINDOWS_1252,
            Encoding::Latin5 => encoding_rs::WINDOWS_1254,
        };
        let (bytes, _, had_errors) = encoding.encode(text);
        (!had_errors).then(|| bytes.into_owned())
    }
}

/// The bytes of a cell without surrounding ASCII spaces and tabs.
pub fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// A whole number >= 0.
pub fn parse_count(bytes: &[u8]) -> Option<u32> {
    let bytes = trim(bytes);
    if bytes.is_empty() || bytes.len() > 10 {
        return None;
    }
    let mut value: u64 = 0;
    for &byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(byte - b'0');
    }
    u32::try_from(value).ok()
}

/// A finite decimal number >= 0, with a point or (if `decimal_comma`) a comma.
pub fn parse_decimal(bytes: &[u8], decimal_comma: bool) -> Option<f64> {
    let bytes = trim(bytes);
    if bytes.is_empty() || bytes.len() > 40 {
        return None;
    }
    let point = if decimal_comma { b',' } else { b'.' };
    // The common case without the float parser: up to 15 digits, at most one decimal
    // mark. Both the digits as an integer and the power of ten are exact in an f64, and
    // one IEEE division rounds correctly, so this equals what the parser would give.
    if bytes.len() <= 16 {
        let mut mantissa = 0u64;
        let mut n_fraction_digits = None;
        let mut n_digits = 0;
        let mut is_simple = true;
        for &byte in bytes {
            match byte {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(byte - b'0');
                    n_digits += 1;
                    if let Some(n) = n_fraction_digits.as_mut() {
                        *n += 1;
                    }
                }
                _ if byte == point && n_fraction_digits.is_none() => n_fraction_digits = Some(0),
                _ => {
                    is_simple = false;
                    break;
                }
            }
        }
        if is_simple && n_digits > 0 && n_digits <= 15 {
            const POWERS: [f64; 16] = [
                1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                1e15,
            ];
            return Some(mantissa as f64 / POWERS[n_fraction_digits.unwrap_or(0)]);
        }
    }
    let mut buffer = [0u8; 40];
    let buffer = &mut buffer[..bytes.len()];
    for (slot, &byte) in buffer.iter_mut().zip(bytes) {
        *slot = match byte {
            b'0'..=b'9' => byte,
            b',' if decimal_comma => b'.',
            b'.' if !decimal_comma => b'.',
            _ => return None,
        };
    }
    let text = std::str::from_utf8(buffer).ok()?;
    let value: f64 = text.parse().ok()?;
    value.is_finite().then_some(value)
}

/// A duration in seconds written as `h:mm:ss` (hours may be any number) or `mm:ss`.
pub fn parse_clock_duration(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(trim(bytes)).ok()?;
    let mut parts = text.split(':');
    let numbers: Vec<u64> = parts
        .by_ref()
        .map(|part| {
            (!part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        })
        .collect::<Option<Vec<u64>>>()?;
    let seconds = match numbers.as_slice() {
        [hours, minutes, seconds] if *minutes < 60 && *seconds < 60 => {
            hours * 3600 + minutes * 60 + seconds
        }
        [minutes, seconds] if *seconds < 60 => minutes * 60 + seconds,
        _ => return None,
    };
    Some(seconds as f64)
}

/// A flag: 1/0, true/false, yes/no, y/n (any case).
pub fn parse_flag(bytes: &[u8]) -> Option<bool> {
    let bytes = trim(bytes);
    let yes: &[&[u8]] = &[b"1", b"true", b"yes", b"y"];
    let no: &[&[u8]] = &[b"0", b"false", b"no", b"n"];
    if yes.iter().any(|word| bytes.eq_ignore_ascii_case(word)) {
        Some(true)
    } else if no.iter().any(|word| bytes.eq_ignore_ascii_case(word)) {
        Some(false)
    } else {
        None
    }
}

/// One part of a date or time format.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Year4,
    Year2,
    /// A number field: which one, and whether it must have exactly two digits.
    Number(Field, bool),
    Literal(u8),
    Optional(Vec<Item>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// The parts of a date and time found in a cell; what a format does not name stays 0
/// (or 1 for month and day).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub year: i16,
    pub month: i8,
    pub day: i8,
    pub hour: i8,
    pub minute: i8,
    pub second: i8,
}

/// A parsed date, time, or date-and-time format, or Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFormat {
    pub text: String,
    items: Vec<Item>,
    pub unix: bool,
}

/// A time-of-day format (`hh:mm[:ss]`).
pub type TimeFormat = DateFormat;

impl DateFormat {
    /// Parses a date format (with `with_time`, a date-and-time format, or `unix`).
    pub fn parse(text: &str, with_time: bool) -> Result<DateFormat, String> {
        if with_time && text.eq_ignore_ascii_case("unix") {
            return Ok(DateFormat {
                text: text.to_string(),
                items: Vec::new(),
                unix: true,
            });
        }
        let expected = if with_time {
            "a date and time format such as \"YYYY-MM-DD hh:mm:ss\" or \"unix\""
        } else {
            "a date format such as \"DD.MM.YYYY\""
        };
        let items = parse_items(text).ok_or_else(|| expected.to_string())?;
        let fields = named_fields(&items);
        let has_date = fields.contains(&Field::Month) && fields.contains(&Field::Day);
        let has_time = fields.contains(&Field::Hour) && fields.contains(&Field::Minute);
        let has_year = has_year(&items);
        if !(has_date && has_year) || (with_time && !has_time) || (!with_time && has_time) {
            return Err(expected.to_string());
        }
        Ok(DateFormat {
            text: text.to_string(),
            items,
            unix: false,
        })
    }

    /// Parses a time-of-day format.
    pub fn parse_time(text: &str) -> Result<TimeFormat, String> {
        let expected = "a time format such as \"hh:mm[:ss]\"";
        let items = parse_items(text).ok_or_else(|| expected.to_string())?;
        let fields = named_fields(&items);
        if !(fields.contains(&Field::Hour) && fields.contains(&Field::Minute))
            || fields.contains(&Field::Month)
            || fields.contains(&Field::Day)
            || has_year(&items)
        {
            return Err(expected.to_string());
        }
        Ok(DateFormat {
            text: text.to_string(),
            items,
            unix: false,
        })
    }

    /// The parts of `bytes` in this format (not for `unix`).
    pub fn read(&self, bytes: &[u8]) -> Option<Parts> {
        let mut parts = Parts {
            month: 1,
            day: 1,
            ..Parts::default()
        };
        let rest = match_items(&self.items, trim(bytes), &mut parts)?;
        rest.is_empty().then_some(parts)
    }
}

fn has_year(items: &[Item]) -> bool {
    items.iter().any(|item| match item {
        Item::Year4 | Item::Year2 => true,
        Item::Optional(inner) => has_year(inner),
        _ => false,
    })
}

fn named_fields(items: &[Item]) -> Vec<Field> {
    let mut fields = Vec::new();
    for item in items {
        match item {
            Item::Number(field, _) => fields.push(*field),
            // Optional parts do not count as present: `hh:mm[:ss]` has no required seconds.
            Item::Optional(_) | Item::Year4 | Item::Year2 | Item::Literal(_) => {}
        }
    }
    fields
}

fn parse_items(text: &str) -> Option<Vec<Item>> {
    let bytes = text.as_bytes();
    let (items, rest) = parse_sequence(bytes, false)?;
    (rest.is_empty() && !items.is_empty()).then_some(items)
}

fn parse_sequence(mut bytes: &[u8], inside: bool) -> Option<(Vec<Item>, &[u8])> {
    let mut items = Vec::new();
    let tokens: [(&[u8], Item); 12] = [
        (b"YYYY", Item::Year4),
        (b"YY", Item::Year2),
        (b"MM", Item::Number(Field::Month, true)),
        (b"M", Item::Number(Field::Month, false)),
        (b"DD", Item::Number(Field::Day, true)),
        (b"D", Item::Number(Field::Day, false)),
        (b"hh", Item::Number(Field::Hour, true)),
        (b"h", Item::Number(Field::Hour, false)),
        (b"mm", Item::Number(Field::Minute, true)),
        (b"m", Item::Number(Field::Minute, false)),
        (b"ss", Item::Number(Field::Second, true)),
        (b"s", Item::Number(Field::Second, false)),
    ];
    'outer: while let Some(&first) = bytes.first() {
        match first {
            b'[' => {
                if inside {
                    return None;
                }
                let (inner, rest) = parse_sequence(&bytes[1..], true)?;
                if inner.is_empty() {
                    return None;
                }
                items.push(Item::Optional(inner));
                bytes = rest;
                continue;
            }
            b']' => {
                return inside.then_some((items, &bytes[1..]));
            }
            _ => {}
        }
        for (token, item) in &tokens {
            if bytes.starts_with(token) {
                items.push(item.clone());
                bytes = &bytes[token.len()..];
                continue 'outer;
            }
        }
        if first.is_ascii_alphanumeric() || !first.is_ascii() {
            return None;
        }
        items.push(Item::Literal(first));
        bytes = &bytes[1..];
    }
    (!inside).then_some((items, bytes))
}

fn match_items<'a>(items: &[Item], mut bytes: &'a [u8], parts: &mut Parts) -> Option<&'a [u8]> {
    for item in items {
        match item {
            Item::Year4 => {
                let (value, rest) = digits(bytes, 4, 4)?;
                parts.year = value as i16;
                bytes = rest;
            }
            Item::Year2 => {
                let (value, rest) = digits(bytes, 2, 2)?;
                parts.year = 2000 + value as i16;
                bytes = rest;
            }
            Item::Number(field, exactly_two) => {
                let min = if *exactly_two { 2 } else { 1 };
                let (value, rest) = digits(bytes, min, 2)?;
                let value = value as i8;
                match field {
                    Field::Month => parts.month = value,
                    Field::Day => parts.day = value,
                    Field::Hour => parts.hour = value,
                    Field::Minute => parts.minute = value,
                    Field::Second => parts.second = value,
                }
                bytes = rest;
            }
            Item::Literal(byte) => {
                // A space in the format matches one or more spaces (spreadsheets pad).
                if *byte == b' ' {
                    let n_spaces = bytes.iter().take_while(|&&b| b == b' ').count();
                    if n_spaces == 0 {
                        return None;
                    }
                    bytes = &bytes[n_spaces..];
                } else {
                    bytes = bytes.strip_prefix(&[*byte])?;
                }
            }
            Item::Optional(inner) => {
                let saved = *parts;
                match match_items(inner, bytes, parts) {
                    Some(rest) => bytes = rest,
                    None => *parts = saved,
                }
            }
        }
    }
    Some(bytes)
}

fn digits(bytes: &[u8], min: usize, max: usize) -> Option<(u32, &[u8])> {
    let n_digits = bytes
        .iter()
        .take(max)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if n_digits < min {
        return None;
    }
    let value = bytes[..n_digits]
        .iter()
        .fold(0u32, |value, byte| value * 10 + u32::from(byte - b'0'));
    Some((value, &bytes[n_digits..]))
}

/// Unix seconds (an integer, possibly negative).
pub fn parse_unix_seconds(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(trim(bytes)).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_formats_read_their_tokens() {
        let format = DateFormat::parse("DD.MM.YYYY hh:mm[:ss]", true).unwrap();
        let parts = format.read(b"31.03.2024 02:30").unwrap();
        assert_eq!((parts.year, parts.month, parts.day), (2024, 3, 31));
        assert_eq!((parts.hour, parts.minute, parts.second), (2, 30, 0));
        let parts = format.read(b" 31.03.2024 02:30:15 ").unwrap();
        assert_eq!(parts.second, 15);
        assert!(format.read(b"31.03.2024").is_none());
        assert!(format.read(b"31.3.2024 02:30").is_none());
        let loose = DateFormat::parse("M/D/YY", false).unwrap();
        let parts = loose.read(b"3/9/24").unwrap();
        assert_eq!((parts.year, parts.month, parts.day), (2024, 3, 9));
        assert!(DateFormat::parse("YYYY-MM", false).is_err());
        assert!(DateFormat::parse("YYYY-MM-DD", true).is_err());
        assert!(DateFormat::parse_time("hh:mm[:ss]")
            .unwrap()
            .read(b"7:05")
            .is_none());
        assert!(DateFormat::parse_time("h:mm")
            .unwrap()
            .read(b"7:05")
            .is_some());
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(parse_count(b" 42 "), Some(42));
        assert_eq!(parse_count(b"4.2"), None);
        assert_eq!(parse_count(b"-1"), None);
        assert_eq!(parse_decimal(b"12,5", true), Some(12.5));
        assert_eq!(parse_decimal(b"12.5", true), None);
        assert_eq!(parse_decimal(b"12.5", false), Some(12.5));
        assert_eq!(parse_decimal(b"12,", true), Some(12.0));
        assert_eq!(parse_decimal(b",", true), None);
        assert_eq!(parse_decimal(b"1,2,3", true), None);
        assert_eq!(parse_decimal(b"0.1", false), Some(0.1));
        assert_eq!(
            parse_decimal(b"123456789012345678", false),
            Some(123456789012345678.0)
        );
        for text in ["0.3", "2.675", "1.0000000000001", "99999.99999"] {
            assert_eq!(
                parse_decimal(text.as_bytes(), false),
                text.parse().ok(),
                "{text}"
            );
        }
        assert_eq!(parse_clock_duration(b"1:02:03"), Some(3723.0));
        assert_eq!(parse_clock_duration(b"02:03"), Some(123.0));
        assert_eq!(parse_clock_duration(b"1:60:00"), None);
        assert_eq!(parse_flag(b"Yes"), Some(true));
        assert_eq!(parse_flag(b"0"), Some(false));
        assert_eq!(parse_flag(b"maybe"), None);
    }

    #[test]
    fn encodings_round_trip_umlauts() {
        let bytes = Encoding::Windows1252.encode("Störung").unwrap();
        assert_eq!(bytes, b"St\xf6rung");
        assert_eq!(Encoding::Windows1252.decode(&bytes).unwrap(), "Störung");
        assert_eq!(Encoding::Latin1.decode(b"\xe4").unwrap(), "ä");
        assert_eq!(Encoding::Latin5.decode(b"\xfe").unwrap(), "ş");
        assert!(Encoding::Utf8.decode(b"St\xf6rung").is_none());
    }
}
