//! CPU cost of the ingest request path without HTTP or storage: parsing and validating a
//! 1,000-event body, then preparing every event for sealing (commitments, RFC 8785 members).
//!
//! `cargo bench -p veritrail-bench --bench request_path` prints the median of several rounds in
//! microseconds of this thread's CPU time per event for each phase (from
//! `/proc/thread-self/schedstat`, so that other processes on a shared machine weigh less than on
//! a wall clock).

mod common;

use common::{counter_salt, cpu_seconds, events, report};

use veritrail_model::{BodyFormat, Limits, PrepareContext, parse_batch};

const EVENTS_PER_BODY: u64 = 1_000;
const BODIES: u64 = 50;
const ROUNDS: usize = 7;

fn main() {
    let generator = events::Generator::new(7, BODIES * EVENTS_PER_BODY, jiff::Timestamp::now());
    let bodies: Vec<Vec<u8>> = (0..BODIES)
        .map(|body| {
            let mut text = String::from("[");
            for i in 0..EVENTS_PER_BODY {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&generator.event(body * EVENTS_PER_BODY + i).json);
            }
            text.push(']');
            text.into_bytes()
        })
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let events = (BODIES * EVENTS_PER_BODY) as f64;
    println!("{} bodies of {EVENTS_PER_BODY} events, {:.0} bytes per event", BODIES, bytes as f64 / events);

    let limits = Limits::default();
    let mut parse = Vec::new();
    let mut prepare = Vec::new();
    for _ in 0..ROUNDS {
        let mut parse_time = 0.0;
        let mut prepare_time = 0.0;
        let mut salt = counter_salt();
        for body in &bodies {
            let started = cpu_seconds();
            let parsed = parse_batch(body, BodyFormat::Json, &limits).expect("generated events are valid");
            let parsed_at = cpu_seconds();
            let now = jiff::Timestamp::now();
            let mut prepared = Vec::with_capacity(parsed.len());
            for event in parsed {
                let ctx = PrepareContext { id_if_missing: "evt_bench".to_owned(), now, salt: &mut salt };
                prepared.push(event.prepare(ctx).expect("valid events prepare"));
            }
            let done = cpu_seconds();
            std::hint::black_box(prepared);
            parse_time += parsed_at - started;
            prepare_time += done - parsed_at;
        }
        parse.push(parse_time * 1e6 / events);
        prepare.push(prepare_time * 1e6 / events);
    }
    report("parse_batch (parse + validate)", &mut parse);
    report("Event::prepare (commitments + RFC 8785 members)", &mut prepare);
}
