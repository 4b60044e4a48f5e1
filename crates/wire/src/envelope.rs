//! [`Envelope`]: a JSON-RPC line classified for routing, with byte-exact rewriting of its ids.

use bytes::{BufMut, BytesMut};

use crate::scan::{self, Members, Shape, Slot, Span, ValueKind};
use crate::{Error, ErrorCode, Id, Line};

/// How much of a line the envelope parser checks. See [`Envelope::parse`].
///
/// ```
/// use shoal_wire::{Envelope, Kind, Line, Validation};
///
/// // A raw tab inside a string is not JSON: `Full` notices, `Envelope` does not look.
/// let line = Line::new(&b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"a\tb\"}"[..])?;
/// assert_eq!(Envelope::parse(line.clone(), Validation::Full).kind(), Kind::Invalid);
/// assert_eq!(Envelope::parse(line, Validation::Envelope).kind(), Kind::Response);
/// # Ok::<(), shoal_wire::LineError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Every byte is checked against the JSON grammar (RFC 8259) and what strict parsers add to
    /// it: a line is valid exactly when `serde_json::from_str::<serde_json::Value>` accepts it. So
    /// lone-surrogate escapes (`"\ud800"`), numbers too large for a double (`1e999`) and nesting
    /// 128 deep are refused (the scanner itself never recurses). For client → daemon traffic: a
    /// message a strict server would answer with an unattributable `id: null` parse error is
    /// answered with -32700 to its client instead, and never reaches the backend.
    Full,
    /// The same grammar is checked everywhere except inside string literals, where only `"` and
    /// `\` are looked at (a backslash skips the byte after it): escape sequences, surrogates and
    /// raw control characters inside strings are not checked, nor is nesting depth; numbers are
    /// (an overflowing one is refused as in `Full`). The strings routing reads (ids, tokens,
    /// `jsonrpc`, `method`, `uri`) are still fully checked. UTF-8 is guaranteed by [`Line`] in
    /// both modes. For backend → daemon traffic, where results can be many MiB of string content
    /// and the backend is trusted to write JSON.
    Envelope,
}

/// What a line is, for routing.
///
/// ```
/// use shoal_wire::{Envelope, Kind, Line, Validation};
///
/// let kind = |text: &str| Envelope::parse(Line::new(text.to_owned()).unwrap(), Validation::Full).kind();
/// assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Kind::Request);
/// assert_eq!(kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Kind::Notification);
/// assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), Kind::Response);
/// assert_eq!(kind(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#), Kind::ErrorResponse);
/// assert_eq!(kind(r#"[{"jsonrpc":"2.0","method":"a"}]"#), Kind::Batch);
/// assert_eq!(kind(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#), Kind::Invalid);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `method` and a string or number `id`.
    Request,
    /// `method` and no `id`.
    Notification,
    /// `result` and a string or number `id`.
    Response,
    /// `error` and a string, number or null `id`.
    ErrorResponse,
    /// A non-empty JSON array; see [`Envelope::batch`].
    Batch,
    /// Anything else; see [`Envelope::invalid`].
    Invalid,
}

/// A member routing reads and may rewrite.
///
/// ```
/// assert_eq!(shoal_wire::Field::MetaProgressToken.path(), "params._meta.progressToken");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `id`.
    Id,
    /// `params._meta.progressToken`: the token a request asks progress under.
    MetaProgressToken,
    /// `params.progressToken`: the token of a `notifications/progress`.
    ProgressToken,
    /// `params.requestId`: the request a `notifications/cancelled` cancels.
    RequestId,
    /// `params._meta["io.modelcontextprotocol/subscriptionId"]` (2026-07-28): the id of the
    /// `subscriptions/listen` request a notification belongs to.
    SubscriptionId,
}

impl Field {
    /// The member's path in the message, as error messages show it.
    ///
    /// ```
    /// assert_eq!(shoal_wire::Field::Id.path(), "id");
    /// ```
    pub fn path(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::MetaProgressToken => "params._meta.progressToken",
            Field::ProgressToken => "params.progressToken",
            Field::RequestId => "params.requestId",
            Field::SubscriptionId => "params._meta.io.modelcontextprotocol/subscriptionId",
        }
    }
}

