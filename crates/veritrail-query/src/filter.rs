use jiff::Timestamp;
use serde_json::Value;

/// One alternative of the `action` filter: an exact action or a glob where `*` matches any run of
/// characters (dots included), e.g. `auth.*` or `*.failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern(String);

impl ActionPattern {
    /// Wraps an already validated pattern (lowercase `[a-z0-9_.*]`).
    pub(crate) fn new(pattern: String) -> Self {
        ActionPattern(pattern)
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the pattern has no `*` (an exact action).
    pub fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    /// The text before the first `*` (the whole pattern when exact): every match starts with it.
    pub fn literal_prefix(&self) -> &str {
        match self.0.find('*') {
            Some(star) => &self.0[..star],
            None => &self.0,
        }
    }

    /// Whether `action` matches this pattern.
    pub fn matches(&self, action: &str) -> bool {
        glob_match(self.0.as_bytes(), action.as_bytes())
    }
}

/// Iterative glob with `*` only; linear in practice, no recursion on hostile patterns.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    glob_match_by(pattern, text, |p, t| p == t)
}

/// The glob of [`ActionPattern`] (`*` only, iterative) with the byte comparison given:
/// `same(pattern_byte, text_byte)`. Other crates match their own patterns with it (the rule
/// engine compares case-insensitively).
pub fn glob_match_by(pattern: &[u8], text: &[u8], same: impl Fn(u8, u8) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && same(pattern[p], text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// `metadata.<path>=<value>`: the metadata value at the dotted path equals `value` (a string
/// compares as itself; a number, boolean or null as its JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFilter {
    /// Dotted path below `metadata`, e.g. `source.service`.
    pub path: Vec<String>,
    /// The expected value, as text.
    pub value: String,
}

/// The filters of an event query. Every set filter must match (AND); `actions` alternatives are
/// OR-ed. Resource filters match the primary `resource` or any of the `targets`, with
/// `resource_type` and `resource_id` both holding for the same object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// `action`: alternatives, any of which may match.
    pub actions: Vec<ActionPattern>,
    /// `actor_id`: exact.
    pub actor_id: Option<String>,
    /// `actor_email`: exact, case-insensitive.
    pub actor_email: Option<String>,
    /// `actor_type`: exact.
    pub actor_type: Option<String>,
    /// `actor_role`: one of the actor's roles.
    pub actor_role: Option<String>,
    /// `resource_type`: the resource's or a target's type.
    pub resource_type: Option<String>,
    /// `resource_id`: the resource's or a target's id.
    pub resource_id: Option<String>,
    /// `outcome`: success | failure | denied.
    pub outcome: Option<String>,
    /// `ip`: `context.ip`, compared in normalised form.
    pub ip: Option<String>,
    /// `channel`: `context.channel`.
    pub channel: Option<String>,
    /// `sensitivity`: one of the event's sensitivity labels.
    pub sensitivity: Option<String>,
    /// `data_subject`: exact.
    pub data_subject: Option<String>,
    /// `metadata.<key>=<value>` filters.
    pub metadata: Vec<MetadataFilter>,
    /// `since`: `occurred_at >= since`.
    pub since: Option<Timestamp>,
    /// `until`: `occurred_at < until`.
    pub until: Option<Timestamp>,
    /// `q`: case-insensitive substring of [`text_of`] the event.
    pub text: Option<String>,
}

fn str_at<'a>(view: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = view;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str()
}

fn eq_opt(filter: &Option<String>, actual: Option<&str>) -> bool {
    match filter {
        None => true,
        Some(wanted) => actual == Some(wanted.as_str()),
    }
}

impl EventQuery {
    /// True when no filter is set (every event matches).
    pub fn is_empty(&self) -> bool {
        *self == EventQuery::default()
    }

