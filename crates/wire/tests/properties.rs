//! Property tests: rewrite/restore identity, chunking-independent bounded decoding, and agreement
//! with serde_json on what is JSON.

mod util;

use bytes::BytesMut;
use proptest::prelude::*;
use shoal_wire::{
    Envelope, Field, Id, InvalidReason, Kind, Line, LineCodec, LineError, Validation,
};
use tokio_util::codec::Decoder;
use util::line;

const FIELDS: [Field; 5] = [
    Field::Id,
    Field::MetaProgressToken,
    Field::ProgressToken,
    Field::RequestId,
    Field::SubscriptionId,
];

/// JSON whitespace that may appear inside a line (no `\n`).
fn whitespace() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", "", " ", "\t", " \r ", "  "]).prop_map(String::from)
}

fn number() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop_oneof![Just(String::from("0")), "[1-9][0-9]{0,20}"],
        prop::option::of("[0-9]{1,4}"),
        // Exponents stay far from overflow: a valid message must stay valid (`near_json` inserts
        // `1e400` to explore overflow).
        prop::option::of(("[eE]", "[+-]?", "[0-9]{1,2}")),
    )
        .prop_map(|(negative, integer, fraction, exponent)| {
            let mut text = String::new();
            if negative {
                text.push('-');
            }
            text.push_str(&integer);
            if let Some(fraction) = fraction {
                text.push('.');
                text.push_str(&fraction);
            }
            if let Some((e, sign, digits)) = exponent {
                text.push_str(&(e + &sign + &digits));
            }
            text
        })
}

/// A JSON string literal, sometimes with escapes a serializer would not write (all valid: lone
/// surrogates are inserted by `near_json`).
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|text| serde_json::to_string(&text).unwrap()),
        prop::collection::vec(
            prop_oneof![
                "[a-z0-9 /:.-]{1,5}",
                Just(String::from("\\\"")),
                Just(String::from("\\\\")),
                Just(String::from("\\/")),
                Just(String::from("\\n")),
                Just(String::from("\\u00e9")),
                Just(String::from("\\ud83d\\ude00")),
                Just(String::from("\\uDBFF\\uDFFF")),
                Just(String::from("é✓")),
            ],
            0..6
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat())),
    ]
}

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number(),
        string(),
        Just(String::from("true")),
        Just(String::from("false")),
        Just(String::from("null")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((whitespace(), inner.clone(), whitespace()), 0..5).prop_map(
                |items| {
                    let items: Vec<String> =
                        items.into_iter().map(|(a, v, b)| a + &v + &b).collect();
                    format!("[{}]", items.join(","))
                }
            ),
            prop::collection::vec((string(), whitespace(), inner), 0..5).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(name, space, value)| format!("{name}{space}:{space}{value}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// An id or token: a number or a string.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![number(), string()]
}

/// A valid message with every routing field present, members in any order, filler around.
fn envelope() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        // Methods that decode (no lone surrogate: such a method is `BadMethod` by design).
        (Just("method"), any::<String>())
            .prop_map(|(name, method)| (name, serde_json::to_string(&method).unwrap())),
        (Just("result"), json_value()).prop_map(|(name, value)| (name, value)),
        (Just("error"), json_value()).prop_map(|(name, value)| (name, value)),
    ];
    (
        kind,
        id_text(),
        id_text(),
        id_text(),
        id_text(),
        id_text(),
        prop::collection::vec((string(), json_value()), 0..3),
        whitespace(),
        any::<prop::sample::Index>(),
    )
        .prop_flat_map(
            |(kind, id, meta_token, token, request_id, subscription_id, filler, space, _)| {
                let meta = format!(
                    "{{\"progressToken\"{space}:{space}{meta_token},\
                     \"io.modelcontextprotocol/subscriptionId\":{subscription_id}}}"
                );
                let mut params = vec![
                    format!("\"_meta\":{meta}"),
                    format!("\"progressToken\":{token}"),
                    format!("\"requestId\":{request_id}"),
                ];
                params.extend(
                    filler
                        .iter()
                        .filter(|(name, _)| !is_routing_name(name))
                        .map(|(name, value)| format!("{name}:{value}")),
                );
                let params = format!("{{{}}}", params.join(&format!(",{space}")));
                let mut members = vec![
                    String::from("\"jsonrpc\":\"2.0\""),
                    format!("\"id\":{space}{id}"),
                    format!("\"{}\":{}", kind.0, kind.1),
                ];
                if kind.0 == "method" {
                    members.push(format!("\"params\":{params}"));
                }
                (Just(members).prop_shuffle(), Just(space))
            },
        )
        .prop_map(|(members, space)| format!("{space}{{{}}}{space}", members.join(",")))
}

fn is_routing_name(name: &str) -> bool {
    let decoded: String = serde_json::from_str(name).unwrap_or_default();
    [
        "_meta",
        "progressToken",
        "requestId",
        "subscriptionId",
        "uri",
    ]
    .contains(&decoded.as_str())
}

