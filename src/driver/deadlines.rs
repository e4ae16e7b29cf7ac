//! The driver's timers: one heap of connection deadlines, earliest first.

use crate::ids::ConnId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Deadlines of connections by slab key and connection id (the key may be reused by another
/// connection before its deadline: the id tells them apart). An entry whose connection has
/// gone, or whose deadline has since moved, is simply found to have nothing due when it comes.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, usize, ConnId)>>,
}

impl Deadlines {
    /// Adds a deadline.
    pub(crate) fn push(&mut self, at: Instant, key: usize, id: ConnId) {
        self.heap.push(Reverse((at, key, id)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, ..))| *at)
    }

    /// Removes and returns a deadline that has passed at `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(usize, ConnId)> {
        match self.heap.peek() {
            Some(Reverse((at, ..))) if *at <= now => {
                self.heap.pop().map(|Reverse((_, key, id))| (key, id))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_come_out_earliest_first_once_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.push(t0 + Duration::from_millis(30), 3, ConnId(30));
        d.push(t0 + Duration::from_millis(10), 1, ConnId(10));
        d.push(t0 + Duration::from_millis(20), 2, ConnId(20));
        assert_eq!(d.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(d.pop_due(t0), None);
        let t = t0 + Duration::from_millis(25);
        assert_eq!(d.pop_due(t), Some((1, ConnId(10))));
        assert_eq!(d.pop_due(t), Some((2, ConnId(20))));
        assert_eq!(d.pop_due(t), None);
        assert_eq!(d.next(), Some(t0 + Duration::from_millis(30)));
    }
}
