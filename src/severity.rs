//! Severity: how far an item count is past the threshold, in integer percent.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How urgent an alert is. Ordered, so `severity >= Severity::Warning` reads naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Below the threshold.
    Info,
    /// At the threshold, below the `high` boundary.
    Warning,
    /// At or past the `high` boundary.
    High,
    /// At or past the `critical` boundary.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name used in events, config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| "expected one of info, warning, high, critical".to_string())
    }
}

/// The percentages of the threshold at which each severity starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundaries {
    /// `warning` starts here (default 100 %: the count has reached the threshold).
    pub warning: u32,
    /// `high` starts here (default 120 %).
    pub high: u32,
    /// `critical` starts here (default 150 %).
    pub critical: u32,
}

impl Default for Boundaries {
    fn default() -> Self {
        Boundaries {
            warning: 100,
            high: 120,
            critical: 150,
        }
    }
}

impl Boundaries {
    /// Checks that the boundaries rise strictly: warning < high < critical, warning > 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.warning == 0 {
            return Err("the warning boundary must be above 0 %".into());
        }
        if !(self.warning < self.high && self.high < self.critical) {
            return Err(format!(
                "boundaries must rise: warning ({}) < high ({}) < critical ({})",
                self.warning, self.high, self.critical
            ));
        }
        Ok(())
    }

    /// Rates `count` against `threshold`.
    ///
    /// Compares `count * 100 >= threshold * pct` in 128-bit integers, so 119.99 % is never
    /// rounded into `high` and no count overflows.
    pub fn rate(&self, count: u64, threshold: u64) -> Severity {
        let scaled = u128::from(count) * 100;
        let reached = |pct: u32| scaled >= u128::from(threshold) * u128::from(pct);
        if reached(self.critical) {
            Severity::Critical
        } else if reached(self.high) {
            Severity::High
        } else if reached(self.warning) {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}

/// `count` as a percentage of `threshold`, rounded to two decimals, for display only.
pub fn percentage(count: u64, threshold: u64) -> f64 {
    if threshold == 0 {
        return 0.0;
    }
    let hundredths =
        (u128::from(count) * 10_000 + u128::from(threshold) / 2) / u128::from(threshold);
    hundredths as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u64, threshold: u64) -> Severity {
        Boundaries::default().rate(count, threshold)
    }

    #[test]
    fn boundaries_at_threshold_100() {
        assert_eq!(rate(99, 100), Severity::Info);
        assert_eq!(rate(100, 100), Severity::Warning);
        assert_eq!(rate(119, 100), Severity::Warning);
        assert_eq!(rate(120, 100), Severity::High);
        assert_eq!(rate(149, 100), Severity::High);
        assert_eq!(rate(150, 100), Severity::Critical);
    }

    #[test]
    fn thresholds_that_do_not_divide_evenly() {
        // threshold 7: 120 % = 8.4, 150 % = 10.5
        assert_eq!(rate(6, 7), Severity::Info);
        assert_eq!(rate(7, 7), Severity::Warning);
        assert_eq!(rate(8, 7), Severity::Warning);
        assert_eq!(rate(9, 7), Severity::High);
        assert_eq!(rate(10, 7), Severity::High);
        assert_eq!(rate(11, 7), Severity::Critical);
        // threshold 3333: 119.99 % (3999) must not round into high; 4000 is 120.01 %.
        assert_eq!(rate(3999, 3333), Severity::Warning);
        assert_eq!(rate(4000, 3333), Severity::High);
    }

    #[test]
    fn threshold_20_series() {
        assert_eq!(rate(19, 20), Severity::Info);
        assert_eq!(rate(20, 20), Severity::Warning);
        assert_eq!(rate(23, 20), Severity::Warning);
        assert_eq!(rate(24, 20), Severity::High);
        assert_eq!(rate(29, 20), Severity::High);
        assert_eq!(rate(30, 20), Severity::Critical);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        assert_eq!(rate(u64::MAX, u64::MAX), Severity::Warning);
        assert_eq!(rate(u64::MAX, 1), Severity::Critical);
        assert_eq!(rate(0, u64::MAX), Severity::Info);
    }

    #[test]
    fn custom_boundaries() {
        let b = Boundaries {
            warning: 80,
            high: 90,
            critical: 200,
        };
        assert_eq!(b.rate(79, 100), Severity::Info);
        assert_eq!(b.rate(80, 100), Severity::Warning);
        assert_eq!(b.rate(199, 100), Severity::High);
        assert_eq!(b.rate(200, 100), Severity::Critical);
    }

    #[test]
    fn boundaries_must_rise() {
        assert!(Boundaries::default().validate().is_ok());
        let bad = Boundaries {
            warning: 100,
            high: 100,
            critical: 150,
        };
        assert!(bad.validate().is_err());
        let zero = Boundaries {
            warning: 0,
            high: 1,
            critical: 2,
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn percentage_rounds_to_hundredths() {
        assert_eq!(percentage(25, 20), 125.0);
        assert_eq!(percentage(1, 3), 33.33);
        assert_eq!(percentage(2, 3), 66.67);
        assert_eq!(percentage(0, 20), 0.0);
    }

    #[test]
    fn parses_names() {
        assert_eq!("High".parse::<Severity>(), Ok(Severity::High));
        assert!("severe".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
    }
}
