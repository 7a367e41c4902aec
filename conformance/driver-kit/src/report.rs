//! The outcome of a kit run: each check by name, passed or with what failed.

use std::future::Future;
use std::time::Duration;

/// One check's outcome: what went wrong, if anything.
pub(crate) type Check = Result<(), String>;

/// How long one check may take before it counts as failed.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Fails the enclosing check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

/// The outcome of a kit run.
#[derive(Debug)]
pub struct KitReport {
    /// Driver name.
    pub driver: String,
    /// Each check with its outcome.
    pub checks: Vec<(String, Result<(), String>)>,
    /// Checks not run, with why (a stand-in server cannot show them).
    pub skipped: Vec<(String, String)>,
}

impl KitReport {
    pub(crate) fn new(driver: &str) -> KitReport {
        KitReport {
            driver: driver.to_owned(),
            checks: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Records a check that was not run, and why; printed as `SKIPPED`,
    /// never counted as passed.
    pub fn skip(&mut self, name: &str, why: &str) {
        self.skipped.push((name.to_owned(), why.to_owned()));
    }

    /// Adds an outcome already known.
    pub(crate) fn push(&mut self, name: &str, outcome: Check) {
        self.checks.push((name.to_owned(), outcome));
    }

    /// Runs one check (at most [`CHECK_LIMIT`]) and adds its outcome.
    pub(crate) async fn record(&mut self, name: &str, check: impl Future<Output = Check>) {
        let outcome = match tokio::time::timeout(CHECK_LIMIT, check).await {
            Ok(r) => r,
            Err(_) => Err("check did not finish within 60 s".into()),
        };
        self.push(name, outcome);
    }

    /// Whether any check so far failed.
    pub(crate) fn any_failed(&self) -> bool {
        self.checks.iter().any(|(_, r)| r.is_err())
    }

    /// Panics with every failed check, or prints a one-line summary.
    pub fn assert_passed(&self) {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("  - {name}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "driver test kit: {} of {} checks failed for driver '{}':\n{}",
            failed.len(),
            self.checks.len(),
            self.driver,
            failed.join("\n")
        );
        for (name, why) in &self.skipped {
            println!("SKIPPED: {name}: {why}");
        }
        println!(
            "driver test kit: all {} checks passed for driver '{}' ({} skipped)",
            self.checks.len(),
            self.driver,
            self.skipped.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_check_is_named_in_the_panic() {
        let mut report = KitReport::new("fake");
        report.record("passes", async { Ok(()) }).await;
        report
            .record("fails", async { Err("the reason".to_owned()) })
            .await;
        assert!(report.any_failed());
        let panic = std::panic::catch_unwind(|| report.assert_passed()).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("1 of 2 checks failed for driver 'fake'")
                && message.contains("  - fails: the reason")
                && !message.contains("passes"),
            "{message}"
        );
    }
}
