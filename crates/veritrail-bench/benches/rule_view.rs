//! CPU cost of opening sealed records for the rule engine (what `alerting::view_for_rules` does
//! per event), on the generated events of the other benchmarks: the member scan (or, for records
//! the embedded store sealed in the same process, the members taken from the layout sealing
//! noted), the cut-down open of the members the default pack reads of most events, and the
//! whole open for comparison.
//!
//! `cargo bench -p veritrail-bench --bench rule_view` prints the median of several rounds in
//! microseconds of this thread's CPU time per event (`/proc/thread-self/schedstat`).

mod common;

use common::{counter_salt, cpu_seconds, events, report};

use veritrail_model::{
    BodyFormat, Limits, MemberLayout, PrepareContext, PreparedEvent, SealedMembers, open, parse_batch, seal_with_layout,
};

const EVENTS: u64 = 50_000;
const ROUNDS: usize = 7;
thread_local! {
    /// The key buffer of the view-cache phase (the server keeps one per rule thread).
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// One way of opening a sealed record with its personal data; returns something to keep.
type Phase = dyn Fn(&[u8], &MemberLayout, Option<&veritrail_model::PersonalData>) -> usize;

/// What the engine reads of every event.
const INPUT: [&str; 5] = ["action", "id", "occurred_at", "received_at", "seq"];
/// What the default pack reads of most events: the engine's members and the path
/// `logging_stopped` groups by.
const PATHS: [&str; 6] = ["action", "id", "occurred_at", "received_at", "seq", "metadata.source.service"];
/// What the server opens of most events since the engine takes the seq, id and times from the
/// record (`alerting::view_for_rules`): the action and the path `logging_stopped` reads.
const SERVER_PATHS: [&str; 2] = ["metadata.source.service", "action"];

fn main() {
    run("the generated events", false);
    // Audit events often carry more: a request summary, a diff of settings. What a path-wise
    // open saves grows with `metadata`, which `logging_stopped` reads a path of for every event.
    run("the same events with ~1.5 kB more metadata each", true);
}

/// `metadata.request`: 40 members of ~30 bytes.
fn bulky_metadata(event: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(event).expect("generated json");
    let request: serde_json::Map<String, serde_json::Value> = (0..40)
        .map(|i| (format!("field_{i:02}"), serde_json::Value::from(format!("value number {i:04} of many"))))
        .collect();
    value["metadata"]["request"] = serde_json::Value::Object(request);
    value.to_string()
}

fn run(label: &str, bulky: bool) {
    let generator = events::Generator::new(7, EVENTS, jiff::Timestamp::now());
    let mut parsed = Vec::new();
    for start in (0..EVENTS).step_by(1000) {
        let body: Vec<String> = (start..(start + 1000).min(EVENTS))
            .map(|i| generator.event(i).json)
            .map(|json| if bulky { bulky_metadata(&json) } else { json })
            .collect();
        let body = format!("[{}]", body.join(","));
        parsed.extend(parse_batch(body.as_bytes(), BodyFormat::Json, &Limits::default()).expect("valid events"));
    }
    let mut salt = counter_salt();
    let now = jiff::Timestamp::now();
    let prepared: Vec<PreparedEvent> = parsed
        .into_iter()
        .map(|event| event.prepare(PrepareContext { id_if_missing: "evt_bench".to_owned(), now, salt: &mut salt }))
        .collect::<Result<_, _>>()
        .expect("valid events prepare");
    let sealed: Vec<(Vec<u8>, MemberLayout)> = prepared
        .iter()
        .enumerate()
        .map(|(seq, event)| seal_with_layout(event, "tn_bench", seq as u64, now).expect("seal"))
        .collect();
    let bytes: usize = sealed.iter().map(|(record, _)| record.len()).sum();
    println!("\n{label}: {EVENTS} sealed records, {:.0} bytes each", bytes as f64 / EVENTS as f64);
    let records: Vec<(&Vec<u8>, &MemberLayout, Option<&veritrail_model::PersonalData>)> = sealed
        .iter()
        .zip(&prepared)
        .map(|((sealed, layout), event)| (sealed, layout, (!event.personal.is_empty()).then_some(&event.personal)))
        .collect();

    let phases: [(&str, &Phase); 8] = [
        ("SealedMembers::parse (member scan)", &|s, _, _| {
            SealedMembers::parse(s).map(|m| m.str("action").map_or(0, str::len)).unwrap_or(0)
        }),
        ("SealedMembers::from_layout (members where sealing noted them)", &|s, l, _| {
            SealedMembers::from_layout(s, l).map(|m| m.str("action").map_or(0, str::len)).unwrap_or(0)
        }),
        ("scan + open of the engine's members and all of `metadata` (before)", &|s, _, p| {
            let members = SealedMembers::parse(s).expect("sealed by this bench");
            members
                .open(p, &|key| INPUT.contains(&key) || key == "metadata")
                .expect("sealed by this bench")
                .as_object()
                .map_or(0, |o| o.len())
        }),
        (
            "scan + open_paths of the engine's members and `metadata.source.service` (what the default pack needs of most events)",
            &|s, _, p| {
                let members = SealedMembers::parse(s).expect("sealed by this bench");
                members.open_paths(p, &PATHS).expect("sealed by this bench").as_object().map_or(0, |o| o.len())
            },
        ),
        ("from_layout + the same open_paths (records served from the embedded store's memory)", &|s, l, p| {
            let members = SealedMembers::from_layout(s, l).expect("sealed by this bench");
            members.open_paths(p, &PATHS).expect("sealed by this bench").as_object().map_or(0, |o| o.len())
        }),
        (
            "from_layout + open_paths of the action and `metadata.source.service`, both times parsed (what the server does per event now)",
            &|s, l, p| {
                let members = SealedMembers::from_layout(s, l).expect("sealed by this bench");
                let time = |member: &str| members.str(member).and_then(|text| text.parse::<jiff::Timestamp>().ok());
                let times = time("occurred_at").zip(time("received_at")).expect("sealed by this bench");
                let view = members.open_paths(p, &SERVER_PATHS).expect("sealed by this bench");
                view.as_object().map_or(0, |o| o.len()) + usize::from(times.0 <= times.1)
            },
        ),
        (
            "from_layout + plain_view_key of the same, both times parsed (a hit in the server's view cache)",
            &|s, l, _| {
                let members = SealedMembers::from_layout(s, l).expect("sealed by this bench");
                let time = |member: &str| members.str(member).and_then(|text| text.parse::<jiff::Timestamp>().ok());
                let times = time("occurred_at").zip(time("received_at")).expect("sealed by this bench");
                let keyed = KEY.with_borrow_mut(|key| {
                    let keyed = members.plain_view_key(&SERVER_PATHS, key).expect("sealed by this bench");
                    key.len() + usize::from(keyed)
                });
                keyed + usize::from(times.0 <= times.1)
            },
        ),
        ("whole open (API view)", &|s, _, p| {
            open(s, p).expect("sealed by this bench").as_object().map_or(0, |o| o.len())
        }),
    ];
    for (name, phase) in phases {
        let mut samples = Vec::new();
        for _ in 0..ROUNDS {
            let started = cpu_seconds();
            let mut sink = 0usize;
            for (sealed, layout, personal) in &records {
                sink += phase(sealed, layout, *personal);
            }
            std::hint::black_box(sink);
            samples.push((cpu_seconds() - started) * 1e6 / EVENTS as f64);
        }
        report(name, &mut samples);
    }
}
