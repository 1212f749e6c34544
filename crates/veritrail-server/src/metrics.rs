//! `/metrics` in the Prometheus text format: ingest and commit figures from the store, index lag,
//! and HTTP request counts by route and status class. No secret or tenant data appears here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Request counters keyed by (method, route, status class), and ledger counters.
#[derive(Default)]
pub(crate) struct ServerMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Checkpoints signed since start.
    pub(crate) checkpoints_signed: std::sync::atomic::AtomicU64,
    /// Ledger self-checks that failed since start (`audit.control.failed`).
    pub(crate) self_check_failures: std::sync::atomic::AtomicU64,
}

pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let class = response.status().as_u16() / 100 * 100;
    let mut requests = state.metrics.requests.lock().unwrap_or_else(|p| p.into_inner());
    *requests.entry((method, route, class)).or_insert(0) += 1;
    response
}

pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let stats = state.store.stats();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP veritrail_events_ingested_total Events durably appended to ledgers since start.");
    let _ = writeln!(out, "# TYPE veritrail_events_ingested_total counter");
    let _ = writeln!(out, "veritrail_events_ingested_total {}", stats.events_appended);
    let _ = writeln!(out, "# HELP veritrail_commits_total Group commits since start.");
    let _ = writeln!(out, "# TYPE veritrail_commits_total counter");
    let _ = writeln!(out, "veritrail_commits_total {}", stats.commits);
    let _ = writeln!(out, "# HELP veritrail_ingest_queue_depth Append requests waiting for the ledger writer.");
    let _ = writeln!(out, "# TYPE veritrail_ingest_queue_depth gauge");
    let _ = writeln!(out, "veritrail_ingest_queue_depth {}", stats.queue_depth);
    let _ = writeln!(out, "# HELP veritrail_commit_duration_seconds Duration of group commits, fsync included.");
    let _ = writeln!(out, "# TYPE veritrail_commit_duration_seconds histogram");
    let mut count = 0;
    for (bound, cumulative) in &stats.commit_latency_buckets {
        let le = if bound.is_infinite() { "+Inf".to_string() } else { bound.to_string() };
        let _ = writeln!(out, "veritrail_commit_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        count = *cumulative;
    }
    let _ = writeln!(out, "veritrail_commit_duration_seconds_sum {}", stats.commit_latency_sum);
    let _ = writeln!(out, "veritrail_commit_duration_seconds_count {count}");
    let _ = writeln!(out, "# HELP veritrail_index_lag_events Committed events not yet visible to queries.");
    let _ = writeln!(out, "# TYPE veritrail_index_lag_events gauge");
    let _ = writeln!(out, "veritrail_index_lag_events {}", stats.index.lag_events);
    let _ = writeln!(out, "# HELP veritrail_index_rebuilding 1 while the query index is rebuilt from the ledger.");
    let _ = writeln!(out, "# TYPE veritrail_index_rebuilding gauge");
    let _ = writeln!(out, "veritrail_index_rebuilding {}", u8::from(stats.index.rebuilding));
    let _ = writeln!(
        out,
        "# HELP veritrail_ledger_records_read_total Sealed records read in seq order (the rule engine following the ledger, the ledger API), by where they came from: the store's memory of its last commits, or storage."
    );
    let _ = writeln!(out, "# TYPE veritrail_ledger_records_read_total counter");
    let _ = writeln!(out, "veritrail_ledger_records_read_total{{source=\"memory\"}} {}", stats.records_from_memory);
    let _ = writeln!(out, "veritrail_ledger_records_read_total{{source=\"storage\"}} {}", stats.records_from_storage);
    let counter = |value: &std::sync::atomic::AtomicU64| value.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "# HELP veritrail_checkpoints_signed_total Ledger checkpoints signed since start.");
    let _ = writeln!(out, "# TYPE veritrail_checkpoints_signed_total counter");
    let _ = writeln!(out, "veritrail_checkpoints_signed_total {}", counter(&state.metrics.checkpoints_signed));
    let _ = writeln!(
        out,
        "# HELP veritrail_ledger_self_check_failures_total Ledgers found altered underneath the server since start."
    );
    let _ = writeln!(out, "# TYPE veritrail_ledger_self_check_failures_total counter");
    let _ = writeln!(out, "veritrail_ledger_self_check_failures_total {}", counter(&state.metrics.self_check_failures));
    if let Some(witness) = &state.witness {
        let metrics = &witness.metrics;
        let _ = writeln!(
            out,
            "# HELP veritrail_tsa_timestamps_total Checkpoint time-stamps verified and stored since start."
        );
        let _ = writeln!(out, "# TYPE veritrail_tsa_timestamps_total counter");
        let _ = writeln!(out, "veritrail_tsa_timestamps_total {}", counter(&metrics.stored));
        let _ = writeln!(
            out,
            "# HELP veritrail_tsa_failures_total Time-stamp requests that failed (unreachable, HTTP error, invalid answer)."
        );
        let _ = writeln!(out, "# TYPE veritrail_tsa_failures_total counter");
        let _ = writeln!(out, "veritrail_tsa_failures_total {}", counter(&metrics.failures));
        let _ = writeln!(
            out,
            "# HELP veritrail_tsa_given_up_total Checkpoints left without a time-stamp after every retry failed."
        );
        let _ = writeln!(out, "# TYPE veritrail_tsa_given_up_total counter");
        let _ = writeln!(out, "veritrail_tsa_given_up_total {}", counter(&metrics.given_up));
        let _ = writeln!(out, "# HELP veritrail_tsa_pending Checkpoints waiting for their time-stamp request.");
        let _ = writeln!(out, "# TYPE veritrail_tsa_pending gauge");
        let _ = writeln!(out, "veritrail_tsa_pending {}", witness.pending());
    }
    render_alerting(&mut out, &state.alerting.metrics);
    let _ = writeln!(out, "# HELP veritrail_http_requests_total HTTP requests by method, route and status class.");
    let _ = writeln!(out, "# TYPE veritrail_http_requests_total counter");
    let requests = state.metrics.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for ((method, route, class), n) in requests {
        let _ = writeln!(
            out,
            "veritrail_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {n}"
        );
    }
    let mut response = out.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

