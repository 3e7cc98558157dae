//! Label and field selectors as the API server reads them: `a=b`, `a==b`, `a!=b`, `a`,
//! `!a`, `a in (x,y)`, `a notin (x,y)`, comma-separated, all of which must hold; field
//! selectors on `metadata.name` and `metadata.namespace`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self(requirements))
    }

    pub fn matches(&self, labels: &Value) -> bool {
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => label(key) == Some(value.as_str()),
            Requirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            Requirement::Exists(key) => label(key).is_some(),
            Requirement::Absent(key) => label(key).is_none(),
            Requirement::In(key, values) => {
                label(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            Requirement::NotIn(key, values) => {
                label(key).is_none_or(|v| values.iter().all(|x| x != v))
            }
        })
    }

    /// Whether an object matches: its labels for a label selector.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(&object["metadata"]["labels"])
    }

    /// A field selector applied to `object` (only `metadata.name`/`metadata.namespace`).
    pub fn matches_fields(&self, object: &Value) -> bool {
        let field = |key: &str| -> Option<&str> {
            match key {
                "metadata.name" => object["metadata"]["name"].as_str(),
                "metadata.namespace" => object["metadata"]["namespace"].as_str(),
                _ => None,
            }
        };
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => field(key) == Some(value.as_str()),
            Requirement::NotEquals(key, value) => field(key) != Some(value.as_str()),
            _ => false,
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let invalid = || format!("unable to parse requirement: {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key.trim().to_string()));
    }
    for (operator, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, rest)) = part.split_once(operator) {
            let list = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
            let values: Vec<String> = list
                .ok_or_else(invalid)?
                .split(',')
                .map(|value| value.trim().to_string())
                .collect();
            let key = key.trim().to_string();
            return Ok(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key.trim().into(), value.trim().into()));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key.trim().into(), value.trim().into()));
    }
    if part.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
        return Err(invalid());
    }
    Ok(Requirement::Exists(part.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_operator_is_read_as_the_api_server_reads_it() {
        let labels = json!({"app": "agent", "tier": "a"});
        let yes =
            ["app=agent", "app==agent,tier", "tier in (a, b)", "!missing", "tier notin (b)", ""];
        let no = ["app=other", "app!=agent", "missing", "!app", "tier in (b,c)", "tier notin (a)"];
        for text in yes {
            assert!(Selector::parse(text).unwrap().matches(&labels), "{text}");
        }
        for text in no {
            assert!(!Selector::parse(text).unwrap().matches(&labels), "{text}");
        }
        assert!(Selector::parse("a in b").is_err());
    }
}
