//! A persistent, append-mostly vector: the page's compact event store.
//!
//! The Yew store hands out `Rc<State>` snapshots, and the reducer must build a new state per
//! batch without copying 100,000 events. `Chunked` keeps its items in fixed-size chunks behind
//! `Rc`: cloning it copies a few pointers, appending copies at most the last (partial) chunk,
//! and dropping the oldest items only advances an offset. Indices are *global*: an item keeps
//! its index for as long as it is stored, even when older items are dropped, so other
//! structures may point into it.
//!
//! No I/O and no web types here.

use std::collections::VecDeque;
use std::ops::Range;
use std::rc::Rc;

/// Items per chunk: appends copy at most this many items once per batch.
pub const CHUNK: usize = 1024;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Chunked<T> {
    /// Every chunk but the last holds exactly `CHUNK` items.
    chunks: VecDeque<Rc<Vec<T>>>,
    /// Items of the first chunk already dropped.
    head_skip: usize,
    /// Global index of the first stored item.
    base: usize,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: VecDeque::new(),
            head_skip: 0,
            base: 0,
            len: 0,
        }
    }
}

impl<T: Clone> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Global index of the oldest stored item.
    pub fn first_index(&self) -> usize {
        self.base
    }

    /// Global index the next pushed item will get.
    pub fn end_index(&self) -> usize {
        self.base + self.len
    }

    /// The global indices stored now.
    pub fn indices(&self) -> Range<usize> {
        self.base..self.end_index()
    }

    /// Appends; returns the item's global index.
    pub fn push(&mut self, item: T) -> usize {
        let full = self.chunks.back().is_none_or(|c| c.len() >= CHUNK);
        if full {
            self.chunks.push_back(Rc::new(Vec::with_capacity(CHUNK)));
        }
        if let Some(last) = self.chunks.back_mut() {
            let last = Rc::make_mut(last);
            if last.capacity() < CHUNK {
                last.reserve_exact(CHUNK - last.len());
            }
            last.push(item);
        }
        self.len += 1;
        self.end_index() - 1
    }

    fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index < self.base || index >= self.end_index() {
            return None;
        }
        let off = index - self.base + self.head_skip;
        Some((off / CHUNK, off % CHUNK))
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        let (c, i) = self.locate(index)?;
        self.chunks.get(c).and_then(|chunk| chunk.get(i))
    }

    /// Changes one stored item in place (copying its chunk if a snapshot shares it).
    pub fn update(&mut self, index: usize, f: impl FnOnce(&mut T)) -> bool {
        let Some((c, i)) = self.locate(index) else {
            return false;
        };
        match self
            .chunks
            .get_mut(c)
            .and_then(|chunk| Rc::make_mut(chunk).get_mut(i))
        {
            Some(item) => {
                f(item);
                true
            }
            None => false,
        }
    }

    pub fn last(&self) -> Option<&T> {
        self.end_index().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn first(&self) -> Option<&T> {
        self.get(self.base)
    }

    /// Drops the oldest items until at most `cap` remain; returns how many were dropped.
    pub fn truncate_front(&mut self, cap: usize) -> usize {
        let mut dropped = 0;
        while self.len > cap {
            let first_len = self.chunks.front().map_or(0, |c| c.len());
            let avail = first_len.saturating_sub(self.head_skip);
            let take = avail.min(self.len - cap);
            if take == 0 {
                break;
            }
            self.head_skip += take;
            self.base += take;
            self.len -= take;
            dropped += take;
            if self.head_skip >= first_len {
                self.chunks.pop_front();
                self.head_skip = 0;
            }
        }
        if self.len == 0 {
            self.chunks.clear();
            self.head_skip = 0;
        }
        dropped
    }

    /// Drops every item with a global index below `index`.
    pub fn drop_before(&mut self, index: usize) -> usize {
        let keep = self.end_index().saturating_sub(index.max(self.base));
        self.truncate_front(keep)
    }

    /// Items with global indices in `range` (clipped to what is stored), oldest first.
    pub fn range(&self, range: Range<usize>) -> impl Iterator<Item = (usize, &T)> + '_ {
        let start = range.start.max(self.base);
        let end = range.end.min(self.end_index());
        (start..end).filter_map(move |i| self.get(i).map(|t| (i, t)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.range(self.indices())
    }

    /// The first global index in `range` whose item does not satisfy `pred`, assuming the
    /// items satisfying it come first (as `slice::partition_point`).
    pub fn partition_point(&self, range: Range<usize>, pred: impl Fn(&T) -> bool) -> usize {
        let (mut lo, mut hi) = (range.start.max(self.base), range.end.min(self.end_index()));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(item) if pred(item) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_stay_stable_when_the_front_is_dropped() {
        let mut c = Chunked::default();
        for i in 0..3000u32 {
            assert_eq!(c.push(i), i as usize);
        }
        assert_eq!(c.truncate_front(1000), 2000);
        assert_eq!(c.len(), 1000);
        assert_eq!(c.first_index(), 2000);
        assert_eq!(c.get(1999), None);
        assert_eq!(c.get(2000), Some(&2000));
        assert_eq!(c.get(2999), Some(&2999));
        assert_eq!(c.push(3000), 3000);
        assert_eq!(c.last(), Some(&3000));
        let all: Vec<u32> = c.iter().map(|(_, v)| *v).collect();
        assert_eq!(all.len(), 1001);
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn a_clone_is_a_snapshot() {
        let mut a = Chunked::default();
        for i in 0..10u32 {
            a.push(i);
        }
        let snap = a.clone();
        a.push(10);
        a.update(3, |v| *v = 99);
        assert_eq!(snap.len(), 10);
        assert_eq!(snap.get(3), Some(&3));
        assert_eq!(a.get(3), Some(&99));
    }

    #[test]
    fn partition_point_finds_the_first_not_matching() {
        let mut c = Chunked::default();
        for i in 0..5000u32 {
            c.push(i * 2);
        }
        c.truncate_front(4000);
        let p = c.partition_point(c.indices(), |v| *v < 5001);
        assert_eq!(c.get(p), Some(&5002));
        assert_eq!(c.partition_point(c.indices(), |_| true), c.end_index());
        assert_eq!(c.partition_point(c.indices(), |_| false), c.first_index());
    }

    #[test]
    fn drop_before_and_empty() {
        let mut c = Chunked::default();
        for i in 0..10u32 {
            c.push(i);
        }
        assert_eq!(c.drop_before(4), 4);
        assert_eq!(c.first(), Some(&4));
        assert_eq!(c.truncate_front(0), 6);
        assert!(c.is_empty());
        assert_eq!(c.push(7), 10);
    }
}
