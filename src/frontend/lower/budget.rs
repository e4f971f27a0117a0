//! A bound on what lowering one Dockerfile may produce. Each instruction
//! is bounded on its own (1 MiB of text, 1 MiB per expansion), but a
//! Dockerfile can multiply them: one large ENV copied into every RUN's
//! environment, one variable expanded into thousands of LABELs, a stage
//! inherited by thousands of stages. Lowering charges what it copies and
//! expands to a budget and stops with a clear error once it is spent, so
//! its memory and time stay bounded whatever the Dockerfile's shape.

use std::cell::Cell;

/// Bytes lowering one Dockerfile for one platform may produce.
pub const MAX_LOWERED_BYTES: usize = 64 << 20;

/// Bookkeeping cost charged per string on top of its bytes, so that many
/// tiny strings count for what they really take.
const PER_STRING: usize = 32;

/// The allowance is spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Dockerfile expands to more than {max} bytes of steps and image configuration (variables copied into \
     every step and label): make it smaller"
)]
pub struct BudgetSpent {
    /// The allowance.
    pub max: usize,
}

/// What is left of the lowering's allowance.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    left: Cell<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(MAX_LOWERED_BYTES)
    }
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max, left: Cell::new(max) }
    }

    /// Takes `bytes` from the budget, or says it is spent.
    pub fn charge(&self, bytes: usize) -> Result<(), BudgetSpent> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(BudgetSpent { max: self.max })
            }
        }
    }

    /// Charges one string.
    pub fn charge_str(&self, s: &str) -> Result<(), BudgetSpent> {
        self.charge(s.len() + PER_STRING)
    }

    /// Charges every string of a list.
    pub fn charge_all<'a>(&self, items: impl IntoIterator<Item = &'a String>) -> Result<(), BudgetSpent> {
        let total = items.into_iter().fold(0usize, |n, s| n.saturating_add(s.len() + PER_STRING));
        self.charge(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_spent_and_stays_spent() {
        let b = Budget::new(100);
        assert!(b.charge(60).is_ok());
        assert!(b.charge_str("x").is_ok(), "33 of the 40 left");
        let err = b.charge(8).unwrap_err();
        assert_eq!(err, BudgetSpent { max: 100 });
        assert!(err.to_string().contains("more than 100 bytes"), "{err}");
        assert!(b.charge(0).is_ok() && b.charge(1).is_err());
        let list = vec!["ab".to_string(); 3];
        assert!(Budget::new(102).charge_all(&list).is_ok() && Budget::new(101).charge_all(&list).is_err());
    }
}