fn render_alerting(out: &mut String, metrics: &crate::alerting::AlertingMetrics) {
    let counter = |value: &std::sync::atomic::AtomicU64| value.load(std::sync::atomic::Ordering::Relaxed);
    let families = [
        (
            "veritrail_rule_events_evaluated_total",
            "counter",
            "Events evaluated by the rule engine since start.",
            &metrics.events_evaluated,
        ),
        (
            "veritrail_rule_rebuilds_started_total",
            "counter",
            "Rule engine rebuilds started after an erasure, since start (one discarded because the rules changed meanwhile, or failed, is started again).",
            &metrics.rebuilds_started,
        ),
        (
            "veritrail_rule_rebuilds_total",
            "counter",
            "Rule engines rebuilt from the ledger after an erasure and swapped in, since start.",
            &metrics.rebuilds,
        ),
        ("veritrail_alerts_raised_total", "counter", "Alerts stored since start.", &metrics.alerts_raised),
        (
            "veritrail_rule_engine_errors_total",
            "counter",
            "Rule engine passes that failed (the tenant is reloaded).",
            &metrics.engine_errors,
        ),
        (
            "veritrail_webhook_deliveries_total",
            "counter",
            "Webhook deliveries answered 2xx since start.",
            &metrics.deliveries_succeeded,
        ),
        (
            "veritrail_webhook_failures_total",
            "counter",
            "Webhook delivery attempts that failed since start.",
            &metrics.deliveries_failed,
        ),
        (
            "veritrail_webhook_dead_total",
            "counter",
            "Webhook deliveries given up after their retries since start.",
            &metrics.deliveries_dead,
        ),
        (
            "veritrail_rule_engine_tenants",
            "gauge",
            "Tenants whose rules this node's engine runs (with several nodes, each tenant's on one).",
            &metrics.tenants_run,
        ),
        (
            "veritrail_rule_engine_nodes",
            "gauge",
            "Nodes running rule engines on this store, this one included.",
            &metrics.nodes,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", counter(value));
    }
    let name = "veritrail_alert_latency_seconds";
    let _ = writeln!(out, "# HELP {name} From the triggering event's receipt to its alert being stored.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut count = 0;
    for (bound, value) in crate::alerting::LATENCY_BUCKETS.iter().zip(&metrics.latency_buckets) {
        let le = if bound.is_infinite() { "+Inf".to_string() } else { bound.to_string() };
        count = counter(value);
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum {}", counter(&metrics.latency_sum_micros) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {count}");
}
