//! The label sets of the metrics: one struct per combination, as `prometheus-client` encodes
//! them.

use prometheus_client::encoding::EncodeLabelSet;

/// Labels of a job's end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The queue it came from.
    pub queue: String,
    /// Its kind, e.g. `broadcast:redis`.
    pub kind: String,
    /// `done`, `retried` or `failed`.
    pub outcome: String,
}

/// Labels of a job's run time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The queue.
    pub queue: String,
    /// The job kind.
    pub kind: String,
}

/// One label: a queue, a state, a result, a severity, a server or a driver.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Queue {
    /// The queue.
    pub queue: String,
}

/// A queue and one of its states.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueState {
    /// The queue.
    pub queue: String,
    /// `pending`, `delayed` or `reserved`.
    pub state: String,
}

/// A label named `name` with one value, for the small families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `rated` or `skipped`.
    pub result: String,
}

/// A severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `info`, `warning`, `high`, `critical`.
    pub severity: String,
}

/// A server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// `postgres` or `redis`.
    pub server: String,
}

/// A broadcast driver.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabel {
    /// `redis`.
    pub driver: String,
}

/// The build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// The crate's version.
    pub version: String,
}
