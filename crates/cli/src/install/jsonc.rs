//! A reader for the JSON that hosts write (with the comments and trailing commas VS Code's and
//! Gemini CLI's files may hold) that remembers where each value is in the text.
//!
//! `shoal install` edits a config file by replacing and inserting text at those places, never
//! by serializing a parsed document back: that would reorder keys, reflow arrays and drop the
//! user's comments. Only what the editor needs is kept: objects, arrays and strings, with spans;
//! numbers, booleans and null are checked for shape and kept as text.

use std::ops::Range;

/// One value and the bytes of the text it spans.
#[derive(Debug)]
pub(crate) struct Value {
    pub(crate) span: Range<usize>,
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Object(Vec<Member>),
    Array(Vec<Value>),
    String(String),
    /// A number, `true`, `false` or `null`.
    Scalar,
}

/// `"key": value` in an object; `start` is where the key's opening quote is.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) start: usize,
    pub(crate) key: String,
    pub(crate) value: Value,
}

impl Value {
    /// The member `key` of an object (the last one, as JSON readers take it, if repeated).
    pub(crate) fn get(&self, key: &str) -> Option<&Member> {
        match &self.kind {
            Kind::Object(members) => members.iter().rev().find(|member| member.key == key),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(text) => Some(text),
            _ => None,
        }
    }
}

/// Where and why the text is not JSON; line and column count from 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Nesting deeper than this is refused rather than recursed into: a config file never needs it,
/// and a hostile one must not overflow the stack.
const MAX_DEPTH: usize = 128;

