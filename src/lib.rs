//! A gRPC membership service: who belongs to which tenant, with which roles, and an ordered,
//! resumable feed of every change.
//!
//! A request flows one way:
//!
//! - [`edge`]: what every call passes first: telemetry (a span and metrics per call), limits
//!   (deadlines, calls at once, watchers, message size), and an authentication interceptor on
//!   each API service that turns credentials into a caller, with [`auth`] checking them. Its
//!   refusals go through the same error table as the handlers'.
//! - [`grpc`]: thin tonic handlers. Convert the request, call one use case, map the result and
//!   the error (one table, [`grpc::error`]).
//! - [`service`]: use cases. Open one transaction, lock the tenant, check the rules, write the
//!   rows and the events that commit with them. Who may do what is decided there, in
//!   [`service::access`] (inside the write transaction) and [`service::authz`] (the permission
//!   checks' cache, outside any transaction).
//! - [`domain`]: rules and types with no gRPC or SQL: statuses, permissions, presets, seats,
//!   validation, [`domain::DomainError`].
//! - [`store`]: SeaORM entities and queries, the event log appender, the write transaction.
//! - [`events`]: the event feed: one tailer per process, a shared ring of recent events, and a
//!   task per subscription that catches up from the database when it falls behind.
//! - [`mail`] sends invitation emails and [`dns`] looks up the TXT records that verify a
//!   domain, both after or outside the transaction they serve.
//!
//! [`app`] wires the services, health and reflection onto one server; [`config`] reads flags
//! and environment variables.

pub mod app;
pub mod auth;
pub mod config;
pub mod dns;
pub mod domain;
pub mod edge;
pub mod events;
pub mod grpc;
pub mod mail;
pub mod service;
pub mod store;
