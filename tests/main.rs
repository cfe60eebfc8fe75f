//! Integration tests: one binary, real PostgreSQL and Redis, a fresh database and key prefix
//! per test. Run them with `scripts/test` (it starts the services).

mod support;

mod admin;
mod alert_policy;
mod binaries;
mod dashboard;
mod delivery;
mod fuzz_regressions;
mod logical;
mod operations;
mod packaging;
mod pg_failover;
mod pipeline;
mod prometheus;
mod queue;
mod scaling;
mod tls;
mod tls_servers;
mod worker;
