//! Restart decisions as the kubelet makes them: whether an exited container restarts, and how
//! long it waits first.

use std::time::Duration;

const INITIAL: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long is stable: its next exit starts the back-off over.
const STABLE: Duration = Duration::from_secs(600);

/// Whether a container that exited with `exit_code` restarts under the pod's policy.
pub fn should_restart(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// One container's restart back-off. As in the kubelet, the first restart is immediate, then
/// the delay starts at 10 s and doubles up to 5 min.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    /// The delay the next exit waits.
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an exit of the container after it ran for `ran_for`, and returns how long to
    /// wait before restarting it. The caller keeps the deadline (exit time plus the delay).
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE {
            self.next = Duration::ZERO;
        }
        let delay = self.next;
        self.next = if delay.is_zero() {
            INITIAL
        } else {
            (delay * 2).min(MAX)
        };
        delay
    }
}

/// The message of the `CrashLoopBackOff` waiting reason, worded as the kubelet's:
/// `back-off 20s restarting failed container=app pod=web_default(uid)`, the pod being
/// `NAME_NAMESPACE(UID)` as in the kubelet's format.Pod.
pub fn crash_loop_message(
    delay: Duration,
    container: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> String {
    let delay = go_duration(delay);
    format!(
        "back-off {delay} restarting failed container={container} pod={name}_{namespace}({uid})"
    )
}

/// Go's Duration formatting, to the second: 10s, 1m20s, 5m0s, 1h0m0s.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, secs) => format!("{secs}s"),
        (0, mins, secs) => format!("{mins}m{secs}s"),
        (hours, mins, secs) => format!("{hours}h{mins}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_secs(1);

    #[test]
    fn restart_policies_follow_kubernetes() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("Always", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 137));
        assert!(!should_restart("Never", 1));
        assert!(!should_restart("Never", 0));
    }

    #[test]
    fn delays_start_immediate_then_double_to_five_minutes() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay(SHORT).as_secs())
            .collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn ten_minutes_of_running_resets_the_back_off() {
        let mut backoff = Backoff::new();
        for _ in 0..4 {
            backoff.next_delay(SHORT);
        }
        assert_eq!(
            backoff.next_delay(Duration::from_secs(599)),
            Duration::from_secs(80)
        );
        assert_eq!(backoff.next_delay(Duration::from_secs(600)), Duration::ZERO);
        assert_eq!(backoff.next_delay(SHORT), Duration::from_secs(10));
    }

    #[test]
    fn message_matches_the_kubelet() {
        assert_eq!(
            crash_loop_message(Duration::from_secs(20), "app", "default", "web", "u-1"),
            "back-off 20s restarting failed container=app pod=web_default(u-1)"
        );
        assert_eq!(
            crash_loop_message(MAX, "app", "default", "web", "u-1"),
            "back-off 5m0s restarting failed container=app pod=web_default(u-1)"
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        let go = |secs| go_duration(Duration::from_secs(secs));
        assert_eq!(
            [go(0), go(10), go(80), go(160), go(300), go(3600)],
            ["0s", "10s", "1m20s", "2m40s", "5m0s", "1h0m0s"]
        );
    }
}