/// Why a line is [`Kind::Invalid`], with the JSON-RPC error code to answer it with.
///
/// ```
/// use shoal_wire::{ErrorCode, InvalidReason};
///
/// assert_eq!(InvalidReason::NotJson.code(), ErrorCode::PARSE_ERROR);
/// assert_eq!(InvalidReason::NullRequestId.code(), ErrorCode::INVALID_REQUEST);
/// assert_eq!(InvalidReason::NullRequestId.to_string(), "a request's id must not be null");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Not JSON, or JSON that strict parsers refuse (see [`Validation::Full`]); with
    /// [`Validation::Envelope`]: not JSON outside string contents.
    #[error("the message is not valid JSON")]
    NotJson,
    /// JSON, but not an object or an array.
    #[error("a message must be a JSON object or array")]
    NotAnObject,
    /// `[]`.
    #[error("a batch must not be empty")]
    EmptyBatch,
    /// `jsonrpc` is missing or not `"2.0"`.
    #[error("`jsonrpc` must be \"2.0\"")]
    BadVersion,
    /// `id` is not a string, a number or null.
    #[error("`id` must be a string or a number")]
    BadId,
    /// A request with `"id": null` (JSON-RPC allows it, MCP does not, and nobody can answer it).
    #[error("a request's id must not be null")]
    NullRequestId,
    /// `method` is not a string.
    #[error("`method` must be a string")]
    BadMethod,
    /// A member routing reads appears twice; the backend might read the other one.
    #[error("the member `{0}` appears more than once")]
    DuplicateMember(&'static str),
    /// Both `method` and `result`/`error`, or both `result` and `error`.
    #[error("a message must have exactly one of `method`, `result` and `error`")]
    Ambiguous,
    /// None of `method`, `result`, `error`.
    #[error("a message must have `method`, `result` or `error`")]
    NotAMessage,
    /// A response or error response without `id`.
    #[error("a response must have an `id`")]
    ResponseWithoutId,
}

impl InvalidReason {
    /// The JSON-RPC error code for answering this: -32700 for [`InvalidReason::NotJson`], -32600
    /// otherwise.
    ///
    /// ```
    /// use shoal_wire::{ErrorCode, InvalidReason};
    ///
    /// assert_eq!(InvalidReason::BadMethod.code(), ErrorCode::INVALID_REQUEST);
    /// ```
    pub fn code(self) -> ErrorCode {
        match self {
            InvalidReason::NotJson => ErrorCode::PARSE_ERROR,
            _ => ErrorCode::INVALID_REQUEST,
        }
    }
}

/// Details of a [`Kind::Invalid`] line.
///
/// ```
/// use shoal_wire::{Envelope, Id, InvalidReason, Line, Validation};
///
/// let line = Line::new(&br#"{"jsonrpc":"2.0","id":9,"method":"x","params":{"a":tru}}"#[..])?;
/// let envelope = Envelope::parse(line, Validation::Full);
/// let invalid = envelope.invalid().unwrap();
/// assert_eq!(invalid.reason(), InvalidReason::NotJson);
/// assert_eq!(invalid.id(), Some(&Id::from_u64(9)));
/// assert_eq!(
///     invalid.error_response().as_bytes(),
///     br#"{"jsonrpc":"2.0","id":9,"error":{"code":-32700,"message":"Parse error: the message is not valid JSON"}}"#
/// );
/// # Ok::<(), shoal_wire::LineError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    reason: InvalidReason,
    id: Option<Id>,
}

impl Invalid {
    /// Why the line is invalid.
    ///
    /// ```
    /// use shoal_wire::{Envelope, InvalidReason, Line, Validation};
    ///
    /// let envelope = Envelope::parse(Line::new(&b"[]"[..])?, Validation::Full);
    /// assert_eq!(envelope.invalid().unwrap().reason(), InvalidReason::EmptyBatch);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn reason(&self) -> InvalidReason {
        self.reason
    }

    /// The message's `id`, if a string or number `id` member was read before the problem was found.
    ///
    /// JSON-RPC says to answer an unparseable message with `id: null`; answering with the id the
    /// client used instead (when it is known) lets that client fail the one request instead of
    /// waiting for an answer forever. The caller chooses.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let envelope = Envelope::parse(Line::new(&br#"{"id":"a","method":3}"#[..])?, Validation::Full);
    /// assert_eq!(envelope.invalid().unwrap().id().unwrap().as_str(), r#""a""#);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The JSON-RPC error response answering this line: the reason's code, the id if known (else
    /// null), and a message naming the problem.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let envelope = Envelope::parse(Line::new(&br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#[..])?, Validation::Full);
    /// assert_eq!(
    ///     envelope.invalid().unwrap().error_response().as_bytes(),
    ///     br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"Invalid Request: `jsonrpc` must be \"2.0\""}}"#
    /// );
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn error_response(&self) -> Line {
        let title = if self.reason.code() == ErrorCode::PARSE_ERROR {
            "Parse error"
        } else {
            "Invalid Request"
        };
        crate::build::error_response(
            self.id.as_ref(),
            self.reason.code(),
            &format!("{title}: {}", self.reason),
        )
    }
}

