//! The pure domain: aggregates, their commands and events, invariants and
//! permissions. No IO, no async runtime, no SQL.
//!
//! Every aggregate follows the same shape: `decide(&State, Command) ->
//! Result<Vec<Event>, DomainError>` and `State::evolve(&Event)`, so it can be
//! tested given/when/then without a database.

pub mod agent;
pub mod change;
pub mod conversation;
pub mod doc;
pub mod error;
pub mod event;
pub mod global_role;
pub mod notification;
pub mod permissions;
pub mod plugin;
pub mod project;
pub mod sprint;
pub mod task;
pub mod task_config;
pub mod upcast;
pub mod user;
pub mod validate;
pub mod vecmap;
pub mod view;

pub use error::{Decision, DomainError, ErrorCode};
pub use event::DomainEvent;
