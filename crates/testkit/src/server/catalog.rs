//! The fixture's static resources, resource template, prompts and completions.

use serde_json::{Map, Value, json};

use super::Config;
use super::core::{RpcError, code};

/// Number of static resources `fixture://static/1` ..= `fixture://static/5`.
const STATIC_RESOURCES: usize = 5;

const CURSOR_PREFIX: &str = "fixture-cursor-";

const STATIC_PREFIX: &str = "fixture://static/";
const DYNAMIC_PREFIX: &str = "fixture://dynamic/";

/// Names `completion/complete` offers for the `greeting` prompt's `name`.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];

/// `resources/list`, one page of [`Config::page_size`] at a time.
pub(crate) fn list_resources(
    config: &Config,
    params: &Map<String, Value>,
) -> Result<Value, RpcError> {
    let start = match params.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(cursor) => cursor
            .as_str()
            .and_then(|cursor| cursor.strip_prefix(CURSOR_PREFIX))
            .and_then(|offset| offset.parse::<usize>().ok())
            .filter(|offset| (1..STATIC_RESOURCES).contains(offset))
            .ok_or_else(|| RpcError::invalid_params(format!("invalid cursor {cursor}")))?,
    };
    let end = start.saturating_add(config.page_size).min(STATIC_RESOURCES);
    let resources: Vec<Value> = (start + 1..=end)
        .map(|n| {
            json!({
                "uri": format!("{STATIC_PREFIX}{n}"),
                "name": format!("static-{n}"),
                "mimeType": "text/plain",
            })
        })
        .collect();
    let mut result = json!({"resources": resources});
    if end < STATIC_RESOURCES {
        result["nextCursor"] = json!(format!("{CURSOR_PREFIX}{end}"));
    }
    Ok(result)
}

pub(crate) fn list_resource_templates() -> Value {
    json!({"resourceTemplates": [{
        "uriTemplate": format!("{DYNAMIC_PREFIX}{{id}}"),
        "name": "dynamic",
        "mimeType": "text/plain",
    }]})
}

/// `resources/read`: static resources and any `fixture://dynamic/<id>`; -32002 otherwise.
pub(crate) fn read_resource(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("`uri` must be a string"))?;
    let text = if let Some(n) = uri
        .strip_prefix(STATIC_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=STATIC_RESOURCES).contains(n))
    {
        format!("static resource {n}")
    } else if let Some(id) = uri.strip_prefix(DYNAMIC_PREFIX).filter(|id| !id.is_empty()) {
        format!("dynamic resource {id}")
    } else {
        let mut error = RpcError::new(code::RESOURCE_NOT_FOUND, "resource not found");
        error.data = Some(json!({"uri": uri}));
        return Err(error);
    };
    Ok(json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}))
}

pub(crate) fn list_prompts() -> Value {
    json!({"prompts": [
        {
            "name": "greeting",
            "description": "Greets someone by name.",
            "arguments": [{"name": "name", "description": "who to greet", "required": true}],
        },
        {"name": "simple", "description": "A prompt without arguments."},
    ]})
}

pub(crate) fn get_prompt(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("`name` must be a string"))?;
    let text = match name {
        "greeting" => {
            let who = params
                .get("arguments")
                .and_then(|arguments| arguments.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    RpcError::invalid_params("prompt greeting: missing argument `name`")
                })?;
            format!("Hello, {who}!")
        }
        "simple" => "A simple prompt.".to_owned(),
        _ => return Err(RpcError::invalid_params(format!("unknown prompt: {name}"))),
    };
    Ok(json!({"messages": [{"role": "user", "content": {"type": "text", "text": text}}]}))
}

/// `completion/complete` for `greeting`'s `name` and the template's `id`; nothing for the rest.
pub(crate) fn complete(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let reference = params
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("`ref` must be an object"))?;
    let argument = params
        .get("argument")
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("`argument` must be an object"))?;
    let argument_name = argument
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let prefix = argument
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let field = |key: &str| reference.get(key).and_then(Value::as_str);
    let candidates: &[&str] = match (field("type"), argument_name) {
        (Some("ref/prompt"), "name") if field("name") == Some("greeting") => &NAMES,
        (Some("ref/resource"), "id") if field("uri") == Some("fixture://dynamic/{id}") => {
            &["1", "2", "3"]
        }
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|value| value.starts_with(prefix))
        .collect();
    Ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(page_size: usize, cursor: Option<&str>, expected: Result<Value, &str>) {
        let config = Config {
            page_size,
            ..Config::default()
        };
        let mut params = Map::new();
        if let Some(cursor) = cursor {
            params.insert("cursor".to_owned(), json!(cursor));
        }
        let actual = list_resources(&config, &params).map(|result| {
            let uris: Vec<Value> = result["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|resource| resource["uri"].clone())
                .collect();
            json!({"uris": uris, "next": result.get("nextCursor")})
        });
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected),
            (Err(actual), Err(expected)) => assert_eq!(actual.message, expected),
            (actual, expected) => panic!("got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn pagination() {
        check(
            2,
            None,
            Ok(
                json!({"uris": ["fixture://static/1", "fixture://static/2"], "next": "fixture-cursor-2"}),
            ),
        );
        check(
            2,
            Some("fixture-cursor-4"),
            Ok(json!({"uris": ["fixture://static/5"], "next": null})),
        );
        check(
            10,
            None,
            Ok(
                json!({"uris": (1..=5).map(|n| format!("fixture://static/{n}")).collect::<Vec<_>>(), "next": null}),
            ),
        );
        check(
            2,
            Some("fixture-cursor-5"),
            Err("invalid cursor \"fixture-cursor-5\""),
        );
        check(2, Some("bogus"), Err("invalid cursor \"bogus\""));
    }
}
