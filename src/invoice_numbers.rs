//! Final invoice numbers: one per (owner, period), allocated once. Asking again (after
//! a retry, or a crash between allocating and storing the invoice) gets the same
//! number, and a new one is one past the highest, so the sequence has no gap and no
//! repeat. The decision is [`allocate`]; where numbers live is a [`NumberStore`].

use std::collections::BTreeMap;

/// Where the numbers given are kept.
pub trait NumberStore {
    type Error;
    /// The number `owner`'s period starting at `period_start` was given, if any.
    fn given(&self, owner: &str, period_start: i64) -> Result<Option<u64>, Self::Error>;
    /// The highest number given, 0 when none was.
    fn highest(&self) -> Result<u64, Self::Error>;
    fn give(&mut self, owner: &str, period_start: i64, number: u64) -> Result<(), Self::Error>;
}

/// The number of `owner`'s period: the one it was given, or the next.
pub fn allocate<S: NumberStore>(
    store: &mut S,
    owner: &str,
    period_start: i64,
) -> Result<u64, S::Error> {
    if let Some(n) = store.given(owner, period_start)? {
        return Ok(n);
    }
    let next = store.highest()? + 1;
    store.give(owner, period_start, next)?;
    Ok(next)
}

/// Numbers in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryNumbers {
    pub given: BTreeMap<(String, i64), u64>,
}

impl NumberStore for MemoryNumbers {
    type Error = std::convert::Infallible;

    fn given(&self, owner: &str, period_start: i64) -> Result<Option<u64>, Self::Error> {
        Ok(self.given.get(&(owner.to_string(), period_start)).copied())
    }

    fn highest(&self) -> Result<u64, Self::Error> {
        Ok(self.given.values().copied().max().unwrap_or(0))
    }

    fn give(&mut self, owner: &str, period_start: i64, number: u64) -> Result<(), Self::Error> {
        self.given.insert((owner.to_string(), period_start), number);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_keeps_its_number_and_new_ones_follow_without_gaps() {
        let mut n = MemoryNumbers::default();
        let mut take = |owner: &str, start| allocate(&mut n, owner, start).unwrap();
        assert_eq!(take("a", 100), 1);
        assert_eq!(take("b", 100), 2);
        assert_eq!(take("a", 100), 1, "asked again after a retry");
        assert_eq!(take("a", 200), 3);
        assert_eq!(take("b", 100), 2);
        assert_eq!(take("c", 100), 4);
    }
}
