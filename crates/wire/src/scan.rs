//! The single-pass JSON scanner behind [`Envelope`](crate::Envelope): it walks a line once, checks
//! its syntax, and records the byte spans of the few members routing needs.
//!
//! Why hand-written: serde-parsing a 1 MiB result only to read its `id` costs far more than the
//! newline search that framed it. This scanner skips string contents with `memchr2` (or a
//! vectorisable loop when validating) and never allocates on valid input, except for batches and
//! for member names or values that contain escapes (decoded to compare them).
//!
//! `FULL = true` checks the complete RFC 8259 grammar plus what strict parsers refuse beyond it
//! (lone surrogates, numbers too large for a double, nesting 128 deep), accepting exactly what
//! `serde_json::from_str::<serde_json::Value>` accepts (the property tests and the fuzzer hold it
//! to that). `FULL = false`
//! checks the same grammar except inside strings, where only `"` and `\` are looked at; the strings
//! routing reads (ids, tokens, `method`, `uri`, `jsonrpc`) are always fully checked.

use crate::words;

/// A byte range in the scanned line; for a string value it includes the quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The line is not JSON (or, with `FULL = false`, not JSON outside string contents).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Syntax;

/// The JSON type of a value, as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueKind {
    String,
    Number,
    Null,
    Bool,
    Object,
    Array,
}

/// A member's value: where it is and what type it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) span: Span,
    pub(crate) kind: ValueKind,
    /// For strings: whether the contents contain a backslash escape.
    pub(crate) escaped: bool,
}

/// What the scan of a top-level object found. Each slot is the first occurrence; a repeated
/// member is reported in `duplicate` rather than silently picking one, because the backend may
/// pick the other.
#[derive(Debug, Default)]
pub(crate) struct Members {
    pub(crate) jsonrpc: Option<Slot>,
    pub(crate) id: Option<Slot>,
    pub(crate) method: Option<Slot>,
    pub(crate) params: Option<Slot>,
    pub(crate) result: Option<Slot>,
    pub(crate) error: Option<Slot>,
    pub(crate) meta: Option<Slot>,
    pub(crate) meta_progress_token: Option<Slot>,
    pub(crate) progress_token: Option<Slot>,
    pub(crate) request_id: Option<Slot>,
    pub(crate) uri: Option<Slot>,
    pub(crate) subscription_id: Option<Slot>,
    pub(crate) duplicate: Option<&'static str>,
}

/// The top-level shape of a line.
#[derive(Debug)]
pub(crate) enum Shape {
    Object,
    /// Element spans (whitespace around them excluded).
    Array(Vec<Span>),
    /// A string, number, literal: valid JSON but not a message.
    Scalar,
}

/// Scan a whole line. On a syntax error, `members` still holds what was found before it (so a
/// caller can answer a request whose `id` came before the error).
pub(crate) fn scan<const FULL: bool>(bytes: &[u8], members: &mut Members) -> Result<Shape, Syntax> {
    let mut scanner = Scanner::<FULL> {
        bytes,
        pos: 0,
        depth: 0,
    };
    scanner.skip_whitespace();
    let shape = match scanner.peek() {
        Some(b'{') => {
            scanner.message_object(members)?;
            Shape::Object
        }
        Some(b'[') => Shape::Array(scanner.batch()?),
        _ => {
            scanner.value()?;
            Shape::Scalar
        }
    };
    scanner.skip_whitespace();
    if scanner.pos != bytes.len() {
        return Err(Syntax);
    }
    Ok(shape)
}

/// Whether `bytes` is exactly one JSON string or number token, fully checked (for [`crate::Id`]).
pub(crate) fn is_id_token(bytes: &[u8]) -> bool {
    if std::str::from_utf8(bytes).is_err() {
        return false;
    }
    let mut scanner = Scanner::<true> {
        bytes,
        pos: 0,
        depth: 0,
    };
    let kind = match scanner.peek() {
        Some(b'"') => scanner.string().map(|_| ValueKind::String),
        Some(b'-' | b'0'..=b'9') => scanner.number().map(|()| ValueKind::Number),
        _ => Err(Syntax),
    };
    kind.is_ok() && scanner.pos == bytes.len()
}

