//! A server's metrics in the Prometheus text format: its counters ([`crate::Stats`]), its
//! players and queues, and per bound function the calls by outcome and a histogram of handler
//! time. Named like the relay's (`remotefn_server_*` beside `remotefn_relay_*`), with the same
//! latency buckets, so one dashboard reads both.
//!
//! A call pays a few relaxed atomic adds on its function's own counters and two clock reads; the
//! text is made only when scraped, from a snapshot.

#[cfg(feature = "metrics-http")]
mod http;
#[cfg(feature = "metrics-http")]
pub use http::MetricsServer;

use crate::Stats;
use parking_lot::Mutex;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a call to a function ended, as `remotefn_server_calls_total{outcome}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    /// The handler answered with values.
    Ok,
    /// The handler raised an error, panicked, or dropped its responder.
    Error,
    /// Refused before any handler ran: a queue or table was full.
    Limit,
    /// Refused before any handler ran: its arguments were malformed.
    Invalid,
}

impl CallOutcome {
    const ALL: [CallOutcome; 4] = [
        CallOutcome::Ok,
        CallOutcome::Error,
        CallOutcome::Limit,
        CallOutcome::Invalid,
    ];

    fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Limit => "limit",
            CallOutcome::Invalid => "invalid",
        }
    }
}

/// Upper bound of the first latency bucket; each next bucket doubles it (as the relay's).
const FIRST_BUCKET: Duration = Duration::from_micros(50);
/// Finite buckets: 50 us up to 50 us x 2^17 (about 6.6 s), then +Inf.
const BUCKETS: usize = 18;

/// The calls of one bound function: by outcome, and the time its handler took to answer.
#[derive(Default)]
pub(crate) struct FunctionStats {
    outcomes: [AtomicU64; CallOutcome::ALL.len()],
    /// Answers by latency bucket (not cumulative; the last is +Inf).
    buckets: [AtomicU64; BUCKETS + 1],
    /// Total handler time of the answers, in nanoseconds.
    nanos: AtomicU64,
}

impl FunctionStats {
    /// Counts a call that ended without a handler answering it.
    pub(crate) fn refused(&self, outcome: CallOutcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call its handler answered after `took`.
    pub(crate) fn answered(&self, outcome: CallOutcome, took: Duration) {
        self.refused(outcome);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The bucket `nanos` falls in: the first whose bound (50 us x 2^k) it does not exceed.
fn bucket_of(nanos: u64) -> usize {
    let first = FIRST_BUCKET.as_nanos() as u64;
    // How many first buckets it spans, rounded up; the bucket is the log2 of that, rounded up.
    let spans = nanos.div_ceil(first);
    if spans <= 1 {
        return 0;
    }
    ((u64::BITS - (spans - 1).leading_zeros()) as usize).min(BUCKETS)
}

/// The bound of bucket `k`, in seconds.
fn bucket_bound(k: usize) -> f64 {
    FIRST_BUCKET.as_secs_f64() * f64::from(1u32 << k)
}

/// Every function's stats, by name. Entries are made when a function is bound (so by the game,
/// never by a peer inventing names) and kept across unbinding and rebinding.
#[derive(Default)]
pub(crate) struct FunctionTable {
    bound: Mutex<BTreeMap<Box<str>, Arc<FunctionStats>>>,
    /// Calls to names with no handler bound that were refused (their queue was full): one
    /// series, whatever the names.
    unbound: FunctionStats,
}

/// The `function` label of calls to names no handler is bound to.
const UNBOUND: &str = "(unbound)";

impl FunctionTable {
    /// The stats of function `name`, made on its first binding.
    pub(crate) fn of(&self, name: &str) -> Arc<FunctionStats> {
        self.bound.lock().entry(name.into()).or_default().clone()
    }

    /// The stats of calls to unbound names.
    pub(crate) fn unbound(&self) -> &FunctionStats {
        &self.unbound
    }
}

/// What a server is doing right now, beside its counters.
#[derive(Default)]
pub(crate) struct Gauges {
    pub players: usize,
    /// Jobs (calls, events, player hooks) queued for the workers or for `dispatch()`.
    pub queued_jobs: usize,
    pub calls_waiting_for_handler: usize,
    pub replies_pending: usize,
    /// `invoke_client` calls waiting for a player's answer.
    pub calls_out_in_flight: usize,
}

/// The Prometheus text of a server with these counters, gauges and functions.
pub(crate) fn render(stats: &Stats, gauges: &Gauges, functions: &FunctionTable) -> String {
    let mut families = vec![
        gauge(
            "players",
            "Players connected (handshake completed)",
            gauges.players,
        ),
        counter(
            "connections_total",
            "Connections accepted",
            &[],
            &[(vec![], stats.connections)],
        ),
        counter(
            "disconnects_total",
            "Connections the server closed or lost, by reason",
            &["reason"],
            &[
                (vec!["refused"], stats.refused),
                (vec!["protocol"], stats.disconnects_protocol),
                (vec!["limit"], stats.disconnects_limit),
                (vec!["timeout"], stats.disconnects_timeout),
                (vec!["kicked"], stats.kicks),
                (vec!["tls"], stats.tls_failures),
                // `disconnects_other` counts the TLS failures too; each cut is under one reason.
                (
                    vec!["other"],
                    stats.disconnects_other.saturating_sub(stats.tls_failures),
                ),
            ],
        ),
        counter(
            "calls_out_total",
            "Calls made to players (invoke_client)",
            &[],
            &[(vec![], stats.calls_out)],
        ),
        gauge(
            "calls_out_in_flight",
            "Calls made to players and not answered yet",
            gauges.calls_out_in_flight,
        ),
        counter(
            "events_total",
            "Events received from players",
            &[],
            &[(vec![], stats.events_in)],
        ),
        counter(
            "bytes_in_total",
            "Bytes received",
            &[],
            &[(vec![], stats.bytes_in)],
        ),
        counter(
            "bytes_out_total",
            "Bytes sent",
            &[],
            &[(vec![], stats.bytes_out)],
        ),
        counter(
            "tls_handshakes_total",
            "TLS handshakes completed, by kind (full, resumed)",
            &["kind"],
            &[
                (vec!["full"], stats.tls_handshakes),
                (vec!["resumed"], stats.tls_resumed),
            ],
        ),
        gauge(
            "queued_jobs",
            "Calls, events and player callbacks queued for a worker (or for dispatch())",
            gauges.queued_jobs,
        ),
        gauge(
            "calls_waiting_for_handler",
            "Calls to functions with no handler bound yet, waiting for one",
            gauges.calls_waiting_for_handler,
        ),
        gauge(
            "replies_pending",
            "Calls handed to handlers and not answered yet",
            gauges.replies_pending,
        ),
    ];
    let bound = functions.bound.lock().clone();
    let bound: Vec<(&str, &FunctionStats)> = bound
        .iter()
        .map(|(name, stats)| (&**name, &**stats))
        .collect();
    let mut calls = Vec::new();
    for (name, stats) in &bound {
        for outcome in CallOutcome::ALL {
            let n = stats.outcomes[outcome as usize].load(Ordering::Relaxed);
            calls.push((vec![*name, outcome.label()], n));
        }
    }
    // Calls to unbound names can only have been refused, for a full queue.
    let unbound = functions.unbound.outcomes[CallOutcome::Limit as usize].load(Ordering::Relaxed);
    calls.push((vec![UNBOUND, CallOutcome::Limit.label()], unbound));
    families.push(counter(
        "calls_total",
        "Calls received from players, by function and outcome",
        &["function", "outcome"],
        &calls,
    ));
    // The text format has no empty family: with no function bound, no histogram.
    if !bound.is_empty() {
        families.push(handler_seconds(&bound));
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("the families are well formed");
    String::from_utf8(out).expect("the text format is UTF-8")
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(format!("remotefn_server_{name}"));
    family.set_help(help.into());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn labelled(names: &[&str], values: &[&str]) -> Metric {
    let mut metric = Metric::default();
    let labels = names
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).into());
            pair.set_value((*value).into());
            pair
        })
        .collect();
    metric.set_label(labels);
    metric
}

fn counter(name: &str, help: &str, labels: &[&str], series: &[(Vec<&str>, u64)]) -> MetricFamily {
    let metrics = series
        .iter()
        .map(|(values, n)| {
            let mut metric = labelled(labels, values);
            let mut value = Counter::default();
            value.set_value(*n as f64);
            metric.set_counter(value);
            metric
        })
        .collect();
    family(name, help, MetricType::COUNTER, metrics)
}

fn gauge(name: &str, help: &str, n: usize) -> MetricFamily {
    let mut metric = Metric::default();
    let mut value = Gauge::default();
    value.set_value(n as f64);
    metric.set_gauge(value);
    family(name, help, MetricType::GAUGE, vec![metric])
}

fn handler_seconds(functions: &[(&str, &FunctionStats)]) -> MetricFamily {
    let metrics = functions
        .iter()
        .map(|(name, stats)| {
            let mut metric = labelled(&["function"], &[name]);
            let mut histogram = Histogram::default();
            let mut cumulative = 0;
            let buckets = (0..BUCKETS)
                .map(|k| {
                    cumulative += stats.buckets[k].load(Ordering::Relaxed);
                    let mut bucket = Bucket::default();
                    bucket.set_upper_bound(bucket_bound(k));
                    bucket.set_cumulative_count(cumulative);
                    bucket
                })
                .collect();
            cumulative += stats.buckets[BUCKETS].load(Ordering::Relaxed);
            histogram.set_bucket(buckets);
            histogram.set_sample_count(cumulative);
            histogram.set_sample_sum(stats.nanos.load(Ordering::Relaxed) as f64 / 1e9);
            metric.set_histogram(histogram);
            metric
        })
        .collect();
    family(
        "handler_seconds",
        "Time from a handler starting on a call to the call's answer, by function",
        MetricType::HISTOGRAM,
        metrics,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_falls_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let us = |n: u64| n * 1_000;
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(us(50)), 0);
        assert_eq!(bucket_of(us(50) + 1), 1);
        assert_eq!(bucket_of(us(100)), 1);
        assert_eq!(bucket_of(us(101)), 2);
        assert_eq!(bucket_of(us(200)), 2);
        assert_eq!(bucket_of(us(50) << 17), 17);
        assert_eq!(bucket_of((us(50) << 17) + 1), BUCKETS, "+Inf");
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
        for k in 0..BUCKETS {
            let bound = (bucket_bound(k) * 1e9).round() as u64;
            assert_eq!(bucket_of(bound), k);
            assert_eq!(bucket_of(bound + 1), k + 1);
        }
    }

    #[test]
    fn the_text_carries_each_function_by_outcome_and_its_handler_time() {
        let functions = FunctionTable::default();
        let echo = functions.of("Echo");
        echo.answered(CallOutcome::Ok, Duration::from_micros(30));
        echo.answered(CallOutcome::Ok, Duration::from_micros(70));
        echo.answered(CallOutcome::Error, Duration::from_secs(60));
        echo.refused(CallOutcome::Invalid);
        functions.unbound().refused(CallOutcome::Limit);
        assert!(Arc::ptr_eq(&echo, &functions.of("Echo")), "one per name");
        let stats = Stats {
            connections: 7,
            disconnects_other: 3,
            tls_failures: 1,
            ..Stats::default()
        };
        let gauges = Gauges {
            players: 2,
            replies_pending: 1,
            ..Gauges::default()
        };
        let text = render(&stats, &gauges, &functions);
        for line in [
            "remotefn_server_players 2",
            "remotefn_server_connections_total 7",
            r#"remotefn_server_disconnects_total{reason="tls"} 1"#,
            r#"remotefn_server_disconnects_total{reason="other"} 2"#,
            r#"remotefn_server_calls_total{function="Echo",outcome="ok"} 2"#,
            r#"remotefn_server_calls_total{function="Echo",outcome="error"} 1"#,
            r#"remotefn_server_calls_total{function="Echo",outcome="invalid"} 1"#,
            r#"remotefn_server_calls_total{function="(unbound)",outcome="limit"} 1"#,
            r#"remotefn_server_handler_seconds_bucket{function="Echo",le="0.00005"} 1"#,
            r#"remotefn_server_handler_seconds_bucket{function="Echo",le="0.0001"} 2"#,
            r#"remotefn_server_handler_seconds_bucket{function="Echo",le="+Inf"} 3"#,
            r#"remotefn_server_handler_seconds_count{function="Echo"} 3"#,
            "remotefn_server_replies_pending 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains(r#"handler_seconds_count{function="(unbound)"}"#),
            "no handler ran for unbound names"
        );
    }

    #[test]
    fn a_server_with_no_function_bound_renders_too() {
        let text = render(
            &Stats::default(),
            &Gauges::default(),
            &FunctionTable::default(),
        );
        assert!(
            text.contains(r#"remotefn_server_calls_total{function="(unbound)",outcome="limit"} 0"#)
        );
        assert!(!text.contains("handler_seconds"));
    }
}
