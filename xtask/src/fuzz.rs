//! `cargo xtask fuzz`: random-mutation fuzzing of the wire decoder, envelope scanner, id rewriting
//! and hello/control parsers, on the stable toolchain.
//!
//! Why not `cargo fuzz`: it needs a nightly toolchain and sanitizer runtimes, and CI runs stable.
//! This harness trades coverage guidance for running anywhere: it mutates a seed corpus of real MCP
//! lines (and shoal's own hello and control lines) and checks, for every input:
//!
//! 1. nothing panics (each input runs under `catch_unwind`);
//! 2. the decoder never holds more than its limit + 1 byte after a read is drained, nor more than
//!    that plus one read while decoding, and yields the same items however the input is chunked;
//! 3. `Validation::Full` agrees with serde_json on what is JSON, and `Validation::Envelope` never
//!    rejects what `Full` accepts;
//! 4. rewriting every routing field and restoring it gives back the original bytes.
//!
//! On a failure it prints the seed, the iteration and the input as hex, and fails. Rerun one seed
//! with `SHOAL_FUZZ_SEED=<seed> cargo xtask fuzz --secs N`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::BytesMut;
use shoal_wire::{
    ClientHello, ControlRequest, ControlResponse, DaemonHello, Envelope, Field, FrameCodec, Id,
    InvalidReason, Kind, Line, LineCodec, LineError, Validation,
};
use tokio_util::codec::Decoder;

use crate::util::say;

/// How often a progress line is printed.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Largest input the mutator grows to: big enough to cross small limits many times over, small
/// enough for hundreds of thousands of iterations a minute.
const MAX_INPUT_LEN: usize = 16 * 1024;

const FIELDS: [Field; 5] = [
    Field::Id,
    Field::MetaProgressToken,
    Field::ProgressToken,
    Field::RequestId,
    Field::SubscriptionId,
];

pub(crate) fn run(duration: Duration) -> anyhow::Result<()> {
    let seed = match std::env::var("SHOAL_FUZZ_SEED") {
        Ok(text) => text.parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    say(&format!(
        "fuzz: seed {seed}, running for {duration:?} (rerun with SHOAL_FUZZ_SEED={seed})"
    ));
    let corpus = corpus();
    let mut random = Random(seed);
    let mut stats = Stats::default();
    let started = Instant::now();
    let mut last_report = started;
    // The default hook would print every caught panic; the failure report below says it once.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while started.elapsed() < duration {
        let input = mutate(&corpus, &mut random);
        let case_seed = random.next();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_input(&input, &mut Random(case_seed), &mut stats)
        }));
        stats.iterations += 1;
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_else(|| String::from("(non-string panic)"));
            failure = Some((message, input, case_seed));
            break;
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            say(&format!("fuzz: {}", stats.summary(started.elapsed())));
        }
    }
    std::panic::set_hook(default_hook);
    if let Some((message, input, case_seed)) = failure {
        say(&format!(
            "fuzz: FAILED after {} iterations: {message}",
            stats.iterations
        ));
        say(&format!(
            "fuzz: run seed {seed}, case seed {case_seed}, input ({} bytes) as hex:",
            input.len()
        ));
        say(&hex(&input));
        bail!("the wire fuzz harness found a failing input (seed {seed})");
    }
    say(&format!("fuzz: done: {}", stats.summary(started.elapsed())));
    Ok(())
}

#[derive(Default)]
struct Stats {
    iterations: u64,
    lines: u64,
    valid_messages: u64,
    rewrites: u64,
    /// Routed frames decoded whole.
    frames: u64,
    too_long: u64,
    not_utf8: u64,
    /// The most bytes the decoder held after draining (limits up to 4 KiB), and that limit.
    max_kept: (usize, usize),
}

impl Stats {
    fn summary(&self, elapsed: Duration) -> String {
        format!(
            "{} iterations ({:.0}/s), {} lines, {} valid messages, {} rewrite/restore round trips, \
             {} routed frames, {} too-long and {} non-UTF-8 lines; most bytes kept after a drain: \
             {} (limit {}, so at most limit + 1)",
            self.iterations,
            self.iterations as f64 / elapsed.as_secs_f64().max(1e-9),
            self.lines,
            self.valid_messages,
            self.rewrites,
            self.frames,
            self.too_long,
            self.not_utf8,
            self.max_kept.0,
            self.max_kept.1,
        )
    }
}