/// A line classified for routing: its [`Kind`], the few members routing reads, and the byte spans
/// needed to rewrite ids and tokens without re-serialising anything.
///
/// Parsing never fails: a line that is not a usable message is [`Kind::Invalid`] with a reason.
/// The payload (`params`, `result`, `error`) stays raw bytes in the line.
///
/// Routing members are exposed only with the types MCP gives them: `id` and the tokens when they
/// are a string or a number, `method` and `params.uri` when they are strings. A token of another
/// type (`"progressToken": true`) reads as absent and is passed on untouched.
///
/// ```
/// use shoal_wire::{Envelope, Field, Id, Kind, Line, Validation};
///
/// let line = Line::new(&br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","_meta":{"progressToken":"a"}}}"#[..])?;
/// let request = Envelope::parse(line, Validation::Full);
/// assert_eq!(request.kind(), Kind::Request);
/// assert_eq!(request.method(), Some("tools/call"));
/// assert_eq!(request.id(), Some(Id::string("a")));
///
/// // Give the backend unique values; restore the client's on the way back.
/// let rewritten = request.rewrite(&[(Field::Id, &Id::from_u64(41)), (Field::MetaProgressToken, &Id::from_u64(42))])?;
/// assert_eq!(
///     rewritten.to_line().as_bytes(),
///     br#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":42}}}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Envelope {
    line: Line,
    kind: Kind,
    id: IdSlot,
    method: Option<Text>,
    uri: Option<Text>,
    meta_progress_token: Option<Span>,
    progress_token: Option<Span>,
    request_id: Option<Span>,
    subscription_id: Option<Span>,
    invalid: Option<Invalid>,
    batch: Vec<Span>,
}

/// The most edits one rewrite can make: one per [`Field`].
const MAX_EDITS: usize = 5;

impl Envelope {
    /// Classify `line`, checking it as `validation` says, reading only what routing needs.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Kind, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"result":{"content":[]},"jsonrpc":"2.0","id":3}"#[..])?;
    /// let response = Envelope::parse(line, Validation::Envelope);
    /// assert_eq!(response.kind(), Kind::Response);
    /// assert_eq!(response.id().unwrap().as_str(), "3");
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn parse(line: Line, validation: Validation) -> Envelope {
        let mut members = Members::default();
        let bytes = line.as_bytes();
        let shape = match validation {
            Validation::Full => scan::scan::<true>(bytes, &mut members),
            Validation::Envelope => scan::scan::<false>(bytes, &mut members),
        };
        let mut envelope = Envelope {
            kind: Kind::Invalid,
            id: IdSlot::Absent,
            method: None,
            uri: None,
            meta_progress_token: None,
            progress_token: None,
            request_id: None,
            subscription_id: None,
            invalid: None,
            batch: Vec::new(),
            line,
        };
        let outcome = match shape {
            Err(scan::Syntax) => Err(InvalidReason::NotJson),
            Ok(Shape::Scalar) => Err(InvalidReason::NotAnObject),
            Ok(Shape::Array(elements)) if elements.is_empty() => Err(InvalidReason::EmptyBatch),
            Ok(Shape::Array(elements)) => {
                envelope.batch = elements;
                Ok(Kind::Batch)
            }
            Ok(Shape::Object) => envelope.classify(&members),
        };
        match outcome {
            Ok(kind) => envelope.kind = kind,
            Err(reason) => {
                let id = match id_slot(members.id) {
                    IdSlot::Value(span) => Some(envelope.raw_id(span)),
                    IdSlot::Absent | IdSlot::Null | IdSlot::Other => None,
                };
                envelope.id = IdSlot::Absent;
                envelope.method = None;
                envelope.uri = None;
                envelope.meta_progress_token = None;
                envelope.progress_token = None;
                envelope.request_id = None;
                envelope.subscription_id = None;
                envelope.invalid = Some(Invalid { reason, id });
            }
        }
        envelope
    }

