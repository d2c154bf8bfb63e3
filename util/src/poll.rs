//! [`until`]: the one poll-until-deadline loop (a child's exit, a lock, a device going away).

use std::time::{Duration, Instant};

/// How often to look again: from `first`, doubling up to `max` (a short wait is noticed at once, a
/// long one costs few wake-ups).
#[derive(Debug, Clone, Copy)]
pub struct Every {
    pub first: Duration,
    pub max: Duration,
}

impl Every {
    /// The same interval every time.
    pub const fn fixed(d: Duration) -> Every {
        Every { first: d, max: d }
    }
}

/// Call `check` until it yields a value or `timeout` has passed; `Ok(None)` on timeout. `check` runs
/// at least once, and once more at the deadline. An error from `check` ends the wait.
pub fn until<T>(
    timeout: Duration,
    every: Every,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    let mut nap = every.first;
    loop {
        if let Some(v) = check()? {
            return Ok(Some(v));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(every.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_the_value_or_none_at_the_deadline() {
        let mut n = 0;
        let got = until(Duration::from_secs(5), Every::fixed(Duration::from_millis(1)), || {
            n += 1;
            Ok((n == 3).then_some(n))
        });
        assert_eq!(got.unwrap(), Some(3));
        let mut calls = 0;
        let none: Option<()> = until(
            Duration::from_millis(20),
            Every::fixed(Duration::from_millis(5)),
            || {
                calls += 1;
                Ok(None)
            },
        )
        .unwrap();
        assert!(none.is_none() && calls >= 2, "checked {calls} times");
        let e = until::<()>(Duration::from_secs(5), Every::fixed(Duration::from_millis(1)), || {
            anyhow::bail!("gone")
        });
        assert_eq!(e.unwrap_err().to_string(), "gone");
    }
}