/// Run every check on one input; a failed check panics.
fn check_input(input: &[u8], random: &mut Random, stats: &mut Stats) {
    let max_line_len = match random.below(4) {
        0 => random.below(16),
        1 => random.below(256),
        2 => random.below(4096),
        _ => shoal_wire::DEFAULT_MAX_LINE_LEN,
    };
    let mut chunks = Vec::new();
    for _ in 0..1 + random.below(6) {
        let largest = if random.below(2) == 0 { 8 } else { 2048 };
        chunks.push(1 + random.below(largest));
    }
    let whole = decode(input, max_line_len, &[input.len().max(1)], stats);
    let chunked = decode(input, max_line_len, &chunks, stats);
    assert!(
        whole == chunked,
        "decoder items depend on chunking (limit {max_line_len}, chunks {chunks:?})"
    );
    for item in whole {
        stats.lines += 1;
        match item {
            Ok(line) => check_line(line, random, stats),
            Err(LineError::TooLong { .. }) => stats.too_long += 1,
            Err(LineError::NotUtf8 { .. }) => stats.not_utf8 += 1,
            Err(other) => panic!("the decoder yielded {other:?}"),
        }
    }
    check_frames(input, max_line_len, &chunks, stats);
    // The input as the message of a frame, with a random id range.
    let start = random.below(input.len() + 1);
    let end = start + random.below(input.len() - start + 1);
    let route = [
        Kind::Response,
        Kind::ErrorResponse,
        Kind::Request,
        Kind::Notification,
    ][random.below(4)];
    let mut framed = shoal_wire::frame_header(input.len(), Some((route, start..end)))
        .expect("fuzzed inputs are short")
        .to_vec();
    framed.extend_from_slice(input);
    framed.push(b'\n');
    // Now and then behind a custody notice, which frames no message.
    if random.below(4) == 0 {
        framed.splice(0..0, shoal_wire::CUSTODY_NOTICE);
    }
    check_frames(&framed, max_line_len, &chunks, stats);
    // The raw input, line or not, through every parser that takes bytes.
    let _ = DaemonHello::parse(input);
    let _ = ClientHello::parse(input);
    let _ = ControlRequest::parse(input);
    let _ = ControlResponse::parse(input);
    let start = random.below(input.len() + 1);
    let end = start + random.below(input.len() - start + 1);
    if let Ok(id) = Id::parse(&input[start..end]) {
        assert_eq!(id.as_bytes(), &input[start..end]);
    }
    if let Ok(line) = Line::new(input.to_vec()) {
        check_line(line, random, stats);
    }
}

/// `input` cut into pieces of the sizes in `chunks`, cycled: how reads might deliver it.
fn pieces<'a>(input: &'a [u8], chunks: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = input;
    chunks.iter().cycle().map_while(move |&chunk| {
        if rest.is_empty() {
            return None;
        }
        let (piece, tail) = rest.split_at(chunk.min(rest.len()));
        rest = tail;
        Some(piece)
    })
}

/// Decode `input` as routed frames, whole and in `chunks`: the same frames (or the same error
/// where the stream goes out of step) either way, and never more buffered than one frame.
fn check_frames(input: &[u8], max_len: usize, chunks: &[usize], stats: &mut Stats) {
    let decode = |chunks: &[usize]| {
        let mut codec = FrameCodec::with_max_len(max_len);
        let mut buffer = BytesMut::new();
        let mut items = Vec::new();
        for piece in pieces(input, chunks) {
            buffer.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buffer) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(error) => return (items, Some(error.to_string())),
                }
            }
            assert!(
                buffer.len() <= shoal_wire::FRAME_HEADER_LEN + max_len + 1,
                "kept {} bytes after draining frames, limit {max_len}",
                buffer.len()
            );
        }
        loop {
            match codec.decode_eof(&mut buffer) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return (items, None),
                Err(error) => return (items, Some(error.to_string())),
            }
        }
    };
    let whole = decode(&[input.len().max(1)]);
    let chunked = decode(chunks);
    assert!(
        whole == chunked,
        "frames depend on chunking (limit {max_len}, chunks {chunks:?})"
    );
    for frame in whole.0.into_iter().flatten() {
        stats.frames += 1;
        assert_eq!(frame.with_newline().last(), Some(&b'\n'));
        if frame.is_custody_notice() {
            assert!(frame.routed().is_none() && frame.message().is_empty());
        }
        if let Some((_, id)) = frame.routed() {
            assert!(Id::parse(id.as_bytes()).is_ok());
        }
    }
}