struct Scanner<'a, const FULL: bool> {
    bytes: &'a [u8],
    pos: usize,
    /// Containers open around the current position, outside [`Scanner::value`]'s own.
    depth: usize,
}

/// In full validation, a container this deep is refused, as serde_json refuses it (and with it
/// every server built on a recursive parser that guards its stack): 127 levels are accepted.
const MAX_DEPTH: usize = 128;

/// Numbers with an exponent or more integer digits than this are checked for overflow: below it,
/// no JSON number exceeds `f64::MAX`.
const MAX_PLAIN_DIGITS: usize = 308;

/// Which level of the message a member name belongs to.
#[derive(Clone, Copy)]
enum Level {
    Top,
    Params,
    Meta,
}

impl<const FULL: bool> Scanner<'_, FULL> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Syntax> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// The top-level `{...}` of a message, recording routing members.
    fn message_object(&mut self, members: &mut Members) -> Result<(), Syntax> {
        self.object_members(Level::Top, members)
    }

    /// Members of an object at `level` (positioned at `{`), routing members recorded, others
    /// skipped. Recursion is bounded: only `params` and `params._meta` descend here.
    fn object_members(&mut self, level: Level, members: &mut Members) -> Result<(), Syntax> {
        self.expect(b'{')?;
        self.enter(0)?;
        let result = self.object_members_inside(level, members);
        self.depth -= 1;
        result
    }

    /// One more container opens here, `inner` levels inside the current [`Scanner::value`].
    fn enter(&mut self, inner: usize) -> Result<(), Syntax> {
        if inner == 0 {
            self.depth += 1;
        }
        if FULL && self.depth + inner >= MAX_DEPTH {
            return Err(Syntax);
        }
        Ok(())
    }

    fn object_members_inside(&mut self, level: Level, members: &mut Members) -> Result<(), Syntax> {
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let name = self.member_name()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            match name_at(self.bytes, name, level) {
                None => {
                    self.value()?;
                }
                Some(name @ (Name::Result | Name::Error)) => {
                    // The payload: only its presence matters, and it can be many MiB, so it is
                    // checked as the mode says (skimmed strings for backend lines).
                    let start = self.pos;
                    let kind = self.value()?;
                    members.record(name, self.unescaped_slot(start, kind));
                }
                Some(name @ (Name::Params | Name::Meta)) => {
                    let start = self.pos;
                    let kind = if self.peek() == Some(b'{') {
                        let inner = if name == Name::Params {
                            Level::Params
                        } else {
                            Level::Meta
                        };
                        self.object_members(inner, members)?;
                        ValueKind::Object
                    } else {
                        self.value()?
                    };
                    members.record(name, self.unescaped_slot(start, kind));
                }
                Some(name) => {
                    let slot = self.routing_value()?;
                    members.record(name, slot);
                }
            }
            if self.after_member()? {
                return Ok(());
            }
        }
    }

    /// After a member value: `,` (more members, returns false) or `}` (done, returns true).
    fn after_member(&mut self) -> Result<bool, Syntax> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
                Ok(false)
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(Syntax),
        }
    }

    /// A member name: a string, returned as its span and whether it has escapes.
    fn member_name(&mut self) -> Result<(Span, bool), Syntax> {
        if self.peek() != Some(b'"') {
            return Err(Syntax);
        }
        let start = self.pos;
        let escaped = self.string_in_mode()?;
        Ok((
            Span {
                start,
                end: self.pos,
            },
            escaped,
        ))
    }

    /// A value routing reads: strings are fully checked whatever the mode.
    fn routing_value(&mut self) -> Result<Slot, Syntax> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            let escaped = self.string()?;
            return Ok(Slot {
                span: Span {
                    start,
                    end: self.pos,
                },
                kind: ValueKind::String,
                escaped,
            });
        }
        let kind = self.value()?;
        Ok(self.unescaped_slot(start, kind))
    }

    /// The slot of a value that started at `start` and ends here, with no escapes to decode.
    fn unescaped_slot(&self, start: usize, kind: ValueKind) -> Slot {
        Slot {
            span: Span {
                start,
                end: self.pos,
            },
            kind,
            escaped: false,
        }
    }

    /// A top-level array: element spans.
    fn batch(&mut self) -> Result<Vec<Span>, Syntax> {
        self.expect(b'[')?;
        self.enter(0)?;
        self.skip_whitespace();
        let mut elements = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(elements);
        }
        loop {
            let start = self.pos;
            self.value()?;
            elements.push(Span {
                start,
                end: self.pos,
            });
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(elements);
                }
                _ => return Err(Syntax),
            }
        }
    }

    /// Skip one value of any type, without recursion. In full validation, nesting is refused at
    /// [`MAX_DEPTH`]; skimming bounds it only by the line length. Returns the type of the value.
    fn value(&mut self) -> Result<ValueKind, Syntax> {
        let mut nesting = Nesting::default();
        let first = match self.peek() {
            Some(b'{') => ValueKind::Object,
            Some(b'[') => ValueKind::Array,
            Some(b'"') => ValueKind::String,
            Some(b'-' | b'0'..=b'9') => ValueKind::Number,
            Some(b't' | b'f') => ValueKind::Bool,
            Some(b'n') => ValueKind::Null,
            _ => return Err(Syntax),
        };
        'value: loop {
            // Positioned at the start of a value, whitespace skipped.
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.enter(nesting.depth + 1)?;
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        nesting.push(true);
                        self.member_name()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                        self.skip_whitespace();
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.enter(nesting.depth + 1)?;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        nesting.push(false);
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.string_in_mode()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(Syntax),
            }
            // After a complete value: close containers or move to the next element.
            loop {
                let Some(in_object) = nesting.top() else {
                    return Ok(first);
                };
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_whitespace();
                        if in_object {
                            self.member_name()?;
                            self.skip_whitespace();
                            self.expect(b':')?;
                            self.skip_whitespace();
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => {
                        self.pos += 1;
                        nesting.pop();
                    }
                    Some(b']') if !in_object => {
                        self.pos += 1;
                        nesting.pop();
                    }
                    _ => return Err(Syntax),
                }
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Syntax> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`: always fully checked (numbers are
    /// short, and an id that is a number must be exact). A number too large for a double
    /// (`1e999`) is refused in both modes, as serde_json and strict servers refuse it: an id or
    /// token read from such a line would make every message built from it unreadable to them.
    fn number(&mut self) -> Result<(), Syntax> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let integer = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Syntax),
        }
        let integer_digits = self.pos - integer;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        if exponent || integer_digits > MAX_PLAIN_DIGITS {
            // serde_json's own number parser decides, so that "too large" means exactly what it
            // means to serde_json (its rounding at the edge of the range differs from std's).
            let text = std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| Syntax)?;
            if serde_json::from_str::<f64>(text).is_err() {
                return Err(Syntax);
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), Syntax> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            Err(Syntax)
        } else {
            Ok(())
        }
    }

    /// A string (positioned at its opening quote), checked according to the mode.
    fn string_in_mode(&mut self) -> Result<bool, Syntax> {
        if FULL {
            self.string()
        } else {
            self.string_skimmed()
        }
    }

    /// A fully checked string: escapes must be valid, no raw control characters. Returns whether
    /// it contains escapes.
    fn string(&mut self) -> Result<bool, Syntax> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let offset = find_string_special(&self.bytes[self.pos..]).ok_or(Syntax)?;
            self.pos += offset;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u') => {
                            let unit = self.hex_escape()?;
                            // A surrogate must come in a pair (high then low): a lone one
                            // decodes to no character, and strict parsers refuse it.
                            match unit {
                                0xD800..=0xDBFF => {
                                    if self.bytes.get(self.pos..self.pos + 2) != Some(&b"\\u"[..]) {
                                        return Err(Syntax);
                                    }
                                    self.pos += 1;
                                    if !(0xDC00..=0xDFFF).contains(&self.hex_escape()?) {
                                        return Err(Syntax);
                                    }
                                }
                                0xDC00..=0xDFFF => return Err(Syntax),
                                _ => {}
                            }
                        }
                        _ => return Err(Syntax),
                    }
                }
                // A raw control character: JSON requires it escaped.
                _ => return Err(Syntax),
            }
        }
    }

    /// The four hex digits of a `\u` escape (positioned at the `u`), as a UTF-16 code unit.
    fn hex_escape(&mut self) -> Result<u16, Syntax> {
        let hex = self.bytes.get(self.pos + 1..self.pos + 5).ok_or(Syntax)?;
        let mut unit = 0u16;
        for &digit in hex {
            let value = char::from(digit).to_digit(16).ok_or(Syntax)?;
            // Four hex digits fit in 16 bits: `value` < 16.
            unit = unit << 4 | u16::try_from(value).map_err(|_| Syntax)?;
        }
        self.pos += 5;
        Ok(unit)
    }

    /// A string whose contents are not checked: find the closing quote, a backslash skips the
    /// byte after it. This is the fast path for large results (`memchr2` past the first
    /// [`SHORT`] bytes, tens of GB/s).
    fn string_skimmed(&mut self) -> Result<bool, Syntax> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let offset = find_quote_or_backslash(&self.bytes[self.pos..]).ok_or(Syntax)?;
            self.pos += offset;
            if self.bytes[self.pos] == b'"' {
                self.pos += 1;
                return Ok(escaped);
            }
            escaped = true;
            self.pos += 2;
            if self.pos > self.bytes.len() {
                return Err(Syntax);
            }
        }
    }
}

/// The member names routing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    JsonRpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Meta,
    MetaProgressToken,
    ProgressToken,
    RequestId,
    Uri,
    SubscriptionId,
}

impl Name {
    fn path(self) -> &'static str {
        match self {
            Name::JsonRpc => "jsonrpc",
            Name::Id => "id",
            Name::Method => "method",
            Name::Params => "params",
            Name::Result => "result",
            Name::Error => "error",
            Name::Meta => "params._meta",
            Name::MetaProgressToken => "params._meta.progressToken",
            Name::ProgressToken => "params.progressToken",
            Name::RequestId => "params.requestId",
            Name::Uri => "params.uri",
            Name::SubscriptionId => "params._meta.io.modelcontextprotocol/subscriptionId",
        }
    }
}

impl Members {
    /// Keep the first occurrence of a member; note the first repeated one.
    fn record(&mut self, name: Name, slot: Slot) {
        let field = self.slot_mut(name);
        if field.is_some() {
            self.duplicate.get_or_insert(name.path());
        } else {
            *field = Some(slot);
        }
    }

    fn slot_mut(&mut self, name: Name) -> &mut Option<Slot> {
        match name {
            Name::JsonRpc => &mut self.jsonrpc,
            Name::Id => &mut self.id,
            Name::Method => &mut self.method,
            Name::Params => &mut self.params,
            Name::Meta => &mut self.meta,
            Name::Result => &mut self.result,
            Name::Error => &mut self.error,
            Name::MetaProgressToken => &mut self.meta_progress_token,
            Name::ProgressToken => &mut self.progress_token,
            Name::RequestId => &mut self.request_id,
            Name::Uri => &mut self.uri,
            Name::SubscriptionId => &mut self.subscription_id,
        }
    }
}

/// Which routing member (if any) the name at `span` is, at `level`.
fn name_at(bytes: &[u8], (span, escaped): (Span, bool), level: Level) -> Option<Name> {
    let decoded;
    let text: &[u8] = if escaped {
        // Rare: `"\u0069d"` is `id` to every JSON parser, so it must be to us. A name that does not
        // decode (a lone surrogate) cannot be one of ours.
        decoded = serde_json::from_slice::<String>(&bytes[span.start..span.end]).ok()?;
        decoded.as_bytes()
    } else {
        &bytes[span.start + 1..span.end - 1]
    };
    match (level, text) {
        (Level::Top, b"jsonrpc") => Some(Name::JsonRpc),
        (Level::Top, b"id") => Some(Name::Id),
        (Level::Top, b"method") => Some(Name::Method),
        (Level::Top, b"params") => Some(Name::Params),
        (Level::Top, b"result") => Some(Name::Result),
        (Level::Top, b"error") => Some(Name::Error),
        (Level::Params, b"_meta") => Some(Name::Meta),
        (Level::Params, b"progressToken") => Some(Name::ProgressToken),
        (Level::Params, b"requestId") => Some(Name::RequestId),
        (Level::Params, b"uri") => Some(Name::Uri),
        (Level::Meta, b"progressToken") => Some(Name::MetaProgressToken),
        (Level::Meta, b"io.modelcontextprotocol/subscriptionId") => Some(Name::SubscriptionId),
        _ => None,
    }
}

/// How many bytes at the start of a string the searches below look at eight at a time, before
/// they hand over to a bulk search. Most strings in a message are member names and short values
/// (`"jsonrpc"`, `"2.0"`, `"text"`), and a bulk search costs more to set up than such a string
/// costs to look at: `memchr2` spent ~180 instructions per short string, the chunk loop with its
/// search inside the chunk ~120, where a word costs a dozen.
const SHORT: usize = 32;

/// Offset of the first `"` or `\` in `bytes`.
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    match find_in_words::<false>(bytes, SHORT) {
        Found::At(offset) => Some(offset),
        Found::NotIn(searched) if searched == bytes.len() => None,
        Found::NotIn(searched) => {
            memchr::memchr2(b'"', b'\\', &bytes[searched..]).map(|offset| searched + offset)
        }
    }
}

