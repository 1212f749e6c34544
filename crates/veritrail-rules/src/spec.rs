//! The rule model: what a tenant writes (`RuleSpec`), what the server stores (`Rule`: the spec
//! plus a stable id and a version), strict JSON validation and serialisation.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};
use veritrail_query::EventQuery;

use crate::RuleError;
use crate::hours::BusinessHours;
use crate::json::{Obj, Result, as_str, child_path};
use crate::path::{FieldPath, ValuePattern, scalar_text};
use crate::window::{Window, WindowLimits, WindowUnit};

/// Shortest and longest `threshold.window`.
pub const THRESHOLD_WINDOW_LIMITS: (Window, Window) =
    (Window::new(1, WindowUnit::Seconds), Window::new(7, WindowUnit::Days));
/// Shortest and longest `new_value.lookback`.
pub const NEW_VALUE_LOOKBACK_LIMITS: (Window, Window) =
    (Window::new(1, WindowUnit::Hours), Window::new(90, WindowUnit::Days));
/// Shortest and longest `silence.window`.
pub const SILENCE_WINDOW_LIMITS: (Window, Window) =
    (Window::new(1, WindowUnit::Minutes), Window::new(7, WindowUnit::Days));
/// Largest `threshold.count`.
pub const MAX_THRESHOLD_COUNT: u32 = 10_000;
/// Most paths in `group_by`.
pub const MAX_GROUP_BY: usize = 4;
/// Most filters in `when`.
pub const MAX_WHEN_FILTERS: usize = 32;
const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_ID_BYTES: usize = 64;
const MAX_MATCH_FIELDS: usize = 8;
const MAX_MATCH_PATTERNS: usize = 32;

/// The source a silence rule watches when it names no `group_by`.
pub const DEFAULT_SILENCE_GROUP_BY: &str = "metadata.source.service";

const SPEC_FIELDS: &[&str] = &[
    "name",
    "description",
    "severity",
    "enabled",
    "when",
    "field_matches",
    "outside_hours",
    "group_by",
    "group_mode",
    "threshold",
    "new_value",
    "silence",
];
const RULE_ONLY_FIELDS: &[&str] = &["id", "version", "effective_from_seq"];

fn limits(bounds: (Window, Window)) -> WindowLimits {
    WindowLimits { min: bounds.0, max: bounds.1 }
}

/// How urgent a rule's alerts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
    /// `critical`
    Critical,
}

impl Severity {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn parse(field: &str, text: &str) -> Result<Severity> {
        match text {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(RuleError::invalid(field, format!("must be one of low, medium, high, critical, not {text:?}"))),
        }
    }
}

/// A rule's stable id: 1 to 64 of `a-z 0-9 _ -`, starting with a letter or digit. The default
/// pack uses readable ids (`brute_force`); the server picks ids for tenants' own rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(String);

impl RuleId {
    /// Validates `text` as a rule id.
    pub fn parse(text: &str) -> std::result::Result<RuleId, RuleError> {
        RuleId::parse_at("id", text)
    }

