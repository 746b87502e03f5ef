//! The best possible matching of slots to units: the yardstick of
//! `lastmile bench --optimality`, and the fallback round of the waiting
//! queue (`dispatcher::queue`).
//!
//! [`min_cost_assignment`] is a rectangular Hungarian algorithm (Kuhn–Munkres,
//! the O(n²·m) potentials / shortest-augmenting-path form, n ≤ m). [`optimum`]
//! encodes the benchmark's lexicographic objective (slots filled within
//! target, then slots filled, then least total ETA) as one cost matrix for it.

/// "Infinity" for the shortest-path distances. It is only ever compared
/// against or reduced by a finite delta, never added to another infinity.
const INF: i64 = i64::MAX / 4;

/// Largest |cost| [`min_cost_assignment`] accepts. With C = max |cost| the
/// potentials stay within u ∈ [-C, C], v ∈ [-2C, 0] and the reduced costs
/// within [0, 4C], so every intermediate value stays far below [`INF`].
pub const MAX_COST: i64 = i64::MAX / 64;

/// A unit's fitness for a slot: its ETA and whether that ETA meets the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Travel time of the unit to the slot, seconds.
    pub eta_s: u32,
    /// Whether `eta_s` meets the slot's target.
    pub within_target: bool,
}

/// The lexicographic optimum of a slots-to-units instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Optimum {
    /// Slots filled by a unit within target.
    pub within_target: usize,
    /// Slots filled at all.
    pub filled: usize,
    /// Sum of the ETAs of the filled slots.
    pub total_eta_s: u64,
    /// Per slot, the unit filling it (`None`: not filled).
    pub assignment: Vec<Option<usize>>,
}

/// One column of the Hungarian state; column 0 is the virtual column every
/// augmenting path starts from.
#[derive(Clone, Copy)]
struct Col {
    v: i64,     // potential
    minv: i64,  // shortest reduced distance in the current search
    way: usize, // previous column on that shortest path
    row: usize, // matched row, 1-based (0: unmatched)
    used: bool, // in the current alternating tree
}

/// Hungarian algorithm on the row-major `n x m` matrix `a`, `n <= m`.
/// Returns, for every row, its column in a minimum-cost assignment.
fn hungarian(n: usize, m: usize, a: &[i64]) -> Vec<usize> {
    debug_assert!(n <= m && a.len() == n * m);
    let mut u = vec![0i64; n + 1];
    let blank = Col { v: 0, minv: INF, way: 0, row: 0, used: false };
    let mut cols = vec![blank; m + 1];
    for i in 1..=n {
        cols[0].row = i;
        for col in cols.iter_mut() {
            col.minv = INF;
            col.used = false;
        }
        let mut j0 = 0;
        loop {
            cols[j0].used = true;
            let i0 = cols[j0].row;
            let ui0 = u[i0];
            let row = &a[(i0 - 1) * m..i0 * m];
            let (mut delta, mut j1) = (INF, 0);
            for ((j, col), &c) in cols.iter_mut().enumerate().skip(1).zip(row) {
                if col.used {
                    continue;
                }
                let cur = c - ui0 - col.v;
                if cur < col.minv {
                    col.minv = cur;
                    col.way = j0;
                }
                if col.minv < delta {
                    delta = col.minv;
                    j1 = j;
                }
            }
            // n <= m: an unmatched column outside the tree always exists.
            debug_assert!(j1 != 0);
            for col in cols.iter_mut() {
                if col.used {
                    u[col.row] += delta;
                    col.v -= delta;
                } else {
                    col.minv -= delta;
                }
            }
            j0 = j1;
            if cols[j0].row == 0 {
                break;
            }
        }
        // Flip the augmenting path back to the virtual column.
        while j0 != 0 {
            let prev = cols[j0].way;
            cols[j0].row = cols[prev].row;
            j0 = prev;
        }
    }
    let mut out = vec![0; n];
    for (j, col) in cols.iter().enumerate().skip(1) {
        if col.row != 0 {
            out[col.row - 1] = j - 1;
        }
    }
    out
}

