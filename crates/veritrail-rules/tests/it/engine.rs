//! Every rule kind on a simulated clock.

use jiff::SignedDuration;
use serde_json::json;
use veritrail_rules::{
    BusinessHours, DryRun, Engine, EngineConfig, EventInput, MAX_FIRING_EVENTS, StateLimits, default_pack,
};

use crate::sim::{Stream, engine, failed_login, feed, feed_all, rule, t};

fn brute_force() -> veritrail_rules::Rule {
    rule(
        "brute_force",
        json!({"name": "bf", "severity": "high", "when": {"action": "auth.login.failed"},
               "group_by": ["actor.id"], "threshold": {"count": 5, "window": "10m"}}),
    )
}

#[test]
fn match_rules_fire_for_every_matching_event() {
    let mut engine = engine(vec![rule(
        "sec",
        json!({"name": "Security config", "severity": "medium", "when": {"action": "config.security.*,config.sso.*"}}),
    )]);
    let mut s = Stream::default();
    let hit = s.now(0.0, json!({"action": "config.sso.configured", "resource": {"type": "idp", "id": "okta"}}));
    let firings = feed(&mut engine, &hit);
    assert_eq!(firings.len(), 1);
    let firing = &firings[0];
    assert_eq!((firing.rule_id.as_str(), firing.rule_version, firing.trigger_seq), ("sec", 1, Some(0)));
    assert_eq!((firing.event_ids.clone(), firing.event_count), (vec!["evt_000000".to_string()], 1));
    assert_eq!(firing.summary, "Security config: config.sso.configured by user-1 on idp okta");
    assert_eq!(firing.dedup_key, "sec:0");
    assert_eq!((firing.started_at, firing.fired_at), (t(0.0), t(0.0)));
    assert!(feed(&mut engine, &s.now(1.0, json!({"action": "config.updated"}))).is_empty());
    assert_eq!(feed(&mut engine, &s.now(2.0, json!({"action": "config.security.updated"}))).len(), 1);
}

#[test]
fn match_rules_use_metadata_filters_with_query_semantics() {
    let mut engine = engine(vec![rule(
        "big",
        json!({"name": "n", "severity": "low", "when": {"action": "ai.generate", "metadata.model": "gpt-4o", "metadata.tokens": 470}}),
    )]);
    let mut s = Stream::default();
    let yes = s.now(0.0, json!({"action": "ai.generate", "metadata": {"model": "gpt-4o", "tokens": 470}}));
    let no = s.now(1.0, json!({"action": "ai.generate", "metadata": {"model": "gpt-4o", "tokens": "471"}}));
    assert_eq!(feed(&mut engine, &yes).len(), 1);
    assert!(feed(&mut engine, &no).is_empty());
}

#[test]
fn thresholds_fire_once_per_burst_at_the_nth_event() {
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    let burst: Vec<_> = (0..8).map(|i| s.now(f64::from(i) * 60.0, failed_login("mallory", "203.0.113.7"))).collect();
    let mut fired = Vec::new();
    for (i, view) in burst.iter().enumerate() {
        for firing in feed(&mut engine, view) {
            fired.push((i, firing));
        }
    }
    assert_eq!(fired.len(), 1, "8 failures in 8 minutes are one burst");
    let (at, firing) = &fired[0];
    assert_eq!(*at, 4, "fires at the fifth");
    assert_eq!(firing.event_seqs, [0, 1, 2, 3, 4]);
    assert_eq!(firing.group_key.get("actor.id"), Some("mallory"));
    assert_eq!(firing.summary, "bf: 5 matching events within 10m for actor.id=mallory");
    assert_eq!((firing.started_at, firing.fired_at), (t(0.0), t(240.0)));
    // Another actor is another group.
    let other: Vec<_> = (0..5).map(|i| s.now(500.0 + f64::from(i), failed_login("eve", "198.51.100.1"))).collect();
    assert_eq!(feed_all(&mut engine, &other).len(), 1);
}

