//! Every Redis key of a queue, built in one place.
//!
//! The `{queues:NAME}` part is a Redis Cluster hash tag: all keys of one queue share a slot,
//! so the Lua scripts that touch several of them work on a cluster too.

/// Longest queue name, in bytes.
pub const MAX_NAME: usize = 100;

/// Checks a queue name: 1 to [`MAX_NAME`] bytes, no control characters, no `{`, `}` (they
/// would break the hash tag that keeps a queue's keys in one cluster slot) and no `,` (queue
/// lists are comma-separated).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a queue name has 1 to {MAX_NAME} bytes"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '{' | '}' | ','))
    {
        return Err(format!(
            "a queue name may not hold {:?}",
            bad.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// The keys of one named queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// List of jobs ready to run.
    pub pending: String,
    /// Sorted set of jobs waiting for a retry, scored by when they are due (ms).
    pub delayed: String,
    /// Sorted set of jobs being run, scored by when their reservation expires (ms).
    pub reserved: String,
    /// List with one entry per available job; workers block on it instead of polling.
    pub notify: String,
    /// Hash from job bytes to attempts so far, kept outside the job so scripts never
    /// decode and re-encode JSON.
    pub attempts: String,
    /// Set of reserved jobs that started running: a dead worker's reservation charges an
    /// attempt to these only.
    pub started: String,
}

impl Keys {
    /// The keys of queue `name` under `prefix`.
    pub fn new(prefix: &str, name: &str) -> Keys {
        let pending = format!("{prefix}{{queues:{name}}}");
        Keys {
            delayed: format!("{pending}:delayed"),
            reserved: format!("{pending}:reserved"),
            notify: format!("{pending}:notify"),
            attempts: format!("{pending}:attempts"),
            started: format!("{pending}:started"),
            pending,
        }
    }

    /// Counters of minute `minute` (since the Unix epoch): see [`crate::queue::stats`].
    pub fn stats(&self, minute: u64) -> String {
        format!("{}:stats:{minute}", self.pending)
    }

    /// The last alerts dispatched onto this queue, newest first, capped (the dashboard's
    /// "recent alerts").
    pub fn recent(&self) -> String {
        format!("{}:recent", self.pending)
    }

    /// The alert-policy state of a people channel (`slack`, `mail`). It shares the queue's
    /// hash tag because it is written in the same transaction that pushes the notification
    /// jobs, and a Redis Cluster transaction must stay within one slot.
    pub fn alert_state(&self, channel: &str) -> String {
        format!("{}:alerts:{channel}", self.pending)
    }
}

/// The key whose absence tells the listener Redis lost its data (a restart without
/// persistence, a flush): it is set once and never expires.
pub fn marker(prefix: &str) -> String {
    format!("{prefix}listener:marker")
}

/// Set of the ids of running members of `kind` (`worker`, `listener`); each also has a
/// [`member`] key that expires.
pub fn members(prefix: &str, kind: &str) -> String {
    format!("{prefix}{kind}s")
}

/// A running member's heartbeat key: its [`crate::queue::registry::WorkerInfo`] or
/// [`crate::queue::registry::ListenerInfo`] as JSON, with a time to live, so a process that
/// died without a word drops out by itself.
pub fn member(prefix: &str, kind: &str, id: &str) -> String {
    format!("{prefix}{kind}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for good in ["default", "high-priority", "émoji✓", &"q".repeat(MAX_NAME)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a{b",
            "a}b",
            "a,b",
            "a\nb",
            "\x1b[2J",
            &"q".repeat(MAX_NAME + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layout_matches_design() {
        let k = Keys::new("inventory:", "default");
        assert_eq!(k.pending, "inventory:{queues:default}");
        assert_eq!(k.delayed, "inventory:{queues:default}:delayed");
        assert_eq!(k.reserved, "inventory:{queues:default}:reserved");
        assert_eq!(k.notify, "inventory:{queues:default}:notify");
        assert_eq!(k.attempts, "inventory:{queues:default}:attempts");
        assert_eq!(k.started, "inventory:{queues:default}:started");
        assert_eq!(k.stats(7), "inventory:{queues:default}:stats:7");
        assert_eq!(k.recent(), "inventory:{queues:default}:recent");
        assert_eq!(
            k.alert_state("slack"),
            "inventory:{queues:default}:alerts:slack"
        );
        assert_eq!(members("inventory:", "worker"), "inventory:workers");
        assert_eq!(marker("inventory:"), "inventory:listener:marker");
        assert_eq!(
            member("inventory:", "worker", "h:1"),
            "inventory:worker:h:1"
        );
        assert_eq!(members("inventory:", "listener"), "inventory:listeners");
        assert_eq!(
            member("inventory:", "listener", "h:1:a"),
            "inventory:listener:h:1:a"
        );
    }
}