/// Decode `input` in `chunks` (cycled), checking the buffer bounds; all items.
fn decode(
    input: &[u8],
    max_line_len: usize,
    chunks: &[usize],
    stats: &mut Stats,
) -> Vec<Result<Line, LineError>> {
    let mut codec = LineCodec::with_max_line_len(max_line_len);
    let mut buffer = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces(input, chunks) {
        buffer.extend_from_slice(piece);
        assert!(
            buffer.len() <= max_line_len + 1 + piece.len(),
            "buffered {} bytes: beyond limit {max_line_len} + 1 + one read of {}",
            buffer.len(),
            piece.len()
        );
        while let Some(item) = codec.decode(&mut buffer).expect("in-memory decode") {
            items.push(item);
        }
        assert!(
            buffer.len() <= max_line_len + 1,
            "kept {} bytes after draining, limit {max_line_len}",
            buffer.len()
        );
        // Only limits small enough for fuzzed lines to cross say anything about the bound.
        if max_line_len <= shoal_wire::HELLO_MAX_LEN && buffer.len() > stats.max_kept.0 {
            stats.max_kept = (buffer.len(), max_line_len);
        }
    }
    while let Some(item) = codec.decode_eof(&mut buffer).expect("in-memory decode") {
        items.push(item);
    }
    items
}

/// Both validation modes, serde_json agreement, batch items, rewrite/restore.
fn check_line(line: Line, random: &mut Random, stats: &mut Stats) {
    let full = Envelope::parse(line.clone(), Validation::Full);
    let skimmed = Envelope::parse(line.clone(), Validation::Envelope);
    let is_json = |envelope: &Envelope| {
        envelope
            .invalid()
            .is_none_or(|invalid| invalid.reason() != InvalidReason::NotJson)
    };
    // Lines are UTF-8 by construction.
    let text = std::str::from_utf8(line.as_bytes()).expect("lines are UTF-8");
    let serde_says = serde_json::from_str::<serde_json::Value>(text).is_ok();
    assert_eq!(
        is_json(&full),
        serde_says,
        "Validation::Full disagrees with serde_json"
    );
    assert!(
        is_json(&skimmed) || !is_json(&full),
        "Validation::Envelope rejected what Full accepts"
    );
    if is_json(&full) {
        assert_eq!(full.kind(), skimmed.kind(), "modes classify differently");
    }
    for (envelope, validation) in [(full, Validation::Full), (skimmed, Validation::Envelope)] {
        if let Some(invalid) = envelope.invalid() {
            let answer = invalid.error_response();
            let reparsed = Envelope::parse(answer, Validation::Full);
            assert_eq!(
                reparsed.kind(),
                Kind::ErrorResponse,
                "error response is not one"
            );
            continue;
        }
        stats.valid_messages += 1;
        for item in envelope.batch() {
            let _ = Envelope::parse(item, Validation::Full);
        }
        check_rewrite(&envelope, validation, random, stats);
    }
}

/// Rewrite every routing field, read the result back (in the mode the line passed), restore.
fn check_rewrite(
    envelope: &Envelope,
    validation: Validation,
    random: &mut Random,
    stats: &mut Stats,
) {
    let present: Vec<Field> = FIELDS
        .into_iter()
        .filter(|&field| envelope.get(field).is_some())
        .collect();
    if present.is_empty() {
        return;
    }
    let new_ids: Vec<Id> = present.iter().map(|_| random_id(random)).collect();
    let edits: Vec<(Field, &Id)> = present.iter().copied().zip(new_ids.iter()).collect();
    let rewritten = envelope.rewrite(&edits).expect("present fields rewrite");
    let reparsed = Envelope::parse(rewritten.to_line(), validation);
    for &(field, id) in &edits {
        assert_eq!(
            reparsed.get(field).as_ref(),
            Some(id),
            "rewritten {field:?} reads back differently"
        );
    }
    let originals: Vec<Id> = present
        .iter()
        .map(|&field| envelope.get(field).expect("present"))
        .collect();
    let restore: Vec<(Field, &Id)> = present.iter().copied().zip(originals.iter()).collect();
    let restored = reparsed
        .rewrite(&restore)
        .expect("rewritten fields rewrite");
    assert!(
        restored.to_line().as_bytes() == envelope.line().as_bytes(),
        "rewrite then restore changed the line"
    );
    stats.rewrites += 1;
}

fn random_id(random: &mut Random) -> Id {
    match random.below(3) {
        0 => Id::from_u64(random.next()),
        1 => Id::string(&format!("shoal-{}\"\\é", random.below(1000))),
        _ => Id::parse(b"-12.5e+3").expect("a JSON number"),
    }
}

