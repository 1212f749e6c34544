//! The streaming engine: feed it committed events in `seq` order and clock ticks; it returns
//! [`Firing`]s. See the crate documentation for the time model and the restart protocol.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::path::FieldPath;
use crate::spec::{GroupMode, Rule, RuleId, RuleKind, Severity, Threshold};
use crate::threshold::{Burst, Entry, GroupWindow, Inserted};
use crate::window::{MICROS_PER_SECOND, Micros, Window, micros, timestamp};
use crate::{RuleError, path};

/// Most events listed in one firing: the first and the last half of them when there are more.
pub const MAX_FIRING_EVENTS: usize = 32;
/// How long an event's `occurred_at` may lag the engine's clock (the newest `received_at`) and
/// still count towards windows and new values, unless configured otherwise.
pub const DEFAULT_MAX_LATENESS: SignedDuration = SignedDuration::from_hours(1);

/// One committed event, as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventInput<'a> {
    /// The event as API readers see it (veritrail-model's opened record: SPEC §2 fields plus
    /// `id`, `seq`, `received_at`, …): what `when` filters and field paths are evaluated on.
    pub view: &'a Value,
    /// Its ledger position. The engine must be fed in increasing `seq` order.
    pub seq: u64,
    /// Its id, listed in firings.
    pub id: &'a str,
    /// When it happened, by the client's clock.
    pub occurred_at: Timestamp,
    /// When the server received it (the writer assigns these in `seq` order).
    pub received_at: Timestamp,
}

impl<'a> EventInput<'a> {
    /// Takes `seq`, `id`, `occurred_at` and `received_at` from the view itself.
    pub fn from_view(view: &'a Value) -> Result<EventInput<'a>, RuleError> {
        let invalid =
            |field: &str, message: &str| RuleError::InvalidEvent { field: field.into(), message: message.into() };
        let seq =
            view.get("seq").and_then(Value::as_u64).ok_or_else(|| invalid("seq", "must be a non-negative integer"))?;
        let id = view.get("id").and_then(Value::as_str).ok_or_else(|| invalid("id", "must be a string"))?;
        let time = |field: &str| -> Result<Timestamp, RuleError> {
            view.get(field)
                .and_then(Value::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| invalid(field, "must be an RFC 3339 timestamp"))
        };
        Ok(EventInput { view, seq, id, occurred_at: time("occurred_at")?, received_at: time("received_at")? })
    }
}

/// The top-level members of an event's view that the engine reads of every event:
/// [`EventInput::from_view`]'s and the action.
pub const INPUT_MEMBERS: [&str; 5] = ["action", "id", "occurred_at", "received_at", "seq"];

/// Of [`INPUT_MEMBERS`], the one [`Engine::process`] reads from the view itself; the others
/// it takes from [`EventInput`]'s fields. A reader that fills those fields itself (from the
/// record it holds) need put only this member in the view, beside [`Engine::needs`]' paths.
pub const VIEW_MEMBER: &str = "action";

/// What [`Engine::process`] may read of an event's view beyond [`INPUT_MEMBERS`] (see
/// [`Engine::needs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventNeeds<'e> {
    /// Any member: some rule that may accept the event reads more than named paths.
    View,
    /// What is below these paths at most: dotted paths into the view (`metadata.source.service`,
    /// `actor.id`) or whole top-level members (none: no rule can use the event, which then only
    /// moves the clock). A path reaching an array names the whole array.
    Paths(Vec<&'e str>),
}

/// The values that identify a group: `(path, value)` pairs such as `("actor.id", "user-1")`.
/// Empty for match rules and for rules without `group_by`. A new-value firing adds the new
/// value as a last pair. Values may be personal data (`context.ip`): stored alerts inherit the
/// sensitivity of the events they cite.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupKey(Vec<(String, String)>);

impl GroupKey {
    /// The `(path, value)` pairs.
    pub fn parts(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value for `path`, if it is part of the key.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, v)| v.as_str())
    }

    /// True for the single group of an ungrouped rule.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `{"actor.id": "user-1", …}`.
    pub fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(p, v)| (p.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("all events");
        }
        for (i, (path, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{path}={value}")?;
        }
        Ok(())
    }
}