/// Offset of the first `"`, `\` or control character (< 0x20) in `bytes`.
///
/// Past the first [`SHORT`] bytes: a fixed-width chunk loop, so that LLVM vectorises the test
/// (about 33 GB/s with the baseline x86-64 SSE2), where a byte-at-a-time loop manages about
/// 1.5 GB/s. 64-byte chunks, and the search inside a chunk kept out of the loop, measured ~45 %
/// faster than 32-byte chunks.
fn find_string_special(bytes: &[u8]) -> Option<usize> {
    const CHUNK: usize = 64;
    let mut offset = match find_in_words::<true>(bytes, SHORT) {
        Found::At(offset) => return Some(offset),
        Found::NotIn(searched) => searched,
    };
    let mut chunks = bytes[offset..].chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let mut any = false;
        for &byte in chunk {
            any |= is_string_special(byte);
        }
        if any {
            return Some(offset + position_in_chunk(chunk));
        }
        offset += CHUNK;
    }
    match find_in_words::<true>(chunks.remainder(), CHUNK) {
        Found::At(at) => Some(offset + at),
        Found::NotIn(_) => None,
    }
}

/// What [`find_in_words`] found.
enum Found {
    /// The first special byte is at this offset.
    At(usize),
    /// None among this many first bytes (the whole slice, or the limit).
    NotIn(usize),
}

