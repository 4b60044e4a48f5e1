//! Builders for the JSON-RPC lines shoal writes itself: error responses, requests, notifications.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Error, Id, Line};

/// A JSON-RPC error code.
///
/// The standard codes, plus shoal's own in the range JSON-RPC reserves for implementation-defined
/// server errors (-32000 to -32099). shoal uses -32080 to -32089, away from codes MCP and the SDKs
/// already use (-32000 connection closed, -32001 request timeout, -32002 resource not found,
/// -32042 URL elicitation required).
///
/// ```
/// use shoal_wire::ErrorCode;
///
/// assert_eq!(ErrorCode::PARSE_ERROR.code(), -32700);
/// assert_eq!(ErrorCode::new(-32002).code(), -32002);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(i32);

impl ErrorCode {
    /// -32700: the message is not valid JSON.
    pub const PARSE_ERROR: ErrorCode = ErrorCode(-32700);
    /// -32600: JSON, but not a valid JSON-RPC message.
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(-32600);
    /// -32601: no such method.
    pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode(-32601);
    /// -32602: invalid method parameters.
    pub const INVALID_PARAMS: ErrorCode = ErrorCode(-32602);
    /// -32603: internal error.
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(-32603);
    /// -32080 (shoal): the shared backend server is not available (starting failed, crashed,
    /// crash-looping, restarting); the message says which and what to do.
    pub const BACKEND_UNAVAILABLE: ErrorCode = ErrorCode(-32080);
    /// -32081 (shoal): the proxy lost its daemon while the request was in flight; the request may
    /// or may not have run.
    pub const DAEMON_LOST: ErrorCode = ErrorCode(-32081);

    /// Any other code, e.g. one a backend defined.
    ///
    /// ```
    /// assert_eq!(shoal_wire::ErrorCode::new(1).code(), 1);
    /// ```
    pub const fn new(code: i32) -> ErrorCode {
        ErrorCode(code)
    }

    /// The number.
    ///
    /// ```
    /// assert_eq!(shoal_wire::ErrorCode::DAEMON_LOST.code(), -32081);
    /// ```
    pub const fn code(self) -> i32 {
        self.0
    }
}

/// An error response: `{"jsonrpc":"2.0","id":<id or null>,"error":{"code":..,"message":..}}`.
///
/// ```
/// use shoal_wire::{ErrorCode, Id, error_response};
///
/// let line = error_response(Some(&Id::string("7")), ErrorCode::BACKEND_UNAVAILABLE, "backend crashed; see `shoal logs`");
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"jsonrpc":"2.0","id":"7","error":{"code":-32080,"message":"backend crashed; see `shoal logs`"}}"#
/// );
/// assert_eq!(
///     error_response(None, ErrorCode::PARSE_ERROR, "Parse error").as_bytes(),
///     br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#
/// );
/// ```
pub fn error_response(id: Option<&Id>, code: ErrorCode, message: &str) -> Line {
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.map_or(&b"null"[..], Id::as_bytes));
    out.extend_from_slice(br#","error":{"code":"#);
    out.extend_from_slice(code.code().to_string().as_bytes());
    out.extend_from_slice(br#","message":"#);
    push_json_string(&mut out, message);
    out.extend_from_slice(b"}}");
    // Built from an id (checked JSON token), a number and a serde_json string: UTF-8, no newline.
    Line::from_checked(out.into())
}

/// A success response: `{"jsonrpc":"2.0","id":..,"result":..}`.
///
/// Fails if `result` contains a raw newline (pretty-printed JSON): it would split the message.
///
/// ```
/// use serde_json::value::RawValue;
/// use shoal_wire::{Id, response};
///
/// let result = RawValue::from_string("{}".to_owned())?;
/// assert_eq!(response(&Id::string("a"), &result)?.as_bytes(), br#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn response(id: &Id, result: &RawValue) -> Result<Line, Error> {
    let result = result.get();
    let mut out = Vec::with_capacity(40 + id.as_bytes().len() + result.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(br#","result":"#);
    if let Some(position) = memchr::memchr(b'\n', result.as_bytes()) {
        return Err(Error::NewlineInMessage {
            position: out.len() + position,
        });
    }
    out.extend_from_slice(result.as_bytes());
    out.push(b'}');
    // An id token and a serde_json value without newlines: UTF-8, no newline.
    Ok(Line::from_checked(out.into()))
}

/// A request: `{"jsonrpc":"2.0","id":..,"method":..,"params":..}` (`params` omitted when `None`).
///
/// Fails if `params` contains a raw newline (pretty-printed JSON): it would split the message.
///
/// ```
/// use serde_json::value::RawValue;
/// use shoal_wire::{Id, request};
///
/// let params = RawValue::from_string(r#"{"protocolVersion":"2025-06-18"}"#.to_owned())?;
/// let line = request(&Id::from_u64(0), "initialize", Some(&params))?;
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn request(id: &Id, method: &str, params: Option<&RawValue>) -> Result<Line, Error> {
    message(Some(id), method, params)
}

/// A notification: `{"jsonrpc":"2.0","method":..,"params":..}` (`params` omitted when `None`).
///
/// ```
/// use serde_json::value::RawValue;
/// use shoal_wire::notification;
///
/// let params = RawValue::from_string(r#"{"requestId":12,"reason":"client left"}"#.to_owned())?;
/// let line = notification("notifications/cancelled", Some(&params))?;
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12,"reason":"client left"}}"#
/// );
/// let pretty = RawValue::from_string("{\n}".to_owned())?;
/// assert!(notification("x", Some(&pretty)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn notification(method: &str, params: Option<&RawValue>) -> Result<Line, Error> {
    message(None, method, params)
}

