//! Per-peer rate shaping, sans-IO: a token bucket that slows a peer down rather than cutting it.
//!
//! A peer sending calls and events faster than its rate is not disconnected (that would fail
//! every call it has in flight): the event loop stops reading its socket until enough tokens
//! have refilled, and TCP pushes back on the sender. A fast client is slowed to the rate and
//! loses nothing; a flooder costs no more than the rate. Only a peer that stays over the rate
//! for [`RateLimit::cut_after`] without a break is cut.
//!
//! Nothing here reads a clock or a socket: the loop passes the time, asks [`RateShaper::admit`]
//! before each frame, and reads the player again at the resume deadline it is handed.

use super::conn::Connection;
use std::time::{Duration, Instant};

/// A peer's allowance of calls and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls and events per second; 0 is unlimited.
    pub per_sec: u32,
    /// How many may come at once (the bucket's size), at least 1.
    pub burst: u32,
    /// How long a peer may stay over its rate without a break before it is cut (with reason
    /// "rate limit"); zero never cuts.
    pub cut_after: Duration,
}

impl RateLimit {
    /// No limit.
    pub const UNLIMITED: RateLimit = RateLimit {
        per_sec: 0,
        burst: 1,
        cut_after: Duration::ZERO,
    };
}

/// What the loop does with the next frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Handle it (a token was taken if it is a call or an event).
    Now,
    /// Leave it, and the rest of the peer's input, unread until this instant.
    Wait(Instant),
    /// Cut the peer: it has stayed over its rate for too long. The reason for its goodbye.
    Cut(String),
}

/// One peer's token bucket and how long it has been over its rate.
#[derive(Debug)]
pub struct RateShaper {
    tokens: f64,
    last: Instant,
    /// When the peer first had input waiting that its rate did not allow, since it last kept
    /// within it.
    over_since: Option<Instant>,
}

impl RateShaper {
    /// A full bucket.
    pub fn new(limit: &RateLimit, now: Instant) -> RateShaper {
        RateShaper {
            tokens: f64::from(limit.burst.max(1)),
            last: now,
            over_since: None,
        }
    }