/// A rule fired: what the server turns into a stored alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// The rule.
    pub rule_id: RuleId,
    /// The rule version that fired.
    pub rule_version: u32,
    /// The rule's severity.
    pub severity: Severity,
    /// The group that fired (see [`GroupKey`]).
    pub group_key: GroupKey,
    /// Ids of the events that made it fire, oldest first by seq; at most
    /// [`MAX_FIRING_EVENTS`] (the first and last halves when `event_count` is larger). For a
    /// silence firing: the last event before the silence.
    pub event_ids: Vec<String>,
    /// The seqs of those events, in the same order.
    pub event_seqs: Vec<u64>,
    /// How many events made it fire in all.
    pub event_count: u64,
    /// The event whose processing fired it; `None` for silence firings (found by a tick or by
    /// a later event moving the clock).
    pub trigger_seq: Option<u64>,
    /// When the condition began: the event time of the (first) event, or for a silence the
    /// `received_at` of the last event before it (PCI DSS 10.7.3 wants the start of a failure).
    pub started_at: Timestamp,
    /// When it fired: the trigger event's `received_at`, or the tick's time.
    pub fired_at: Timestamp,
    /// One line for humans, e.g. `brute force login attempts: 5 matching events within 10m for
    /// context.ip=203.0.113.7`.
    pub summary: String,
    /// Identifies the firing across replays: store alerts idempotently on it, so a firing that
    /// is derived again after a restart is not stored twice.
    pub dedup_key: String,
}

/// Memory bounds of the engine's state, per rule. Hitting one costs detections (counted in
/// [`EngineStats`]), never memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Groups one threshold, new-value or silence rule tracks. Past it, threshold and new-value
    /// rules forget the least recently active groups; silence rules ignore new sources.
    pub max_groups_per_rule: usize,
    /// Events one threshold group's window holds (at least `count + 1`); past it the oldest
    /// are dropped and late events before them are refused.
    pub max_entries_per_group: usize,
    /// Window entries (threshold) or known values (new-value) of one rule over all groups;
    /// past it the least recently active groups are forgotten.
    pub max_entries_per_rule: usize,
    /// Known values of one new-value group; past it the least recently seen is forgotten.
    pub max_values_per_group: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_groups_per_rule: 10_000,
            max_entries_per_group: 16_384,
            max_entries_per_rule: 200_000,
            max_values_per_group: 1_024,
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// How far an event's time may lag the engine clock and still count towards windows and
    /// new values (later ones still fire match rules). Part of the replay horizon.
    pub max_lateness: SignedDuration,
    /// Memory bounds.
    pub limits: StateLimits,
}

impl EngineConfig {
    /// `max_lateness` in microseconds, negative values read as zero.
    fn lateness_micros(&self) -> Micros {
        Micros::try_from(self.max_lateness.as_micros()).unwrap_or(Micros::MAX).max(0)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_lateness: DEFAULT_MAX_LATENESS, limits: StateLimits::default() }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events processed.
    pub events: u64,
    /// Firings returned.
    pub firings: u64,
    /// Events a windowed or new-value rule matched but that were older than the lateness limit.
    pub late_events: u64,
    /// Groups forgotten or refused because of [`StateLimits`].
    pub groups_dropped: u64,
    /// Window entries dropped because a group reached `max_entries_per_group`.
    pub entries_truncated: u64,
}

/// The rule engine of one tenant. Pure: no I/O, no clock of its own; deterministic.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    rules: Vec<ActiveRule>,
    /// The newest `received_at` seen (drives lateness and eviction; only events move it).
    event_clock: Option<Micros>,
    /// The newest tick (with `event_clock`, drives silence).
    tick_clock: Option<Micros>,
    stats: EngineStats,
}

#[derive(Debug)]
struct ActiveRule {
    rule: Rule,
    state: RuleState,
}

#[derive(Debug)]
enum RuleState {
    Match,
    Threshold(ThresholdState),
    NewValue(NewValueState),
    Silence(SilenceState),
}

impl Engine {
    /// An engine without rules.
    pub fn new(config: EngineConfig) -> Engine {
        Engine { config, rules: Vec::new(), event_clock: None, tick_clock: None, stats: EngineStats::default() }
    }