#[test]
fn window_edges_are_half_open() {
    // (t - 10m, t]: a failure exactly 10 minutes before the fifth is outside its window.
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    let views: Vec<_> =
        [0.0, 150.0, 300.0, 450.0, 600.0].iter().map(|&at| s.now(at, failed_login("a", "1.1.1.1"))).collect();
    assert!(feed_all(&mut engine, &views).is_empty());
    // One millisecond earlier it is inside.
    let mut engine = crate::sim::engine(vec![brute_force()]);
    let mut s = Stream::default();
    let views: Vec<_> =
        [0.0, 150.0, 300.0, 450.0, 599.999].iter().map(|&at| s.now(at, failed_login("a", "1.1.1.1"))).collect();
    assert_eq!(feed_all(&mut engine, &views).len(), 1);
}

#[test]
fn a_burst_fires_again_only_after_the_window_cooled_down() {
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    // Steady: one failure a minute for an hour keeps 5+ in every 10 minutes: one burst.
    let steady: Vec<_> = (0..60).map(|i| s.now(f64::from(i) * 60.0, failed_login("a", "1.1.1.1"))).collect();
    assert_eq!(feed_all(&mut engine, &steady).len(), 1);
    // Quiet for 10 minutes drops the window below 5; the next 5 are a new burst.
    let again: Vec<_> = (0..5).map(|i| s.now(3600.0 + 600.0 + f64::from(i), failed_login("a", "1.1.1.1"))).collect();
    assert_eq!(feed_all(&mut engine, &again).len(), 1);
    // A trickle below the threshold never fires.
    let trickle: Vec<_> =
        (0..30).map(|i| s.now(10_000.0 + f64::from(i) * 150.0, failed_login("b", "1.1.1.2"))).collect();
    assert!(feed_all(&mut engine, &trickle).is_empty(), "4 per 10 minutes stays under 5");
}

#[test]
fn each_mode_groups_by_actor_and_by_ip_separately() {
    let rules = default_pack(&BusinessHours::office_hours_utc());
    let mut engine = engine(rules);
    let mut s = Stream::default();
    // Password spraying: one IP, five different actors.
    let spray: Vec<_> =
        (0..5).map(|i| s.now(f64::from(i), failed_login(&format!("user-{i}"), "203.0.113.9"))).collect();
    let firings = feed_all(&mut engine, &spray);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].rule_id.as_str(), "brute_force");
    assert_eq!(firings[0].group_key.to_string(), "context.ip=203.0.113.9");
    // Distributed guessing: one actor, five IPs.
    let guess: Vec<_> =
        (0..5).map(|i| s.now(100.0 + f64::from(i), failed_login("ceo", &format!("198.51.100.{i}")))).collect();
    let firings = feed_all(&mut engine, &guess);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].group_key.to_string(), "actor.id=ceo");
    // One actor from one IP: both groups cross at the same event, one firing names both.
    let both: Vec<_> = (0..5).map(|i| s.now(200.0 + f64::from(i), failed_login("bob", "192.0.2.1"))).collect();
    let firings = feed_all(&mut engine, &both);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].group_key.to_string(), "actor.id=bob, context.ip=192.0.2.1");
    assert_eq!(firings[0].event_count, 5);
}

#[test]
fn out_of_order_occurred_at_still_counts_where_it_happened() {
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    // Received in a batch at 1000 s, occurred over the previous 5 minutes in reverse order.
    let batch: Vec<_> =
        (0..5).map(|i| s.at(1000.0, 1000.0 - f64::from(i) * 60.0, failed_login("a", "1.1.1.1"))).collect();
    let firings = feed_all(&mut engine, &batch);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].started_at, t(760.0), "the burst began at the earliest occurrence");
    assert_eq!(firings[0].event_seqs, [0, 1, 2, 3, 4]);
    // A buffered shipper delivering 5 failures spread over 50 minutes: not a burst, although
    // they arrive together.
    let spread: Vec<_> =
        (0..5).map(|i| s.at(4000.0, 1000.0 + f64::from(i) * 600.0, failed_login("b", "1.1.1.2"))).collect();
    assert!(feed_all(&mut engine, &spread).is_empty());
}