/// The first `"` or `\` (and with `CONTROL`, control character) among the first `limit`
/// bytes of `bytes` (at least; rounded up to a multiple of 8), looked at eight bytes at a time
/// ([`words`]). No vector instructions, no set-up: the cheapest search for a few dozen bytes.
fn find_in_words<const CONTROL: bool>(bytes: &[u8], limit: usize) -> Found {
    let mut at = 0;
    while at < bytes.len().min(limit) {
        // Padding with a byte no search looks for: it comes after every real byte, so it can
        // neither hide nor fake the first match.
        let word = words::padded_word_at(bytes, at, b'a');
        let mut found = words::equal(word, b'"') | words::equal(word, b'\\');
        if CONTROL {
            found |= words::below(word, 0x20);
        }
        if found != 0 {
            return Found::At(at + words::first(found));
        }
        at += 8;
    }
    Found::NotIn(at.min(bytes.len()))
}

/// Non-short-circuit `|`: branch-free, so the chunk loop vectorises.
fn is_string_special(byte: u8) -> bool {
    (byte == b'"') | (byte == b'\\') | (byte < 0x20)
}

/// Where in `chunk` (known to hold one) the first special byte is. Out of line, so that it does
/// not get in the way of vectorising the chunk loop.
#[cold]
#[inline(never)]
fn position_in_chunk(chunk: &[u8]) -> usize {
    chunk
        .iter()
        .position(|&byte| is_string_special(byte))
        .unwrap_or(chunk.len())
}

