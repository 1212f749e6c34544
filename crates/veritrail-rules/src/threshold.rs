//! One group's sliding window for threshold rules, and the "new burst" decision.
//!
//! A group is **hot** at instant τ when its events in the window `(τ - W, τ]` reach the
//! threshold (a count is a sum of ones). The hot set depends only on the events' times, not on
//! the order they arrived in. A rule fires when an event creates a new connected component of
//! the hot set — a **burst** — that contains no instant that was hot before: a sustained attack
//! fires once, and it fires again only after the window has dropped below the threshold.

use std::collections::VecDeque;

use crate::window::Micros;

/// One counted event.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) time: Micros,
    pub(crate) seq: u64,
    pub(crate) weight: f64,
    /// Sum of the weights of this entry and every entry before it (prefix sum).
    cum: f64,
    pub(crate) id: Box<str>,
}

impl Entry {
    pub(crate) fn new(time: Micros, seq: u64, weight: f64, id: &str) -> Entry {
        Entry { time, seq, weight, cum: 0.0, id: id.into() }
    }

    fn base(&self) -> f64 {
        self.cum - self.weight
    }
}

/// The events of a burst's first hot window: what made the rule fire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Burst {
    /// Time of the first event in the window.
    pub(crate) started_at: Micros,
    /// Every event of the window, oldest first.
    pub(crate) events: Vec<(u64, Box<str>)>,
    /// Sum of their weights.
    pub(crate) total: f64,
}

/// What inserting an event did.
#[derive(Debug, PartialEq)]
pub(crate) enum Inserted<B = Burst> {
    /// Counted; no new burst.
    Counted,
    /// Counted and started a new burst.
    Fired(B),
    /// Older than what the window still holds: not counted.
    TooLate,
}

/// Sorted by `(time, seq)`.
#[derive(Debug, Default)]
pub(crate) struct GroupWindow {
    entries: VecDeque<Entry>,
    /// Entries older than this were dropped to respect the per-group cap: a late event before
    /// it cannot be judged and is refused.
    truncated_before: Option<Micros>,
}

impl GroupWindow {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn newest(&self) -> Option<Micros> {
        self.entries.back().map(|e| e.time)
    }

    /// Drops entries older than `keep_from`; returns how many.
    pub(crate) fn evict_before(&mut self, keep_from: Micros) -> usize {
        let mut dropped = 0;
        while self.entries.front().is_some_and(|e| e.time < keep_from) {
            self.entries.pop_front();
            dropped += 1;
        }
        if self.entries.is_empty() {
            self.truncated_before = None;
        }
        dropped
    }

    /// Drops the oldest entries beyond `cap`; returns how many.
    pub(crate) fn truncate_to(&mut self, cap: usize) -> usize {
        let mut dropped = 0;
        while self.entries.len() > cap {
            if let Some(old) = self.entries.pop_front() {
                self.truncated_before = Some(self.truncated_before.map_or(old.time, |t| t.max(old.time)));
                dropped += 1;
            }
        }
        dropped
    }

    /// Counts `entry` towards the window of length `window` and says whether it started a new
    /// burst of at least `threshold`. `force_general` runs the general (out-of-order) algorithm
    /// even for in-order events, so tests can compare the two.
    pub(crate) fn insert(&mut self, mut entry: Entry, window: Micros, threshold: f64, force_general: bool) -> Inserted {
        if self.truncated_before.is_some_and(|t| entry.time <= t) {
            return Inserted::TooLate;
        }
        let in_order = self.entries.back().is_none_or(|last| (last.time, last.seq) <= (entry.time, entry.seq));
        if in_order && !force_general {
            entry.cum = self.entries.back().map_or(0.0, |last| last.cum) + entry.weight;
            self.entries.push_back(entry);
            return self.decide_in_order(window, threshold);
        }
        let position = self.entries.partition_point(|e| (e.time, e.seq) <= (entry.time, entry.seq));
        self.entries.insert(position, entry);
        self.recompute_prefix_sums(position);
        self.decide_general(position, window, threshold)
    }

    fn recompute_prefix_sums(&mut self, from: usize) {
        let mut cum = if from == 0 { 0.0 } else { self.entries[from - 1].cum };
        for entry in self.entries.range_mut(from..) {
            cum += entry.weight;
            entry.cum = cum;
        }
    }

    /// Sum of the weights of entries `from..to` (indexes).
    fn sum(&self, from: usize, to: usize) -> f64 {
        if from >= to { 0.0 } else { self.entries[to - 1].cum - self.entries[from].base() }
    }