/// A success response whose result is a JSON value: like [`response`], but it cannot fail.
///
/// serde_json writes values compactly and escapes control characters inside strings, so the
/// result never holds a raw newline: the builders for messages the daemon makes up itself need no
/// error path.
///
/// ```
/// use serde_json::json;
/// use shoal_wire::{Id, response_value};
///
/// let line = response_value(&Id::from_u64(4), &json!({ "text": "two\nlines" }));
/// assert_eq!(line.as_bytes(), br#"{"jsonrpc":"2.0","id":4,"result":{"text":"two\nlines"}}"#);
/// ```
pub fn response_value(id: &Id, result: &Value) -> Line {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(br#","result":"#);
    push_json_value(&mut out, result);
    out.push(b'}');
    // An id token and a compact serde_json value: UTF-8, no newline.
    Line::from_checked(out.into())
}

/// A request whose params are a JSON value: like [`request`], but it cannot fail (see
/// [`response_value`]).
///
/// ```
/// use serde_json::json;
/// use shoal_wire::{Id, request_value};
///
/// let line = request_value(&Id::from_u64(1), "resources/subscribe", &json!({ "uri": "file:///a" }));
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}}"#
/// );
/// ```
pub fn request_value(id: &Id, method: &str, params: &Value) -> Line {
    message_value(Some(id), method, Some(params))
}

/// A notification whose params, if any, are a JSON value: like [`notification`], but it cannot
/// fail (see [`response_value`]).
///
/// ```
/// use serde_json::json;
/// use shoal_wire::notification_value;
///
/// assert_eq!(
///     notification_value("notifications/initialized", None).as_bytes(),
///     br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
/// );
/// let line = notification_value("notifications/cancelled", Some(&json!({ "requestId": 3 })));
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#
/// );
/// ```
pub fn notification_value(method: &str, params: Option<&Value>) -> Line {
    message_value(None, method, params)
}

fn message_value(id: Option<&Id>, method: &str, params: Option<&Value>) -> Line {
    let mut out = Vec::with_capacity(64 + method.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(id.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(br#""method":"#);
    push_json_string(&mut out, method);
    if let Some(params) = params {
        out.extend_from_slice(br#","params":"#);
        push_json_value(&mut out, params);
    }
    out.push(b'}');
    // An id token, a JSON string and a compact serde_json value: UTF-8, no newline.
    Line::from_checked(out.into())
}

fn push_json_value(out: &mut Vec<u8>, value: &Value) {
    // Writing a `Value` into a Vec cannot fail: its map keys are strings and its numbers finite.
    serde_json::to_writer(&mut *out, value).expect("a JSON value always serialises");
}

fn message(id: Option<&Id>, method: &str, params: Option<&RawValue>) -> Result<Line, Error> {
    let params = params.map(RawValue::get);
    let mut out = Vec::with_capacity(48 + method.len() + params.map_or(0, str::len));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(id.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(br#""method":"#);
    push_json_string(&mut out, method);
    if let Some(params) = params {
        if let Some(position) = memchr::memchr(b'\n', params.as_bytes()) {
            return Err(Error::NewlineInMessage {
                position: out.len() + br#","params":"#.len() + position,
            });
        }
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(params.as_bytes());
    }
    out.push(b'}');
    Ok(Line::from_checked(out.into()))
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail; serde_json escapes control characters, so no newline.
    serde_json::to_writer(&mut *out, text).expect("a string always serialises to JSON");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: Result<Line, Error>, expected: &str) {
        let rendered = match line {
            Ok(line) => String::from_utf8(line.as_bytes().to_vec()).unwrap(),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(rendered, expected);
    }

    #[test]
    fn builds_lines() {
        check(
            Ok(error_response(
                Some(&Id::from_u64(3)),
                ErrorCode::INTERNAL_ERROR,
                "line\nbreak \"quoted\"",
            )),
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"line\nbreak \"quoted\""}}"#,
        );
        check(
            request(&Id::string("s-1"), "ping", None),
            r#"{"jsonrpc":"2.0","id":"s-1","method":"ping"}"#,
        );
        check(
            notification("notifications/initialized", None),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        check(
            notification(
                "x",
                Some(&RawValue::from_string("[1,\n2]".to_owned()).unwrap()),
            ),
            "error: encode a message: it contains a raw newline at byte 42",
        );
    }
}