/// A zeroed `rows x cols` cost matrix stored flat with the smaller side as
/// rows (transposed when `rows > cols`), built once and solved in place.
struct Flat {
    rows: usize,
    cols: usize,
    transposed: bool,
    data: Vec<i64>,
}

impl Flat {
    fn zeros(rows: usize, cols: usize) -> Self {
        Flat { rows, cols, transposed: rows > cols, data: vec![0; rows * cols] }
    }

    fn set(&mut self, r: usize, c: usize, cost: i64) {
        let i = if self.transposed { c * self.rows + r } else { r * self.cols + c };
        self.data[i] = cost;
    }

    /// Per original row, its column in a minimum-cost assignment of size
    /// min(rows, cols) (an empty side gives an empty `hungarian` run).
    fn solve(&self) -> Vec<Option<usize>> {
        if !self.transposed {
            return hungarian(self.rows, self.cols, &self.data).into_iter().map(Some).collect();
        }
        let mut out = vec![None; self.rows];
        for (c, r) in hungarian(self.cols, self.rows, &self.data).into_iter().enumerate() {
            out[r] = Some(c);
        }
        out
    }
}

/// Minimum-cost assignment on a rectangular `rows x cols` matrix.
///
/// Returns, for every row, its column; exactly min(rows, cols) rows get one
/// (`None` only when rows > cols). The total cost of the assigned cells is
/// minimal over all assignments of that size. Runs in O(k²·l) with k the
/// smaller and l the larger side.
///
/// # Panics
///
/// If the rows differ in length or a cost lies outside ±[`MAX_COST`].
// The general entry point; the tests check the solver against brute force through it.
#[cfg_attr(not(test), allow(dead_code))]
pub fn min_cost_assignment(cost: &[Vec<i64>]) -> Vec<Option<usize>> {
    let cols = cost.first().map_or(0, Vec::len);
    assert!(cost.iter().all(|r| r.len() == cols), "cost matrix is not rectangular");
    let mut flat = Flat::zeros(cost.len(), cols);
    for (r, row) in cost.iter().enumerate() {
        for (c, &x) in row.iter().enumerate() {
            assert!((-MAX_COST..=MAX_COST).contains(&x), "cost {x} outside ±MAX_COST");
            flat.set(r, c, x);
        }
    }
    flat.solve()
}

/// The bonuses `(BIG1, BIG2)` for at most `k` filled slots with ETAs up to
/// `max_eta`: BIG1 = k·max_eta + 1 exceeds any sum of ETAs, and
/// BIG2 = BIG1·(k + 1) + 1 exceeds BIG1·(k + 1). Even with k = 3000 and the
/// largest u32 ETA, BIG2 ≈ 3.9e16, well under [`MAX_COST`] ≈ 1.4e17.
///
/// # Panics
///
/// If BIG2 exceeds [`MAX_COST`]: k·(k+1)·max_eta > ~1.4e17, far beyond any
/// size an O(k²·l) solver can finish.
fn big_constants(k: usize, max_eta: u32) -> (i64, i64) {
    // Lossless: usize is at most 64 bits wide.
    let k = k as i128;
    let big1 = k * i128::from(max_eta) + 1;
    let big2 = big1 * (k + 1) + 1;
    match (i64::try_from(big1), i64::try_from(big2)) {
        (Ok(b1), Ok(b2)) if b2 <= MAX_COST => (b1, b2),
        _ => panic!("instance too large for the matching cost encoding (BIG2 = {big2})"),
    }
}

