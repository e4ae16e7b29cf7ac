//! Lists threaded through the indices of a table: each index is on at most one list, and each
//! list is a head its owner keeps. Pushing, unlinking and draining cost O(1) per index, with
//! nothing to search or prune: the reactor's record of outbound calls keeps each peer's calls
//! this way, and the relay each player's routes.

/// No index: the end of a list.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

/// The links of a table's indices. Which indices are on a list is the table's to know: it
/// pushes an index once, and unlinks it from the same list once.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    links: Vec<Link>,
}

/// One list of [`Chains`].
#[derive(Debug)]
pub(crate) struct Head(u32);

impl Default for Head {
    fn default() -> Self {
        Head(NIL)
    }
}

impl Chains {
    /// Links for indices `0..len`.
    pub(crate) fn new(len: usize) -> Chains {
        Chains {
            links: vec![UNLINKED; len],
        }
    }

    /// Makes room for indices up to `len` (the relay's route slab grows; call slots do not).
    #[cfg_attr(not(feature = "relay"), allow(dead_code))]
    pub(crate) fn grow(&mut self, len: usize) {
        if self.links.len() < len {
            self.links.resize(len, UNLINKED);
        }
    }

    /// Puts `index` (on no list) at the front of `head`'s list.
    pub(crate) fn push(&mut self, head: &mut Head, index: usize) {
        self.links[index] = Link {
            prev: NIL,
            next: head.0,
        };
        if head.0 != NIL {
            self.links[head.0 as usize].prev = index as u32;
        }
        head.0 = index as u32;
    }

    /// Takes `index` off `head`'s list, which it is on.
    pub(crate) fn unlink(&mut self, head: &mut Head, index: usize) {
        let Link { prev, next } = std::mem::replace(&mut self.links[index], UNLINKED);
        if prev == NIL {
            head.0 = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
    }

    /// Takes every index off `head`'s list; returns them, most recently pushed first.
    pub(crate) fn drain(&mut self, head: &mut Head) -> Vec<usize> {
        let mut indices = Vec::new();
        let mut at = std::mem::replace(&mut head.0, NIL);
        while at != NIL {
            indices.push(at as usize);
            at = std::mem::replace(&mut self.links[at as usize], UNLINKED).next;
        }
        indices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_share_one_table_and_unlink_from_anywhere() {
        let mut chains = Chains::new(2);
        chains.grow(6);
        let (mut a, mut b) = (Head::default(), Head::default());
        for i in [0, 2, 4] {
            chains.push(&mut a, i);
        }
        for i in [1, 3, 5] {
            chains.push(&mut b, i);
        }
        chains.unlink(&mut a, 2); // the middle
        chains.unlink(&mut b, 5); // the head
        chains.unlink(&mut b, 1); // the tail
        chains.push(&mut a, 2);
        assert_eq!(chains.drain(&mut a), vec![2, 4, 0]);
        assert_eq!(chains.drain(&mut b), vec![3]);
        assert!(chains.drain(&mut a).is_empty());
        // Drained indices can go on a list again.
        chains.push(&mut b, 4);
        assert_eq!(chains.drain(&mut b), vec![4]);
    }
}