    /// What the line is.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Kind, Line, Validation};
    ///
    /// let envelope = Envelope::parse(Line::new(&b"42"[..])?, Validation::Full);
    /// assert_eq!(envelope.kind(), Kind::Invalid);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The line, unchanged.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","method":"x"}"#[..])?;
    /// assert_eq!(Envelope::parse(line.clone(), Validation::Full).line(), &line);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn line(&self) -> &Line {
        &self.line
    }

    /// The line, unchanged, for forwarding without a rewrite.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","method":"x"}"#[..])?;
    /// assert_eq!(Envelope::parse(line.clone(), Validation::Full).into_line(), line);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn into_line(self) -> Line {
        self.line
    }

    /// The `id` of a request, response or error response, as its exact JSON text; `None` when
    /// absent or null (see [`Envelope::has_null_id`]) and for batches and invalid lines.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let envelope = Envelope::parse(Line::new(&br#"{"jsonrpc":"2.0","id":1.0,"result":{}}"#[..])?, Validation::Full);
    /// assert_eq!(envelope.id().unwrap().as_str(), "1.0");
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn id(&self) -> Option<Id> {
        match self.id {
            IdSlot::Value(span) => Some(self.raw_id(span)),
            IdSlot::Absent | IdSlot::Null | IdSlot::Other => None,
        }
    }

    /// Whether the message is an error response with `"id": null` (the answer to a message the
    /// peer could not read; it belongs to no request).
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#[..])?;
    /// assert!(Envelope::parse(line, Validation::Full).has_null_id());
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn has_null_id(&self) -> bool {
        matches!(self.id, IdSlot::Null)
    }

    /// The `method` of a request or notification.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// // Escapes are decoded: this is `ping` to every JSON parser.
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"method":"p\u0069ng"}"#[..])?;
    /// assert_eq!(Envelope::parse(line, Validation::Full).method(), Some("ping"));
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn method(&self) -> Option<&str> {
        self.method.as_ref().map(|text| self.text(text))
    }

    /// `params.uri` when it is a string (`resources/subscribe`, `resources/unsubscribe`,
    /// `notifications/resources/updated`), decoded.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a"}}"#[..])?;
    /// assert_eq!(Envelope::parse(line, Validation::Envelope).uri(), Some("file:///a"));
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_ref().map(|text| self.text(text))
    }

    /// A routing field's value as exact JSON text, when present as a string or number.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Field, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r1"}}"#[..])?;
    /// let envelope = Envelope::parse(line, Validation::Full);
    /// assert_eq!(envelope.get(Field::RequestId).unwrap().as_str(), r#""r1""#);
    /// assert_eq!(envelope.get(Field::Id), None);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn get(&self, field: Field) -> Option<Id> {
        self.span(field).map(|span| self.raw_id(span))
    }

    /// Why the line is [`Kind::Invalid`]; `None` for every other kind.
    ///
    /// ```
    /// use shoal_wire::{Envelope, InvalidReason, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":true,"method":"x"}"#[..])?;
    /// assert_eq!(Envelope::parse(line, Validation::Full).invalid().unwrap().reason(), InvalidReason::BadId);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn invalid(&self) -> Option<&Invalid> {
        self.invalid.as_ref()
    }

    /// The elements of a [`Kind::Batch`], each a line of its own to parse (no copy); empty for
    /// every other kind.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Kind, Line, Validation};
    ///
    /// let line = Line::new(&br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, {"jsonrpc":"2.0","method":"b"}]"#[..])?;
    /// let batch = Envelope::parse(line, Validation::Full);
    /// let kinds: Vec<Kind> = batch.batch().map(|item| Envelope::parse(item, Validation::Full).kind()).collect();
    /// assert_eq!(kinds, [Kind::Request, Kind::Notification]);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn batch(&self) -> impl ExactSizeIterator<Item = Line> + '_ {
        self.batch.iter().map(|span| {
            // A sub-span of a line between JSON tokens: still UTF-8 (cut at ASCII bytes) and
            // newline-free.
            Line::from_checked(self.line.clone().into_bytes().slice(span.start..span.end))
        })
    }

    /// Replace the values of some fields with new ids, leaving every other byte as it was.
    ///
    /// The result borrows nothing and copies nothing: it is the original line plus the edits, and is
    /// written out in pieces by [`LineCodec`](crate::LineCodec). Rewriting the result again with
    /// the original values gives back the original bytes exactly.
    ///
    /// Fails if a field is absent (or listed twice).
    ///
    /// ```
    /// use shoal_wire::{Envelope, Field, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"result":{"content":[]},"jsonrpc":"2.0","id":17}"#[..])?;
    /// let response = Envelope::parse(line, Validation::Envelope);
    /// let restored = response.rewrite(&[(Field::Id, &Id::string("client-1"))])?;
    /// assert_eq!(restored.to_line().as_bytes(), br#"{"result":{"content":[]},"jsonrpc":"2.0","id":"client-1"}"#);
    /// assert!(response.rewrite(&[(Field::RequestId, &Id::from_u64(1))]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewrite(&self, edits: &[(Field, &Id)]) -> Result<Rewritten, Error> {
        let mut rewritten = Rewritten {
            line: self.line.clone(),
            edits: [const { None }; MAX_EDITS],
            len: self.line.len(),
            kind: self.kind,
        };
        for (index, &(field, id)) in edits.iter().enumerate() {
            if edits[..index].iter().any(|&(earlier, _)| earlier == field) {
                return Err(Error::Rewrite {
                    field: field.path(),
                    problem: "the field is listed twice",
                });
            }
            let span = self.span(field).ok_or(Error::Rewrite {
                field: field.path(),
                problem: "the message has no such field",
            })?;
            // At most one edit per field, and there are MAX_EDITS fields: a free slot exists.
            let slot = rewritten
                .edits
                .iter_mut()
                .find(|slot| slot.is_none())
                .expect("one edit slot per field");
            *slot = Some(Edit {
                field,
                span,
                id: id.clone(),
            });
            rewritten.len = rewritten.len - (span.end - span.start) + id.as_bytes().len();
        }
        rewritten
            .edits
            .sort_by_key(|edit| edit.as_ref().map_or(usize::MAX, |edit| edit.span.start));
        Ok(rewritten)
    }

    /// Shorthand for rewriting only the `id`.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Full).rewrite_id(&Id::from_u64(900))?;
    /// assert_eq!(rewritten.to_line().as_bytes(), br#"{"jsonrpc":"2.0","id":900,"method":"ping"}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rewrite_id(&self, id: &Id) -> Result<Rewritten, Error> {
        self.rewrite(&[(Field::Id, id)])
    }

    fn classify(&mut self, members: &Members) -> Result<Kind, InvalidReason> {
        if let Some(path) = members.duplicate {
            return Err(InvalidReason::DuplicateMember(path));
        }
        let version_ok = members
            .jsonrpc
            .is_some_and(|slot| self.string_equals(slot, "2.0"));
        if !version_ok {
            return Err(InvalidReason::BadVersion);
        }
        let id = id_slot(members.id);
        if id == IdSlot::Other {
            return Err(InvalidReason::BadId);
        }
        let kind = match (members.method, members.result, members.error) {
            (Some(method), None, None) => {
                if method.kind != ValueKind::String {
                    return Err(InvalidReason::BadMethod);
                }
                self.method = Some(Text::new(self.line.as_bytes(), method)?);
                match id {
                    IdSlot::Value(_) => Kind::Request,
                    IdSlot::Absent => Kind::Notification,
                    IdSlot::Null => return Err(InvalidReason::NullRequestId),
                    IdSlot::Other => return Err(InvalidReason::BadId),
                }
            }
            (None, Some(_), None) => match id {
                IdSlot::Value(_) => Kind::Response,
                IdSlot::Null | IdSlot::Absent => return Err(InvalidReason::ResponseWithoutId),
                IdSlot::Other => return Err(InvalidReason::BadId),
            },
            (None, None, Some(_)) => match id {
                IdSlot::Value(_) | IdSlot::Null => Kind::ErrorResponse,
                IdSlot::Absent => return Err(InvalidReason::ResponseWithoutId),
                IdSlot::Other => return Err(InvalidReason::BadId),
            },
            (None, None, None) => return Err(InvalidReason::NotAMessage),
            _ => return Err(InvalidReason::Ambiguous),
        };
        self.id = id;
        self.meta_progress_token = token_span(members.meta_progress_token);
        self.progress_token = token_span(members.progress_token);
        self.request_id = token_span(members.request_id);
        self.subscription_id = token_span(members.subscription_id);
        self.uri = match members.uri {
            Some(slot) if slot.kind == ValueKind::String => {
                // A uri that does not decode (lone surrogate) is left for the backend to refuse.
                Text::new(self.line.as_bytes(), slot).ok()
            }
            _ => None,
        };
        Ok(kind)
    }

    fn span(&self, field: Field) -> Option<Span> {
        match field {
            Field::Id => match self.id {
                IdSlot::Value(span) => Some(span),
                IdSlot::Absent | IdSlot::Null | IdSlot::Other => None,
            },
            Field::MetaProgressToken => self.meta_progress_token,
            Field::ProgressToken => self.progress_token,
            Field::RequestId => self.request_id,
            Field::SubscriptionId => self.subscription_id,
        }
    }

    fn raw_id(&self, span: Span) -> Id {
        Id::from_checked(&self.line.as_bytes()[span.start..span.end])
    }

    fn text<'a>(&'a self, text: &'a Text) -> &'a str {
        match text {
            Text::Plain(span) => {
                let contents = &self.line.as_bytes()[span.start..span.end];
                // The inside of a string in a `Line`: UTF-8, cut at ASCII quotes.
                std::str::from_utf8(contents).expect("string contents of a Line are UTF-8")
            }
            Text::Decoded(text) => text,
        }
    }

    /// Whether the string at `slot` equals `expected` once decoded.
    fn string_equals(&self, slot: Slot, expected: &str) -> bool {
        slot.kind == ValueKind::String
            && Text::new(self.line.as_bytes(), slot).is_ok_and(|text| self.text(&text) == expected)
    }
}