#[test]
fn late_events_complete_past_bursts_within_the_lateness_limit_only() {
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    let early: Vec<_> = (0..4).map(|i| s.now(f64::from(i), failed_login("a", "1.1.1.1"))).collect();
    assert!(feed_all(&mut engine, &early).is_empty());
    // 30 minutes later a straggler from second 4 arrives: within the 1 h lateness limit.
    let straggler = s.at(1800.0, 4.0, failed_login("a", "1.1.1.1"));
    let firings = feed(&mut engine, &straggler);
    assert_eq!(firings.len(), 1);
    assert_eq!((firings[0].started_at, firings[0].fired_at), (t(0.0), t(1800.0)));

    let mut engine = crate::sim::engine(vec![brute_force()]);
    let mut s = Stream::default();
    assert!(
        feed_all(&mut engine, &(0..4).map(|i| s.now(f64::from(i), failed_login("a", "1.1.1.1"))).collect::<Vec<_>>())
            .is_empty()
    );
    let too_late = s.at(3.0 * 3600.0, 4.0, failed_login("a", "1.1.1.1"));
    assert!(feed(&mut engine, &too_late).is_empty());
    assert_eq!(engine.stats().late_events, 1);
}

#[test]
fn a_client_clock_ahead_cannot_push_events_into_the_future() {
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    // occurred_at claims tomorrow; the engine uses received_at instead.
    let views: Vec<_> = (0..5).map(|i| s.at(f64::from(i), 86_400.0, failed_login("a", "1.1.1.1"))).collect();
    let firings = feed_all(&mut engine, &views);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].started_at, t(0.0));
}

#[test]
fn sums_fire_on_one_large_export_or_many_small_ones() {
    let mut engine = engine(default_pack(&BusinessHours::office_hours_utc()));
    let mut s = Stream::default();
    let export = |n: u64| json!({"action": "data.exported", "actor": {"id": "ann", "type": "user"}, "metadata": {"record_count": n}});
    let one = feed(&mut engine, &s.now(0.0, export(12_000)));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].rule_id.as_str(), "mass_export");
    assert_eq!(
        one[0].summary,
        "Mass data export: metadata.record_count reached 12000 (threshold 10000) within 1h for actor.id=ann"
    );

    let mut engine = crate::sim::engine(default_pack(&BusinessHours::office_hours_utc()));
    let small: Vec<_> =
        [(0.0, 4000), (600.0, 4000), (1200.0, 2000)].iter().map(|&(at, n)| s.now(at, export(n))).collect();
    let firings = feed_all(&mut engine, &small);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].event_count, 3);

    let mut engine = crate::sim::engine(default_pack(&BusinessHours::office_hours_utc()));
    let slow: Vec<_> =
        [(0.0, 4000), (600.0, 4000), (3601.0, 4000)].iter().map(|&(at, n)| s.now(at, export(n))).collect();
    assert!(feed_all(&mut engine, &slow).is_empty(), "the first export left the hour");
    let weird = s.now(3602.0, json!({"action": "data.exported", "actor": {"id": "ann", "type": "user"}, "metadata": {"record_count": -50_000}}));
    assert!(feed(&mut engine, &weird).is_empty(), "negative values never count");
}

#[test]
fn sum_defaults_count_events_without_the_value() {
    let mut engine = engine(default_pack(&BusinessHours::office_hours_utc()));
    let mut s = Stream::default();
    let deletes: Vec<_> = (0..1000)
        .map(|i| s.now(f64::from(i), json!({"action": "data.deleted", "actor": {"id": "svc", "type": "service"}})))
        .collect();
    let firings = feed_all(&mut engine, &deletes);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].rule_id.as_str(), "mass_deletion");
    assert_eq!(firings[0].trigger_seq, Some(999));
    assert_eq!(firings[0].event_count, 1000);
    assert_eq!(firings[0].event_ids.len(), MAX_FIRING_EVENTS, "cited events are capped");
    assert_eq!(firings[0].event_seqs[..2], [0, 1]);
    assert_eq!(firings[0].event_seqs[MAX_FIRING_EVENTS - 1], 999);
}