    /// Whether the event, as readers see it (the opened record: `action`, `actor`, `resource`,
    /// `targets`, `context`, `metadata`, `occurred_at` ...), satisfies every filter.
    pub fn matches(&self, view: &Value) -> bool {
        let action = str_at(view, &["action"]).unwrap_or("");
        if !self.actions.is_empty() && !self.actions.iter().any(|p| p.matches(action)) {
            return false;
        }
        if !eq_opt(&self.actor_id, str_at(view, &["actor", "id"]))
            || !eq_opt(&self.actor_type, str_at(view, &["actor", "type"]))
            || !eq_opt(&self.outcome, str_at(view, &["outcome"]))
            || !eq_opt(&self.ip, str_at(view, &["context", "ip"]))
            || !eq_opt(&self.channel, str_at(view, &["context", "channel"]))
            || !eq_opt(&self.data_subject, str_at(view, &["data_subject"]))
        {
            return false;
        }
        if let Some(email) = &self.actor_email {
            match str_at(view, &["actor", "email"]) {
                Some(actual) if actual.eq_ignore_ascii_case(email) => {}
                _ => return false,
            }
        }
        if let Some(role) = &self.actor_role
            && !array_contains(view.get("actor").and_then(|a| a.get("roles")), role)
        {
            return false;
        }
        if let Some(label) = &self.sensitivity
            && !array_contains(view.get("sensitivity"), label)
        {
            return false;
        }
        if (self.resource_type.is_some() || self.resource_id.is_some()) && !self.matches_resource(view) {
            return false;
        }
        for filter in &self.metadata {
            if !metadata_matches(view, filter) {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(occurred) = str_at(view, &["occurred_at"]).and_then(|s| s.parse::<Timestamp>().ok()) else {
                return false;
            };
            if self.since.is_some_and(|since| occurred < since) || self.until.is_some_and(|until| occurred >= until) {
                return false;
            }
        }
        if let Some(needle) = &self.text
            && !text_of(view).contains(&needle.to_lowercase())
        {
            return false;
        }
        true
    }

    fn matches_resource(&self, view: &Value) -> bool {
        let mut objects: Vec<&Value> = Vec::new();
        if let Some(resource) = view.get("resource") {
            objects.push(resource);
        }
        if let Some(Value::Array(targets)) = view.get("targets") {
            objects.extend(targets.iter());
        }
        objects.into_iter().any(|object| {
            eq_opt(&self.resource_type, object.get("type").and_then(Value::as_str))
                && eq_opt(&self.resource_id, object.get("id").and_then(Value::as_str))
        })
    }
}

fn array_contains(array: Option<&Value>, wanted: &str) -> bool {
    match array {
        Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(wanted)),
        _ => false,
    }
}

fn metadata_matches(view: &Value, filter: &MetadataFilter) -> bool {
    let mut at = match view.get("metadata") {
        Some(metadata) => metadata,
        None => return false,
    };
    for key in &filter.path {
        match at.get(key) {
            Some(next) => at = next,
            None => return false,
        }
    }
    metadata_value_text(at).is_some_and(|text| text == filter.value)
}

/// The text a scalar metadata value is compared as (`None` for objects and arrays).
pub(crate) fn metadata_value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The lowercase text the `q` filter searches: action, actor id/name/email, resource and target
/// types/ids/names, reason, data subject and endpoint, separated by newlines.
pub fn text_of(view: &Value) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let paths: [&[&str]; 9] = [
        &["action"],
        &["actor", "id"],
        &["actor", "name"],
        &["actor", "email"],
        &["reason"],
        &["data_subject"],
        &["context", "endpoint"],
        &["context", "location"],
        &["outcome"],
    ];
    for path in paths {
        if let Some(text) = str_at(view, path) {
            parts.push(text);
        }
    }
    let mut objects: Vec<&Value> = Vec::new();
    if let Some(resource) = view.get("resource") {
        objects.push(resource);
    }
    if let Some(Value::Array(targets)) = view.get("targets") {
        objects.extend(targets.iter());
    }
    for object in objects {
        for key in ["type", "id", "name"] {
            if let Some(text) = object.get(key).and_then(Value::as_str) {
                parts.push(text);
            }
        }
    }
    parts.join("\n").to_lowercase()
}
