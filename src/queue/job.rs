//! The job envelope: what a queue entry holds, and its kind (where it delivers).

use crate::bounds::MAX_BACKOFF_S;
use crate::broadcast::Driver;
use crate::clock::now_rfc3339;
use crate::event::Alert;
use crate::notify::{Channel, Notice};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// What a job does: deliver its alert through one broadcast driver, or to one people channel.
/// In the envelope it is the string `broadcast:<driver>` or `notify:<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Broadcast the alert's event (`broadcast:redis`).
    Broadcast(Driver),
    /// Tell people, with the notice the alert policy decided on (`notify:slack`).
    Notify(Channel),
}

impl Kind {
    /// Parses `broadcast:<driver>` or `notify:<channel>`.
    pub fn parse(text: &str) -> Option<Kind> {
        let (family, name) = text.split_once(':')?;
        match family {
            "broadcast" => Driver::parse(name).map(Kind::Broadcast),
            "notify" => Channel::parse(name).map(Kind::Notify),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Broadcast(d) => write!(f, "broadcast:{}", d.as_str()),
            Kind::Notify(c) => write!(f, "notify:{}", c.as_str()),
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Kind, String> {
        Kind::parse(text).ok_or_else(|| format!("unknown job kind `{}`", text.escape_debug()))
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        Kind::parse(other) == Some(*self)
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A queued unit of work: deliver one alert through one driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique job id (also the `failed_jobs.uuid`).
    pub id: Uuid,
    /// What to do, e.g. `broadcast:redis`.
    pub job: Kind,
    /// Attempts when the job was pushed (0). The live count is kept beside the job in Redis.
    pub attempts: u32,
    /// Attempts allowed (0 = unlimited).
    pub max_tries: u32,
    /// Seconds before each retry; the last value repeats.
    pub backoff: Vec<u64>,
    /// Seconds one attempt may take.
    pub timeout: u64,
    /// When the job was created, RFC 3339 UTC.
    pub created_at: String,
    /// The alert to deliver.
    pub payload: Alert,
    /// For a notification job (`notify:…`), why people are told. Absent from broadcast jobs,
    /// so their bytes are as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

impl Job {
    /// A new job of `kind` for `alert`.
    pub fn new(kind: Kind, alert: Alert, max_tries: u32, backoff: Vec<u64>, timeout: u64) -> Job {
        Job {
            id: Uuid::new_v4(),
            job: kind,
            attempts: 0,
            max_tries,
            backoff,
            timeout,
            created_at: now_rfc3339(),
            payload: alert,
            notice: None,
        }
    }

    /// This job, carrying `notice` (a notification job).
    pub fn with_notice(mut self, notice: Notice) -> Job {
        self.notice = Some(notice);
        self
    }

    /// The job's bytes in the queue.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes queue bytes; the error says what is wrong, for `failed_jobs`.
    pub fn decode(raw: &[u8]) -> Result<Job, String> {
        let text = std::str::from_utf8(raw).map_err(|e| format!("job is not UTF-8: {e}"))?;
        serde_json::from_str(text).map_err(|e| format!("job is not a valid job envelope: {e}"))
    }

    /// Seconds to wait before the retry that follows attempt `attempts` (1-based), at most
    /// [`MAX_BACKOFF_S`]: a queued job's own backoff comes from outside and is not trusted.
    pub fn backoff_after(&self, attempts: u32) -> u64 {
        let index = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(0)
            .min(MAX_BACKOFF_S)
    }

    /// True when `attempts` used up the tries.
    pub fn is_last_attempt(&self, attempts: u32) -> bool {
        self.max_tries != 0 && attempts >= self.max_tries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Boundaries;

    fn job() -> Job {
        let alert = Alert::new(21, 20, &Boundaries::default(), "test");
        Job::new(Kind::Broadcast(Driver::Redis), alert, 3, vec![1, 5, 10], 60)
    }

    #[test]
    fn backoff_repeats_last_value() {
        let j = job();
        assert_eq!(j.backoff_after(1), 1);
        assert_eq!(j.backoff_after(2), 5);
        assert_eq!(j.backoff_after(3), 10);
        assert_eq!(j.backoff_after(9), 10);
        let none = Job {
            backoff: vec![],
            ..job()
        };
        assert_eq!(none.backoff_after(2), 0);
        let absurd = Job {
            backoff: vec![u64::MAX],
            ..job()
        };
        assert_eq!(absurd.backoff_after(1), MAX_BACKOFF_S);
    }

    #[test]
    fn tries() {
        let j = job();
        assert!(!j.is_last_attempt(2));
        assert!(j.is_last_attempt(3));
        assert!(j.is_last_attempt(4));
        let unlimited = Job {
            max_tries: 0,
            ..job()
        };
        assert!(!unlimited.is_last_attempt(1000));
    }

    #[test]
    fn decode_errors_are_readable() {
        assert!(
            Job::decode(&[0xff, 0xfe])
                .unwrap_err()
                .contains("not UTF-8")
        );
        assert!(
            Job::decode(b"{\"id\":1}")
                .unwrap_err()
                .contains("not a valid job")
        );
        let j = job();
        assert_eq!(Job::decode(&j.encode()).unwrap(), j);
        let unknown = String::from_utf8(j.encode())
            .unwrap()
            .replace("broadcast:redis", "broadcast:fax");
        let err = Job::decode(unknown.as_bytes()).unwrap_err();
        assert!(err.contains("unknown job kind `broadcast:fax`"), "{err}");
    }

    #[test]
    fn kinds_are_the_envelope_strings() {
        for text in [
            "broadcast:redis",
            "broadcast:pusher",
            "notify:slack",
            "notify:mail",
        ] {
            let kind: Kind = text.parse().unwrap();
            assert_eq!(kind.to_string(), text);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{text}\""));
        }
        assert_eq!(
            Kind::parse("broadcast:Redis"),
            Some(Kind::Broadcast(Driver::Redis))
        );
        for bad in [
            "",
            "broadcast",
            "broadcast:",
            "notify:fax",
            "mail:slack",
            "redis",
        ] {
            assert_eq!(Kind::parse(bad), None, "{bad}");
        }
    }
}