#[test]
fn outside_hours_follow_the_tenants_time_zone() {
    let hours = BusinessHours::new("Europe/Berlin", "mon-fri", "08:00", "18:00").unwrap();
    let mut engine = engine(default_pack(&hours));
    let mut s = Stream::default();
    let access = json!({"action": "data.sensitive.accessed", "resource": {"type": "patient", "id": "p-7"}});
    // t(0) is Thursday 10:00 UTC = 11:00 in Berlin.
    assert!(feed(&mut engine, &s.now(0.0, access.clone())).is_empty());
    // 06:30 UTC = 07:30 Berlin: before hours.
    let early = feed(&mut engine, &s.now(-3.5 * 3600.0, access.clone()));
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].rule_id.as_str(), "off_hours_sensitive_access");
    assert_eq!(
        early[0].summary,
        "Sensitive data accessed outside business hours: data.sensitive.accessed by user-1 on patient p-7 \
         at Thu 2026-01-15 07:30 Europe/Berlin (outside business hours)"
    );
    // 16:59 UTC = 17:59 Berlin: inside; 17:00 UTC = 18:00: outside.
    assert!(feed(&mut engine, &s.now(7.0 * 3600.0 - 60.0, access.clone())).is_empty());
    assert_eq!(feed(&mut engine, &s.now(7.0 * 3600.0, access.clone())).len(), 1);
    // Saturday noon.
    assert_eq!(feed(&mut engine, &s.now(2.0 * 86_400.0 + 2.0 * 3600.0, access.clone())).len(), 1);
    // The access happened at night but was delivered in the morning: occurred_at decides.
    assert_eq!(feed(&mut engine, &s.at(7.0 * 86_400.0, 7.0 * 86_400.0 - 8.0 * 3600.0, access)).len(), 1);
}

#[test]
fn new_values_fire_for_groups_with_a_baseline() {
    let mut engine = engine(vec![rule(
        "new_ip",
        json!({"name": "New IP", "severity": "medium", "when": {"action": "auth.login.success"},
               "group_by": ["actor.id"], "new_value": {"field": "context.ip", "lookback": "7d"}}),
    )]);
    let mut s = Stream::default();
    let login = |ip: &str| json!({"action": "auth.login.success", "context": {"ip": ip}});
    assert!(feed(&mut engine, &s.now(0.0, login("10.0.0.1"))).is_empty(), "first login learns the baseline");
    assert!(feed(&mut engine, &s.now(3600.0, login("10.0.0.1"))).is_empty());
    let firings = feed(&mut engine, &s.now(7200.0, login("203.0.113.50")));
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].group_key.to_string(), "actor.id=user-1, context.ip=203.0.113.50");
    assert_eq!(firings[0].summary, "New IP: new context.ip 203.0.113.50 for actor.id=user-1 (not seen within 7d)");
    assert!(feed(&mut engine, &s.now(7300.0, login("203.0.113.50"))).is_empty(), "known now");
    // Ten days later 10.0.0.1 is new again (the baseline is the 203.0.113.50 login on day 9).
    assert!(feed(&mut engine, &s.now(9.0 * 86_400.0, login("203.0.113.50"))).is_empty());
    assert_eq!(feed(&mut engine, &s.now(10.0 * 86_400.0, login("10.0.0.1"))).len(), 1);
    // Erased values group nothing.
    assert!(feed(&mut engine, &s.now(10.0 * 86_400.0 + 1.0, login("[erased]"))).is_empty());
}

#[test]
fn a_late_event_does_not_reannounce_a_value_seen_after_it() {
    let mut engine = engine(vec![rule(
        "new_ip",
        json!({"name": "New IP", "severity": "medium", "group_by": ["actor.id"],
               "new_value": {"field": "context.ip", "lookback": "7d"}}),
    )]);
    let mut s = Stream::default();
    let login = |ip: &str| json!({"action": "auth.login.success", "context": {"ip": ip}});
    assert!(feed(&mut engine, &s.now(0.0, login("10.0.0.1"))).is_empty());
    assert_eq!(feed(&mut engine, &s.now(600.0, login("10.0.0.2"))).len(), 1);
    assert!(feed(&mut engine, &s.at(700.0, 300.0, login("10.0.0.2"))).is_empty());
}

