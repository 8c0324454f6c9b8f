//! AI agent execution (DESIGN.md §2 `agent-runner/`): the trigger outbox
//! relay into Valkey (or an in-process queue), and the runner that
//! consumes triggers and drives each conversation in its own sandbox.

pub mod agent_server;
pub mod bus;
pub mod intake;
pub mod runner;
pub mod sandbox;
