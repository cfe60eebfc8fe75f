//! The alert policy for people: when Slack and email hear about a count.
//!
//! Live broadcasts get every change; people get only what is worth reading on a phone:
//! - a rise: the first alert at or above the channel's minimum severity, and every higher
//!   severity after it;
//! - a reminder: an unchanged (or lower, still alerting) severity, once `repeat_interval` has
//!   passed since the last message;
//! - one "resolved" when the count falls below `resolve_below` after an alert. Resolving below
//!   a mark under the threshold (95 % by default) is the hysteresis: a count bouncing between
//!   19 and 20 around a threshold of 20 does not flap between "warning" and "resolved".
//!
//! [`Policy::decide`] is a pure function of the previous [`State`], the count and the time,
//! so tests drive it with their own clock. The state lives in Redis, and the dispatcher reads,
//! decides and writes it in one optimistic transaction (see `Queue::push_guarded`), so several
//! listeners, and a listener after a restart, agree on what was already sent.

use crate::severity::Severity;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a channel last told people, while an alert is open. No state: all quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The highest severity announced since the last message (what a rise is measured from).
    pub severity: Severity,
    /// When the last message was sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// What to tell people about one count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Quiet,
    /// The severity rose; `previous` is what was announced before (none: a new alert).
    Raise {
        /// The severity announced before this one, if an alert was open.
        previous: Option<Severity>,
    },
    /// Still alerting after `repeat_interval`: a reminder.
    Repeat,
    /// The count fell below `resolve_below`; `was` is the last severity announced.
    Resolve {
        /// The severity the alert had reached.
        was: Severity,
    },
}

/// Where a count falls back to "resolved" after an alert (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveBelow {
    /// A percentage of the threshold, e.g. 95.
    Percent(u64),
    /// An absolute item count.
    Count(u64),
}