    fn parse_at(field: &str, text: &str) -> Result<RuleId> {
        let valid = !text.is_empty()
            && text.len() <= MAX_ID_BYTES
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(RuleError::invalid(field, format!("{text:?} must be 1 to 64 of a-z, 0-9, _ and -")));
        }
        Ok(RuleId(text.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RuleId, D::Error> {
        let text = String::deserialize(deserializer)?;
        RuleId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The `when` filter: `GET /v1/events` filters by name, with exactly that API's semantics.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    filters: Map<String, Value>,
    query: EventQuery,
    /// The query filters more than the action (so `EventQuery::matches` must run after the
    /// action check).
    beyond_action: bool,
}

impl When {
    /// The filters as written in the rule.
    pub fn filters(&self) -> &Map<String, Value> {
        &self.filters
    }

    /// The compiled query ([`EventQuery::matches`] decides).
    pub fn query(&self) -> &EventQuery {
        &self.query
    }

    fn parse(value: &Value, path: &str) -> Result<When> {
        let Value::Object(filters) = value else {
            return Err(RuleError::WrongType { field: path.to_owned(), expected: "an object of filters" });
        };
        if filters.len() > MAX_WHEN_FILTERS {
            return Err(RuleError::invalid(path, format!("at most {MAX_WHEN_FILTERS} filters are allowed")));
        }
        let mut pairs = Vec::with_capacity(filters.len());
        for (name, value) in filters {
            let field = child_path(path, name);
            match name.as_str() {
                "limit" | "cursor" | "order" => {
                    return Err(RuleError::InvalidFilter {
                        field,
                        message: "paging parameters are not filters".into(),
                    });
                }
                "since" | "until" => {
                    return Err(RuleError::InvalidFilter {
                        field,
                        message: "rules watch the live stream, so since and until do not apply (use outside_hours for time of day)"
                            .into(),
                    });
                }
                _ => {}
            }
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(_) | Value::Bool(_) if name.starts_with("metadata.") => {
                    scalar_text(value).map(|text| text.into_owned()).unwrap_or_default()
                }
                _ if name.starts_with("metadata.") => {
                    return Err(RuleError::WrongType { field, expected: "a string, number or boolean" });
                }
                _ => return Err(RuleError::WrongType { field, expected: "a string" }),
            };
            pairs.push((name.clone(), text));
        }
        let (query, _) = veritrail_query::parse_params(&pairs).map_err(|error| {
            let field = child_path(path, &error.param);
            if error.message.starts_with("unknown query parameter") {
                RuleError::UnknownField { field }
            } else {
                RuleError::InvalidFilter { field, message: error.message }
            }
        })?;
        let beyond_action = !EventQuery { actions: Vec::new(), ..query.clone() }.is_empty();
        Ok(When { filters: filters.clone(), query, beyond_action })
    }

    /// Whether the event matches. `action` is the view's action, looked up once per event: most
    /// events fail on it, without the other lookups `EventQuery::matches` makes.
    fn matches(&self, view: &Value, action: &str) -> bool {
        self.admits_action(action) && (!self.beyond_action || self.query.matches(view))
    }

    /// Whether the action filter (if any) admits `action`: an event with another action never
    /// matches, whatever else it holds.
    pub(crate) fn admits_action(&self, action: &str) -> bool {
        let actions = &self.query.actions;
        actions.is_empty() || actions.iter().any(|pattern| pattern.matches(action))
    }

    /// True when the filter looks at more than the action.
    pub(crate) fn beyond_action(&self) -> bool {
        self.beyond_action
    }
}

/// `field_matches`: some value at one of `fields` matches one of `patterns` (case-insensitive
/// globs). For what the query language's exact filters cannot say, e.g. "a role that looks
/// like admin, wherever the event puts it".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMatches {
    fields: Vec<FieldPath>,
    patterns: Vec<ValuePattern>,
}

impl FieldMatches {
    /// The paths looked at (arrays looked through).
    pub fn fields(&self) -> &[FieldPath] {
        &self.fields
    }

    /// The patterns, any of which may match.
    pub fn patterns(&self) -> &[ValuePattern] {
        &self.patterns
    }

    /// Whether some value at one of the fields matches some pattern.
    pub fn matches(&self, view: &Value) -> bool {
        self.fields.iter().any(|field| field.any_str(view, &mut |value| self.patterns.iter().any(|p| p.matches(value))))
    }

    fn parse(value: &Value, path: &str) -> Result<FieldMatches> {
        let obj = Obj::open(value, path, &["fields", "patterns"])?;
        let mut fields = Vec::new();
        for (field, text) in obj.optional_str_array("fields", MAX_MATCH_FIELDS)?.unwrap_or_default() {
            fields.push(FieldPath::parse(&field, text)?);
        }
        let mut patterns = Vec::new();
        for (field, text) in obj.optional_str_array("patterns", MAX_MATCH_PATTERNS)?.unwrap_or_default() {
            patterns.push(ValuePattern::parse(&field, text)?);
        }
        if fields.is_empty() {
            return Err(RuleError::MissingField { field: obj.path_of("fields") });
        }
        if patterns.is_empty() {
            return Err(RuleError::MissingField { field: obj.path_of("patterns") });
        }
        Ok(FieldMatches { fields, patterns })
    }

    fn to_json(&self) -> Value {
        json!({
            "fields": self.fields.iter().map(FieldPath::as_str).collect::<Vec<_>>(),
            "patterns": self.patterns.iter().map(ValuePattern::as_str).collect::<Vec<_>>(),
        })
    }
}

/// How `group_by` paths form groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GroupMode {
    /// `combined` (default): one group per combination of the values (SQL `GROUP BY a, b`).
    #[default]
    Combined,
    /// `each` (threshold rules only): every path is its own grouping, so an event counts towards
    /// its actor's group and towards its IP's group ("one actor or one IP").
    Each,
}

