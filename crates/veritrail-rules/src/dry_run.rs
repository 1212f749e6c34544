//! Dry runs: what a rule would have fired over stored history.

use jiff::Timestamp;

use crate::engine::{Engine, EngineConfig, EventInput, Firing};
use crate::spec::Rule;

/// Evaluates one rule over stored events, fed like the live engine (in `seq` order), and
/// collects what it would have fired. The rule runs whether or not it is enabled and from the
/// first event given, whatever its `effective_from_seq`.
#[derive(Debug)]
pub struct DryRun {
    engine: Engine,
    max_firings: usize,
    firings: Vec<Firing>,
    events: u64,
    truncated: bool,
}

/// The result of a [`DryRun`].
#[derive(Debug, Clone, PartialEq)]
pub struct DryRunReport {
    /// What the rule would have fired, in order.
    pub firings: Vec<Firing>,
    /// Events evaluated.
    pub events_evaluated: u64,
    /// True when it stopped at `max_firings`.
    pub truncated: bool,
}

impl DryRun {
    /// A dry run of `rule` that stops collecting after `max_firings`.
    pub fn new(rule: &Rule, config: EngineConfig, max_firings: usize) -> DryRun {
        let mut engine = Engine::new(config);
        engine.set_rules([rule.for_dry_run()]);
        DryRun { engine, max_firings, firings: Vec::new(), events: 0, truncated: false }
    }

    /// Evaluates the next stored event. Returns false once `max_firings` is reached: the
    /// caller can stop reading history.
    pub fn push(&mut self, event: &EventInput<'_>) -> bool {
        if self.truncated {
            return false;
        }
        self.events += 1;
        let firings = self.engine.process(event);
        self.collect(firings)
    }

    /// Ends the run at `until` (the end of the evaluated period, or now): silences still open
    /// then are reported too.
    pub fn finish(mut self, until: Timestamp) -> DryRunReport {
        if !self.truncated {
            let firings = self.engine.tick(until);
            self.collect(firings);
        }
        DryRunReport { firings: self.firings, events_evaluated: self.events, truncated: self.truncated }
    }

    fn collect(&mut self, firings: Vec<Firing>) -> bool {
        for firing in firings {
            if self.firings.len() == self.max_firings {
                self.truncated = true;
                return false;
            }
            self.firings.push(firing);
        }
        true
    }
}
