//! inventory-broadcast: watch an inventory table in PostgreSQL and broadcast alerts when the
//! item count reaches a threshold.
//!
//! The pipeline: the `items` trigger NOTIFYs each committed change → [`listener`] rates the
//! count ([`severity`]) and [`service`] queues one [`queue::Job`] per driver → [`worker`]
//! reserves jobs and sends the [`event`] through [`broadcast`] drivers, retrying with backoff
//! and recording the last failure in `failed_jobs` ([`db::failed`]). [`manual`] is `notify`;
//! [`admin`] holds `queue-work status` and `queue-work failed …`.
//!
//! Beside the broadcast, [`notify`] tells people (Slack, email) what its alert
//! [`notify::policy`] lets through: rises, reminders, and one "resolved". [`http`] is the HTTP
//! client the pusher driver and Slack share.

pub mod admin;
pub mod backoff;
pub mod bounds;
pub mod broadcast;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod delivery;
pub mod event;
pub mod heartbeat;
pub mod host;
pub mod http;
pub mod listener;
pub mod logging;
pub mod manual;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod redis_conn;
pub mod secret;
pub mod service;
pub mod severity;
pub mod shutdown;
pub mod text;
pub mod tls;
pub mod web;
pub mod worker;