/// The `threshold` of a threshold rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// `{"count": N, "window": "10m"}`: N matching events within the window.
    Count {
        /// At least this many events (1 to [`MAX_THRESHOLD_COUNT`]).
        count: u32,
        /// The sliding window.
        window: Window,
    },
    /// `{"sum": "metadata.record_count", "over": 10000, "window": "1h"}`: the values add up to
    /// at least `over` within the window. An event without a number there counts as `default`
    /// when one is given, else not at all; negative values never count.
    Sum {
        /// The `metadata.…` path summed.
        field: FieldPath,
        /// Fires when the sum reaches this (> 0).
        over: f64,
        /// The value of an event that has no number at `field`.
        default: Option<f64>,
        /// The sliding window.
        window: Window,
    },
}

impl Threshold {
    /// The sliding window.
    pub fn window(&self) -> Window {
        match self {
            Threshold::Count { window, .. } | Threshold::Sum { window, .. } => *window,
        }
    }

    fn parse(value: &Value, path: &str) -> Result<Threshold> {
        let obj = Obj::open(value, path, &["count", "sum", "over", "default", "window"])?;
        let window =
            Window::parse(&obj.path_of("window"), obj.required_str("window")?, limits(THRESHOLD_WINDOW_LIMITS))?;
        if obj.has("count") {
            for key in ["sum", "over", "default"] {
                if obj.has(key) {
                    return Err(RuleError::conflict(obj.path_of(key), "a threshold has either count or sum"));
                }
            }
            let count = obj.optional_u64("count", 1, u64::from(MAX_THRESHOLD_COUNT))?.unwrap_or(1) as u32;
            return Ok(Threshold::Count { count, window });
        }
        if !obj.has("sum") {
            return Err(RuleError::invalid(path, "a threshold needs either count or sum"));
        }
        let field = FieldPath::parse(&obj.path_of("sum"), obj.required_str("sum")?)?;
        if !field.is_metadata() {
            return Err(RuleError::invalid(
                obj.path_of("sum"),
                "sums add up a numeric metadata value, e.g. \"metadata.record_count\"",
            ));
        }
        let over = obj.optional_f64("over")?.ok_or_else(|| RuleError::MissingField { field: obj.path_of("over") })?;
        if over <= 0.0 {
            return Err(RuleError::invalid(obj.path_of("over"), "must be greater than 0"));
        }
        let default = obj.optional_f64("default")?;
        if default.is_some_and(|d| d < 0.0) {
            return Err(RuleError::invalid(obj.path_of("default"), "must not be negative"));
        }
        Ok(Threshold::Sum { field, over, default, window })
    }

    fn to_json(&self) -> Value {
        match self {
            Threshold::Count { count, window } => json!({"count": count, "window": window.to_string()}),
            Threshold::Sum { field, over, default, window } => {
                let mut out = json!({"sum": field.as_str(), "over": number(*over), "window": window.to_string()});
                if let Some(default) = default {
                    out["default"] = number(*default);
                }
                out
            }
        }
    }
}

/// Integral values print as integers (`10000`, not `10000.0`), so rules round-trip as written.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 { json!(value as i64) } else { json!(value) }
}

/// The `new_value` of a new-value rule: fires when a group sees a value at `field` that it has
/// not seen within `lookback` (a login from a new country or IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewValue {
    field: FieldPath,
    lookback: Window,
}

impl NewValue {
    /// The watched path, e.g. `context.ip`.
    pub fn field(&self) -> &FieldPath {
        &self.field
    }

    /// How long a value stays known.
    pub fn lookback(&self) -> Window {
        self.lookback
    }

    fn parse(value: &Value, path: &str) -> Result<NewValue> {
        let obj = Obj::open(value, path, &["field", "lookback"])?;
        let field = FieldPath::parse(&obj.path_of("field"), obj.required_str("field")?)?;
        let lookback =
            Window::parse(&obj.path_of("lookback"), obj.required_str("lookback")?, limits(NEW_VALUE_LOOKBACK_LIMITS))?;
        Ok(NewValue { field, lookback })
    }
}

/// The `silence` of a silence rule: fires when a group (by default a source,
/// `metadata.source.service`) that sent matching events has sent none for longer than `window`
/// (PCI DSS 10.7: failure of logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    window: Window,
}

impl Silence {
    /// How long a group may be quiet.
    pub fn window(&self) -> Window {
        self.window
    }

