//! A gRPC membership service: who belongs to which tenant, with which roles, and an ordered,
//! resumable feed of every change.
//!
//! A request flows one way:
//!
//! - [`grpc`]: thin tonic handlers. Validate and convert the request, call one use case, map the
//!   result and the error (one table, [`grpc::error`]).
//! - [`auth`]: who the caller is (a user acting in a tenant, or a trusted system caller).
//! - [`service`]: use cases. Open one transaction, lock the tenant, check the rules, write the
//!   rows and the events that commit with them.
//! - [`domain`]: rules and types with no gRPC or SQL: statuses, permissions, presets, seats,
//!   validation, [`domain::DomainError`].
//! - [`store`]: SeaORM entities and queries, the event log appender, the write transaction.
//! - [`events`]: the event feed: one tailer per process, a shared ring of recent events, and a
//!   task per subscription that catches up from the database when it falls behind.
//!
//! [`app`] wires the services, health and reflection onto one server; [`config`] reads flags
//! and environment variables.

pub mod app;
pub mod auth;
pub mod authz;
pub mod config;
pub mod dns;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod limits;
pub mod mail;
pub mod service;
pub mod store;
pub mod telemetry;