/// A stack of open containers (true = object), one bit per level; allocates only past 64 levels.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    high: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, is_object: bool) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if word == 0 {
            self.low = set_bit(self.low, bit, is_object);
        } else {
            if self.high.len() < word {
                self.high.push(0);
            }
            self.high[word - 1] = set_bit(self.high[word - 1], bit, is_object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }

    fn top(&self) -> Option<bool> {
        let level = self.depth.checked_sub(1)?;
        let (word, bit) = (level / 64, level % 64);
        let bits = if word == 0 {
            self.low
        } else {
            self.high[word - 1]
        };
        Some(bits & (1 << bit) != 0)
    }
}

fn set_bit(bits: u64, bit: usize, value: bool) -> u64 {
    if value {
        bits | (1 << bit)
    } else {
        bits & !(1 << bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `input` in both modes; render the verdict and the routing members found.
    fn check(input: &str, expected: &str) {
        let full = render::<true>(input);
        let skimmed = render::<false>(input);
        assert_eq!(full, expected, "full mode");
        assert_eq!(skimmed, expected, "skimming mode");
    }

    fn render<const FULL: bool>(input: &str) -> String {
        let mut members = Members::default();
        let shape = scan::<FULL>(input.as_bytes(), &mut members);
        let text = |slot: Option<Slot>| {
            slot.map_or(String::from("-"), |slot| {
                input[slot.span.start..slot.span.end].to_string()
            })
        };
        match shape {
            Err(Syntax) => format!("syntax error; id so far {}", text(members.id)),
            Ok(Shape::Scalar) => String::from("scalar"),
            Ok(Shape::Array(elements)) => {
                let elements: Vec<&str> = elements
                    .iter()
                    .map(|span| &input[span.start..span.end])
                    .collect();
                format!("array {elements:?}")
            }
            Ok(Shape::Object) => format!(
                "jsonrpc={} id={} method={} params={} result={} error={} meta.token={} token={} \
                 requestId={} uri={} subscriptionId={} duplicate={}",
                text(members.jsonrpc),
                text(members.id),
                text(members.method),
                members.params.is_some(),
                members.result.is_some(),
                members.error.is_some(),
                text(members.meta_progress_token),
                text(members.progress_token),
                text(members.request_id),
                text(members.uri),
                text(members.subscription_id),
                members.duplicate.unwrap_or("-"),
            ),
        }
    }

    #[test]
    fn finds_routing_members_in_any_order() {
        check(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"t-1"}}}"#,
            r#"jsonrpc="2.0" id=7 method="tools/call" params=true result=false error=false meta.token="t-1" token=- requestId=- uri=- subscriptionId=- duplicate=-"#,
        );
        check(
            r#"{ "result" : {"content":[{"type":"text","text":"a \"quoted\" }"}]} , "jsonrpc":"2.0", "id" : "x" }"#,
            r#"jsonrpc="2.0" id="x" method=- params=false result=true error=false meta.token=- token=- requestId=- uri=- subscriptionId=- duplicate=-"#,
        );
        check(
            r#"{"method":"notifications/progress","params":{"progressToken":3,"progress":1},"jsonrpc":"2.0"}"#,
            r#"jsonrpc="2.0" id=- method="notifications/progress" params=true result=false error=false meta.token=- token=3 requestId=- uri=- subscriptionId=- duplicate=-"#,
        );
        check(
            r#"{"jsonrpc":"2.0","method":"x","params":{"requestId":1.0,"uri":"file:///a","subscriptionId":5,"_meta":{"io.modelcontextprotocol/subscriptionId":-2e3}}}"#,
            r#"jsonrpc="2.0" id=- method="x" params=true result=false error=false meta.token=- token=- requestId=1.0 uri="file:///a" subscriptionId=-2e3 duplicate=-"#,
        );
    }

    #[test]
    fn decodes_escaped_member_names_and_reports_duplicates() {
        check(
            r#"{"\u0069d":1,"jsonrpc":"2.0","i\u0064":2,"result":null}"#,
            r#"jsonrpc="2.0" id=1 method=- params=false result=true error=false meta.token=- token=- requestId=- uri=- subscriptionId=- duplicate=id"#,
        );
        // Routing members only count at their own level.
        check(
            r#"{"params":{"params":{"id":1},"_meta":{"uri":"u"}},"x":{"id":2}}"#,
            r#"jsonrpc=- id=- method=- params=true result=false error=false meta.token=- token=- requestId=- uri=- subscriptionId=- duplicate=-"#,
        );
    }

    #[test]
    fn shapes_other_than_objects() {
        check(
            r#" [ {"a":1} , 2,"x" ] "#,
            r#"array ["{\"a\":1}", "2", "\"x\""]"#,
        );
        check("[]", "array []");
        check("-0.5e+7", "scalar");
        check("null", "scalar");
    }

    #[test]
    fn syntax_errors_keep_the_id_found_so_far() {
        check(
            r#"{"jsonrpc":"2.0","id":5,"method":"x","params":{"a":tru}}"#,
            "syntax error; id so far 5",
        );
        check(r#"{"id":1}x"#, "syntax error; id so far 1");
        for bad in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "[1,]",
            "{,}",
            "01",
            "1.",
            "-",
            "1e",
            "[1 2]",
            "{\"a\":1,}",
            "\"abc",
            "nul",
            "[",
            "]",
            "{\"a\":1}}",
            "{\"id\":\"\\x\"}",
        ] {
            check(bad, "syntax error; id so far -");
        }
    }

    #[test]
    fn full_mode_checks_string_contents_and_skimming_does_not() {
        let input = "{\"text\":\"tab\there \\q\"}";
        assert_eq!(render::<true>(input), "syntax error; id so far -");
        assert!(render::<false>(input).starts_with("jsonrpc=-"));
        // Ids are checked fully in both modes.
        assert_eq!(
            render::<false>("{\"id\":\"a\\q\"}"),
            "syntax error; id so far -"
        );
    }

    #[test]
    fn deep_nesting_does_not_recurse_and_full_mode_stops_at_128() {
        let depth = 100_000;
        let input = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let elements = format!("array [{:?}]", &input[1..input.len() - 1]);
        assert_eq!(render::<false>(&input), elements, "skimming mode");
        assert_eq!(render::<true>(&input), "syntax error; id so far -");
        let mixed = format!("{}1{}", "{\"a\":[".repeat(200), "]}".repeat(200));
        let batch = format!("[{mixed}]");
        assert_eq!(render::<false>(&batch), format!("array [{mixed:?}]"));
        assert_eq!(render::<true>(&batch), "syntax error; id so far -");
        for (depth, accepted) in [(127, true), (128, false)] {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                render::<true>(&nested).starts_with("array"),
                accepted,
                "depth {depth}"
            );
            let params = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"a":{}1{}}}}}"#,
                "[".repeat(depth - 2),
                "]".repeat(depth - 2)
            );
            assert_eq!(
                render::<true>(&params).starts_with("jsonrpc"),
                accepted,
                "a message whose params nest {depth} deep"
            );
        }
    }

    #[test]
    fn full_mode_refuses_what_strict_parsers_refuse() {
        let message = |params: &str| {
            render::<true>(&format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"m","params":{params}}}"#
            ))
        };
        for refused in [
            r#"{"s":"\ud800"}"#,
            r#"{"s":"\udc00"}"#,
            r#"{"s":"\ud800\u0041"}"#,
            r#"{"s":"\ud800x"}"#,
            r#"{"n":1e999}"#,
            r#"{"n":-2e308}"#,
        ] {
            assert_eq!(message(refused), "syntax error; id so far 7", "{refused}");
        }
        let huge = format!(r#"{{"n":{}}}"#, "9".repeat(400));
        assert_eq!(message(&huge), "syntax error; id so far 7");
        // Skimming does not look inside strings, but numbers (ids among them) are always checked.
        let skimmed = |params: &str| {
            render::<false>(&format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"m","params":{params}}}"#
            ))
        };
        assert!(skimmed(r#"{"s":"\ud800"}"#).starts_with("jsonrpc"));
        assert_eq!(skimmed(r#"{"n":1e999}"#), "syntax error; id so far 7");
        assert_eq!(
            render::<false>(r#"{"jsonrpc":"2.0","id":1e999,"result":{}}"#),
            "syntax error; id so far -"
        );
        for accepted in [
            r#"{"s":"\ud83d\ude00"}"#,
            r#"{"n":1e308}"#,
            r#"{"n":1e-999}"#,
            r#"{"n":0e99999}"#,
        ] {
            assert!(
                message(accepted).starts_with("jsonrpc=\"2.0\""),
                "{accepted}"
            );
            assert!(
                render::<false>(&format!(r#"{{"x":{accepted}}}"#)).starts_with("jsonrpc"),
                "skimming accepts {accepted}"
            );
        }
    }

    /// Both searches against a byte-at-a-time one, for every byte value at every position of
    /// lines around each threshold: the word prefix ([`SHORT`]), a word's 8 bytes, the 64-byte
    /// chunks and the tail after them, and with a later special byte that must not be reported
    /// instead (the word search's borrow flags bytes above a match).
    #[test]
    fn finds_string_specials_anywhere_in_or_after_the_words_and_chunks() {
        let naive_special = |bytes: &[u8]| bytes.iter().position(|&byte| is_string_special(byte));
        let naive_quote =
            |bytes: &[u8]| bytes.iter().position(|&byte| matches!(byte, b'"' | b'\\'));
        for length in [0, 1, 7, 8, 9, 31, 32, 33, 40, 63, 64, 65, 96, 97, 103, 200] {
            for background in [b'a', 0x7f, 0xff] {
                let plain = vec![background; length];
                assert_eq!(find_string_special(&plain), None, "length {length}");
                assert_eq!(find_quote_or_backslash(&plain), None, "length {length}");
                for position in 0..length {
                    for byte in 0..=u8::MAX {
                        for later in [None, Some(b'"'), Some(0x00)] {
                            let mut bytes = plain.clone();
                            if let Some(later) = later {
                                bytes[length - 1] = later;
                            }
                            bytes[position] = byte;
                            assert_eq!(
                                find_string_special(&bytes),
                                naive_special(&bytes),
                                "special: length {length}, {byte:#x} at {position}, background {background:#x}"
                            );
                            assert_eq!(
                                find_quote_or_backslash(&bytes),
                                naive_quote(&bytes),
                                "quote: length {length}, {byte:#x} at {position}, background {background:#x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn id_tokens() {
        for good in ["1", "-1.5e3", "\"a\"", "\"\\u00e9\"", "0"] {
            assert!(is_id_token(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "01", "\"a", "null", "true", "{}", "1 ", " 1", "\"\n\"", "\"\\\"",
        ] {
            assert!(!is_id_token(bad.as_bytes()), "{bad}");
        }
    }
}