    /// The newest entry was just appended at time t. The new burst check reduces to: the window
    /// `(t - W, t]` is hot now, and neither `t` itself nor the instant just before `t` was hot
    /// before the event.
    fn decide_in_order(&self, window: Micros, threshold: f64) -> Inserted {
        let n = self.entries.len();
        let new = &self.entries[n - 1];
        let t = new.time;
        let first_in_window = self.entries.partition_point(|e| e.time <= t - window);
        let hot_now = self.sum(first_in_window, n);
        if hot_now < threshold {
            return Inserted::Counted;
        }
        let hot_at_t_before = hot_now - new.weight;
        let from = self.entries.partition_point(|e| e.time < t - window);
        let to = self.entries.partition_point(|e| e.time < t);
        let hot_just_before_t = self.sum(from, to.min(n - 1));
        if hot_at_t_before >= threshold || hot_just_before_t >= threshold {
            return Inserted::Counted;
        }
        Inserted::Fired(self.burst(first_in_window, n, hot_now))
    }

    /// The entry at `position` was inserted anywhere. Newly hot instants lie in `[t, t + W)`;
    /// a component of the new hot set is a new burst when it lies inside that range and does
    /// not overlap the old hot set. Both hot sets are computed over the entries that can affect
    /// `[t - 1, t + W]`.
    fn decide_general(&self, position: usize, window: Micros, threshold: f64) -> Inserted {
        let t = self.entries[position].time;
        let lo = self.entries.partition_point(|e| e.time < t.saturating_sub(2 * window));
        let hi = self.entries.partition_point(|e| e.time <= t.saturating_add(2 * window));
        let new_hot = self.hot_intervals(lo, hi, None, window, threshold);
        let old_hot = self.hot_intervals(lo, hi, Some(position), window, threshold);
        let end = t.saturating_add(window);
        for &(start, stop) in &new_hot {
            if stop <= t || start >= end {
                continue;
            }
            if start < t || stop > end {
                continue; // reaches instants the new event does not change: they were hot already
            }
            if old_hot.iter().any(|&(s, e)| s < stop && e > start) {
                continue;
            }
            let first = self.entries.partition_point(|e| e.time <= start - window);
            let last = self.entries.partition_point(|e| e.time <= start);
            return Inserted::Fired(self.burst(first, last, self.sum(first, last)));
        }
        Inserted::Counted
    }