#[test]
fn silence_fires_once_when_a_source_stops() {
    let mut engine = engine(default_pack(&BusinessHours::office_hours_utc()));
    let mut s = Stream::default();
    let from = |service: &str| json!({"metadata": {"source": {"service": service}}});
    feed(&mut engine, &s.now(0.0, from("billing")));
    feed(&mut engine, &s.now(60.0, from("auth")));
    assert!(engine.tick(t(3600.0)).is_empty(), "billing's last event is exactly 1h old: not more");
    let firings = engine.tick(t(3600.5));
    assert_eq!(firings.len(), 1);
    let firing = &firings[0];
    assert_eq!(firing.rule_id.as_str(), "logging_stopped");
    assert_eq!(firing.group_key.to_string(), "metadata.source.service=billing");
    assert_eq!((firing.started_at, firing.fired_at, firing.trigger_seq), (t(0.0), t(3600.5), None));
    assert_eq!(firing.event_seqs, [0]);
    assert_eq!(firing.dedup_key, "logging_stopped:after:0");
    assert_eq!(
        firing.summary,
        "Logging stopped: no events from metadata.source.service=billing since 2026-01-15T10:00:00Z (more than 1h)"
    );
    // auth went quiet at 60 s.
    assert!(engine.tick(t(3660.0)).is_empty());
    assert_eq!(engine.tick(t(3661.0)).len(), 1);
    assert!(engine.tick(t(7200.0)).is_empty(), "once per silence");
    // billing comes back, then stops again: a new silence.
    assert!(feed(&mut engine, &s.now(8000.0, from("billing"))).is_empty());
    assert_eq!(engine.tick(t(8000.0 + 3601.0)).len(), 1);
    // Events without a source are not a source.
    feed(&mut engine, &s.now(20_000.0, json!({})));
    assert!(engine.tick(t(40_000.0)).is_empty());
}

#[test]
fn silence_is_also_found_by_the_clock_of_later_events() {
    let mut engine = engine(default_pack(&BusinessHours::office_hours_utc()));
    let mut s = Stream::default();
    let from = |service: &str| json!({"metadata": {"source": {"service": service}}});
    feed(&mut engine, &s.now(0.0, from("billing")));
    // No tick for 2 hours, then billing itself resumes: the gap is still reported, once.
    let firings = feed(&mut engine, &s.now(7200.0, from("billing")));
    assert_eq!(firings.len(), 1);
    assert_eq!((firings[0].started_at, firings[0].fired_at), (t(0.0), t(7200.0)));
    assert!(engine.tick(t(7300.0)).is_empty(), "billing is active again");
}

#[test]
fn rules_skip_events_before_their_effective_seq() {
    let mut engine = engine(vec![brute_force().effective_from(3)]);
    let mut s = Stream::default();
    let views: Vec<_> = (0..8).map(|i| s.now(f64::from(i), failed_login("a", "1.1.1.1"))).collect();
    let firings = feed_all(&mut engine, &views);
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].event_seqs, [3, 4, 5, 6, 7], "seqs 0 to 2 predate the rule");
}

#[test]
fn changing_a_rule_resets_its_state_and_keeping_it_keeps_it() {
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    let views: Vec<_> = (0..4).map(|i| s.now(f64::from(i), failed_login("a", "1.1.1.1"))).collect();
    feed_all(&mut engine, &views);
    engine.set_rules([brute_force()]); // same version: state kept
    assert_eq!(feed(&mut engine, &s.now(5.0, failed_login("a", "1.1.1.1"))).len(), 1);

    let mut engine = crate::sim::engine(vec![brute_force()]);
    feed_all(&mut engine, &views);
    let v2 = brute_force().updated(brute_force().spec().clone());
    engine.set_rules([v2]);
    assert!(feed(&mut engine, &s.now(6.0, failed_login("a", "1.1.1.1"))).is_empty(), "v2 starts empty");
    engine.set_rules([brute_force().with_enabled(false)]);
    assert_eq!(engine.rules().count(), 0, "disabled rules are not evaluated");
}

#[test]
fn dry_runs_report_what_a_rule_would_have_fired() {
    let rule = brute_force().with_enabled(false);
    let mut s = Stream::default();
    let history: Vec<_> =
        (0..30).map(|i| s.now(f64::from(i) * 1000.0 + f64::from(i % 5), failed_login("a", "1.1.1.1"))).collect();
    let bursts: Vec<_> = (0..3)
        .flat_map(|b| (0..5).map(move |i| (b, i)))
        .map(|(b, i)| s.now(100_000.0 + f64::from(b) * 5000.0 + f64::from(i), failed_login("z", "1.1.1.9")))
        .collect();
    let mut run = DryRun::new(&rule, EngineConfig::default(), 10);
    for view in history.iter().chain(&bursts) {
        run.push(&EventInput::from_view(view).unwrap());
    }
    let report = run.finish(t(200_000.0));
    assert_eq!((report.firings.len(), report.events_evaluated, report.truncated), (3, 45, false));
    assert_eq!(report.firings[0].rule_version, rule.version());

    let mut run = DryRun::new(&rule, EngineConfig::default(), 2);
    let mut evaluated = 0;
    for view in &bursts {
        evaluated += 1;
        if !run.push(&EventInput::from_view(view).unwrap()) {
            break;
        }
    }
    let report = run.finish(t(200_000.0));
    assert_eq!((report.firings.len(), report.truncated, evaluated), (2, true, 15));
}