/// The lexicographic optimum over all matchings of `slots` to `units`, where
/// `edge(slot, unit)` is `None` when the unit cannot fill the slot at all:
/// maximise (1) slots filled within target, then (2) slots filled, then
/// minimise (3) the total ETA of the filled slots.
///
/// Encoding: slots and units without any edge are dropped; on the rest a
/// non-edge costs 0 (not filled), a beyond-target edge `eta - BIG1`, and a
/// within-target edge `eta - BIG2` (see [`big_constants`] for the bounds).
/// One more within-target slot gains at least BIG2 - BIG1·k - Σeta > 0, one
/// more filled slot at least BIG1 - Σeta > 0, so the minimum cost is the
/// lexicographic optimum. `edge` is called once per pair.
///
/// # Panics
///
/// Only if the sizes break the bound in [`big_constants`].
pub fn optimum(slots: usize, units: usize, edge: impl Fn(usize, usize) -> Option<Edge>) -> Optimum {
    let adj: Vec<Vec<(usize, Edge)>> =
        (0..slots).map(|s| (0..units).filter_map(|u| edge(s, u).map(|e| (u, e))).collect()).collect();
    let live = adj.iter().filter(|a| !a.is_empty()).count();
    let live_units = {
        let mut seen = vec![false; units];
        adj.iter().flatten().for_each(|(u, _)| seen[*u] = true);
        seen.iter().filter(|s| **s).count()
    };
    let k = live.min(live_units);
    let max_eta = adj.iter().flatten().map(|(_, e)| e.eta_s).max().unwrap_or(0);
    let (big1, big2) = big_constants(k, max_eta);
    let costs: Vec<Vec<(usize, i64)>> = adj
        .iter()
        .map(|a| a.iter().map(|&(u, e)| (u, i64::from(e.eta_s) - if e.within_target { big2 } else { big1 })).collect())
        .collect();
    let mut out = Optimum { assignment: vec![None; slots], ..Optimum::default() };
    for (s, u) in sparse_min_cost(units, &costs).into_iter().enumerate() {
        let Some(u) = u else { continue };
        let Some(&(_, e)) = adj[s].iter().find(|(v, _)| *v == u) else { continue };
        out.assignment[s] = Some(u);
        out.filled += 1;
        out.within_target += usize::from(e.within_target);
        out.total_eta_s += u64::from(e.eta_s);
    }
    out
}