    /// Replaces the rule set. Disabled rules are left out. A rule whose id, version and
    /// `effective_from_seq` are unchanged keeps its state; a new or changed one starts empty.
    /// When ids repeat, the first wins.
    pub fn set_rules(&mut self, rules: impl IntoIterator<Item = Rule>) {
        let mut previous: HashMap<RuleId, ActiveRule> =
            self.rules.drain(..).map(|active| (active.rule.id().clone(), active)).collect();
        let mut seen = HashSet::new();
        for rule in rules {
            if !rule.spec().enabled() || !seen.insert(rule.id().clone()) {
                continue;
            }
            let active = match previous.remove(rule.id()) {
                Some(mut kept)
                    if kept.rule.version() == rule.version()
                        && kept.rule.effective_from_seq() == rule.effective_from_seq() =>
                {
                    kept.rule = rule;
                    kept
                }
                _ => ActiveRule::new(rule, &self.config),
            };
            self.rules.push(active);
        }
    }

    /// Takes `other`'s rules, with their state, in place of this engine's rules of the same ids
    /// (appended when new); the clocks become the later of both, the counters stay this
    /// engine's. For rules learnt of after this engine passed their `effective_from_seq`: an
    /// engine with the same config and only those rules, fed the events from there up to where
    /// this one stands, holds the state they would have had here from the start.
    pub fn adopt_rules(&mut self, other: Engine) {
        self.event_clock = self.event_clock.max(other.event_clock);
        self.tick_clock = self.tick_clock.max(other.tick_clock);
        for adopted in other.rules {
            match self.rules.iter_mut().find(|active| active.rule.id() == adopted.rule.id()) {
                Some(active) => *active = adopted,
                None => self.rules.push(adopted),
            }
        }
    }

    /// The rules being evaluated, in order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|active| &active.rule)
    }

    /// How far back, in `received_at`, a restarted engine must replay the ledger to continue
    /// exactly as an uninterrupted one: the longest of `window + max_lateness` (threshold),
    /// `lookback + max_lateness` (new-value) and `2 × window` (silence) over the rules.
    pub fn replay_horizon(&self) -> SignedDuration {
        let lateness = self.config.lateness_micros();
        let longest = self
            .rules
            .iter()
            .map(|active| match active.rule.spec().kind() {
                RuleKind::Match => 0,
                RuleKind::Threshold(threshold) => threshold.window().micros().saturating_add(lateness),
                RuleKind::NewValue(new_value) => new_value.lookback().micros().saturating_add(lateness),
                RuleKind::Silence(silence) => 2 * silence.window().micros(),
            })
            .max()
            .unwrap_or(0);
        SignedDuration::from_micros(longest)
    }

    /// What [`Engine::process`] may read of an event whose action is `action`: fed the event's
    /// view cut down to [`INPUT_MEMBERS`] (or to [`VIEW_MEMBER`] when the [`EventInput`]'s other
    /// fields are filled from elsewhere) and what is below these paths, the engine fires, keeps
    /// state and counts exactly as with the whole view. For readers that pay for every member
    /// they open: an event no rule's action filter admits needs nothing more (it still moves the
    /// clock and may let silences fire), and a rule filtering on the action alone reads only the
    /// paths it names (`RuleSpec::paths_read`) — `logging_stopped`, which sees every event, only
    /// `metadata.source.service`. A rule whose `when` filters on more than the action needs the
    /// whole view.
    pub fn needs(&self, action: &str) -> EventNeeds<'_> {
        let mut paths: Vec<&str> = Vec::new();
        for active in &self.rules {
            let spec = active.rule.spec();
            if !spec.when().admits_action(action) {
                continue;
            }
            let Some(read) = spec.paths_read() else {
                return EventNeeds::View;
            };
            for path in read {
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        EventNeeds::Paths(paths)
    }

    /// Evaluates one committed event (in `seq` order) against every rule.
    pub fn process(&mut self, event: &EventInput<'_>) -> Vec<Firing> {
        let mut firings = Vec::new();
        self.stats.events += 1;
        let received = micros(event.received_at);
        let clock = self.event_clock.map_or(received, |c| c.max(received));
        self.event_clock = Some(clock);
        let now = self.tick_clock.map_or(clock, |t| t.max(clock));
        // Windows run on occurred_at, but never later than received_at: a client clock that
        // runs ahead cannot push events into the future.
        let at = event.occurred_at.min(event.received_at);
        let time = micros(at);
        let action = event.view.get(VIEW_MEMBER).and_then(Value::as_str).unwrap_or("");
        let floor = clock.saturating_sub(self.config.lateness_micros());
        let late = time < floor;
        let mut counted_late = false;
        let mut ctx = Context { limits: &self.config.limits, floor, stats: &mut self.stats };
        for active in &mut self.rules {
            let rule = &active.rule;
            if let RuleState::Silence(state) = &mut active.state {
                state.advance(now, rule, &mut firings);
            }
            if event.seq < rule.effective_from_seq() || !rule.spec().accepts(event.view, action, at) {
                continue;
            }
            match &mut active.state {
                RuleState::Match => firings.push(match_firing(rule, event, at)),
                RuleState::Threshold(_) | RuleState::NewValue(_) if late => counted_late = true,
                RuleState::Threshold(state) => state.observe(rule, event, time, &mut ctx, &mut firings),
                RuleState::NewValue(state) => state.observe(rule, event, time, &mut ctx, &mut firings),
                RuleState::Silence(state) => state.observe(rule, event, received, &mut ctx),
            }
        }
        if counted_late {
            self.stats.late_events += 1;
        }
        self.stats.firings += firings.len() as u64;
        firings
    }

    /// Evaluates an event during a replay after a restart: updates state exactly like
    /// [`Engine::process`] and drops the firings (they were delivered before the restart).
    pub fn replay(&mut self, event: &EventInput<'_>) {
        let firings = self.process(event);
        self.stats.firings -= firings.len() as u64;
    }

    /// Tells the engine that every event received before `now` has been processed, and returns
    /// the silences that are due. Call it periodically (e.g. every few seconds) with the
    /// server's clock, never ahead of events still on their way to the engine.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Firing> {
        let mut firings = Vec::new();
        let tick = micros(now);
        let tick = self.tick_clock.map_or(tick, |t| t.max(tick));
        self.tick_clock = Some(tick);
        let now = self.event_clock.map_or(tick, |c| c.max(tick));
        for active in &mut self.rules {
            if let RuleState::Silence(state) = &mut active.state {
                state.advance(now, &active.rule, &mut firings);
            }
        }
        self.stats.firings += firings.len() as u64;
        firings
    }

    /// The counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Window entries, known values and watched sources held in memory, over all rules.
    pub fn state_size(&self) -> usize {
        self.rules
            .iter()
            .map(|active| match &active.state {
                RuleState::Match => 0,
                RuleState::Threshold(state) => state.total_entries,
                RuleState::NewValue(state) => state.total_values,
                RuleState::Silence(state) => state.groups.len(),
            })
            .sum()
    }
}

