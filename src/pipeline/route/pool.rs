//! Smooth weighted round robin (nginx's algorithm): over any window of picks each member's
//! share follows its weight, and picks of one member are spread out rather than bunched.
//! Pure: which members are eligible (healthy, with a free window slot) is an input.

#[derive(Clone, Debug)]
pub struct SmoothWrr {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl SmoothWrr {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = vec![0; weights.len()];
        SmoothWrr { weights, current }
    }

    /// The index of the next member among those `eligible(i)` says may take traffic; `None`
    /// when none may. Ineligible members neither gain nor lose credit, so when a member comes
    /// back its share resumes where it was.
    pub fn pick(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !eligible(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_weights_within_one_percent_over_100k() {
        let mut wrr = SmoothWrr::new([3, 1, 6]);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[wrr.pick(|_| true).unwrap()] += 1;
        }
        for (count, weight) in counts.iter().zip([3.0, 1.0, 6.0]) {
            let share = f64::from(*count) / 100_000.0;
            assert!((share - weight / 10.0).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn picks_are_spread_not_bunched() {
        let mut wrr = SmoothWrr::new([5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| wrr.pick(|_| true).unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn a_down_member_is_skipped_and_the_rest_keep_their_ratio() {
        let mut wrr = SmoothWrr::new([3, 1, 6]);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[wrr.pick(|i| i != 2).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!((f64::from(counts[0]) / 40_000.0 - 0.75).abs() < 0.01, "{counts:?}");
        assert_eq!(wrr.pick(|_| false), None);
    }
}