/// A message after [`Envelope::rewrite`]: the original line with some values replaced.
///
/// Write it with [`LineCodec`](crate::LineCodec) (in pieces, no intermediate copy), send its
/// [`pieces`](Rewritten::pieces) with a vectored write (no copy at all), or turn it into a
/// [`Line`] with [`Rewritten::to_line`].
///
/// ```
/// use shoal_wire::{Envelope, Id, Line, Validation};
///
/// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])?;
/// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::string("x"))?;
/// assert_eq!(rewritten.len(), 38);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Rewritten {
    line: Line,
    /// Sorted by position; `None`s last.
    edits: [Option<Edit>; MAX_EDITS],
    len: usize,
    kind: Kind,
}

impl Rewritten {
    /// Length in bytes of the rewritten message (without newline).
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::from_u64(100))?;
    /// assert_eq!(rewritten.len(), 38);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// What the message is: the [`Kind`] of the envelope it was rewritten from (replacing ids
    /// and tokens by others never changes it).
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Kind, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::from_u64(7))?;
    /// assert_eq!(rewritten.kind(), Kind::ErrorResponse);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where the value put in place of `field` lies in the rewritten message, as a byte range:
    /// `None` if `field` was not rewritten. The range indexes what [`Rewritten::write_to`]
    /// writes, so a reader of the rewritten bytes can find the value without parsing them.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Field, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"result":{},"jsonrpc":"2.0","id":17}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::string("a"))?;
    /// let text = rewritten.to_line();
    /// let span = rewritten.value_span(Field::Id).unwrap();
    /// assert_eq!(&text.as_bytes()[span], br#""a""#);
    /// assert_eq!(rewritten.value_span(Field::RequestId), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn value_span(&self, field: Field) -> Option<std::ops::Range<usize>> {
        // Edits are sorted by position: each one before `field`'s moved it by its change in
        // length.
        let mut shift: isize = 0;
        for edit in self.edits.iter().flatten() {
            let old = edit.span.end - edit.span.start;
            let new = edit.id.as_bytes().len();
            if edit.field == field {
                let start = edit.span.start.checked_add_signed(shift)?;
                return Some(start..start + new);
            }
            // Lengths of parts of one line: far below `isize::MAX`.
            shift += new as isize - old as isize;
        }
        None
    }

    /// Whether the message is empty (never, for a rewritten message; here for completeness).
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])?;
    /// assert!(!Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::from_u64(2))?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append the message (without newline) to `buffer`.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::from_u64(2))?;
    /// let mut buffer = bytes::BytesMut::new();
    /// rewritten.write_to(&mut buffer);
    /// assert_eq!(&buffer[..], br#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_to(&self, buffer: &mut BytesMut) {
        buffer.reserve(self.len);
        // The loop `pieces` makes into an iterator, spelled out: this is on every rewritten
        // message's path, and the iterator costs ~90 more instructions per message.
        let bytes = self.line.as_bytes();
        let mut position = 0;
        for edit in self.edits.iter().flatten() {
            buffer.put_slice(&bytes[position..edit.span.start]);
            buffer.put_slice(edit.id.as_bytes());
            position = edit.span.end;
        }
        buffer.put_slice(&bytes[position..]);
    }

    /// The message (without newline) as the pieces it is made of, in order: runs of the original
    /// line and the values put in their place. A vectored write (`writev`) of them sends a large
    /// message without copying it.
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::from_u64(2))?;
    /// let pieces: Vec<&[u8]> = rewritten.pieces().collect();
    /// assert_eq!(pieces, [&br#"{"jsonrpc":"2.0","id":"#[..], b"2", br#","result":{}}"#]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = self.line.as_bytes();
        // Edits are sorted by position, so the original bytes after the last one end the message.
        let end = self
            .edits
            .iter()
            .flatten()
            .last()
            .map_or(0, |edit| edit.span.end);
        let mut position = 0;
        self.edits
            .iter()
            .flatten()
            .flat_map(move |edit| {
                let before = &bytes[position..edit.span.start];
                position = edit.span.end;
                [before, edit.id.as_bytes()]
            })
            .chain(std::iter::once(&bytes[end..]))
            .filter(|piece| !piece.is_empty())
    }

    /// The rewritten message as one contiguous [`Line`] (one copy).
    ///
    /// ```
    /// use shoal_wire::{Envelope, Id, Line, Validation};
    ///
    /// let line = Line::new(&br#"{"jsonrpc":"2.0","id":1,"result":{}}"#[..])?;
    /// let rewritten = Envelope::parse(line, Validation::Envelope).rewrite_id(&Id::from_u64(2))?;
    /// assert_eq!(rewritten.to_line().as_bytes(), br#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_line(&self) -> Line {
        let mut buffer = BytesMut::with_capacity(self.len);
        self.write_to(&mut buffer);
        // Valid UTF-8 JSON tokens replaced by valid UTF-8 JSON tokens, no newline in either.
        Line::from_checked(buffer.freeze())
    }
}