impl ActiveRule {
    fn new(rule: Rule, config: &EngineConfig) -> ActiveRule {
        let state = match rule.spec().kind() {
            RuleKind::Match => RuleState::Match,
            RuleKind::Threshold(threshold) => RuleState::Threshold(ThresholdState::new(threshold, &config.limits)),
            RuleKind::NewValue(new_value) => RuleState::NewValue(NewValueState {
                lookback: new_value.lookback().micros(),
                groups: HashMap::new(),
                total_values: 0,
                next_sweep: Micros::MIN,
            }),
            RuleKind::Silence(silence) => RuleState::Silence(SilenceState {
                window: silence.window().micros(),
                groups: HashMap::new(),
                next_due: Micros::MAX,
            }),
        };
        ActiveRule { rule, state }
    }
}

/// What observing an event needs besides the rule and its state.
struct Context<'a> {
    limits: &'a StateLimits,
    /// Events older than this are late; state older than this minus a window is dead.
    floor: Micros,
    stats: &'a mut EngineStats,
}

/// Joins the values of a multi-path group into one map key.
const SEPARATOR: char = '\u{1f}';

/// The map key of an event's combined group: its one value (borrowed from the view, so the
/// common lookup allocates nothing), or the values joined by [`SEPARATOR`]; `None` when a
/// value is missing.
fn combined_group<'v>(paths: &[FieldPath], view: &'v Value) -> Option<Cow<'v, str>> {
    match paths {
        [] => Some(Cow::Borrowed("")),
        [path] => path.text_in(view),
        _ => {
            let mut key = String::new();
            for (i, path) in paths.iter().enumerate() {
                if i > 0 {
                    key.push(SEPARATOR);
                }
                let value = path.text_in(view)?;
                key.extend(value.chars().map(|c| if c == SEPARATOR { char::REPLACEMENT_CHARACTER } else { c }));
            }
            Some(Cow::Owned(key))
        }
    }
}

