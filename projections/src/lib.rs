//! The read side: the inline projector that keeps the read models in step
//! with the log, the queries the REST layer runs against them, and the
//! blue/green rebuild and verification of those tables.

pub mod audit;
pub mod columns;
pub mod history;
pub mod projector;
pub mod projector_agents;
pub mod projector_docs;
pub mod projector_plugins;
pub mod projector_sprints;
pub mod projector_tasks;
pub mod queries;
pub mod queries_agents;
pub mod queries_docs;
pub mod queries_files;
pub mod queries_notifications;
pub mod queries_plugins;
pub mod queries_sprints;
pub mod queries_tasks;
pub mod rebuild;
// The statement model moved to the event store (the fused append renders
// projector statements too); re-exported under its old path.
pub use eventstore::stmt;

pub use projector::ReadModelProjector;
pub use rebuild::{READ_MODEL_VERSION, RebuildReport, TableDiff, ensure_ready, rebuild, verify};