/// Parse a whole document: one value, surrounded by nothing but whitespace and comments.
pub(crate) fn parse(text: &str) -> Result<Value, ParseError> {
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    // A UTF-8 byte order mark, which some editors write.
    if text.starts_with('\u{feff}') {
        parser.at = '\u{feff}'.len_utf8();
    }
    parser.skip_blank()?;
    let value = parser.value()?;
    parser.skip_blank()?;
    if parser.at != parser.text.len() {
        return Err(parser.error("unexpected text after the document"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: &'static str) -> ParseError {
        let before = &self.text[..self.at.min(self.text.len())];
        let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |newline| newline + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        ParseError {
            line,
            column,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Whitespace, `// line` and `/* block */` comments.
    fn skip_blank(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.at += 1,
                Some(b'/') => match self.text.get(self.at + 1) {
                    Some(b'/') => {
                        while self.peek().is_some_and(|byte| byte != b'\n') {
                            self.at += 1;
                        }
                    }
                    Some(b'*') => {
                        let start = self.at;
                        self.at += 2;
                        loop {
                            match self.peek() {
                                None => {
                                    self.at = start;
                                    return Err(self.error("unterminated /* comment"));
                                }
                                Some(b'*') if self.text.get(self.at + 1) == Some(&b'/') => {
                                    self.at += 2;
                                    break;
                                }
                                Some(_) => self.at += 1,
                            }
                        }
                    }
                    _ => return Err(self.error("unexpected `/`")),
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        let start = self.at;
        let kind = match self.peek() {
            Some(b'{') => self.nested(Self::object)?,
            Some(b'[') => self.nested(Self::array)?,
            Some(b'"') => Kind::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Scalar
            }
            Some(b't') => self.word("true")?,
            Some(b'f') => self.word("false")?,
            Some(b'n') => self.word("null")?,
            None => return Err(self.error("the document ends where a value should be")),
            Some(_) => return Err(self.error("expected a value")),
        };
        Ok(Value {
            span: start..self.at,
            kind,
        })
    }

    fn nested(
        &mut self,
        inner: fn(&mut Self) -> Result<Kind, ParseError>,
    ) -> Result<Kind, ParseError> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        let kind = inner(self);
        self.depth -= 1;
        kind
    }

    fn object(&mut self) -> Result<Kind, ParseError> {
        self.at += 1; // `{`
        let mut members = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Kind::Object(members));
                }
                Some(b'"') => {}
                _ => return Err(self.error("expected a key in quotes or `}`")),
            }
            let start = self.at;
            let key = self.string()?;
            self.skip_blank()?;
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after the key"));
            }
            self.at += 1;
            self.skip_blank()?;
            let value = self.value()?;
            members.push(Member { start, key, value });
            self.skip_blank()?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Result<Kind, ParseError> {
        self.at += 1; // `[`
        let mut elements = Vec::new();
        loop {
            self.skip_blank()?;
            if self.peek() == Some(b']') {
                self.at += 1;
                return Ok(Kind::Array(elements));
            }
            elements.push(self.value()?);
            self.skip_blank()?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {}
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.at;
        self.at += 1; // `"`
        let mut text = String::new();
        loop {
            let run = self.at;
            while self
                .peek()
                .is_some_and(|byte| byte != b'"' && byte != b'\\' && byte >= 0x20)
            {
                self.at += 1;
            }
            // The input is a `str`, and the run stops only at ASCII bytes, so it is whole UTF-8.
            text.push_str(&String::from_utf8_lossy(&self.text[run..self.at]));
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(text);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            text.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err(self.error("unknown escape in a string")),
                    };
                    self.at += 1;
                    text.push(escaped);
                }
                None => {
                    self.at = start;
                    return Err(self.error("unterminated string"));
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// The `XXXX` of `\uXXXX` (just past the `u`), with a following low surrogate if needed.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let high = self.hex4()?;
        if !(0xd800..0xdc00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| self.error("lone surrogate in a string"));
        }
        if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
            return Err(self.error("lone surrogate in a string"));
        }
        self.at += 2;
        let low = self.hex4()?;
        if !(0xdc00..0xe000).contains(&low) {
            return Err(self.error("lone surrogate in a string"));
        }
        char::from_u32(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00))
            .ok_or_else(|| self.error("lone surrogate in a string"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or_else(|| self.error("expected four hex digits after \\u"))?;
        self.at += 4;
        Ok(digits)
    }

    fn number(&mut self) -> Result<(), ParseError> {
        let digits = |parser: &mut Self| {
            let start = parser.at;
            while parser.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                parser.at += 1;
            }
            parser.at > start
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if !digits(self) {
            return Err(self.error("expected digits"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.error("expected digits after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.error("expected digits in the exponent"));
            }
        }
        Ok(())
    }

    fn word(&mut self, word: &'static str) -> Result<Kind, ParseError> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(Kind::Scalar)
        } else {
            Err(self.error("expected a value"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsed shape, with each value's text, for comparison.
    fn shape(text: &str, value: &Value) -> String {
        match &value.kind {
            Kind::Object(members) => {
                let members: Vec<String> = members
                    .iter()
                    .map(|member| {
                        assert!(text[member.start..].starts_with('"'));
                        format!("{}={}", member.key, shape(text, &member.value))
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            Kind::Array(elements) => {
                let elements: Vec<String> = elements.iter().map(|v| shape(text, v)).collect();
                format!("[{}]", elements.join(","))
            }
            Kind::String(decoded) => format!("{decoded:?}@{}", &text[value.span.clone()]),
            Kind::Scalar => text[value.span.clone()].to_owned(),
        }
    }

    fn check(text: &str, expected: &str) {
        let actual = match parse(text) {
            Ok(value) => shape(text, &value),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected, "{text}");
    }

    #[test]
    fn json_with_comments_and_trailing_commas() {
        check(
            r#"{"a": [1, -2.5e3, true, null], "b": {"c": "d"}}"#,
            r#"{a=[1,-2.5e3,true,null],b={c="d"@"d"}}"#,
        );
        check(
            "\u{feff}// servers\n{\n  /* the one */ \"s\": [\"x\",], // trailing\n}\n",
            r#"{s=["x"@"x"]}"#,
        );
        check(
            r#"["\"q\" \\ \/ \n \u00e9 \ud83d\ude00 é"]"#,
            r#"["\"q\" \\ / \n é 😀 é"@"\"q\" \\ \/ \n \u00e9 \ud83d\ude00 é"]"#,
        );
        check("{}", "{}");
    }

    #[test]
    fn mistakes_say_where() {
        check(
            "{\n  \"a\": 1\n  \"b\": 2\n}",
            "error: line 3, column 3: expected `,` or `}`",
        );
        check(
            "{\"a\" 1}",
            "error: line 1, column 6: expected `:` after the key",
        );
        check("[\"open", "error: line 1, column 2: unterminated string");
        check(
            "/* never closed",
            "error: line 1, column 1: unterminated /* comment",
        );
        check(
            "[1] [2]",
            "error: line 1, column 5: unexpected text after the document",
        );
        check(
            "",
            "error: line 1, column 1: the document ends where a value should be",
        );
        check(
            "[\"\\ud800\"]",
            "error: line 1, column 9: lone surrogate in a string",
        );
        check("[tru]", "error: line 1, column 2: expected a value");
        check(
            "{'a': 1}",
            "error: line 1, column 2: expected a key in quotes or `}`",
        );
        check(
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
            "error: line 1, column 129: nested too deeply",
        );
    }
}