/// The [`GroupKey`] of a map key made by [`combined_group`].
fn group_key(paths: &[FieldPath], key: &str) -> GroupKey {
    let parts = match paths {
        [] => Vec::new(),
        [path] => vec![(path.as_str().to_owned(), key.to_owned())],
        _ => paths.iter().map(|p| p.as_str().to_owned()).zip(key.split(SEPARATOR).map(str::to_owned)).collect(),
    };
    GroupKey(parts)
}

/// Caps the listed events at [`MAX_FIRING_EVENTS`]: the first and the last half.
fn cite(mut events: Vec<(u64, Box<str>)>) -> (Vec<u64>, Vec<String>, u64) {
    let count = events.len() as u64;
    if events.len() > MAX_FIRING_EVENTS {
        let half = MAX_FIRING_EVENTS / 2;
        events.drain(half..events.len() - half);
    }
    (events.iter().map(|e| e.0).collect(), events.into_iter().map(|e| e.1.into()).collect(), count)
}

fn base_firing(rule: &Rule, group_key: GroupKey, events: Vec<(u64, Box<str>)>) -> Firing {
    let (event_seqs, event_ids, event_count) = cite(events);
    Firing {
        rule_id: rule.id().clone(),
        rule_version: rule.version(),
        severity: rule.spec().severity(),
        group_key,
        event_ids,
        event_seqs,
        event_count,
        trigger_seq: None,
        started_at: Timestamp::UNIX_EPOCH,
        fired_at: Timestamp::UNIX_EPOCH,
        summary: String::new(),
        dedup_key: String::new(),
    }
}

fn triggered(mut firing: Firing, event: &EventInput<'_>, started_at: Timestamp, summary: String) -> Firing {
    firing.dedup_key = format!("{}:{}", firing.rule_id, event.seq);
    firing.trigger_seq = Some(event.seq);
    firing.started_at = started_at;
    firing.fired_at = event.received_at;
    firing.summary = summary;
    firing
}

fn match_firing(rule: &Rule, event: &EventInput<'_>, at: Timestamp) -> Firing {
    let view = event.view;
    let text = |path: &[&str]| {
        let mut value = view;
        for key in path {
            value = value.get(key)?;
        }
        value.as_str()
    };
    let mut summary = format!("{}: {}", rule.spec().name(), text(&["action"]).unwrap_or("event"));
    if let Some(actor) = text(&["actor", "id"]) {
        summary.push_str(&format!(" by {actor}"));
    }
    if let (Some(kind), Some(id)) = (text(&["resource", "type"]), text(&["resource", "id"])) {
        summary.push_str(&format!(" on {kind} {id}"));
    }
    if let Some(hours) = rule.spec().outside_hours() {
        summary.push_str(&format!(" at {} (outside business hours)", hours.local_text(at)));
    }
    let firing = base_firing(rule, GroupKey::default(), vec![(event.seq, event.id.into())]);
    triggered(firing, event, at, summary)
}

/// How a threshold rule weighs an event.
#[derive(Debug)]
enum Measure {
    Count,
    Sum { field: FieldPath, default: Option<f64> },
}

#[derive(Debug)]
struct ThresholdGroup {
    key: GroupKey,
    window: GroupWindow,
}

#[derive(Debug)]
struct ThresholdState {
    window_text: Window,
    window: Micros,
    threshold: f64,
    measure: Measure,
    max_entries_per_group: usize,
    groups: HashMap<String, ThresholdGroup>,
    total_entries: usize,
    next_sweep: Micros,
}

impl ThresholdState {
    fn new(threshold: &Threshold, limits: &StateLimits) -> ThresholdState {
        let (measure, level, cap) = match threshold {
            Threshold::Count { count, .. } => {
                (Measure::Count, f64::from(*count), limits.max_entries_per_group.max(*count as usize + 1))
            }
            Threshold::Sum { field, over, default, .. } => {
                (Measure::Sum { field: field.clone(), default: *default }, *over, limits.max_entries_per_group.max(1))
            }
        };
        ThresholdState {
            window_text: threshold.window(),
            window: threshold.window().micros(),
            threshold: level,
            measure,
            max_entries_per_group: cap,
            groups: HashMap::new(),
            total_entries: 0,
            next_sweep: Micros::MIN,
        }
    }