/// A minimum-cost matching of slots to `units` given each slot's edges
/// `(unit, cost)`: a slot with no edge, or left on a non-edge, is unmatched
/// (`None`). Costs should be negative, so that matching a slot beats leaving
/// it (a non-edge costs 0). Slots and units without any edge are left out
/// of the matrix, and the smaller side is its rows.
///
/// # Panics
///
/// If a cost lies outside ±[`MAX_COST`].
pub fn sparse_min_cost(units: usize, edges: &[Vec<(usize, i64)>]) -> Vec<Option<usize>> {
    let live_slots: Vec<usize> = (0..edges.len()).filter(|&s| !edges[s].is_empty()).collect();
    let mut unit_pos: Vec<Option<usize>> = vec![None; units];
    let mut live_units = Vec::new();
    for &(u, _) in edges.iter().flatten() {
        if unit_pos[u].is_none() {
            unit_pos[u] = Some(live_units.len());
            live_units.push(u);
        }
    }
    let mut matrix = Flat::zeros(live_slots.len(), live_units.len());
    for (r, &s) in live_slots.iter().enumerate() {
        for &(u, cost) in &edges[s] {
            assert!((-MAX_COST..=MAX_COST).contains(&cost), "cost {cost} outside ±MAX_COST");
            if let Some(c) = unit_pos[u] {
                matrix.set(r, c, cost);
            }
        }
    }
    let mut out = vec![None; edges.len()];
    for (&s, c) in live_slots.iter().zip(matrix.solve()) {
        let Some(u) = c.map(|c| live_units[c]) else { continue };
        // Assigned to a non-edge (cost 0): the slot is not matched.
        if edges[s].iter().any(|(v, _)| *v == u) {
            out[s] = Some(u);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;

    /// SplitMix64, enough randomness for test instances.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `0..n` (the remainder is below n, so the cast is exact).
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + i64::try_from(self.next() % (hi - lo + 1).unsigned_abs()).unwrap()
        }
    }

    /// Minimum cost over all assignments of exactly min(rows, cols) cells.
    fn brute_cost(cost: &[Vec<i64>], r: usize, used: &mut [bool], left: usize) -> Option<i64> {
        if r == cost.len() {
            return (left == 0).then_some(0);
        }
        let mut best = if cost.len() - r > left { brute_cost(cost, r + 1, used, left) } else { None };
        for c in 0..used.len() {
            if !used[c] && left > 0 {
                used[c] = true;
                if let Some(rest) = brute_cost(cost, r + 1, used, left - 1) {
                    best = Some(best.map_or(rest + cost[r][c], |b: i64| b.min(rest + cost[r][c])));
                }
                used[c] = false;
            }
        }
        best
    }

    #[test]
    fn hungarian_matches_brute_force() {
        for case in 0..800u64 {
            let mut rng = Rng(0xC0FFEE ^ case);
            let (rows, cols) = (rng.below(7), rng.below(7));
            let span = if case % 4 == 0 { 1_000_000_000_000 } else { 50 };
            let cost: Vec<Vec<i64>> = (0..rows).map(|_| (0..cols).map(|_| rng.range(-span, span)).collect()).collect();
            let got = min_cost_assignment(&cost);
            let k = rows.min(cols);
            assert_eq!(got.len(), rows, "case {case}");
            let mut cells: Vec<usize> = got.iter().flatten().copied().collect();
            cells.sort_unstable();
            cells.dedup();
            assert_eq!(cells.len(), k, "case {case}: not {k} distinct columns: {cost:?} -> {got:?}");
            let total: i64 = got.iter().enumerate().filter_map(|(r, c)| c.map(|c| cost[r][c])).sum();
            let best = brute_cost(&cost, 0, &mut vec![false; cols], k).unwrap();
            assert_eq!(total, best, "case {case}: {cost:?} -> {got:?}");
        }
    }

    type Key = (usize, usize, Reverse<u64>);
    type Grid = Vec<Vec<Option<Edge>>>;

    /// `key` with one more slot filled over `e`.
    fn add(key: Key, e: Edge) -> Key {
        (key.0 + usize::from(e.within_target), key.1 + 1, Reverse(key.2.0 + u64::from(e.eta_s)))
    }

    fn grid(slots: usize, units: usize, mut f: impl FnMut(usize, usize) -> Option<Edge>) -> Grid {
        (0..slots).map(|s| (0..units).map(|u| f(s, u)).collect()).collect()
    }

    /// Best key over every partial matching (each slot a unit or nothing).
    fn brute_key(edges: &[Vec<Option<Edge>>], s: usize, used: &mut [bool], acc: Key) -> Key {
        if s == edges.len() {
            return acc;
        }
        let mut best = brute_key(edges, s + 1, used, acc);
        for (u, e) in edges[s].iter().enumerate() {
            if let (Some(e), false) = (e, used[u]) {
                used[u] = true;
                best = best.max(brute_key(edges, s + 1, used, add(acc, *e)));
                used[u] = false;
            }
        }
        best
    }

    /// Checks that `opt` is a matching over real edges whose counts are the
    /// reported ones, and returns its key.
    fn check(edges: &[Vec<Option<Edge>>], units: usize, opt: &Optimum) -> Key {
        assert_eq!(opt.assignment.len(), edges.len());
        let mut used = vec![false; units];
        let mut key = (0, 0, Reverse(0));
        for (s, u) in opt.assignment.iter().enumerate() {
            let Some(u) = *u else { continue };
            assert!(!std::mem::replace(&mut used[u], true), "unit {u} used twice: {opt:?}");
            key = add(key, edges[s][u].expect("assigned over a non-edge"));
        }
        assert_eq!(key, (opt.within_target, opt.filled, Reverse(opt.total_eta_s)));
        key
    }

    #[test]
    fn optimum_matches_brute_force() {
        for case in 0..600u64 {
            let mut rng = Rng(0xBEEF ^ (case << 8));
            let (slots, units) = (rng.below(6), rng.below(6));
            let big_eta = case % 3 == 0;
            let edges = grid(slots, units, |_, _| {
                (rng.below(10) >= 4).then(|| Edge {
                    eta_s: u32::try_from(rng.range(0, if big_eta { 100_000 } else { 6 })).unwrap(),
                    within_target: rng.below(2) == 0,
                })
            });
            let opt = optimum(slots, units, |s, u| edges[s][u]);
            let got = check(&edges, units, &opt);
            let want = brute_key(&edges, 0, &mut vec![false; units], (0, 0, Reverse(0)));
            assert_eq!(got, want, "case {case}: {edges:?} -> {opt:?}");
        }
    }

    #[test]
    fn beats_greedy_nearest_first() {
        // Slot 0 reaches A (nearest) and B within target; slot 1 only A.
        let e = |eta_s| Some(Edge { eta_s, within_target: true });
        let edges = [[e(60), e(300)], [e(120), None]];
        let opt = optimum(2, 2, |s, u| edges[s][u]);
        assert_eq!(opt.assignment, vec![Some(1), Some(0)]);
        assert_eq!((opt.within_target, opt.filled, opt.total_eta_s), (2, 2, 420));
    }

    #[test]
    fn within_target_beats_more_fills_and_less_eta() {
        // Either slot 0 within target alone, or both slots beyond target.
        let edges = [
            [Some(Edge { eta_s: 900, within_target: true }), Some(Edge { eta_s: 10, within_target: false })],
            [Some(Edge { eta_s: 10, within_target: false }), None],
        ];
        let opt = optimum(2, 2, |s, u| edges[s][u]);
        assert_eq!((opt.within_target, opt.filled, opt.total_eta_s), (1, 1, 900));
    }

    /// Nearest-first greedy in slot order, the baseline the optimum must beat.
    fn greedy(edges: &[Vec<Option<Edge>>], units: usize) -> Key {
        let mut used = vec![false; units];
        let mut key = (0, 0, Reverse(0));
        for row in edges {
            let best = (0..units)
                .filter(|&u| !used[u])
                .filter_map(|u| row[u].map(|e| (Reverse(e.within_target), e.eta_s, u)))
                .min();
            if let Some((Reverse(within_target), eta_s, u)) = best {
                used[u] = true;
                key = add(key, Edge { eta_s, within_target });
            }
        }
        key
    }

    /// Slots and units scattered over 60 km x 60 km, ~10 m/s, 1 unit in 5
    /// lacking the capability; reach 1200 s, target 420 s.
    fn city(slots: usize, units: usize, seed: u64) -> Grid {
        let mut rng = Rng(seed);
        let mut point = || (rng.range(0, 60_000), rng.range(0, 60_000));
        let slot_at: Vec<(i64, i64)> = (0..slots).map(|_| point()).collect();
        let unit_at: Vec<(i64, i64)> = (0..units).map(|_| point()).collect();
        grid(slots, units, |s, u| {
            let ((sx, sy), (ux, uy)) = (slot_at[s], unit_at[u]);
            // Truncating the f64 distance to whole metres is intended.
            let eta = (((sx - ux).pow(2) + (sy - uy).pow(2)) as f64).sqrt() as u32 / 10;
            (rng.below(5) != 0 && eta <= 1_200).then_some(Edge { eta_s: eta, within_target: eta <= 420 })
        })
    }

    #[test]
    fn smoke_1500_by_228() {
        let (slots, units) = (1500, 228);
        let edges = city(slots, units, 7);
        let start = std::time::Instant::now();
        let opt = optimum(slots, units, |s, u| edges[s][u]);
        let took = start.elapsed();
        let got = check(&edges, units, &opt);
        let base = greedy(&edges, units);
        println!("optimum 1500x228 in {took:?}: {got:?}, greedy {base:?}");
        assert!(got >= base, "optimum {got:?} worse than greedy {base:?}");
        assert!(opt.filled <= units && opt.filled > 0);
    }
}
