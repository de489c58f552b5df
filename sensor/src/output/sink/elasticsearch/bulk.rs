//! The `_bulk` protocol: index names from a strftime pattern of the event's UTC time, and the
//! bulk answer read item by item (serde on the documented answer shape).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Longest `error.reason` kept.
const MAX_REASON: usize = 200;

/// Whether `pattern` is a strftime pattern chrono can format.
///
/// # Errors
/// Names the pattern.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if pattern.is_empty() {
        return Err("empty index pattern".to_owned());
    }
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!("`{pattern}` is not a valid strftime pattern"));
    }
    Ok(())
}

/// The index `pattern` names for Unix time `time` (seconds, UTC), lowercased as Elasticsearch
/// requires. A pattern chrono cannot format (rejected at configuration) is returned as is.
#[must_use]
pub fn index_name(pattern: &str, time: f64) -> String {
    use std::fmt::Write as _;
    let micros = (time * 1e6).round() as i64;
    let at = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let mut out = String::new();
    if write!(out, "{}", at.format(pattern)).is_err() {
        return pattern.to_owned();
    }
    out.to_lowercase()
}

/// What the receiver said of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored (200, 201).
    Accepted,
    /// Worth another try (429, 5xx).
    Retry,
    /// Not storable (mapping error, 400...): dropped.
    Refused {
        /// The item's status.
        status: u16,
        /// `error.type`.
        kind: String,
        /// `error.reason`, shortened, without control characters.
        reason: String,
    },
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BTreeMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The outcome of each of the `expected` actions of a request, from its bulk answer.
///
/// # Errors
/// The answer is not a bulk answer, or (with `errors: true`) has not one item per action.
pub fn parse_bulk(body: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable bulk answer: {e}"))?;
    if !response.errors {
        return Ok(vec![ItemOutcome::Accepted; expected]);
    }
    if response.items.len() != expected {
        return Err(format!(
            "bulk answer has {} items for {expected} actions",
            response.items.len()
        ));
    }
    Ok(response
        .items
        .iter()
        .map(|item| match item.values().next() {
            None => ItemOutcome::Retry,
            Some(BulkItem { status, .. }) if (200..300).contains(status) => ItemOutcome::Accepted,
            Some(BulkItem { status, .. }) if *status == 429 || *status >= 500 => ItemOutcome::Retry,
            Some(BulkItem { status, error }) => {
                let field = |name: &str| {
                    error
                        .as_ref()
                        .and_then(|e| e.get(name))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_REASON)
                        .collect::<String>()
                };
                ItemOutcome::Refused {
                    status: *status,
                    kind: field("type"),
                    reason: field("reason"),
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{ItemOutcome, check_pattern, index_name, parse_bulk};

    #[test]
    fn index_names_follow_the_pattern_in_utc_and_lowercase() {
        // 2026-12-01T23:59:59.5Z
        let t = 1_796_169_599.5;
        assert_eq!(index_name("trapster-%Y.%m.%d", t), "trapster-2026.12.01");
        assert_eq!(index_name("Honey-%b-%Y", t), "honey-dec-2026");
        assert_eq!(index_name("fixed", t), "fixed");
        assert_eq!(index_name("t-%Y.%m.%d", t + 0.5), "t-2026.12.02");
        assert!(check_pattern("trapster-%Y.%m.%d").is_ok());
        assert!(check_pattern("bad-%Q").is_err());
        assert!(check_pattern("").is_err());
    }

    #[test]
    fn bulk_answers_are_read_item_by_item() {
        let all_ok = br#"{"took":3,"errors":false,"items":[]}"#;
        assert_eq!(
            parse_bulk(all_ok, 2).unwrap(),
            vec![ItemOutcome::Accepted, ItemOutcome::Accepted]
        );
        let mixed = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"a","status":201}},
            {"create":{"_index":"a","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},
            {"index":{"_index":"a","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse\n[x]"}}},
            {"index":{"_index":"a","status":503}},
            {"index":{"_index":"a","status":200}}]}"#;
        assert_eq!(
            parse_bulk(mixed, 5).unwrap(),
            vec![
                ItemOutcome::Accepted,
                ItemOutcome::Retry,
                ItemOutcome::Refused {
                    status: 400,
                    kind: "mapper_parsing_exception".to_owned(),
                    reason: "failed to parse[x]".to_owned(),
                },
                ItemOutcome::Retry,
                ItemOutcome::Accepted,
            ]
        );
        assert!(parse_bulk(mixed, 4).unwrap_err().contains("5 items for 4"));
        assert!(parse_bulk(b"<html>", 1).is_err());
        let long = format!(
            r#"{{"errors":true,"items":[{{"index":{{"status":409,"error":{{"type":"t","reason":"{}"}}}}}}]}}"#,
            "r".repeat(1000)
        );
        let ItemOutcome::Refused { reason, .. } = &parse_bulk(long.as_bytes(), 1).unwrap()[0]
        else {
            panic!("refused expected");
        };
        assert_eq!(reason.len(), 200);
    }
}