    fn observe(
        &mut self,
        rule: &Rule,
        event: &EventInput<'_>,
        time: Micros,
        ctx: &mut Context<'_>,
        out: &mut Vec<Firing>,
    ) {
        let weight = match &self.measure {
            Measure::Count => 1.0,
            Measure::Sum { field, default } => match field.number_in(event.view) {
                Some(value) if value >= 0.0 && value.is_finite() => value,
                Some(_) => return,
                None => match default {
                    Some(default) => *default,
                    None => return,
                },
            },
        };
        let spec = rule.spec();
        let mut bursts: Vec<(GroupKey, Burst)> = Vec::new();
        let mut refused = false;
        match spec.group_mode() {
            GroupMode::Combined => {
                if let Some(key) = combined_group(spec.group_by(), event.view) {
                    match self.insert(&key, || group_key(spec.group_by(), &key), time, weight, event, ctx) {
                        Inserted::Fired(burst) => bursts.push(burst),
                        Inserted::TooLate => refused = true,
                        Inserted::Counted => {}
                    }
                }
            }
            GroupMode::Each => {
                for (i, path) in spec.group_by().iter().enumerate() {
                    let Some(value) = path.text_in(event.view) else {
                        continue;
                    };
                    let key = format!("{i}{SEPARATOR}{value}");
                    let make_key = || GroupKey(vec![(path.as_str().to_owned(), value.to_string())]);
                    match self.insert(&key, make_key, time, weight, event, ctx) {
                        Inserted::Fired(burst) => bursts.push(burst),
                        Inserted::TooLate => refused = true,
                        Inserted::Counted => {}
                    }
                }
            }
        }
        if refused {
            ctx.stats.late_events += 1;
        }
        self.maintain(ctx);
        if !bursts.is_empty() {
            out.push(self.firing(rule, event, bursts));
        }
    }

    fn insert(
        &mut self,
        key: &str,
        make_key: impl FnOnce() -> GroupKey,
        time: Micros,
        weight: f64,
        event: &EventInput<'_>,
        ctx: &mut Context<'_>,
    ) -> Inserted<(GroupKey, Burst)> {
        if !self.groups.contains_key(key) {
            self.groups.insert(key.to_owned(), ThresholdGroup { key: make_key(), window: GroupWindow::default() });
        }
        let Some(group) = self.groups.get_mut(key) else {
            return Inserted::Counted;
        };
        let mut dropped = group.window.evict_before(ctx.floor.saturating_sub(self.window));
        let inserted =
            group.window.insert(Entry::new(time, event.seq, weight, event.id), self.window, self.threshold, false);
        let truncated = group.window.truncate_to(self.max_entries_per_group);
        ctx.stats.entries_truncated += truncated as u64;
        dropped += truncated;
        if inserted != Inserted::TooLate {
            self.total_entries += 1;
        }
        self.total_entries = self.total_entries.saturating_sub(dropped);
        match inserted {
            Inserted::Fired(burst) => Inserted::Fired((group.key.clone(), burst)),
            Inserted::Counted => Inserted::Counted,
            Inserted::TooLate => Inserted::TooLate,
        }
    }

