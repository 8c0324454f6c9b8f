//! The one transaction primitive every command runs through.
//!
//! A command body runs in one [`AppendTx`]; when it fails in a way that
//! running it again can fix ([`CommandError::is_retryable`]: a lost
//! optimistic race, a deadlock victim, a serialization failure) the
//! transaction is rolled back and the body runs again on a fresh one after
//! a short jittered backoff, at most [`ATTEMPTS`] times. Anything else,
//! including a stale `If-Match` precondition, is returned at once.

use std::time::Duration;

use eventstore::AppendTx;

use crate::{CommandError, CommandResult};

/// Attempts before a lost race reaches the caller as `409 CONFLICT`.
pub const ATTEMPTS: u32 = 8;

/// Backoff before attempt `n` (1-based retry count): full jitter over an
/// exponentially growing window (0.5 ms, 1 ms, 2 ms, ... capped at 32 ms),
/// so writers that collided do not collide again in lockstep.
pub fn backoff(retry: u32) -> Duration {
    let window_us = 500u64 << retry.min(6);
    Duration::from_micros(rand::random_range(0..=window_us))
}

/// What became of one attempt.
#[doc(hidden)]
pub enum Settled<T> {
    Committed(T),
    Retry(CommandError),
    Failed(CommandError),
}

/// Commits the attempt's transaction when it succeeded; otherwise drops
/// (rolls back) it and says whether to run the command again.
#[doc(hidden)]
pub async fn settle<T>(tx: AppendTx, result: CommandResult<T>) -> Settled<T> {
    match result {
        Ok(value) => match tx.commit().await {
            Ok(()) => Settled::Committed(value),
            Err(error) => {
                let error = CommandError::from(error);
                if error.is_retryable() {
                    Settled::Retry(error)
                } else {
                    Settled::Failed(error)
                }
            }
        },
        Err(error) if error.is_retryable() => Settled::Retry(error),
        Err(error) => Settled::Failed(error),
    }
}

/// `transact!(commands, tx => body)`: runs `body` (an expression using
/// `tx: &mut AppendTx`, typically `self.x_in(tx, ..).await`) in one append
/// transaction and commits it, running it again on a fresh transaction
/// when [`CommandError::is_retryable`]. The body must only write through
/// `tx`, so a failed attempt leaves nothing behind.
///
/// A macro rather than a function taking an async closure: the futures of
/// async closures called through `AsyncFnMut` bounds are not provably
/// `Send`, and command futures must be (subscriptions and the agent
/// runner spawn them).
#[macro_export]
macro_rules! transact {
    ($commands:expr, $tx:ident => $body:expr) => {{
        let mut outcome = None;
        let mut last = $crate::CommandError::Conflict(::uuid::Uuid::nil());
        for attempt in 0..$crate::transact::ATTEMPTS {
            if attempt > 0 {
                ::tokio::time::sleep($crate::transact::backoff(attempt)).await;
            }
            let mut owned = match $commands.store.begin().await {
                Ok(tx) => tx,
                Err(error) => {
                    outcome = Some(Err(error.into()));
                    break;
                }
            };
            let result = {
                let $tx = &mut owned;
                $body
            };
            match $crate::transact::settle(owned, result).await {
                $crate::transact::Settled::Committed(value) => {
                    outcome = Some(Ok(value));
                    break;
                }
                $crate::transact::Settled::Retry(error) => last = error,
                $crate::transact::Settled::Failed(error) => {
                    outcome = Some(Err(error));
                    break;
                }
            }
        }
        outcome.unwrap_or(Err(last))
    }};
}