impl ResolveBelow {
    /// The count under which an alert is resolved: `count < limit`. A percentage rounds up, so
    /// 95 % of 20 gives 19 (and 19 itself is not below it).
    pub fn limit(self, threshold: u64) -> u64 {
        match self {
            ResolveBelow::Count(n) => n,
            ResolveBelow::Percent(p) => {
                let scaled = u128::from(threshold) * u128::from(p);
                u64::try_from(scaled.div_ceil(100)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// One channel's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Counts rated below this severity are not sent (but can still resolve an alert).
    pub min_severity: Severity,
    /// An unchanged severity is sent again only after this long.
    pub repeat_interval: Duration,
    /// An open alert is resolved by a count below this.
    pub resolve_below: u64,
}

impl Policy {
    /// Decides about `count` (rated `severity`) at `now_ms`, given the state after the previous
    /// message; returns the decision and the state to keep.
    pub fn decide(
        &self,
        previous: Option<State>,
        count: u64,
        severity: Severity,
        now_ms: u64,
    ) -> (Decision, Option<State>) {
        let sent = Some(State {
            severity,
            sent_at_ms: now_ms,
        });
        let Some(state) = previous else {
            return if severity >= self.min_severity {
                (Decision::Raise { previous: None }, sent)
            } else {
                (Decision::Quiet, None)
            };
        };
        if count < self.resolve_below {
            return (
                Decision::Resolve {
                    was: state.severity,
                },
                None,
            );
        }
        if severity < self.min_severity {
            // Lower, but not low enough to resolve: the alert stays open, silently.
            return (Decision::Quiet, previous);
        }
        if severity > state.severity {
            let previous = Some(state.severity);
            return (Decision::Raise { previous }, sent);
        }
        let interval = u64::try_from(self.repeat_interval.as_millis()).unwrap_or(u64::MAX);
        if now_ms.saturating_sub(state.sent_at_ms) >= interval {
            // The reminder tells the severity of now, and a later rise is measured from it.
            return (Decision::Repeat, sent);
        }
        (Decision::Quiet, previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Boundaries;

    const MINUTE: u64 = 60_000;

    fn policy(min: Severity) -> Policy {
        Policy {
            min_severity: min,
            repeat_interval: Duration::from_secs(3600),
            resolve_below: 19,
        }
    }

    /// Runs a count series one minute apart; returns what people were told.
    fn run(policy: &Policy, counts: &[u64], start_ms: u64, step_ms: u64) -> Vec<String> {
        let mut state = None;
        let mut told = Vec::new();
        for (i, &count) in counts.iter().enumerate() {
            let severity = Boundaries::default().rate(count, 20);
            let now = start_ms + i as u64 * step_ms;
            let (decision, next) = policy.decide(state, count, severity, now);
            state = next;
            match decision {
                Decision::Quiet => {}
                Decision::Raise { .. } => told.push(severity.to_string()),
                Decision::Repeat => told.push(format!("still {severity}")),
                Decision::Resolve { .. } => told.push("resolved".into()),
            }
        }
        told
    }

    #[test]
    fn the_issue_series() {
        let counts = [19, 20, 21, 24, 25, 30, 30, 18, 19, 20];
        assert_eq!(
            run(&policy(Severity::Warning), &counts, 1_000_000, MINUTE),
            ["warning", "high", "critical", "resolved", "warning"]
        );
    }

    #[test]
    fn bouncing_around_the_threshold_does_not_flap() {
        let counts = [20, 19, 20, 19, 20, 19, 20];
        assert_eq!(
            run(&policy(Severity::Warning), &counts, 0, MINUTE),
            ["warning"]
        );
        // Bouncing across a severity boundary does not flap either.
        let counts = [29, 30, 29, 30, 29, 30];
        assert_eq!(
            run(&policy(Severity::Warning), &counts, 0, MINUTE),
            ["high", "critical"]
        );
    }

    #[test]
    fn unchanged_severity_repeats_after_the_interval() {
        let p = policy(Severity::Warning);
        let (d, s) = p.decide(None, 20, Severity::Warning, 0);
        assert_eq!(d, Decision::Raise { previous: None });
        let almost = 3600 * 1000 - 1;
        let (d, s) = p.decide(s, 21, Severity::Warning, almost);
        assert_eq!(d, Decision::Quiet);
        let (d, s) = p.decide(s, 21, Severity::Warning, almost + 1);
        assert_eq!(d, Decision::Repeat);
        assert_eq!(s.unwrap().sent_at_ms, almost + 1);
        // The next reminder is measured from the last message.
        let (d, _) = p.decide(s, 21, Severity::Warning, almost + 2);
        assert_eq!(d, Decision::Quiet);
    }

    #[test]
    fn a_lower_severity_is_quiet_then_reminded_and_a_rise_counts_from_it() {
        let p = policy(Severity::Warning);
        let (_, s) = p.decide(None, 30, Severity::Critical, 0);
        let (d, s) = p.decide(s, 25, Severity::High, MINUTE);
        assert_eq!(d, Decision::Quiet);
        assert_eq!(s.unwrap().severity, Severity::Critical);
        let (d, s) = p.decide(s, 25, Severity::High, 61 * MINUTE);
        assert_eq!(d, Decision::Repeat);
        assert_eq!(s.unwrap().severity, Severity::High);
        let (d, _) = p.decide(s, 30, Severity::Critical, 62 * MINUTE);
        assert_eq!(
            d,
            Decision::Raise {
                previous: Some(Severity::High)
            }
        );
    }

    #[test]
    fn minimum_severity_per_channel() {
        let counts = [19, 20, 21, 24, 25, 30, 30, 18, 19, 20];
        assert_eq!(
            run(&policy(Severity::High), &counts, 0, MINUTE),
            ["high", "critical", "resolved"]
        );
        assert_eq!(
            run(&policy(Severity::Critical), &counts, 0, MINUTE),
            ["critical", "resolved"]
        );
        // Below the channel's minimum but above resolve_below: still open, nothing said.
        let counts = [24, 21, 24];
        assert_eq!(run(&policy(Severity::High), &counts, 0, MINUTE), ["high"]);
    }

    #[test]
    fn nothing_to_resolve_without_an_alert() {
        assert_eq!(
            run(&policy(Severity::Warning), &[5, 18, 0, 19], 0, MINUTE),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_clock_that_goes_back_does_not_repeat() {
        let p = policy(Severity::Warning);
        let (_, s) = p.decide(None, 20, Severity::Warning, 10 * MINUTE);
        let (d, _) = p.decide(s, 20, Severity::Warning, 0);
        assert_eq!(d, Decision::Quiet);
    }
}