    /// Drops dead state now and then, and forgets the least recently active groups when over
    /// the limits. Dead state (older than the lateness floor minus the window) can no longer
    /// change any decision, so sweeping never changes what fires.
    fn maintain(&mut self, ctx: &mut Context<'_>) {
        let limits = ctx.limits;
        let over = self.groups.len() > limits.max_groups_per_rule || self.total_entries > limits.max_entries_per_rule;
        if !over && ctx.floor < self.next_sweep {
            return;
        }
        let keep_from = ctx.floor.saturating_sub(self.window);
        let mut total = 0;
        self.groups.retain(|_, group| {
            group.window.evict_before(keep_from);
            total += group.window.len();
            group.window.len() > 0
        });
        self.total_entries = total;
        self.next_sweep = ctx.floor.saturating_add(self.window.max(60 * MICROS_PER_SECOND));
        let max_groups = limits.max_groups_per_rule;
        let max_entries = limits.max_entries_per_rule;
        if self.groups.len() > max_groups || self.total_entries > max_entries {
            let mut by_age: Vec<(Micros, String)> = self
                .groups
                .iter()
                .map(|(key, group)| (group.window.newest().unwrap_or(Micros::MIN), key.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, key) in by_age {
                if self.groups.len() <= max_groups * 9 / 10 && self.total_entries <= max_entries * 9 / 10 {
                    break;
                }
                if let Some(group) = self.groups.remove(&key) {
                    self.total_entries -= group.window.len();
                    ctx.stats.groups_dropped += 1;
                }
            }
        }
    }

    fn firing(&self, rule: &Rule, event: &EventInput<'_>, bursts: Vec<(GroupKey, Burst)>) -> Firing {
        let started_at = bursts.iter().map(|(_, b)| b.started_at).min().unwrap_or(0);
        let total = bursts.iter().map(|(_, b)| b.total).fold(0.0, f64::max);
        let mut parts = Vec::new();
        let mut events = Vec::new();
        for (key, burst) in bursts {
            parts.extend(key.0);
            events.extend(burst.events);
        }
        events.sort_unstable_by_key(|e| e.0);
        events.dedup_by_key(|e| e.0);
        let group = GroupKey(parts);
        let spec = rule.spec();
        let window = self.window_text;
        let summary = match &self.measure {
            Measure::Count => format!("{}: {} matching events within {window} for {group}", spec.name(), events.len()),
            Measure::Sum { field, .. } => {
                format!(
                    "{}: {field} reached {total} (threshold {}) within {window} for {group}",
                    spec.name(),
                    self.threshold
                )
            }
        };
        triggered(base_firing(rule, group, events), event, timestamp(started_at), summary)
    }
}

#[derive(Debug)]
struct ValueGroup {
    key: GroupKey,
    /// Newest sighting of any value.
    last_seen: Micros,
    /// Newest sighting of each value.
    values: HashMap<String, Micros>,
}

#[derive(Debug)]
struct NewValueState {
    lookback: Micros,
    groups: HashMap<String, ValueGroup>,
    total_values: usize,
    next_sweep: Micros,
}

impl NewValueState {
    /// A value is new for a group at time t when the group has some sighting within
    /// `[t - lookback, …)` (it has a baseline: brand-new groups learn silently) but not of this
    /// value. Sightings later than t count too, so a late event never re-announces a value
    /// already seen. Decided from timestamps alone, so sweeping and replays agree.
    fn observe(
        &mut self,
        rule: &Rule,
        event: &EventInput<'_>,
        time: Micros,
        ctx: &mut Context<'_>,
        out: &mut Vec<Firing>,
    ) {
        let spec = rule.spec();
        let RuleKind::NewValue(new_value) = spec.kind() else {
            return;
        };
        let Some(key) = combined_group(spec.group_by(), event.view) else {
            return;
        };
        let Some(value) = new_value.field().text_in(event.view) else {
            return;
        };
        let since = time.saturating_sub(self.lookback);
        if !self.groups.contains_key(key.as_ref()) {
            let group =
                ValueGroup { key: group_key(spec.group_by(), &key), last_seen: Micros::MIN, values: HashMap::new() };
            self.groups.insert(key.to_string(), group);
        }
        let Some(group) = self.groups.get_mut(key.as_ref()) else {
            return;
        };
        let has_baseline = group.last_seen >= since;
        let known = group.values.get(value.as_ref()).is_some_and(|&seen| seen >= since);
        if has_baseline && !known {
            let mut key = group.key.clone();
            key.0.push((new_value.field().as_str().to_owned(), value.to_string()));
            let summary = format!(
                "{}: new {} {value} for {} (not seen within {})",
                spec.name(),
                new_value.field(),
                group.key,
                new_value.lookback()
            );
            let firing = base_firing(rule, key, vec![(event.seq, event.id.into())]);
            out.push(triggered(firing, event, timestamp(time), summary));
        }
        group.last_seen = group.last_seen.max(time);
        match group.values.get_mut(value.as_ref()) {
            Some(seen) => *seen = (*seen).max(time),
            None => {
                group.values.insert(value.into_owned(), time);
                self.total_values += 1;
            }
        }
        if group.values.len() > ctx.limits.max_values_per_group
            && let Some(oldest) = group.values.iter().min_by_key(|(_, seen)| **seen).map(|(v, _)| v.clone())
        {
            group.values.remove(&oldest);
            self.total_values -= 1;
        }
        self.maintain(ctx);
    }