    fn parse(value: &Value, path: &str) -> Result<Silence> {
        let obj = Obj::open(value, path, &["window"])?;
        let window = Window::parse(&obj.path_of("window"), obj.required_str("window")?, limits(SILENCE_WINDOW_LIMITS))?;
        Ok(Silence { window })
    }
}

/// What makes a rule fire, decided by which of `threshold`, `new_value`, `silence` it has.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// None of them: fires for every matching event.
    Match,
    /// `threshold`: fires once per burst when a group's matching events reach the threshold
    /// within the sliding window.
    Threshold(Threshold),
    /// `new_value`: fires when a group sees a value it has not seen within the lookback.
    NewValue(NewValue),
    /// `silence`: fires when a group has sent no matching event for the window.
    Silence(Silence),
}

/// What a tenant writes to create or replace a rule: everything but the id and version.
/// Construct with [`RuleSpec::from_json`]; every instance is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    name: String,
    description: Option<String>,
    severity: Severity,
    enabled: bool,
    when: When,
    field_matches: Option<FieldMatches>,
    outside_hours: Option<BusinessHours>,
    group_by: Vec<FieldPath>,
    group_mode: GroupMode,
    kind: RuleKind,
}

impl RuleSpec {
    /// Validates a rule as written by a tenant. Unknown fields, wrong types, invalid filters,
    /// windows, time zones and fields that do not apply to the rule's kind are errors naming the
    /// field.
    pub fn from_json(value: &Value) -> std::result::Result<RuleSpec, RuleError> {
        RuleSpec::parse(&Obj::open(value, "", SPEC_FIELDS)?)
    }

