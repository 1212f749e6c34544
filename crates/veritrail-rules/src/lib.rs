//! Veritrail's monitoring rules: the rule model ([`RuleSpec`], [`Rule`]), the default pack
//! ([`default_pack`]) and a pure streaming engine ([`Engine`]) that the server feeds with
//! committed events in `seq` order and with clock ticks, and that returns [`Firing`]s.
//!
//! Pure: no I/O, no async runtime, no database, no clock of its own (time zone names are
//! resolved through jiff's time zone database). Same inputs, same firings.
//!
//! # Time
//! - **Windows, new values and business hours run on the event time** = `occurred_at`, but
//!   never later than `received_at` (a client clock running ahead cannot push events into the
//!   future). Bursts are decided from event times, so out-of-order arrival is handled: a late
//!   event can complete a burst in the past.
//! - **The engine clock** is the newest `received_at` it has processed (the writer assigns
//!   these in `seq` order). An event whose event time is more than
//!   [`EngineConfig::max_lateness`] behind it is *late*: it still fires match rules but no
//!   longer counts towards windows or new values. The clock also decides when window state is
//!   dead and can be dropped.
//! - **Silence** runs on the server clock: `received_at` of a group's last event, and
//!   [`Engine::tick`] (or the next event's `received_at`) as "now". It fires once per silence,
//!   and again only after the group has sent something.
//!
//! # Restarts
//! State is rebuilt by replaying the ledger. With `cursor` the last seq whose firings were
//! stored, and `horizon = engine.replay_horizon()` (the longest threshold window or new-value
//! lookback plus the lateness limit, or twice the longest silence window):
//! 1. build the engine with the current rules (each with its `effective_from_seq`);
//! 2. [`Engine::replay`] every event from the first seq whose `received_at` is at least
//!    `received_at(cursor) - horizon`, through `cursor`;
//! 3. [`Engine::tick`] with the current time, then [`Engine::process`] from `cursor + 1` on.
//!
//! Future firings are then exactly those of an engine that never stopped, except that a
//! silence already reported may be reported again: store firings idempotently on
//! [`Firing::dedup_key`].

#![forbid(unsafe_code)]

mod dry_run;
mod engine;
mod error;
mod hours;
mod json;
mod pack;
mod path;
mod spec;
mod threshold;
mod window;

pub use dry_run::{DryRun, DryRunReport};
pub use engine::{
    DEFAULT_MAX_LATENESS, Engine, EngineConfig, EngineStats, EventInput, EventNeeds, Firing, GroupKey, INPUT_MEMBERS,
    MAX_FIRING_EVENTS, MAX_GROUP_VALUE_BYTES, StateLimits, VIEW_MEMBER,
};
pub use error::RuleError;
pub use hours::BusinessHours;
pub use pack::{DEFAULT_PACK_IDS, default_pack};
pub use path::{FieldPath, ValuePattern};
pub use spec::{
    DEFAULT_SILENCE_GROUP_BY, FieldMatches, GroupMode, MAX_GROUP_BY, MAX_THRESHOLD_COUNT, MAX_WHEN_FILTERS,
    NEW_VALUE_LOOKBACK_LIMITS, NewValue, Rule, RuleId, RuleKind, RuleSpec, SILENCE_WINDOW_LIMITS, Severity, Silence,
    THRESHOLD_WINDOW_LIMITS, Threshold, When,
};
pub use window::{Window, WindowUnit};