    fn maintain(&mut self, ctx: &mut Context<'_>) {
        let limits = ctx.limits;
        let over = self.groups.len() > limits.max_groups_per_rule || self.total_values > limits.max_entries_per_rule;
        if !over && ctx.floor < self.next_sweep {
            return;
        }
        let keep_from = ctx.floor.saturating_sub(self.lookback);
        let mut total = 0;
        self.groups.retain(|_, group| {
            group.values.retain(|_, seen| *seen >= keep_from);
            total += group.values.len();
            !group.values.is_empty()
        });
        self.total_values = total;
        self.next_sweep = ctx.floor.saturating_add((self.lookback / 8).max(60 * MICROS_PER_SECOND));
        if self.groups.len() > limits.max_groups_per_rule || self.total_values > limits.max_entries_per_rule {
            let mut by_age: Vec<(Micros, String)> =
                self.groups.iter().map(|(key, group)| (group.last_seen, key.clone())).collect();
            by_age.sort_unstable();
            for (_, key) in by_age {
                if self.groups.len() <= limits.max_groups_per_rule * 9 / 10
                    && self.total_values <= limits.max_entries_per_rule * 9 / 10
                {
                    break;
                }
                if let Some(group) = self.groups.remove(&key) {
                    self.total_values -= group.values.len();
                    ctx.stats.groups_dropped += 1;
                }
            }
        }
    }
}

#[derive(Debug)]
struct SilentGroup {
    key: GroupKey,
    /// `received_at` of the group's newest event.
    last_seen: Micros,
    last_seq: u64,
    last_id: Box<str>,
}

#[derive(Debug)]
struct SilenceState {
    window: Micros,
    /// Groups not yet reported silent; a group leaves when it fires and comes back with its
    /// next event.
    groups: HashMap<String, SilentGroup>,
    /// No group is due before this (may be early, never late).
    next_due: Micros,
}

impl SilenceState {
    fn observe(&mut self, rule: &Rule, event: &EventInput<'_>, received: Micros, ctx: &mut Context<'_>) {
        let spec = rule.spec();
        let Some(key) = combined_group(spec.group_by(), event.view) else {
            return;
        };
        if let Some(group) = self.groups.get_mut(key.as_ref()) {
            if received >= group.last_seen {
                group.last_seen = received;
                group.last_seq = event.seq;
                group.last_id = event.id.into();
            }
            return;
        }
        if self.groups.len() >= ctx.limits.max_groups_per_rule {
            ctx.stats.groups_dropped += 1;
            return;
        }
        let group = SilentGroup {
            key: group_key(spec.group_by(), &key),
            last_seen: received,
            last_seq: event.seq,
            last_id: event.id.into(),
        };
        self.next_due = self.next_due.min(received.saturating_add(self.window));
        self.groups.insert(key.into_owned(), group);
    }

    /// Fires for every group silent for more than the window at `now`.
    fn advance(&mut self, now: Micros, rule: &Rule, out: &mut Vec<Firing>) {
        if now <= self.next_due {
            return;
        }
        let window = self.window;
        let mut due: Vec<SilentGroup> = Vec::new();
        let mut next_due = Micros::MAX;
        self.groups.retain(|_, group| {
            let deadline = group.last_seen.saturating_add(window);
            if now > deadline {
                due.push(SilentGroup {
                    key: std::mem::take(&mut group.key),
                    last_seen: group.last_seen,
                    last_seq: group.last_seq,
                    last_id: std::mem::take(&mut group.last_id),
                });
                false
            } else {
                next_due = next_due.min(deadline);
                true
            }
        });
        self.next_due = next_due;
        due.sort_unstable_by_key(|group| (group.last_seen, group.last_seq));
        let spec = rule.spec();
        let length = match spec.kind() {
            RuleKind::Silence(silence) => silence.window(),
            _ => return,
        };
        for group in due {
            let summary = format!(
                "{}: no events from {} since {} (more than {length})",
                spec.name(),
                group.key,
                timestamp(group.last_seen)
            );
            let mut firing = base_firing(rule, group.key, vec![(group.last_seq, group.last_id)]);
            firing.dedup_key = format!("{}:after:{}", firing.rule_id, group.last_seq);
            firing.trigger_seq = None;
            firing.started_at = timestamp(group.last_seen);
            firing.fired_at = timestamp(now);
            firing.summary = summary;
            out.push(firing);
        }
    }
}

/// The maximum value text kept, re-exported for the README's limits table.
pub const MAX_GROUP_VALUE_BYTES: usize = path::MAX_VALUE_BYTES;