    /// The rule as JSON, in the form [`RuleSpec::from_json`] reads.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        if let Some(description) = &self.description {
            out.insert("description".into(), json!(description));
        }
        out.insert("severity".into(), json!(self.severity.as_str()));
        out.insert("enabled".into(), json!(self.enabled));
        if !self.when.filters.is_empty() {
            out.insert("when".into(), Value::Object(self.when.filters.clone()));
        }
        if let Some(field_matches) = &self.field_matches {
            out.insert("field_matches".into(), field_matches.to_json());
        }
        if let Some(hours) = &self.outside_hours {
            out.insert("outside_hours".into(), hours.to_json());
        }
        if self.kind != RuleKind::Match {
            out.insert("group_by".into(), json!(self.group_by.iter().map(FieldPath::as_str).collect::<Vec<_>>()));
        }
        if self.group_mode == GroupMode::Each {
            out.insert("group_mode".into(), json!("each"));
        }
        match &self.kind {
            RuleKind::Match => {}
            RuleKind::Threshold(threshold) => {
                out.insert("threshold".into(), threshold.to_json());
            }
            RuleKind::NewValue(new_value) => {
                let value = json!({"field": new_value.field.as_str(), "lookback": new_value.lookback.to_string()});
                out.insert("new_value".into(), value);
            }
            RuleKind::Silence(silence) => {
                out.insert("silence".into(), json!({"window": silence.window.to_string()}));
            }
        }
        Value::Object(out)
    }

    fn parse(obj: &Obj<'_>) -> Result<RuleSpec> {
        let name = obj.required_str("name")?;
        if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(RuleError::invalid(obj.path_of("name"), format!("must be 1 to {MAX_NAME_CHARS} characters")));
        }
        let description = obj.optional_str("description")?;
        if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
            return Err(RuleError::invalid(
                obj.path_of("description"),
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        let severity = Severity::parse(&obj.path_of("severity"), obj.required_str("severity")?)?;
        let enabled = obj.optional_bool("enabled")?.unwrap_or(true);
        let when = match obj.get("when") {
            Some(value) => When::parse(value, &obj.path_of("when"))?,
            None => When { filters: Map::new(), query: EventQuery::default(), beyond_action: false },
        };
        let field_matches =
            obj.get("field_matches").map(|v| FieldMatches::parse(v, &obj.path_of("field_matches"))).transpose()?;
        let outside_hours =
            obj.get("outside_hours").map(|v| BusinessHours::parse(v, &obj.path_of("outside_hours"))).transpose()?;

        let mut kind = RuleKind::Match;
        let mut kind_key: Option<&str> = None;
        for key in ["threshold", "new_value", "silence"] {
            let Some(value) = obj.get(key) else {
                continue;
            };
            if let Some(first) = kind_key {
                return Err(RuleError::conflict(obj.path_of(key), format!("cannot be combined with {first}")));
            }
            kind_key = Some(key);
            let path = obj.path_of(key);
            kind = match key {
                "threshold" => RuleKind::Threshold(Threshold::parse(value, &path)?),
                "new_value" => RuleKind::NewValue(NewValue::parse(value, &path)?),
                _ => RuleKind::Silence(Silence::parse(value, &path)?),
            };
        }

        let group_by_given = obj.optional_str_array("group_by", MAX_GROUP_BY)?;
        let mut group_by = Vec::new();
        for (field, text) in group_by_given.iter().flatten() {
            let path = FieldPath::parse(field, text)?;
            if group_by.contains(&path) {
                return Err(RuleError::invalid(field.as_str(), format!("{text:?} is listed twice")));
            }
            group_by.push(path);
        }
        let group_mode = match obj.optional_str("group_mode")? {
            None | Some("combined") => GroupMode::Combined,
            Some("each") => GroupMode::Each,
            Some(other) => {
                return Err(RuleError::invalid(
                    obj.path_of("group_mode"),
                    format!("must be \"combined\" or \"each\", not {other:?}"),
                ));
            }
        };

        match &kind {
            RuleKind::Match => {
                for key in ["group_by", "group_mode"] {
                    if obj.has(key) {
                        return Err(RuleError::conflict(
                            obj.path_of(key),
                            "a match rule fires for every matching event; only threshold, new_value and silence rules group",
                        ));
                    }
                }
                if when.filters.is_empty() && field_matches.is_none() && outside_hours.is_none() {
                    return Err(RuleError::invalid(
                        obj.path_of("when"),
                        "a match rule needs at least one filter (it would fire for every event)",
                    ));
                }
            }
            RuleKind::Threshold(_) => {}
            RuleKind::NewValue(_) | RuleKind::Silence(_) => {
                if group_mode == GroupMode::Each {
                    return Err(RuleError::conflict(
                        obj.path_of("group_mode"),
                        "only threshold rules can group by each field separately",
                    ));
                }
            }
        }
        if matches!(kind, RuleKind::Silence(_)) {
            if obj.has("outside_hours") {
                return Err(RuleError::conflict(
                    obj.path_of("outside_hours"),
                    "a silence rule fires on the absence of events, which has no time of day",
                ));
            }
            if group_by_given.is_none() {
                group_by.push(FieldPath::parse("group_by[0]", DEFAULT_SILENCE_GROUP_BY)?);
            }
        }

        Ok(RuleSpec {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            severity,
            enabled,
            when,
            field_matches,
            outside_hours,
            group_by,
            group_mode,
            kind,
        })
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The optional description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The severity of its alerts.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Whether the engine runs it (`enabled`, default true).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The event filter.
    pub fn when(&self) -> &When {
        &self.when
    }

    /// The optional pattern condition.
    pub fn field_matches(&self) -> Option<&FieldMatches> {
        self.field_matches.as_ref()
    }

    /// The business hours outside which events count, if the rule has `outside_hours`.
    pub fn outside_hours(&self) -> Option<&BusinessHours> {
        self.outside_hours.as_ref()
    }

    /// The grouping paths (for a silence rule without `group_by`: `metadata.source.service`).
    pub fn group_by(&self) -> &[FieldPath] {
        &self.group_by
    }

    /// How the grouping paths form groups.
    pub fn group_mode(&self) -> GroupMode {
        self.group_mode
    }

    /// What makes the rule fire.
    pub fn kind(&self) -> &RuleKind {
        &self.kind
    }

    pub(crate) fn set_outside_hours(&mut self, hours: BusinessHours) {
        self.outside_hours = Some(hours);
    }

    /// The paths into an event's view that evaluating this rule reads besides the engine's own
    /// members ([`crate::INPUT_MEMBERS`]): dotted paths such as `metadata.source.service` (the
    /// value there, with all below it) or whole top-level members; `None` when `when` filters
    /// beyond the action (a query may read any member). Kept in step with what
    /// `Engine::process` reads: `when`'s action, `field_matches` fields, `group_by` paths, the
    /// summed or watched field, and what a match rule's summary names (`actor.id`,
    /// `resource.type`, `resource.id`).
    pub(crate) fn paths_read(&self) -> Option<Vec<&str>> {
        if self.when.beyond_action() {
            return None;
        }
        let mut paths: Vec<&str> = Vec::new();
        let mut add = |path| {
            if !paths.contains(&path) {
                paths.push(path);
            }
        };
        self.group_by.iter().for_each(|path| add(path.as_str()));
        if let Some(matches) = &self.field_matches {
            matches.fields().iter().for_each(|path| add(path.as_str()));
        }
        match &self.kind {
            RuleKind::Match => ["actor.id", "resource.type", "resource.id"].into_iter().for_each(&mut add),
            RuleKind::Threshold(Threshold::Sum { field, .. }) => add(field.as_str()),
            RuleKind::NewValue(new_value) => add(new_value.field().as_str()),
            RuleKind::Threshold(Threshold::Count { .. }) | RuleKind::Silence(_) => {}
        }
        Some(paths)
    }

    /// Whether an event (its view, its action and its event time) satisfies every condition of
    /// the rule: `when`, `field_matches` and `outside_hours`.
    pub(crate) fn accepts(&self, view: &Value, action: &str, at: jiff::Timestamp) -> bool {
        self.when.matches(view, action)
            && self.field_matches.as_ref().is_none_or(|m| m.matches(view))
            && self.outside_hours.as_ref().is_none_or(|hours| !hours.contains(at))
    }
}

impl Serialize for RuleSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RuleSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RuleSpec, D::Error> {
        RuleSpec::from_json(&Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A stored rule: a [`RuleSpec`] with its stable id and version.
///
/// `version` starts at 1 and goes up by one with every change ([`Rule::updated`],
/// [`Rule::with_enabled`]); firings carry it. `effective_from_seq` is the first ledger `seq` the
/// rule evaluates: the server sets it to its next unevaluated seq whenever it creates or
/// changes a rule, so that a replay after a restart applies each rule version to exactly the
/// events the live engine applied it to (0, the default, means all events).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    id: RuleId,
    version: u32,
    effective_from_seq: u64,
    spec: RuleSpec,
}

impl Rule {
    /// A new rule at version 1, effective from seq 0.
    pub fn new(id: RuleId, spec: RuleSpec) -> Rule {
        Rule { id, version: 1, effective_from_seq: 0, spec }
    }

    /// The next version of this rule with a new spec.
    pub fn updated(&self, spec: RuleSpec) -> Rule {
        Rule {
            id: self.id.clone(),
            version: self.version.saturating_add(1),
            effective_from_seq: self.effective_from_seq,
            spec,
        }
    }

    /// The next version with `enabled` set (the same version when it is already so).
    pub fn with_enabled(&self, enabled: bool) -> Rule {
        if self.spec.enabled == enabled {
            return self.clone();
        }
        let mut spec = self.spec.clone();
        spec.enabled = enabled;
        self.updated(spec)
    }

    /// The same version, enabled and evaluating every event: what a dry run runs.
    pub(crate) fn for_dry_run(&self) -> Rule {
        let mut rule = self.clone();
        rule.spec.enabled = true;
        rule.effective_from_seq = 0;
        rule
    }

    /// This rule, evaluated from ledger seq `seq` on.
    pub fn effective_from(mut self, seq: u64) -> Rule {
        self.effective_from_seq = seq;
        self
    }

    /// The stable id.
    pub fn id(&self) -> &RuleId {
        &self.id
    }

    /// The version (1, 2, …).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The first ledger seq this version evaluates.
    pub fn effective_from_seq(&self) -> u64 {
        self.effective_from_seq
    }

    /// The rule's definition.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Reads a stored rule: the spec's fields plus `id`, `version` and optionally
    /// `effective_from_seq`.
    pub fn from_json(value: &Value) -> std::result::Result<Rule, RuleError> {
        let allowed: Vec<&str> = SPEC_FIELDS.iter().chain(RULE_ONLY_FIELDS).copied().collect();
        let obj = Obj::open(value, "", &allowed)?;
        let id = RuleId::parse_at("id", as_str(obj.required("id")?, "id")?)?;
        let version = obj.optional_u64("version", 1, u64::from(u32::MAX))?;
        let version = version.ok_or_else(|| RuleError::MissingField { field: "version".into() })? as u32;
        let effective_from_seq = obj.optional_u64("effective_from_seq", 0, u64::MAX)?.unwrap_or(0);
        Ok(Rule { id, version, effective_from_seq, spec: RuleSpec::parse(&obj)? })
    }

    /// The stored form, read back by [`Rule::from_json`].
    pub fn to_json(&self) -> Value {
        let mut out = self.spec.to_json();
        out["id"] = json!(self.id.as_str());
        out["version"] = json!(self.version);
        if self.effective_from_seq > 0 {
            out["effective_from_seq"] = json!(self.effective_from_seq);
        }
        out
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Rule, D::Error> {
        Rule::from_json(&Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}