    /// The hot set as merged half-open intervals `[start, stop)`, from the entries `lo..hi`
    /// (without `skip`). For each entry j taken as the newest in a window, the latest start i
    /// whose events `i..=j` still reach the threshold makes `[t_j, t_i + W)` hot.
    fn hot_intervals(
        &self,
        lo: usize,
        hi: usize,
        skip: Option<usize>,
        window: Micros,
        threshold: f64,
    ) -> Vec<(Micros, Micros)> {
        let indexes: Vec<usize> = (lo..hi).filter(|&i| Some(i) != skip).collect();
        let mut out: Vec<(Micros, Micros)> = Vec::new();
        let (mut start, mut sum) = (0usize, 0.0f64);
        for (j, &index) in indexes.iter().enumerate() {
            sum += self.entries[index].weight;
            while start < j && sum - self.entries[indexes[start]].weight >= threshold {
                sum -= self.entries[indexes[start]].weight;
                start += 1;
            }
            if sum < threshold {
                continue;
            }
            let (from, to) = (self.entries[index].time, self.entries[indexes[start]].time.saturating_add(window));
            if from >= to {
                continue;
            }
            match out.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => out.push((from, to)),
            }
        }
        out
    }

    fn burst(&self, from: usize, to: usize, total: f64) -> Burst {
        let events = self.entries.range(from..to).map(|e| (e.seq, e.id.clone())).collect();
        Burst { started_at: self.entries[from].time, events, total }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const W: Micros = 600;

    fn run(times: &[(Micros, f64)], threshold: f64, force_general: bool) -> Vec<bool> {
        let mut group = GroupWindow::default();
        times
            .iter()
            .enumerate()
            .map(|(seq, &(time, weight))| {
                let entry = Entry::new(time, seq as u64, weight, "e");
                matches!(group.insert(entry, W, threshold, force_general), Inserted::Fired(_))
            })
            .collect()
    }

    #[test]
    fn fires_once_per_burst_and_again_after_the_window_cools() {
        let ones = |times: &[Micros]| times.iter().map(|&t| (t, 1.0)).collect::<Vec<_>>();
        // 3 in 600: fires at the third; the fourth continues the burst.
        assert_eq!(run(&ones(&[0, 100, 200, 300]), 3.0, false), [false, false, true, false]);
        // Window edge: (t - W, t] excludes an event exactly W earlier.
        assert_eq!(run(&ones(&[0, 300, 600]), 3.0, false), [false, false, false]);
        assert_eq!(run(&ones(&[0, 300, 599]), 3.0, false), [false, false, true]);
        // Cooled down (count fell below 3) then a new burst.
        assert_eq!(run(&ones(&[0, 1, 2, 2000, 2001, 2002]), 3.0, false), [false, false, true, false, false, true]);
        // A steady stream that keeps every window at 3 or more is one burst…
        let steady: Vec<Micros> = (0..50).map(|i| i * 200).collect();
        assert_eq!(run(&ones(&steady), 3.0, false).iter().filter(|f| **f).count(), 1);
        // …but one that dips below 3 between events starts a new burst each time it recovers.
        let dipping: Vec<Micros> = (0..10).map(|i| i * 250).collect();
        assert_eq!(run(&ones(&dipping), 3.0, false).iter().filter(|f| **f).count(), 8);
    }

    #[test]
    fn sums_fire_on_a_single_large_event_or_on_many_small_ones() {
        assert_eq!(run(&[(0, 20_000.0)], 10_000.0, false), [true]);
        assert_eq!(run(&[(0, 4000.0), (10, 4000.0), (20, 2000.0)], 10_000.0, false), [false, false, true]);
        assert_eq!(run(&[(0, 4000.0), (10, 4000.0), (700, 2000.0)], 10_000.0, false), [false, false, false]);
    }

    #[test]
    fn late_events_can_complete_a_burst_in_the_past() {
        let mut group = GroupWindow::default();
        let mut insert = |time, seq| group.insert(Entry::new(time, seq, 1.0, "e"), W, 3.0, false);
        assert_eq!(insert(1000, 0), Inserted::Counted);
        assert_eq!(insert(5000, 1), Inserted::Counted);
        assert_eq!(insert(1100, 2), Inserted::Counted); // out of order
        match insert(1050, 3) {
            Inserted::Fired(burst) => {
                assert_eq!(burst.started_at, 1000);
                assert_eq!(burst.events.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 3, 2]);
            }
            other => panic!("expected a burst, got {other:?}"),
        }
        assert_eq!(insert(1060, 4), Inserted::Counted, "same burst");
    }

    #[test]
    fn truncated_windows_refuse_what_they_can_no_longer_judge() {
        let mut group = GroupWindow::default();
        for seq in 0..10 {
            group.insert(Entry::new(seq as Micros * 10, seq, 1.0, "e"), W, 100.0, false);
        }
        assert_eq!(group.truncate_to(5), 5);
        assert_eq!(group.insert(Entry::new(20, 99, 1.0, "e"), W, 100.0, false), Inserted::TooLate);
        assert_eq!(group.insert(Entry::new(95, 100, 1.0, "e"), W, 100.0, false), Inserted::Counted);
    }

    proptest! {
        /// The in-order shortcut decides exactly as the general algorithm.
        #[test]
        fn in_order_shortcut_agrees_with_the_general_algorithm(
            gaps in proptest::collection::vec((0i64..400, 1u8..4), 1..60),
            threshold in 1u8..6,
        ) {
            let mut time = 0;
            let events: Vec<(Micros, f64)> = gaps.iter().map(|&(gap, w)| { time += gap; (time, f64::from(w)) }).collect();
            let threshold = f64::from(threshold);
            prop_assert_eq!(run(&events, threshold, false), run(&events, threshold, true));
        }

        /// The number of bursts does not depend on arrival order when bursts are far apart
        /// (arrival order can only merge what was seen as separate, never split).
        #[test]
        fn shuffled_arrival_finds_the_same_isolated_bursts(
            bursts in proptest::collection::vec(3usize..6, 1..5),
            seed in any::<u64>(),
        ) {
            let mut events = Vec::new();
            for (b, size) in bursts.iter().enumerate() {
                for k in 0..*size {
                    events.push((b as Micros * 10_000 + k as Micros * 50, 1.0));
                }
            }
            let in_order = run(&events, 3.0, false).iter().filter(|f| **f).count();
            let mut shuffled = events.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let any_order = run(&shuffled, 3.0, false).iter().filter(|f| **f).count();
            prop_assert_eq!(in_order, bursts.len());
            prop_assert_eq!(any_order, bursts.len());
        }
    }
}
