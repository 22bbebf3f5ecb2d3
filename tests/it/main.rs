//! The integration tests: one binary, a module per area, every test against a real server.
//!
//! `common` starts a server on 127.0.0.1:0 over a fresh database (SQLite by default, a schema of
//! its own on PostgreSQL with `MEMBERSHIP_TEST_DATABASE_URL`) and holds what the areas share: the
//! typed fixture (`common::api`), `expect_events` for the outbox, the SMTP and DNS servers the
//! mail and domain tests talk to. One binary compiles all of that once, links once, and runs
//! every test in one pool of threads. Tests that watch process-wide numbers (metrics, signals)
//! run the server binary as a child process, so sharing this process does not blur them.

mod common;

mod auth;
mod concurrency;
mod docs;
mod domains;
mod events;
mod feed;
mod group_commit;
mod groups;
mod health;
mod invitations;
mod limits;
mod memberships;
mod metrics;
mod pagination;
mod presets;
mod readme;
mod roles;
mod seats;
mod shutdown;
mod tenants;
mod tls;
