//! Throughput of framing + envelope parsing + id rewriting against plain `memchr` line splitting
//! of the same bytes. Run through `cargo xtask bench wire` (release build); prints a table and,
//! with `--json <path>`, writes the figures as JSON.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shoal_wire::{Envelope, Field, Id, LineCodec, Validation};
use tokio_util::codec::Decoder;

/// Bytes per timed batch: large enough that timer overhead is noise, small enough to sit in L3
/// like a socket read buffer would (the batch is refilled before each timed pass).
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Timed passes per case; the fastest is reported (least disturbed by the machine).
const ROUNDS: usize = 15;

/// Passes per round, so a round lasts long enough to time.
const PASSES_PER_ROUND: usize = 4;

struct Case {
    name: &'static str,
    validation: Validation,
    /// Rewrite `_meta.progressToken` too (client requests).
    rewrite_token: bool,
    message: Vec<u8>,
}

struct Measured {
    name: &'static str,
    message_bytes: usize,
    baseline: Throughput,
    envelope: Throughput,
    baseline_with_copy: Throughput,
    envelope_with_copy: Throughput,
}

#[derive(Clone, Copy)]
struct Throughput {
    bytes_per_second: f64,
    messages_per_second: f64,
}

fn main() {
    let json_path = std::env::args().skip_while(|arg| arg != "--json").nth(1);
    let cases = [
        Case {
            name: "small response (~200 B), envelope",
            validation: Validation::Envelope,
            rewrite_token: false,
            message: small_response(),
        },
        Case {
            name: "small request (~200 B), full",
            validation: Validation::Full,
            rewrite_token: true,
            message: small_request(),
        },
        Case {
            name: "1 MiB result, id last (TS), envelope",
            validation: Validation::Envelope,
            rewrite_token: false,
            message: large_response(false),
        },
        Case {
            name: "1 MiB result, id first (Python), envelope",
            validation: Validation::Envelope,
            rewrite_token: false,
            message: large_response(true),
        },
        Case {
            name: "1 MiB result, id last (TS), full",
            validation: Validation::Full,
            rewrite_token: false,
            message: large_response(false),
        },
    ];
    let results: Vec<Measured> = cases.iter().map(measure).collect();
    print_table(&results);
    if let Some(path) = json_path {
        std::fs::write(&path, to_json(&results)).expect("write the JSON results");
        println!("\nwrote {path}");
    }
}

fn measure(case: &Case) -> Measured {
    let per_batch = (BATCH_BYTES / (case.message.len() + 1)).max(2);
    let mut source = Vec::with_capacity(per_batch * (case.message.len() + 1));
    for _ in 0..per_batch {
        source.extend_from_slice(&case.message);
        source.push(b'\n');
    }
    let new_id = Id::from_u64(1_000_000_007);
    let new_token = Id::from_u64(1_000_000_009);

    let baseline = |buffer: &mut BytesMut| -> usize {
        let mut n = 0;
        while let Some(newline) = memchr::memchr(b'\n', buffer) {
            let line: Bytes = buffer.split_to(newline + 1).freeze();
            black_box(&line);
            n += 1;
        }
        n
    };
    let envelope = |buffer: &mut BytesMut| -> usize {
        let mut codec = LineCodec::new();
        let mut n = 0;
        while let Some(item) = codec.decode(buffer).expect("in-memory decode") {
            let line = item.expect("bench lines are valid");
            let envelope = Envelope::parse(line, case.validation);
            let rewritten = if case.rewrite_token {
                envelope.rewrite(&[(Field::Id, &new_id), (Field::MetaProgressToken, &new_token)])
            } else {
                envelope.rewrite_id(&new_id)
            };
            black_box(rewritten.expect("bench messages have the fields"));
            n += 1;
        }
        n
    };

    // Sanity: both sides see every message.
    assert_eq!(baseline(&mut BytesMut::from(&source[..])), per_batch);
    assert_eq!(envelope(&mut BytesMut::from(&source[..])), per_batch);

    Measured {
        name: case.name,
        message_bytes: case.message.len(),
        baseline: time(&source, per_batch, false, baseline),
        envelope: time(&source, per_batch, false, envelope),
        baseline_with_copy: time(&source, per_batch, true, baseline),
        envelope_with_copy: time(&source, per_batch, true, envelope),
    }
}