#[derive(Clone, Debug)]
struct Edit {
    field: Field,
    span: Span,
    id: Id,
}

/// The state of the `id` member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdSlot {
    Absent,
    Null,
    /// A string or number, at this span.
    Value(Span),
    /// Some other type.
    Other,
}

fn id_slot(slot: Option<Slot>) -> IdSlot {
    match slot {
        None => IdSlot::Absent,
        Some(slot) => match slot.kind {
            ValueKind::String | ValueKind::Number => IdSlot::Value(slot.span),
            ValueKind::Null => IdSlot::Null,
            ValueKind::Bool | ValueKind::Object | ValueKind::Array => IdSlot::Other,
        },
    }
}

/// A token's span if it has a type MCP allows for tokens (string or number).
fn token_span(slot: Option<Slot>) -> Option<Span> {
    slot.filter(|slot| matches!(slot.kind, ValueKind::String | ValueKind::Number))
        .map(|slot| slot.span)
}

/// A string member's text: a span of the line when it has no escapes (the common case, no
/// allocation), decoded otherwise.
#[derive(Clone, Debug)]
enum Text {
    Plain(Span),
    Decoded(Box<str>),
}

impl Text {
    /// `slot` must be a fully checked string.
    fn new(bytes: &[u8], slot: Slot) -> Result<Text, InvalidReason> {
        if slot.escaped {
            serde_json::from_slice::<String>(&bytes[slot.span.start..slot.span.end])
                .map(|text| Text::Decoded(text.into_boxed_str()))
                // Only a lone surrogate escape gets here: valid JSON, but not a string anyone
                // can match against.
                .map_err(|_| InvalidReason::BadMethod)
        } else {
            Ok(Text::Plain(Span {
                start: slot.span.start + 1,
                end: slot.span.end - 1,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse `input` in both modes and render what routing sees.
    fn check(input: &str, expected: &str) {
        for validation in [Validation::Full, Validation::Envelope] {
            let envelope = Envelope::parse(Line::new(input.to_owned()).unwrap(), validation);
            assert_eq!(render(&envelope), expected, "{validation:?}");
        }
    }

    fn render(envelope: &Envelope) -> String {
        if let Some(invalid) = envelope.invalid() {
            return format!(
                "Invalid({:?}) id={}",
                invalid.reason(),
                invalid.id().map_or("-".to_string(), Id::to_string)
            );
        }
        let mut out = format!("{:?}", envelope.kind());
        let fields = [
            ("id", envelope.id()),
            ("meta.token", envelope.get(Field::MetaProgressToken)),
            ("token", envelope.get(Field::ProgressToken)),
            ("requestId", envelope.get(Field::RequestId)),
            ("subscriptionId", envelope.get(Field::SubscriptionId)),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                out.push_str(&format!(" {name}={value}"));
            }
        }
        if envelope.has_null_id() {
            out.push_str(" id=null");
        }
        if let Some(method) = envelope.method() {
            out.push_str(&format!(" method={method}"));
        }
        if let Some(uri) = envelope.uri() {
            out.push_str(&format!(" uri={uri}"));
        }
        if envelope.kind() == Kind::Batch {
            out.push_str(&format!(" items={}", envelope.batch().len()));
        }
        out
    }

    #[test]
    fn classifies_messages() {
        check(
            r#"{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"_meta":{"progressToken":0}}}"#,
            "Request id=0 meta.token=0 method=tools/call",
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"3","reason":"x"}}"#,
            r#"Notification requestId="3" method=notifications/cancelled"#,
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":0.5}}"#,
            r#"Notification token="p" method=notifications/progress"#,
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a\u00e9","_meta":{"io.modelcontextprotocol/subscriptionId":12}}}"#,
            "Notification subscriptionId=12 method=notifications/resources/updated uri=file:///aé",
        );
        check(
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":1,"message":"m"}}"#,
            r#"ErrorResponse id="x""#,
        );
        check(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#,
            "ErrorResponse id=null",
        );
        check(r#"[{"a":1},2]"#, "Batch items=2");
    }

    #[test]
    fn tokens_of_other_types_read_as_absent() {
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":true},"uri":5}}"#,
            "Request id=1 method=m",
        );
    }

    #[test]
    fn invalid_messages() {
        check("{", "Invalid(NotJson) id=-");
        check(
            r#"{"id":4,"method":"x","params":[}"#,
            "Invalid(NotJson) id=4",
        );
        check("\"x\"", "Invalid(NotAnObject) id=-");
        check("[]", "Invalid(EmptyBatch) id=-");
        check(r#"{"id":1,"method":"x"}"#, "Invalid(BadVersion) id=1");
        check(
            r#"{"jsonrpc":2.0,"id":1,"method":"x"}"#,
            "Invalid(BadVersion) id=1",
        );
        check(
            r#"{"jsonrpc":"2\u002e0","id":1,"method":"x"}"#,
            "Request id=1 method=x",
        );
        check(
            r#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#,
            "Invalid(BadId) id=-",
        );
        check(
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            "Invalid(NullRequestId) id=-",
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":1}"#,
            "Invalid(BadMethod) id=1",
        );
        // A lone surrogate is refused by the grammar now, before the method is looked at.
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"\ud800"}"#,
            "Invalid(NotJson) id=1",
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#,
            r#"Invalid(DuplicateMember("id")) id=1"#,
        );
        check(
            r#"{"jsonrpc":"2.0","method":"x","params":{"_meta":{"progressToken":1,"progressToken":2}}}"#,
            r#"Invalid(DuplicateMember("params._meta.progressToken")) id=-"#,
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#,
            "Invalid(Ambiguous) id=1",
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            "Invalid(Ambiguous) id=1",
        );
        check(r#"{"jsonrpc":"2.0","id":1}"#, "Invalid(NotAMessage) id=1");
        check(
            r#"{"jsonrpc":"2.0","result":1}"#,
            "Invalid(ResponseWithoutId) id=-",
        );
        check(
            r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
            "Invalid(ResponseWithoutId) id=-",
        );
        check(
            r#"{"jsonrpc":"2.0","error":{}}"#,
            "Invalid(ResponseWithoutId) id=-",
        );
    }

    #[test]
    fn rewrite_then_restore_is_the_identity() {
        let original = r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{"progressToken":1,"requestId":2,"_meta":{"io.modelcontextprotocol/subscriptionId":3,"progressToken":"a"}}}"#;
        let envelope = Envelope::parse(Line::new(original.to_owned()).unwrap(), Validation::Full);
        let fields = [
            Field::Id,
            Field::MetaProgressToken,
            Field::ProgressToken,
            Field::RequestId,
            Field::SubscriptionId,
        ];
        let new_values: Vec<Id> = (100..105).map(Id::from_u64).collect();
        let edits: Vec<(Field, &Id)> = fields.iter().copied().zip(new_values.iter()).collect();
        let rewritten = envelope.rewrite(&edits).unwrap().to_line();
        assert_eq!(
            rewritten.as_bytes(),
            br#"{"jsonrpc":"2.0","id":100,"method":"x","params":{"progressToken":102,"requestId":103,"_meta":{"io.modelcontextprotocol/subscriptionId":104,"progressToken":101}}}"#
        );
        let reparsed = Envelope::parse(rewritten, Validation::Full);
        let originals: Vec<Id> = fields
            .iter()
            .map(|&field| envelope.get(field).unwrap())
            .collect();
        let edits: Vec<(Field, &Id)> = fields.iter().copied().zip(originals.iter()).collect();
        let restored = reparsed.rewrite(&edits).unwrap().to_line();
        assert_eq!(restored.as_bytes(), original.as_bytes());
    }

    #[test]
    fn rewrite_rejects_absent_and_repeated_fields() {
        let envelope = Envelope::parse(
            Line::new(&br#"{"jsonrpc":"2.0","method":"x"}"#[..]).unwrap(),
            Validation::Full,
        );
        let id = Id::from_u64(1);
        assert_eq!(
            envelope.rewrite_id(&id).unwrap_err().to_string(),
            "rewrite `id`: the message has no such field"
        );
        let envelope = Envelope::parse(
            Line::new(&br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#[..]).unwrap(),
            Validation::Full,
        );
        assert_eq!(
            envelope
                .rewrite(&[(Field::Id, &id), (Field::Id, &id)])
                .unwrap_err()
                .to_string(),
            "rewrite `id`: the field is listed twice"
        );
    }
}