    /// Whether the next frame buffered in `conn` may be handled now. Only calls and events
    /// cost a token; anything else (replies, pings, goodbyes) is always admitted.
    pub fn admit(&mut self, conn: &Connection, limit: &RateLimit, now: Instant) -> Admission {
        if limit.per_sec == 0 || !conn.next_frame_is_request() {
            return Admission::Now;
        }
        let (rate, burst) = (f64::from(limit.per_sec), f64::from(limit.burst.max(1)));
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Now;
        }
        let since = *self.over_since.get_or_insert(now);
        if !limit.cut_after.is_zero() && now.saturating_duration_since(since) >= limit.cut_after {
            return Admission::Cut(format!(
                "rate limit: over {} calls and events per second (burst {}) for {:?}",
                limit.per_sec, limit.burst, limit.cut_after
            ));
        }
        // Resume once a hundredth of a second's worth has refilled (at least one token, at
        // most the bucket): a peer held at its rate costs at most 100 wake-ups a second.
        let batch = (rate / 100.0).clamp(1.0, burst);
        Admission::Wait(now + Duration::from_secs_f64((batch - self.tokens) / rate))
    }

    /// The peer's input is all handled: it keeps within its rate, for now.
    pub fn input_drained(&mut self) {
        self.over_since = None;
    }

    /// Whether the peer has input waiting that its rate did not allow yet.
    pub fn is_over(&self) -> bool {
        self.over_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{encode_event, encode_invoke, Frame, Role};
    use bytes::BytesMut;

    const LIMIT: RateLimit = RateLimit {
        per_sec: 1000,
        burst: 10,
        cut_after: Duration::from_secs(30),
    };

    /// A server-side connection past the handshake holding `calls` calls and one ping.
    fn open_with(calls: usize) -> Connection {
        let mut conn = Connection::open(Role::Server, 1 << 20);
        let mut bytes = BytesMut::new();
        for i in 0..calls {
            encode_invoke(&mut bytes, i as u64, "F", &[], 8).unwrap();
        }
        Frame::Ping(1).encode(&mut bytes);
        encode_event(&mut bytes, "E", &[], 8).unwrap();
        conn.handle_bytes(&bytes);
        conn
    }

    #[test]
    fn a_peer_over_its_rate_waits_for_tokens_and_only_requests_pay() {
        let t0 = Instant::now();
        let mut conn = open_with(12);
        let mut shaper = RateShaper::new(&LIMIT, t0);
        for _ in 0..10 {
            assert_eq!(shaper.admit(&conn, &LIMIT, t0), Admission::Now);
            assert!(matches!(conn.poll_frame(), Ok(Some(Frame::Invoke { .. }))));
        }
        // The bucket is empty: wait for a hundredth of a second's worth (10 tokens at 1000/s).
        assert_eq!(
            shaper.admit(&conn, &LIMIT, t0),
            Admission::Wait(t0 + Duration::from_millis(10))
        );
        assert!(shaper.is_over());
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(shaper.admit(&conn, &LIMIT, t1), Admission::Now);
        assert!(matches!(conn.poll_frame(), Ok(Some(Frame::Invoke { .. }))));
        assert_eq!(shaper.admit(&conn, &LIMIT, t1), Admission::Now);
        assert!(matches!(conn.poll_frame(), Ok(Some(Frame::Invoke { .. }))));
        // A ping is free; the event after it is not.
        let before = shaper.tokens;
        assert_eq!(shaper.admit(&conn, &LIMIT, t1), Admission::Now);
        assert!(matches!(conn.poll_frame(), Ok(Some(Frame::Ping(1)))));
        assert_eq!(shaper.tokens, before);
        assert_eq!(shaper.admit(&conn, &LIMIT, t1), Admission::Now);
        assert!(matches!(conn.poll_frame(), Ok(Some(Frame::Event { .. }))));
        assert_eq!(shaper.tokens, before - 1.0);
        // Nothing left to read: the peer keeps within its rate again.
        shaper.input_drained();
        assert!(!shaper.is_over());
    }

    #[test]
    fn a_peer_over_its_rate_without_a_break_is_cut_after_the_limit() {
        let t0 = Instant::now();
        let conn = open_with(1);
        let limit = RateLimit { burst: 1, ..LIMIT };
        let mut shaper = RateShaper::new(&limit, t0);
        assert_eq!(shaper.admit(&conn, &limit, t0), Admission::Now);
        // Always more waiting than the rate allows (the frame is never taken, so it stays).
        assert!(matches!(
            shaper.admit(&conn, &limit, t0),
            Admission::Wait(_)
        ));
        let mut t = t0;
        for _ in 0..29 {
            t += Duration::from_secs(1);
            // A token refilled and was spent: still over, the clock keeps running.
            assert_eq!(shaper.admit(&conn, &limit, t), Admission::Now);
            assert!(matches!(shaper.admit(&conn, &limit, t), Admission::Wait(_)));
        }
        t += Duration::from_secs(1);
        assert_eq!(shaper.admit(&conn, &limit, t), Admission::Now);
        match shaper.admit(&conn, &limit, t) {
            Admission::Cut(why) => assert!(why.starts_with("rate limit"), "{why}"),
            other => panic!("not cut: {other:?}"),
        }
        // A break resets the clock; cut_after zero never cuts.
        shaper.input_drained();
        assert!(matches!(shaper.admit(&conn, &limit, t), Admission::Wait(_)));
        let never = RateLimit {
            cut_after: Duration::ZERO,
            ..limit
        };
        let later = t + Duration::from_secs(3600);
        assert_eq!(shaper.admit(&conn, &never, later), Admission::Now);
        assert!(matches!(
            shaper.admit(&conn, &never, later),
            Admission::Wait(_)
        ));
    }

    #[test]
    fn unlimited_admits_everything() {
        let t0 = Instant::now();
        let conn = open_with(3);
        let mut shaper = RateShaper::new(&RateLimit::UNLIMITED, t0);
        for _ in 0..100 {
            assert_eq!(
                shaper.admit(&conn, &RateLimit::UNLIMITED, t0),
                Admission::Now
            );
        }
    }
}
