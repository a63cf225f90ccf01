//! One prober's view of one check: consecutive-result thresholds, so that a single lost probe (or a single
//! lucky one) never changes anything.

/// A health state: of one check at one prober, or of a region after aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not known yet (too few probes, or nobody has an opinion). Steering treats it as usable.
    Unknown,
    /// Serving.
    Up,
    /// Not serving.
    Down,
}

impl State {
    /// `up`, `down`, `unknown` (metric labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Rise/fall hysteresis: the state becomes `Up` after `rise` consecutive successes and `Down` after `fall`
/// consecutive failures, starting from `Unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    state: State,
    since_ms: u64,
    /// The last outcome and how many times in a row it came.
    last: Option<bool>,
    streak: u32,
}

impl Hysteresis {
    /// A check nothing is known about yet, as of `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            state: State::Unknown,
            since_ms: now_ms,
            last: None,
            streak: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When the state last changed (ms since the epoch, as passed in).
    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }

    /// Consecutive identical outcomes so far (0 before the first probe).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Records one probe's outcome at `now_ms`; returns the new state if it changed.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32, now_ms: u64) -> Option<State> {
        if self.last == Some(ok) {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.streak = 1;
        }
        let next = match (ok, self.state) {
            (true, State::Unknown | State::Down) if self.streak >= rise.max(1) => State::Up,
            (false, State::Unknown | State::Up) if self.streak >= fall.max(1) => State::Down,
            (_, s) => s,
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        self.since_ms = now_ms;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_and_falls_on_streaks_only() {
        let mut h = Hysteresis::new(0);
        assert_eq!(h.record(true, 2, 3, 1), None, "one success is not enough");
        assert_eq!(h.record(true, 2, 3, 2), Some(State::Up));
        assert_eq!(h.since_ms(), 2);
        assert_eq!(h.record(false, 2, 3, 3), None);
        assert_eq!(h.record(false, 2, 3, 4), None);
        assert_eq!(
            h.record(true, 2, 3, 5),
            None,
            "a success resets the failure streak"
        );
        assert_eq!(h.record(false, 2, 3, 6), None);
        assert_eq!(h.record(false, 2, 3, 7), None);
        assert_eq!(h.record(false, 2, 3, 8), Some(State::Down));
        assert_eq!((h.state(), h.since_ms()), (State::Down, 8));
        assert_eq!(h.record(false, 2, 3, 9), None, "staying down is not a transition");
        assert_eq!(h.since_ms(), 8);
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let mut h = Hysteresis::new(0);
        assert_eq!(h.record(false, 1, 1, 1), Some(State::Down));
        assert_eq!(h.record(true, 1, 1, 2), Some(State::Up));
    }
}