fn validation() -> impl Strategy<Value = Validation> {
    prop_oneof![Just(Validation::Full), Just(Validation::Envelope)]
}

/// Mutate valid JSON into near-JSON: insert, delete, replace characters.
fn near_json() -> impl Strategy<Value = String> {
    let edit = (
        any::<prop::sample::Index>(),
        0..3usize,
        prop::sample::select(vec![
            "", "{", "}", "[", "]", ",", ":", "\"", "\\", "0", "-", "e", ".", "t", "n", " ", "\t",
            "\u{1}", "é", "\\u12", "1e400", "tru", "\\uD800", "\\uDC00x", "[[[[[[[[",
        ]),
    );
    (
        prop_oneof![json_value(), envelope()],
        prop::collection::vec(edit, 0..3),
    )
        .prop_map(|(mut text, edits)| {
            for (at, delete, insert) in edits {
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + delete).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, insert);
            }
            text.replace('\n', " ")
        })
}

/// Decode `input` fed in the given chunk sizes (cycled); check the buffer bound after each read.
fn decode_chunked(
    max_line_len: usize,
    input: &[u8],
    chunks: &[usize],
) -> Vec<Result<Line, LineError>> {
    let mut codec = LineCodec::with_max_line_len(max_line_len);
    let mut buffer = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = input;
    for &chunk in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(chunk.min(rest.len()));
        rest = tail;
        buffer.extend_from_slice(piece);
        assert!(
            buffer.len() <= max_line_len + 1 + piece.len(),
            "buffered beyond the limit plus one read"
        );
        while let Some(item) = codec.decode(&mut buffer).unwrap() {
            items.push(item);
        }
        assert!(
            buffer.len() <= max_line_len + 1,
            "kept {} bytes with a limit of {max_line_len}",
            buffer.len()
        );
    }
    while let Some(item) = codec.decode_eof(&mut buffer).unwrap() {
        items.push(item);
    }
    items
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rewrite_then_restore_is_the_identity(
        text in envelope(),
        validation in validation(),
        new_ids in prop::collection::vec(id_text(), 5),
    ) {
        let envelope = Envelope::parse(line(&text), validation);
        prop_assert_ne!(envelope.kind(), Kind::Invalid, "{:?}", envelope.invalid());
        let present: Vec<Field> = FIELDS.into_iter().filter(|&field| envelope.get(field).is_some()).collect();
        prop_assert!(present.contains(&Field::Id));
        let new_ids: Vec<Id> = new_ids.iter().map(|text| Id::parse(text.as_bytes()).unwrap()).collect();
        let edits: Vec<(Field, &Id)> = present.iter().copied().zip(new_ids.iter()).collect();
        let pieces = envelope.rewrite(&edits).unwrap();
        prop_assert_eq!(pieces.kind(), envelope.kind());
        let rewritten = Envelope::parse(pieces.to_line(), validation);
        prop_assert_eq!(rewritten.kind(), envelope.kind());
        // Each value is where `value_span` says, in the rewritten bytes.
        for &(field, id) in &edits {
            let span = pieces.value_span(field);
            prop_assert_eq!(span.map(|span| &rewritten.line().as_bytes()[span]), Some(id.as_bytes()));
        }
        for field in FIELDS.into_iter().filter(|field| !present.contains(field)) {
            prop_assert_eq!(pieces.value_span(field), None);
        }
        for &(field, id) in &edits {
            prop_assert_eq!(rewritten.get(field), Some(id.clone()));
        }
        let originals: Vec<Id> = present.iter().map(|&field| envelope.get(field).unwrap()).collect();
        let restore: Vec<(Field, &Id)> = present.iter().copied().zip(originals.iter()).collect();
        let restored = rewritten.rewrite(&restore).unwrap().to_line();
        prop_assert_eq!(restored.as_bytes(), text.as_bytes());
    }

    #[test]
    fn decoding_is_bounded_and_independent_of_chunking(
        input in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'x'), Just(b'{')],
            0..400,
        ),
        max_line_len in 0..48usize,
        chunks in prop::collection::vec(1..64usize, 1..8),
    ) {
        let whole = decode_chunked(max_line_len, &input, &[input.len().max(1)]);
        let chunked = decode_chunked(max_line_len, &input, &chunks);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn full_validation_agrees_with_serde_json(text in near_json()) {
        let serde_ok = serde_json::from_str::<serde_json::Value>(&text).is_ok();
        let full = Envelope::parse(line(&text), Validation::Full);
        let full_ok = full.invalid().is_none_or(|invalid| invalid.reason() != InvalidReason::NotJson);
        prop_assert_eq!(full_ok, serde_ok, "{:?}", text);
        // Skimming string contents only ever accepts more.
        let skimmed = Envelope::parse(line(&text), Validation::Envelope);
        let skimmed_ok = skimmed.invalid().is_none_or(|invalid| invalid.reason() != InvalidReason::NotJson);
        prop_assert!(skimmed_ok || !full_ok, "{:?}", text);
        if full_ok {
            prop_assert_eq!(skimmed.kind(), full.kind());
        }
    }
}