/// Real lines: what MCP clients and servers send (several SDK orders), shoal's own lines, and
/// edge cases the routing rules name.
fn corpus() -> Vec<Vec<u8>> {
    let mut lines: Vec<String> = [
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{"listChanged":true},"sampling":{}},"clientInfo":{"name":"claude-code","version":"1.0.0"}}}"#,
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}},"serverInfo":{"name":"everything","version":"1.0.0"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"method":"tools/call","params":{"name":"longRunningOperation","arguments":{"duration":10,"steps":5},"_meta":{"progressToken":1}},"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":2,"total":5,"message":"step 2"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"abc-1","reason":"user cancelled"}}"#,
        r#"{"jsonrpc":"2.0","id":"abc-2","method":"resources/subscribe","params":{"uri":"test://static/resource/1"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///h\u00e9llo","subscriptionId":7}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}],"maxTokens":100}}"#,
        r#"{"result":{"content":[{"type":"image","data":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==","mimeType":"image/png"}]},"jsonrpc":"2.0","id":4}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found","data":{"method":"x"}}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":"1","method":"ping","params":{}}"#,
        r#"{ "jsonrpc" : "2.0" , "\u0069d" : 6 , "method" : "tools/list" }"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        r#"{"op":"status"}"#,
        r#"{"outcome":"restarted","backend_pid":12}"#,
        r#"{"outcome":"status","pid":1,"version":"0.1.0","key":"k","root":"/","backend_argv":["x"],"backend_state":"running","backend_restarts":0,"n_clients":1,"uptime_ms":5,"requests_served":9}"#,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    lines.push(
        String::from_utf8(
            DaemonHello {
                version: "0.1.0".into(),
                pid: 42,
                nonce: "nonce".into(),
                key: "key".into(),
                routed_frames: true,
                custody: true,
            }
            .to_line()
            .into_bytes()
            .to_vec(),
        )
        .expect("hello lines are UTF-8"),
    );
    lines.push(
        String::from_utf8(
            ClientHello {
                role: shoal_wire::Role::Session,
                pid: 43,
                host_pid: Some(41),
                label: "codex".into(),
                env_differs: Vec::new(),
                routed_frames: true,
                custody: true,
            }
            .to_line()
            .into_bytes()
            .to_vec(),
        )
        .expect("hello lines are UTF-8"),
    );
    lines.into_iter().map(String::into_bytes).collect()
}

/// Tokens worth splicing in: JSON structure, escapes, newlines, bad UTF-8.
const INTERESTING: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\n\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"null",
    b"true",
    b"-",
    b"0",
    b"1e400",
    b".5",
    b"\"id\":",
    b"\"id\":null,",
    b"\"method\":",
    b"\"params\":{",
    b"\"_meta\":{\"progressToken\":",
    b"\"jsonrpc\":\"2.0\",",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\x1f",
    b"\t",
    b" ",
    b"\xe2\x9c\x93",
];

fn mutate(corpus: &[Vec<u8>], random: &mut Random) -> Vec<u8> {
    let mut input = corpus[random.below(corpus.len())].clone();
    // Sometimes several lines at once, to exercise framing across messages.
    for _ in 0..random.below(3) {
        input.push(b'\n');
        input.extend_from_slice(&corpus[random.below(corpus.len())]);
    }
    for _ in 0..random.below(8) {
        let at = random.below(input.len() + 1);
        match random.below(7) {
            0 => {
                if at < input.len() {
                    input[at] ^= 1 << random.below(8);
                }
            }
            1 => {
                let token = INTERESTING[random.below(INTERESTING.len())];
                input.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + random.below(16)).min(input.len());
                input.drain(at..end);
            }
            3 => {
                let end = (at + random.below(64)).min(input.len());
                let copy = input[at..end].to_vec();
                let to = random.below(input.len() + 1);
                input.splice(to..to, copy);
            }
            4 => {
                let other = &corpus[random.below(corpus.len())];
                let from = random.below(other.len());
                let end = (from + random.below(64)).min(other.len());
                input.splice(at..at, other[from..end].iter().copied());
            }
            5 => {
                // A long run: crosses every small limit.
                let byte = *b"ax\" {[".get(random.below(6)).unwrap_or(&b'a');
                input.splice(at..at, std::iter::repeat_n(byte, random.below(3000)));
            }
            _ => input.truncate(at),
        }
        input.truncate(MAX_INPUT_LEN);
    }
    input
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// splitmix64: tiny, fast, and good enough to drive a mutator; reproducible from one seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}
