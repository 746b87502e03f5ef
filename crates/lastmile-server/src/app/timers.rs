//! The one timer task: a `DelayQueue` holding every acknowledgement timer,
//! arrival deadline and return timer of the server, firing each into the
//! core as an internal change.

use std::sync::Arc;

use lastmile_core::effects::{Timer, TimerKey};
use lastmile_core::incident::incident_id_for;
use tokio::sync::mpsc;
use tokio_util::time::DelayQueue;

use super::App;

/// Re-arms the timers of a recovered state: those already due fire now, in
/// order; the rest go to the wheel. How many fired.
pub fn rearm(app: &App) -> usize {
    let now = app.now();
    let mut fired = 0;
    for timer in app.dispatcher.timers_to_rearm() {
        if timer.at <= now {
            app.internal_change(|work| app.dispatcher.fire(&timer.key, now, work));
            fired += 1;
        } else {
            app.sinks.arm(timer);
        }
    }
    fired
}

/// Runs until `app.stop` is cancelled. Armed timers arrive on `armed` (the
/// sinks' timer channel) and are kept in one wheel; each expiry is fired
/// into the core at the clock's now.
pub async fn run(app: Arc<App>, mut armed: mpsc::UnboundedReceiver<Timer>) {
    let mut wheel: DelayQueue<TimerKey> = DelayQueue::new();
    loop {
        tokio::select! {
            biased;
            () = app.stop.cancelled() => return,
            Some(timer) = armed.recv() => {
                wheel.insert_at(timer.key, app.clock.instant_for(timer.at));
            }
            Some(expired) = std::future::poll_fn(|cx| wheel.poll_expired(cx)) => fire(&app, expired.get_ref()),
        }
    }
}

fn fire(app: &App, key: &TimerKey) {
    // Fail closed: with a failed journal, timers change nothing either
    // (their changes could not be stored).
    if app.journal.as_ref().is_some_and(|j| j.failure().is_some()) {
        return;
    }
    let span = match key {
        TimerKey::Ack { incident_seq, tier, unit_id, attempt } => tracing::info_span!(
            "timer", kind = "ack", incident_id = %incident_id_for(*incident_seq), tier = %tier, unit_id = %unit_id, attempt
        ),
        TimerKey::Deadline { incident_seq, tier } => {
            tracing::info_span!("timer", kind = "deadline", incident_id = %incident_id_for(*incident_seq), tier = %tier)
        }
        TimerKey::Return { unit_id, .. } => tracing::info_span!("timer", kind = "return", unit_id = %unit_id),
        TimerKey::Fallback { incident_seq, tier } => {
            tracing::info_span!("timer", kind = "fallback", incident_id = %incident_id_for(*incident_seq), tier = %tier)
        }
    };
    let _in_span = span.enter();
    app.internal_change(|work| app.dispatcher.fire(key, app.now(), work));
}
