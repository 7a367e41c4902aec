//! Anti-replay sliding window (RFC 6479).
//!
//! A bitmap of [`BLOCKS`] 64-bit blocks used as a ring: sequence number `n`
//! lives at bit `n mod 64` of block `(n / 64) mod BLOCKS`. Advancing the
//! window clears only the blocks it moves over, so both checking and
//! advancing are O(1) amortised, whatever the gap. One block is kept as
//! slack so that advancing never clears a bit still inside the window,
//! which leaves [`WINDOW`] = (BLOCKS − 1) × 64 usable positions.
//!
//! The receiver calls [`ReplayWindow::check`] *before* decrypting (cheap
//! rejection of replays, and no work spent on them) and
//! [`ReplayWindow::accept`] only *after* the tag verified, so a forged
//! record can never move the window.

/// 64-bit blocks in the bitmap.
pub const BLOCKS: usize = 32;
/// Sequence numbers at most this far behind the highest accepted one are
/// still accepted once each.
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * 64;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Already accepted once.
    #[error("sequence number {0} was already received (replay)")]
    Replayed(u64),
    /// Too far behind the highest accepted sequence number to be tracked.
    #[error("sequence number {seq} is more than {WINDOW} behind {highest} (too old)")]
    TooOld {
        /// The refused number.
        seq: u64,
        /// The highest accepted number.
        highest: u64,
    },
}

/// The receiver's record of which sequence numbers it has accepted.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest accepted sequence number, if any.
    highest: Option<u64>,
    bitmap: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

fn slot(seq: u64) -> (usize, u64) {
    (((seq / 64) % BLOCKS as u64) as usize, 1u64 << (seq % 64))
}

impl ReplayWindow {
    /// An empty window: every sequence number is fresh.
    pub fn new() -> Self {
        ReplayWindow {
            highest: None,
            bitmap: [0; BLOCKS],
        }
    }

    /// The highest accepted sequence number.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether `seq` may be accepted. Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if seq > highest {
            return Ok(());
        }
        if highest - seq >= WINDOW {
            return Err(ReplayError::TooOld { seq, highest });
        }
        let (block, bit) = slot(seq);
        if self.bitmap[block] & bit != 0 {
            return Err(ReplayError::Replayed(seq));
        }
        Ok(())
    }

    /// Records `seq` as received. Call only after [`check`](Self::check)
    /// passed and the record authenticated.
    pub fn accept(&mut self, seq: u64) {
        match self.highest {
            Some(highest) if seq <= highest => {}
            Some(highest) => {
                // Clear the blocks the window moves into (at most all of them).
                let from = highest / 64;
                let to = seq / 64;
                let steps = (to - from).min(BLOCKS as u64);
                for i in 1..=steps {
                    self.bitmap[((from + i) % BLOCKS as u64) as usize] = 0;
                }
                self.highest = Some(seq);
            }
            None => {
                self.bitmap = [0; BLOCKS];
                self.highest = Some(seq);
            }
        }
        let (block, bit) = slot(seq);
        self.bitmap[block] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn take(w: &mut ReplayWindow, seq: u64) -> Result<(), ReplayError> {
        w.check(seq)?;
        w.accept(seq);
        Ok(())
    }

    #[test]
    fn in_order_reordered_replayed_and_old() {
        let mut w = ReplayWindow::new();
        for s in 0..100 {
            take(&mut w, s).expect("fresh");
        }
        assert_eq!(take(&mut w, 50), Err(ReplayError::Replayed(50)));
        take(&mut w, 200).expect("jump ahead");
        take(&mut w, 150).expect("reordered inside the window");
        assert_eq!(take(&mut w, 150), Err(ReplayError::Replayed(150)));
        take(&mut w, 5000).expect("far jump");
        assert!(matches!(take(&mut w, 200), Err(ReplayError::TooOld { .. })));
        take(&mut w, 5000 - WINDOW + 1).expect("oldest tracked position");
        assert!(matches!(
            take(&mut w, 5000 - WINDOW),
            Err(ReplayError::TooOld { .. })
        ));
    }

    #[test]
    fn window_is_at_least_1024() {
        const _: () = assert!(WINDOW >= 1024);
        let mut w = ReplayWindow::new();
        take(&mut w, 10_000).expect("fresh");
        take(&mut w, 10_000 - 1024).expect("1024 behind is still inside");
    }

    #[test]
    fn check_does_not_move_the_window() {
        let mut w = ReplayWindow::new();
        take(&mut w, 10).expect("fresh");
        assert!(w.check(1_000_000).is_ok());
        // Not accepted (e.g. its tag failed): the window did not move.
        assert_eq!(w.highest(), Some(10));
        take(&mut w, 9).expect("still inside the window");
    }

    /// A model of the window: a set of accepted numbers and the highest.
    fn model_check(accepted: &std::collections::BTreeSet<u64>, seq: u64) -> bool {
        match accepted.iter().next_back() {
            None => true,
            Some(&h) if seq > h => true,
            Some(&h) => h - seq < WINDOW && !accepted.contains(&seq),
        }
    }

    proptest! {
        /// The bitmap behaves exactly like the set model for any arrival
        /// order, including duplicates and jumps past the whole window.
        #[test]
        fn matches_the_set_model(seqs in proptest::collection::vec(
            prop_oneof![0u64..3000, 0u64..200, Just(u64::MAX - 1), 1_000_000u64..1_000_100],
            1..400,
        )) {
            let mut w = ReplayWindow::new();
            let mut accepted = std::collections::BTreeSet::new();
            for seq in seqs {
                let want = model_check(&accepted, seq);
                prop_assert_eq!(w.check(seq).is_ok(), want, "seq {}", seq);
                if want {
                    w.accept(seq);
                    accepted.insert(seq);
                }
            }
        }
    }
}