#[test]
fn state_stays_within_its_limits() {
    let config = EngineConfig {
        max_lateness: SignedDuration::from_mins(5),
        limits: StateLimits {
            max_groups_per_rule: 100,
            max_entries_per_group: 16,
            max_entries_per_rule: 500,
            max_values_per_group: 8,
        },
    };
    let mut engine = Engine::new(config);
    engine.set_rules(default_pack(&BusinessHours::office_hours_utc()));
    let mut rules: Vec<_> = engine.rules().cloned().collect();
    rules.push(rule(
        "new_ip",
        json!({"name": "n", "severity": "low", "group_by": ["actor.id"], "new_value": {"field": "context.ip", "lookback": "1d"}}),
    ));
    engine.set_rules(rules);
    let mut s = Stream::default();
    for i in 0..20_000u32 {
        let body = json!({
            "action": if i % 2 == 0 { "auth.login.failed" } else { "auth.login.success" },
            "actor": {"id": format!("user-{}", i % 3000), "type": "user"},
            "context": {"ip": format!("10.{}.{}.{}", i % 7, i % 251, i % 13)},
            "metadata": {"source": {"service": format!("svc-{}", i % 500)}}
        });
        feed(&mut engine, &s.now(f64::from(i) * 0.01, body));
        assert!(engine.state_size() <= 3 * 500 + 100 + 3 * 16, "state {} at {i}", engine.state_size());
    }
    assert!(engine.stats().groups_dropped > 0);
    // Dead state goes once the clock moves on.
    feed(&mut engine, &s.now(100_000.0, json!({"action": "auth.login.failed"})));
    feed(&mut engine, &s.now(100_001.0, json!({"action": "auth.login.success", "context": {"ip": "10.0.0.1"}})));
    assert!(engine.state_size() < 200, "{}", engine.state_size());
}

#[test]
fn combined_groups_need_every_value() {
    let mut engine = engine(vec![rule(
        "pair",
        json!({"name": "pair", "severity": "low", "when": {"action": "auth.login.failed"},
               "group_by": ["actor.id", "context.ip"], "threshold": {"count": 3, "window": "1m"}}),
    )]);
    let mut s = Stream::default();
    let mut views: Vec<_> = (0..2).map(|i| s.now(f64::from(i), failed_login("a", "10.0.0.1"))).collect();
    views.push(s.now(2.0, failed_login("a", "10.0.0.2")));
    views.push(s.now(3.0, json!({"action": "auth.login.failed"}))); // no IP: not grouped
    assert!(feed_all(&mut engine, &views).is_empty());
    let firings = feed(&mut engine, &s.now(4.0, failed_login("a", "10.0.0.1")));
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].group_key.to_json(), json!({"actor.id": "a", "context.ip": "10.0.0.1"}));
}

#[test]
fn views_without_engine_fields_are_rejected_and_replays_fire_nothing() {
    let view = json!({"id": "evt_1", "seq": 1, "received_at": "2026-01-15T10:00:00Z"});
    let error = EventInput::from_view(&view).unwrap_err();
    assert_eq!((error.code(), error.field()), ("invalid_event", "occurred_at"));
    let mut engine = engine(vec![brute_force()]);
    let mut s = Stream::default();
    for i in 0..5 {
        engine.replay(&EventInput::from_view(&s.now(f64::from(i), failed_login("a", "1.1.1.1"))).unwrap());
    }
    assert_eq!((engine.stats().events, engine.stats().firings), (5, 0));
    assert!(feed(&mut engine, &s.now(6.0, failed_login("a", "1.1.1.1"))).is_empty(), "the replayed burst goes on");
}
