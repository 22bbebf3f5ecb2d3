//! The transport edge: what every call passes through before its handler runs, and what an
//! operator sees of it. Outermost first:
//!
//! - [`limits::WatchTurnsLayer`]: watches open a few at a time;
//! - [`telemetry::TelemetryLayer`]: a span and metrics per call, refusals of the layers below
//!   included;
//! - [`limits::LimitsLayer`]: deadlines, the bound on calls at once, the bound on watchers,
//!   oversized and undecodable messages;
//! - [`authenticate::Authenticate`]: a tonic interceptor on each API service (health and
//!   reflection are served without one, so they need no credentials), which checks the
//!   credentials with [`crate::auth`] and hands the handlers their [`crate::domain::Caller`].
//!
//! Every refusal here is a [`crate::grpc::error::EdgeRefusal`], mapped by the one error table.

pub mod authenticate;
pub mod limits;
pub mod telemetry;
