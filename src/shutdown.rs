//! Server shutdown stages, shared by the listener, open streams and session supervisors:
//! running → draining (finish in-flight work, bounded) → immediate (stop now).

use std::sync::Arc;

use tokio::sync::watch;

/// How far shutdown has gone. Stages only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Running,
    Draining,
    Immediate,
}

/// A cloneable handle to the server's shutdown state.
#[derive(Debug, Clone)]
pub struct Shutdown {
    stage: Arc<watch::Sender<Stage>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self { stage: Arc::new(watch::Sender::new(Stage::Running)) }
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        *self.stage.borrow()
    }

    /// Moves to `stage` unless shutdown is already further along.
    pub fn advance_to(&self, stage: Stage) {
        self.stage.send_if_modified(|current| {
            let moved = stage > *current;
            if moved {
                *current = stage;
            }
            moved
        });
    }

    /// What a stop signal does: the first starts draining, the next skips the drain.
    pub fn escalate(&self) {
        let next = match self.stage() {
            Stage::Running => Stage::Draining,
            Stage::Draining | Stage::Immediate => Stage::Immediate,
        };
        self.advance_to(next);
    }

    /// Resolves once shutdown has reached `stage` (at once if it already has).
    pub async fn reached(&self, stage: Stage) {
        let mut receiver = self.stage.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|current| *current >= stage).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_only_move_forward_and_escalate_twice_reaches_immediate() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.stage(), Stage::Running);
        shutdown.escalate();
        assert_eq!(shutdown.stage(), Stage::Draining);
        shutdown.advance_to(Stage::Running);
        assert_eq!(shutdown.stage(), Stage::Draining);
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.reached(Stage::Immediate).await }
        });
        shutdown.escalate();
        waiter.await.expect("waiter finishes once the stage is reached");
        assert_eq!(shutdown.stage(), Stage::Immediate);
    }
}
