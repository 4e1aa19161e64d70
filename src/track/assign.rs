//! Optimal one-to-one assignment (Hungarian method, Kuhn–Munkres with potentials,
//! O(n³)), with a cost limit: a pair is matched only when that is cheaper than leaving
//! both sides unmatched, as ByteTrack does with `lap.lapjv(..., cost_limit)`.
//!
//! Greedy matching (highest IoU first) is what the first tracker did; it goes wrong
//! when two objects cross: one greedy pick can steal the only partner of another box
//! and leave both with worse matches. The optimal assignment maximises the total
//! overlap instead, and the matrices here (tens of boxes) make O(n³) free.

/// A cost that never matches.
pub const FORBIDDEN: f64 = f64::INFINITY;

/// Assigns rows to columns minimising the summed cost; pairs costing `limit` or more
/// (or [`FORBIDDEN`]) stay unmatched. Returns `(row, col)` pairs sorted by row.
pub fn assign(cost: &[Vec<f64>], limit: f64) -> Vec<(usize, usize)> {
    let n = cost.len();
    let m = cost.first().map_or(0, |r| r.len());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    // Square extension: row i may go to its own "unmatched" column at limit/2, column j
    // to its own "unmatched" row at limit/2; dummy×dummy is free. A real pair is then
    // chosen only when its cost is below `limit`.
    let size = n + m;
    let half = limit / 2.0;
    // Anything at or above the limit is replaced by a value that can never win, but
    // stays finite so the potentials remain well defined.
    let big = limit.abs() * 4.0 + 1.0;
    let c = |i: usize, j: usize| -> f64 {
        match (i < n, j < m) {
            (true, true) => {
                let v = cost[i][j];
                if v.is_finite() && v < limit { v } else { big }
            }
            (true, false) => {
                if j - m == i {
                    half
                } else {
                    big
                }
            }
            (false, true) => {
                if i - n == j {
                    half
                } else {
                    big
                }
            }
            (false, false) => 0.0,
        }
    };
    let cols = hungarian(size, c);
    let mut out: Vec<(usize, usize)> = (0..n)
        .filter_map(|i| {
            let j = cols[i];
            (j < m && cost[i][j].is_finite() && cost[i][j] < limit).then_some((i, j))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Square Hungarian method; returns the column of each row.
fn hungarian(size: usize, c: impl Fn(usize, usize) -> f64) -> Vec<usize> {
    // 1-based potentials and matching, as in the classic formulation.
    let mut u = vec![0.0; size + 1];
    let mut v = vec![0.0; size + 1];
    let mut p = vec![0usize; size + 1]; // p[col] = row matched to col
    let mut way = vec![0usize; size + 1];
    for i in 1..=size {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; size + 1];
        let mut used = vec![false; size + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=size {
                if used[j] {
                    continue;
                }
                let cur = c(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=size {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut row_col = vec![0usize; size];
    for j in 1..=size {
        if p[j] > 0 {
            row_col[p[j] - 1] = j - 1;
        }
    }
    row_col
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every assignment by brute force (small sizes), for comparison.
    fn brute(cost: &[Vec<f64>], limit: f64) -> f64 {
        let n = cost.len();
        let m = cost[0].len();
        fn rec(i: usize, used: &mut Vec<bool>, cost: &[Vec<f64>], limit: f64, acc: f64, best: &mut f64) {
            if i == cost.len() {
                *best = best.min(acc);
                return;
            }
            // Row i unmatched.
            rec(i + 1, used, cost, limit, acc + limit, best);
            for j in 0..used.len() {
                if !used[j] && cost[i][j] < limit {
                    used[j] = true;
                    rec(i + 1, used, cost, limit, acc + cost[i][j], best);
                    used[j] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        rec(0, &mut vec![false; m], cost, limit, 0.0, &mut best);
        // Unmatched columns cost limit/2 each and unmatched rows limit/2: normalise the
        // brute force (which charged a full limit per unmatched row) to "pairs + misses".
        let _ = n;
        best
    }

    fn total(cost: &[Vec<f64>], pairs: &[(usize, usize)], limit: f64) -> f64 {
        pairs.iter().map(|&(i, j)| cost[i][j]).sum::<f64>() + (cost.len() - pairs.len()) as f64 * limit
    }

    #[test]
    fn beats_greedy_where_greedy_is_wrong() {
        // Greedy takes (0,0)=0.1 first and leaves row 1 with 0.85; optimal is 0.2+0.2.
        let cost = vec![vec![0.1, 0.2], vec![0.2, 0.85]];
        assert_eq!(assign(&cost, 0.8), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn respects_the_limit_and_forbidden_pairs() {
        let cost = vec![vec![0.9, FORBIDDEN], vec![FORBIDDEN, 0.3]];
        assert_eq!(assign(&cost, 0.8), vec![(1, 1)]);
        assert!(assign(&[], 0.8).is_empty());
        assert!(assign(&[vec![]], 0.8).is_empty());
    }

    #[test]
    fn rectangular_and_optimal_against_brute_force() {
        // A deterministic pseudo-random family of small matrices.
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        for case in 0..300 {
            let n = 1 + case % 4;
            let m = 1 + (case / 4) % 5;
            let cost: Vec<Vec<f64>> = (0..n).map(|_| (0..m).map(|_| if rnd() < 0.15 { FORBIDDEN } else { rnd() }).collect()).collect();
            let pairs = assign(&cost, 0.8);
            let mut rows: Vec<usize> = pairs.iter().map(|p| p.0).collect();
            let mut cols: Vec<usize> = pairs.iter().map(|p| p.1).collect();
            rows.dedup();
            cols.sort();
            cols.dedup();
            assert_eq!(rows.len(), pairs.len());
            assert_eq!(cols.len(), pairs.len(), "one-to-one");
            let got = total(&cost, &pairs, 0.8);
            let best = brute(&cost, 0.8);
            assert!((got - best).abs() < 1e-9, "case {case}: {cost:?} got {got} best {best}");
        }
    }
}
