//! The relay's counters and latency histogram, in the Prometheus text format (served over HTTP
//! at `/metrics` by [`crate::metrics::MetricsServer`]).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Everything the relay counts.
pub struct Metrics {
    registry: Registry,
    /// Players connected (handshake completed).
    pub players: IntGauge,
    /// Hosts attached.
    pub hosts: IntGauge,
    /// Calls routed, by direction (`to_host`, `to_player`).
    pub calls: IntCounterVec,
    /// Calls answered with an error, or failed by the relay (no host, host lost, shutdown).
    pub call_errors: IntCounter,
    /// Connections closed by the relay, by reason (`protocol`, `limit`, `timeout`, `refused`,
    /// `kicked`, `tls`: a failed TLS handshake or record on a TLS port).
    pub disconnects: IntCounterVec,
    /// TLS handshakes completed on the relay's ports, by kind (`full`, `resumed`).
    pub tls_handshakes: IntCounterVec,
    /// Bytes read from and written to sockets.
    pub bytes_in: IntCounter,
    /// Bytes written.
    pub bytes_out: IntCounter,
    /// Time from a player's call reaching the relay to its answer leaving it, in seconds.
    pub call_latency: Histogram,
    /// `calls{direction="to_host"}` and `{direction="to_player"}`, resolved once: a labelled
    /// counter's lookup hashes and locks, which a call should not pay.
    pub(crate) calls_to_host: IntCounter,
    pub(crate) calls_to_player: IntCounter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let registry = Registry::new();
        let players = IntGauge::new(
            "remotefn_relay_players",
            "Players connected through the relay",
        )
        .expect("metric");
        let hosts = IntGauge::new("remotefn_relay_hosts", "Game servers attached to the relay")
            .expect("metric");
        let calls = IntCounterVec::new(
            Opts::new(
                "remotefn_relay_calls_total",
                "Calls routed through the relay",
            ),
            &["direction"],
        )
        .expect("metric");
        let call_errors = IntCounter::new(
            "remotefn_relay_call_errors_total",
            "Calls that ended in an error",
        )
        .expect("metric");
        let disconnects = IntCounterVec::new(
            Opts::new(
                "remotefn_relay_disconnects_total",
                "Connections the relay closed, by reason",
            ),
            &["reason"],
        )
        .expect("metric");
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "remotefn_relay_tls_handshakes_total",
                "TLS handshakes completed, by kind (full, resumed)",
            ),
            &["kind"],
        )
        .expect("metric");
        let bytes_in =
            IntCounter::new("remotefn_relay_bytes_in_total", "Bytes received").expect("metric");
        let bytes_out =
            IntCounter::new("remotefn_relay_bytes_out_total", "Bytes sent").expect("metric");
        let call_latency = Histogram::with_opts(
            HistogramOpts::new(
                "remotefn_relay_call_latency_seconds",
                "Player call latency through the relay (relay in to relay out)",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 18).expect("buckets")),
        )
        .expect("metric");
        for m in [
            Box::new(players.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(hosts.clone()),
            Box::new(calls.clone()),
            Box::new(call_errors.clone()),
            Box::new(disconnects.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(call_latency.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        // Every series at 0 from the start, so a dashboard's rates and sums see them before the
        // first event.
        for reason in ["refused", "kicked", "protocol", "timeout", "limit", "tls"] {
            disconnects.with_label_values(&[reason]);
        }
        for kind in ["full", "resumed"] {
            tls_handshakes.with_label_values(&[kind]);
        }
        Metrics {
            registry,
            players,
            hosts,
            calls_to_host: calls.with_label_values(&["to_host"]),
            calls_to_player: calls.with_label_values(&["to_player"]),
            calls,
            call_errors,
            disconnects,
            tls_handshakes,
            bytes_in,
            bytes_out,
            call_latency,
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