/// Best-of-`ROUNDS` throughput of `work` over `source`; the copy of `source` into the read buffer
/// (what a socket read does) is timed only when `include_copy`.
fn time(
    source: &[u8],
    per_batch: usize,
    include_copy: bool,
    work: impl Fn(&mut BytesMut) -> usize,
) -> Throughput {
    let mut best = Duration::MAX;
    // One read buffer for the whole run, as a connection keeps one: a fresh 8 MiB allocation per
    // pass would time page faults, not the copy. Every line split off it is dropped inside `work`,
    // so `extend_from_slice` gets the same allocation back.
    let mut buffer = BytesMut::with_capacity(source.len());
    for _ in 0..ROUNDS {
        let mut elapsed = Duration::ZERO;
        for _ in 0..PASSES_PER_ROUND {
            let started = Instant::now();
            buffer.clear();
            buffer.extend_from_slice(source);
            let copied = Instant::now();
            black_box(work(&mut buffer));
            let finished = Instant::now();
            elapsed += if include_copy {
                finished - started
            } else {
                finished - copied
            };
        }
        best = best.min(elapsed);
    }
    let seconds = best.as_secs_f64() / PASSES_PER_ROUND as f64;
    Throughput {
        bytes_per_second: source.len() as f64 / seconds,
        messages_per_second: per_batch as f64 / seconds,
    }
}

fn print_table(results: &[Measured]) {
    println!(
        "{:<44} {:>11} {:>11} {:>12} {:>7} | {:>11} {:>11} {:>7}",
        "case", "memchr MB/s", "ours MB/s", "ours msg/s", "ratio", "memchr+cp", "ours+cp", "ratio"
    );
    for result in results {
        println!(
            "{:<44} {:>11.0} {:>11.0} {:>12.0} {:>6.0}% | {:>11.0} {:>11.0} {:>6.0}%",
            result.name,
            result.baseline.bytes_per_second / 1e6,
            result.envelope.bytes_per_second / 1e6,
            result.envelope.messages_per_second,
            100.0 * result.envelope.bytes_per_second / result.baseline.bytes_per_second,
            result.baseline_with_copy.bytes_per_second / 1e6,
            result.envelope_with_copy.bytes_per_second / 1e6,
            100.0 * result.envelope_with_copy.bytes_per_second
                / result.baseline_with_copy.bytes_per_second,
        );
    }
    println!(
        "\nmessage sizes: {}",
        results
            .iter()
            .map(|result| format!("{} B", result.message_bytes))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "ours = LineCodec::decode + Envelope::parse + rewrite (id, and progress token for requests); \
         memchr = split at '\\n' only. \"+cp\" columns include copying the bytes into the read buffer, \
         as a socket read does. Best of {ROUNDS} rounds."
    );
}

fn to_json(results: &[Measured]) -> String {
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|result| {
            serde_json::json!({
                "case": result.name,
                "message_bytes": result.message_bytes,
                "memchr_bytes_per_second": result.baseline.bytes_per_second,
                "memchr_messages_per_second": result.baseline.messages_per_second,
                "envelope_bytes_per_second": result.envelope.bytes_per_second,
                "envelope_messages_per_second": result.envelope.messages_per_second,
                "ratio": result.envelope.bytes_per_second / result.baseline.bytes_per_second,
                "memchr_with_copy_bytes_per_second": result.baseline_with_copy.bytes_per_second,
                "envelope_with_copy_bytes_per_second": result.envelope_with_copy.bytes_per_second,
                "ratio_with_copy": result.envelope_with_copy.bytes_per_second
                    / result.baseline_with_copy.bytes_per_second,
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "bench": "wire", "cases": cases }))
        .expect("JSON values serialise")
}

fn small_response() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"src/main.rs:12: fn main() { println!(\"hello\"); }"}],"isError":false,"structuredContent":{"count":1}}}"#.to_vec()
}

fn small_request() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/home/user/project/src/lib.rs"},"_meta":{"progressToken":17}}}"#.to_vec()
}

/// A tool result holding a 1 MiB base64 image, as the TypeScript SDK (id last) or the Python SDK
/// (id first) writes it.
fn large_response(id_first: bool) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let image: Vec<u8> = (0..1024 * 1024)
        .map(|index: usize| ALPHABET[(index.wrapping_mul(2_654_435_761) >> 7) % 64])
        .collect();
    let image = String::from_utf8(image).expect("base64 is ASCII");
    let result =
        format!(r#"{{"content":[{{"type":"image","data":"{image}","mimeType":"image/png"}}]}}"#);
    let message = if id_first {
        format!(r#"{{"jsonrpc":"2.0","id":42,"result":{result}}}"#)
    } else {
        format!(r#"{{"result":{result},"jsonrpc":"2.0","id":42}}"#)
    };
    message.into_bytes()
}
