//! Optimisers over a flat parameter vector: L-BFGS with PyTorch's `torch.optim.LBFGS`
//! semantics (Nocedal & Wright, "Numerical Optimization", alg. 7.4; optional strong-Wolfe
//! line search, alg. 3.5/3.6) and Adam (Kingma & Ba 2015).
//!
//! One file of ~610 lines of code (plus its tests): L-BFGS, its line search and its
//! divergence guard share the iteration state that checkpoints save ([`LbfgsState`]).

use std::collections::VecDeque;
use std::ops::ControlFlow;

/// What the optimisers minimise: a loss and its gradient at a point, or `Break` to stop
/// the run.
pub trait Differentiable {
    /// Evaluates the loss and its gradient at `x`.
    fn evaluate(&mut self, x: &[f32]) -> ControlFlow<(), (f32, Vec<f32>)>;
}

impl<F: FnMut(&[f32]) -> ControlFlow<(), (f32, Vec<f32>)>> Differentiable for F {
    fn evaluate(&mut self, x: &[f32]) -> ControlFlow<(), (f32, Vec<f32>)> {
        self(x)
    }
}

/// L-BFGS settings, with PyTorch's meanings.
#[derive(Debug, Clone, Copy)]
pub struct Lbfgs {
    /// Step length multiplier (`lr`).
    pub lr: f32,
    /// Maximum number of iterations (`max_iter`).
    pub max_iter: usize,
    /// Maximum number of loss evaluations (`max_eval`).
    pub max_eval: usize,
    /// Stop when the largest gradient component is at most this (`tolerance_grad`).
    pub tolerance_grad: f32,
    /// Stop when loss or step change by less than this (`tolerance_change`).
    pub tolerance_change: f32,
    /// How many correction pairs to keep (`history_size`).
    pub history_size: usize,
    /// Use a strong-Wolfe line search (`line_search_fn="strong_wolfe"`).
    pub strong_wolfe: bool,
    /// Divergence guard (not in PyTorch): when the loss becomes non-finite, explodes (over
    /// 1000 times the best seen) or stays above twice the best for 5 evaluations in a row,
    /// go back to the best point, forget the curvature history and continue with a step
    /// ten times smaller. L-BFGS's own transient spikes (one evaluation at 10-20 times the
    /// best, then back down) are left alone.
    pub safeguard: bool,
    /// Scale of the inverse Hessian for the very first step (not in PyTorch): the first
    /// step is `-h·g` instead of PyTorch's `-min(1, 1/‖g‖₁)·g`. For a problem like one
    /// solved before, as each size of a coarse-to-fine schedule is like the one before it,
    /// the curvature learnt there ([`Outcome::h_diag`]) gives a first step of about the
    /// right length, where PyTorch's rule takes a step far too short on a large image and
    /// the next ones, scaled from it, overshoot. `None`: PyTorch's rule.
    pub initial_h_diag: Option<f32>,
}

/// A loss this many times the best seen is a divergence at once.
const EXPLOSION: f32 = 1e3;
/// A loss above twice the best this many evaluations in a row is a divergence.
const PATIENCE: usize = 5;

/// Give up after this many recoveries from divergence.
const MAX_RECOVERIES: usize = 8;

/// Values per block of [`dot`] and [`axpy`]: the unit the threads share. A block's sum is
/// formed in [`LANES`] f64 lanes and the blocks' sums are added in order, so a result does not
/// depend on the thread count.
const BLOCK: usize = 1 << 14;
/// f64 partial sums per block (one AVX-512 register): independent additions the compiler
/// vectorises, where one running sum would wait on each addition in turn.
const LANES: usize = 8;

/// `Σ a·b` accumulated in f64. The two-loop recursion calls this twice per stored pair, on
/// vectors of every pixel (at 512x384, 100 pairs: 200 sums over 590k values per iteration),
/// so it runs in vector lanes on every thread.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    use rayon::prelude::*;
    debug_assert_eq!(a.len(), b.len());
    let blocks: Vec<f64> = a
        .par_chunks(BLOCK)
        .zip(b.par_chunks(BLOCK))
        .map(|(a, b)| block_dot(a, b))
        .collect();
    blocks.iter().sum::<f64>() as f32
}

/// One block of [`dot`]: lane `l` sums the products at `l`, `l + LANES`, …; then the lanes
/// and the tail are added in order.
fn block_dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = (ca.remainder().iter().zip(cb.remainder()))
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            lanes[l] += f64::from(x[l]) * f64::from(y[l]);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `y += alpha · x`, by blocks on every thread.
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    use rayon::prelude::*;
    debug_assert_eq!(y.len(), x.len());
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(y, x)| {
            for (yi, xi) in y.iter_mut().zip(x) {
                *yi += alpha * xi;
            }
        });
}

fn abs_max(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn abs_sum(a: &[f32]) -> f32 {
    a.iter().map(|v| f64::from(v.abs())).sum::<f64>() as f32
}

/// How a minimisation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Loss evaluations made.
    pub evaluations: usize,
    /// Whether the objective asked to stop.
    pub stopped: bool,
    /// How many times the divergence guard restored the best point.
    pub recoveries: usize,
    /// The last curvature scale `sᵀy / yᵀy` (the inverse Hessian's diagonal that the
    /// two-loop recursion starts from), when a correction pair was kept.
    pub h_diag: Option<f32>,
}

struct Counter<'a, O: Differentiable> {
    objective: &'a mut O,
    evaluations: usize,
}

impl<O: Differentiable> Counter<'_, O> {
    fn eval(&mut self, x: &[f32]) -> ControlFlow<(), (f32, Vec<f32>)> {
        self.evaluations += 1;
        self.objective.evaluate(x)
    }
}

impl Lbfgs {
    /// PyTorch's defaults with `max_iter = max_eval = evaluations`, except that the
    /// tolerances are 0 (as neural-style-pt sets them): it stops early only when truly stuck.
    /// PyTorch's 1e-7 / 1e-9 end a run after one step whenever the gradients are small, as
    /// they are for Caffe-convention networks whose inputs are in 0..255.
    pub fn new(evaluations: usize, history_size: usize, strong_wolfe: bool) -> Self {
        Self {
            lr: 1.0,
            max_iter: evaluations,
            max_eval: evaluations,
            tolerance_grad: 0.0,
            tolerance_change: 0.0,
            history_size,
            strong_wolfe,
            safeguard: true,
            initial_h_diag: None,
        }
    }

    /// Minimises `objective` from `x` (updated in place), as one call of PyTorch's
    /// `LBFGS.step(closure)`.
    pub fn minimize<O: Differentiable>(&self, x: &mut [f32], objective: &mut O) -> Outcome {
        self.minimize_resumable(x, objective, None, &mut |_| ControlFlow::Continue(()))
    }

    /// As [`Lbfgs::minimize`], continuing from `resume` (a state `on_iteration` was given
    /// by an earlier call with the same settings) when given. `on_iteration` sees the
    /// whole state at the start of every iteration; continuing from it repeats the run
    /// exactly. It gets the state mutably so that it can move it out to show it without a
    /// copy (at 4K the history alone is gigabytes); it must leave it as it found it.
    /// Returning `Break` stops the run.
    pub fn minimize_resumable<O: Differentiable>(
        &self,
        x: &mut [f32],
        objective: &mut O,
        resume: Option<LbfgsState>,
        on_iteration: &mut dyn FnMut(&mut LbfgsState) -> ControlFlow<()>,
    ) -> Outcome {
        let mut f = Counter {
            objective,
            evaluations: resume.as_ref().map_or(0, |s| s.evaluations),
        };
        let mut state = resume;
        let stopped = self.run(x, &mut f, &mut state, on_iteration).is_break();
        Outcome {
            evaluations: f.evaluations,
            stopped,
            recoveries: state.as_ref().map_or(0, |s| s.recoveries),
            h_diag: state
                .as_ref()
                .filter(|s| !s.ro.is_empty())
                .map(|s| s.h_diag),
        }
    }

    fn run<O: Differentiable>(
        &self,
        x: &mut [f32],
        f: &mut Counter<'_, O>,
        slot: &mut Option<LbfgsState>,
        on_iteration: &mut dyn FnMut(&mut LbfgsState) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // Each iteration keeps at most one more pair; once the history is full, the newest
        // pair is made before the oldest goes, and the oldest's vectors make the next.
        let (held, done) = slot
            .as_ref()
            .map_or((0, 0), |s| (s.old_dirs.len(), s.n_iter));
        let (remaining, room) = (
            self.max_iter.saturating_sub(done),
            self.history_size.saturating_sub(held),
        );
        let pairs = if remaining > room {
            room + 1
        } else {
            remaining
        };
        let mut spare = Spare::reserve(x.len(), 2 * pairs);
        let st = match slot {
            Some(st) => {
                x.copy_from_slice(&st.x);
                st
            }
            None => match self.start(x, f)? {
                Some(st) => slot.insert(st),
                None => return ControlFlow::Continue(()),
            },
        };
        let mut al = vec![0.0f32; self.history_size.max(1)];
        while st.n_iter < self.max_iter {
            st.x.clear();
            st.x.extend_from_slice(x);
            st.evaluations = f.evaluations;
            on_iteration(st)?;
            st.n_iter += 1;
            if st.fresh {
                st.d.iter_mut().zip(&st.grad).for_each(|(di, g)| *di = -g);
                st.h_diag = 1.0;
                spare.take_back(st.old_dirs.drain(..).chain(st.old_stps.drain(..)));
                st.ro.clear();
            } else {
                st.update_history(&mut spare, self.history_size);
                st.d = st.two_loop(&mut al);
            }
            st.prev_grad.clone_from(&st.grad);
            let prev_loss = st.loss;
            // The very first step may take its length from a related problem's curvature.
            let carried = self
                .initial_h_diag
                .filter(|h| st.n_iter == 1 && st.recoveries == 0 && h.is_finite() && *h > 0.0);
            st.t = match carried {
                Some(h) => h * st.lr,
                None if st.fresh => (1.0f32).min(1.0 / abs_sum(&st.grad)) * st.lr,
                None => st.lr,
            };
            st.fresh = false;
            let gtd = dot(&st.grad, &st.d);
            if gtd > -self.tolerance_change {
                break;
            }
            let opt_cond;
            if self.strong_wolfe {
                let x_init = x.to_vec();
                let (l, g, step) = strong_wolfe(
                    f,
                    &x_init,
                    x,
                    st.t,
                    &st.d,
                    st.loss,
                    &st.grad,
                    gtd,
                    self.tolerance_change,
                )?;
                st.loss = l;
                st.grad = g;
                st.t = step;
                let t = st.t;
                x.iter_mut()
                    .zip(x_init.iter().zip(&st.d))
                    .for_each(|(xi, (x0, di))| *xi = x0 + t * di);
                opt_cond = abs_max(&st.grad) <= self.tolerance_grad;
            } else {
                axpy(x, st.t, &st.d);
                if st.n_iter != self.max_iter {
                    let (l, g) = f.eval(x)?;
                    st.loss = l;
                    st.grad = g;
                    opt_cond = abs_max(&st.grad) <= self.tolerance_grad;
                } else {
                    opt_cond = false;
                }
            }
            if st.guard(x) {
                if st.recoveries > MAX_RECOVERIES
                    || st.n_iter == self.max_iter
                    || f.evaluations >= self.max_eval
                {
                    break;
                }
                continue;
            }
            if st.n_iter == self.max_iter || f.evaluations >= self.max_eval || opt_cond {
                break;
            }
            if abs_max(&st.d) * st.t.abs() <= self.tolerance_change {
                break;
            }
            if (st.loss - prev_loss).abs() < self.tolerance_change {
                break;
            }
        }
        ControlFlow::Continue(())
    }

    /// The state before the first iteration: the loss and gradient at `x` (`None` when the
    /// gradient is already within tolerance).
    fn start<O: Differentiable>(
        &self,
        x: &[f32],
        f: &mut Counter<'_, O>,
    ) -> ControlFlow<(), Option<LbfgsState>> {
        let (loss, grad) = f.eval(x)?;
        if abs_max(&grad) <= self.tolerance_grad {
            return ControlFlow::Continue(None);
        }
        ControlFlow::Continue(Some(LbfgsState {
            x: Vec::new(),
            loss,
            best: self.safeguard.then(|| (loss, x.to_vec(), grad.clone())),
            grad,
            d: vec![0.0; x.len()],
            t: 0.0,
            prev_grad: Vec::new(),
            old_dirs: VecDeque::new(),
            old_stps: VecDeque::new(),
            ro: VecDeque::new(),
            h_diag: 1.0,
            n_iter: 0,
            // A fresh start (the first iteration, or after a recovery) steps along -g.
            fresh: true,
            lr: self.lr,
            above: 0,
            recoveries: 0,
            evaluations: f.evaluations,
        }))
    }
}

impl LbfgsState {
    /// Keeps the last step's correction pair (`y = g - g_prev`, `s = t d`) when its
    /// curvature is positive, dropping the oldest pair once `history_size` are held.
    fn update_history(&mut self, spare: &mut Spare, history_size: usize) {
        let y = spare.filled(self.grad.iter().zip(&self.prev_grad).map(|(g, p)| g - p));
        let s = spare.filled(self.d.iter().map(|di| di * self.t));
        let (ys, yy) = (dot(&y, &s), dot(&y, &y));
        // PyTorch keeps a pair when ys > 1e-10, an absolute threshold: with the small
        // gradients of Caffe-convention networks (inputs in 0..255) no pair is ever
        // kept and L-BFGS crawls along -g. Relative to |y||s| the test means the same
        // at every scale.
        if ys > 1e-10 * (yy * dot(&s, &s)).sqrt() {
            if self.old_dirs.len() == history_size {
                spare.take_back(self.old_dirs.pop_front());
                spare.take_back(self.old_stps.pop_front());
                self.ro.pop_front();
            }
            self.h_diag = ys / yy;
            self.old_dirs.push_back(y);
            self.old_stps.push_back(s);
            self.ro.push_back(1.0 / ys);
        } else {
            spare.take_back([y, s]);
        }
    }

    /// The search direction `d = -H g` by the two-loop recursion (Nocedal & Wright 2006,
    /// algorithm 7.4) over the history, from the diagonal `h_diag`; `al` holds at least one
    /// value a pair.
    fn two_loop(&self, al: &mut [f32]) -> Vec<f32> {
        let k = self.old_dirs.len();
        let mut q: Vec<f32> = self.grad.iter().map(|g| -g).collect();
        for i in (0..k).rev() {
            al[i] = dot(&self.old_stps[i], &q) * self.ro[i];
            axpy(&mut q, -al[i], &self.old_dirs[i]);
        }
        q.iter_mut().for_each(|v| *v *= self.h_diag);
        for (i, a) in al.iter().enumerate().take(k) {
            let be_i = dot(&self.old_dirs[i], &q) * self.ro[i];
            axpy(&mut q, a - be_i, &self.old_stps[i]);
        }
        q
    }

    /// The divergence guard after a step to `x`: a loss that is not finite, explodes, or
    /// stays above the best for [`PATIENCE`] evaluations restores the best point (into `x`
    /// and the state), cuts the step multiplier tenfold, starts afresh and returns true;
    /// otherwise a new best is kept. Does nothing without the safeguard.
    fn guard(&mut self, x: &mut [f32]) -> bool {
        let Some((best_loss, best_x, best_grad)) = &mut self.best else {
            return false;
        };
        let margin = best_loss.abs().max(f32::MIN_POSITIVE);
        self.above = if self.loss > *best_loss + margin {
            self.above + 1
        } else {
            0
        };
        let diverged = !self.loss.is_finite()
            || self.grad.iter().any(|g| !g.is_finite())
            || self.loss > *best_loss + EXPLOSION * margin
            || self.above >= PATIENCE;
        if diverged {
            self.above = 0;
            self.recoveries += 1;
            x.copy_from_slice(best_x);
            self.loss = *best_loss;
            self.grad.clone_from(best_grad);
            self.lr *= 0.1;
            self.fresh = true;
        } else if self.loss < *best_loss {
            *best_loss = self.loss;
            best_x.copy_from_slice(x);
            best_grad.clone_from(&self.grad);
        }
        diverged
    }
}

/// Vectors for the history's pairs: reserved (not written) before the first evaluation,
/// and taken back when a pair is dropped.
///
/// The history grows by two image-sized vectors an iteration. Allocated as it grew, each
/// took a piece of the memory the network's buffers had just freed, so that every ten
/// evaluations or so a buffer of tens of megabytes no longer fitted and took fresh pages,
/// which the kernel cleared one by one: at 512 px one evaluation in ten took ~110 ms (12%)
/// longer. Reserved together at the start, the pairs stay out of the buffers' way; where
/// their memory is new, it is faulted in a pair at a time, as they are written.
struct Spare {
    len: usize,
    free: Vec<Vec<f32>>,
}

impl Spare {
    /// `count` empty vectors with room for `len` values each.
    fn reserve(len: usize, count: usize) -> Self {
        Self {
            len,
            free: (0..count).map(|_| Vec::with_capacity(len)).collect(),
        }
    }

    /// A spare vector (a new one when none is left) holding `values`.
    fn filled(&mut self, values: impl Iterator<Item = f32>) -> Vec<f32> {
        let mut v = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.len));
        v.clear();
        v.extend(values);
        v
    }

    /// Keeps `vectors` for later pairs.
    fn take_back(&mut self, vectors: impl IntoIterator<Item = Vec<f32>>) {
        self.free.extend(vectors);
    }
}

/// Everything L-BFGS carries from one iteration to the next: continuing from a copy of it
/// repeats the run exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LbfgsState {
    /// The point.
    pub x: Vec<f32>,
    /// The loss at `x`.
    pub loss: f32,
    /// The gradient at `x`.
    pub grad: Vec<f32>,
    /// The last search direction.
    pub d: Vec<f32>,
    /// The last step length.
    pub t: f32,
    /// The gradient before the last step.
    pub prev_grad: Vec<f32>,
    /// Gradient differences y, oldest first.
    pub old_dirs: VecDeque<Vec<f32>>,
    /// Steps s, oldest first.
    pub old_stps: VecDeque<Vec<f32>>,
    /// 1 / (yᵀs) of each pair.
    pub ro: VecDeque<f32>,
    /// The initial Hessian scale yᵀs / yᵀy.
    pub h_diag: f32,
    /// Iterations done.
    pub n_iter: usize,
    /// Whether the next iteration starts afresh along -g.
    pub fresh: bool,
    /// The current step multiplier (lowered by recoveries).
    pub lr: f32,
    /// The divergence guard's best point: loss, point, gradient.
    pub best: Option<(f32, Vec<f32>, Vec<f32>)>,
    /// Evaluations in a row above twice the best.
    pub above: usize,
    /// Recoveries so far.
    pub recoveries: usize,
    /// Loss evaluations so far.
    pub evaluations: usize,
}

/// Minimiser of the cubic interpolating (x1, f1, g1) and (x2, f2, g2), clamped to `bounds`.
fn cubic_interpolate(
    x1: f32,
    f1: f32,
    g1: f32,
    x2: f32,
    f2: f32,
    g2: f32,
    bounds: Option<(f32, f32)>,
) -> f32 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// A point probed by the line search.
#[derive(Clone)]
struct Probe {
    t: f32,
    f: f32,
    g: Vec<f32>,
    gtd: f32,
}

/// Strong-Wolfe line search along `d` from `x0` (PyTorch's `_strong_wolfe`): returns the
/// accepted loss, gradient and step.
#[allow(clippy::too_many_arguments)]
fn strong_wolfe<O: Differentiable>(
    f: &mut Counter<'_, O>,
    x0: &[f32],
    scratch: &mut [f32],
    mut t: f32,
    d: &[f32],
    loss: f32,
    grad: &[f32],
    gtd: f32,
    tolerance_change: f32,
) -> ControlFlow<(), (f32, Vec<f32>, f32)> {
    const C1: f32 = 1e-4;
    const C2: f32 = 0.9;
    const MAX_LS: usize = 25;
    let d_norm = abs_max(d);
    let mut probe = |t: f32, f: &mut Counter<'_, O>| -> ControlFlow<(), Probe> {
        scratch
            .iter_mut()
            .zip(x0.iter().zip(d))
            .for_each(|(xi, (x, di))| *xi = x + t * di);
        let (fv, g) = f.eval(scratch)?;
        let gtd = dot(&g, d);
        ControlFlow::Continue(Probe { t, f: fv, g, gtd })
    };
    let start = Probe {
        t: 0.0,
        f: loss,
        g: grad.to_vec(),
        gtd,
    };
    let mut new = probe(t, f)?;
    let mut prev = start.clone();
    let mut ls_iter = 0;
    let mut done = false;
    let mut bracket: Vec<Probe>;
    loop {
        if ls_iter >= MAX_LS {
            bracket = vec![start.clone(), new.clone()];
            break;
        }
        if new.f > loss + C1 * t * gtd || (ls_iter > 1 && new.f >= prev.f) {
            bracket = vec![prev.clone(), new.clone()];
            break;
        }
        if new.gtd.abs() <= -C2 * gtd {
            bracket = vec![new.clone()];
            done = true;
            break;
        }
        if new.gtd >= 0.0 {
            bracket = vec![prev.clone(), new.clone()];
            break;
        }
        let min_step = t + 0.01 * (t - prev.t);
        let max_step = t * 10.0;
        t = cubic_interpolate(
            prev.t,
            prev.f,
            prev.gtd,
            t,
            new.f,
            new.gtd,
            Some((min_step, max_step)),
        );
        prev = new;
        new = probe(t, f)?;
        ls_iter += 1;
    }
    // Zoom: shrink the bracket until a point satisfies the strong-Wolfe conditions.
    let mut insuf_progress = false;
    let (mut low, mut high) = if bracket.len() == 2 && bracket[0].f > bracket[1].f {
        (1, 0)
    } else {
        (0, 1)
    };
    while !done && ls_iter < MAX_LS && bracket.len() == 2 {
        if (bracket[1].t - bracket[0].t).abs() * d_norm < tolerance_change {
            break;
        }
        t = cubic_interpolate(
            bracket[0].t,
            bracket[0].f,
            bracket[0].gtd,
            bracket[1].t,
            bracket[1].f,
            bracket[1].gtd,
            None,
        );
        let (bmin, bmax) = (
            bracket[0].t.min(bracket[1].t),
            bracket[0].t.max(bracket[1].t),
        );
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t).min(t - bmin) < eps {
            if insuf_progress || t >= bmax || t <= bmin {
                t = if (t - bmax).abs() < (t - bmin).abs() {
                    bmax - eps
                } else {
                    bmin + eps
                };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        let p = probe(t, f)?;
        ls_iter += 1;
        if p.f > loss + C1 * t * gtd || p.f >= bracket[low].f {
            bracket[high] = p;
            (low, high) = if bracket[0].f <= bracket[1].f {
                (0, 1)
            } else {
                (1, 0)
            };
        } else {
            if p.gtd.abs() <= -C2 * gtd {
                done = true;
            } else if p.gtd * (bracket[high].t - bracket[low].t) >= 0.0 {
                bracket[high] = bracket[low].clone();
            }
            bracket[low] = p;
        }
    }
    let best = if bracket.len() == 1 {
        bracket.swap_remove(0)
    } else {
        bracket.swap_remove(low)
    };
    ControlFlow::Continue((best.f, best.g, best.t))
}

/// Adam settings.
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    /// Step size.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Number of steps (one loss evaluation each).
    pub steps: usize,
}

impl Adam {
    /// Adam with PyTorch's defaults and the given step size and step count.
    pub fn new(lr: f32, steps: usize) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            steps,
        }
    }

    /// Minimises `objective` from `x` (updated in place).
    pub fn minimize<O: Differentiable>(&self, x: &mut [f32], objective: &mut O) -> Outcome {
        let mut m = vec![0.0f32; x.len()];
        let mut v = vec![0.0f32; x.len()];
        for step in 1..=self.steps {
            let ControlFlow::Continue((_, g)) = objective.evaluate(x) else {
                return Outcome {
                    evaluations: step,
                    stopped: true,
                    recoveries: 0,
                    h_diag: None,
                };
            };
            let bc1 = 1.0 - self.beta1.powi(step as i32);
            let bc2 = 1.0 - self.beta2.powi(step as i32);
            for i in 0..x.len() {
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g[i];
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g[i] * g[i];
                let denom = (v[i] / bc2).sqrt() + self.eps;
                x[i] -= self.lr / bc1 * m[i] / denom;
            }
        }
        Outcome {
            evaluations: self.steps,
            stopped: false,
            recoveries: 0,
            h_diag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rosenbrock in 2D: minimum 0 at (1, 1).
    fn rosenbrock(x: &[f32]) -> ControlFlow<(), (f32, Vec<f32>)> {
        let (a, b) = (x[0], x[1]);
        let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        let g = vec![
            -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
            200.0 * (b - a * a),
        ];
        ControlFlow::Continue((f, g))
    }

    #[test]
    fn lbfgs_with_line_search_solves_rosenbrock() {
        let mut x = vec![-1.5f32, 2.0];
        let out = Lbfgs::new(200, 10, true).minimize(&mut x, &mut rosenbrock);
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3,
            "{x:?} after {out:?}"
        );
    }

    #[test]
    fn lbfgs_counts_evaluations_like_pytorch() {
        // Without line search PyTorch makes exactly max_iter evaluations on a problem that
        // does not converge early.
        let mut calls = 0;
        let mut x = vec![-1.5f32, 2.0];
        let mut obj = |x: &[f32]| {
            calls += 1;
            rosenbrock(x)
        };
        let out = Lbfgs::new(7, 5, false).minimize(&mut x, &mut obj);
        assert_eq!(out.evaluations, 7);
        assert_eq!(calls, 7);
    }

    #[test]
    fn adam_descends_a_quadratic() {
        let mut x = vec![3.0f32, -2.0];
        let mut obj = |x: &[f32]| {
            ControlFlow::Continue((x[0] * x[0] + x[1] * x[1], vec![2.0 * x[0], 2.0 * x[1]]))
        };
        Adam::new(0.1, 300).minimize(&mut x, &mut obj);
        assert!(x[0].abs() < 0.05 && x[1].abs() < 0.05, "{x:?}");
    }

    #[test]
    fn the_safeguard_recovers_from_a_huge_step() {
        // With lr = 1e6 the second point is far up the Rosenbrock valley's wall.
        let run = |safeguard: bool| {
            let mut x = vec![-1.5f32, 2.0];
            let mut lbfgs = Lbfgs::new(60, 10, false);
            lbfgs.lr = 1e6;
            lbfgs.safeguard = safeguard;
            let out = lbfgs.minimize(&mut x, &mut rosenbrock);
            (
                rosenbrock(&x)
                    .continue_value()
                    .map(|v| v.0)
                    .unwrap_or(f32::NAN),
                out,
            )
        };
        let start = 12.5 + 100.0 * (2.0f32 - 2.25).powi(2);
        let (unguarded, _) = run(false);
        assert!(
            unguarded.is_nan() || unguarded >= start,
            "without the guard the huge step should ruin the run ({unguarded})"
        );
        let (guarded, out) = run(true);
        assert!(out.recoveries > 0);
        assert!(
            guarded.is_finite() && guarded < start,
            "{guarded} after {out:?}"
        );
    }

    #[test]
    fn blocked_sums_match_the_plain_ones_on_any_thread_count() {
        for len in [0, 7, 8, 9, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 11 % 89) as f32 - 40.0) / 3.0)
                .collect();
            let plain = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum::<f64>();
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut y = b.clone();
                    axpy(&mut y, 0.5, &a);
                    (dot(&a, &b), y)
                })
            };
            let (one, y1) = on(1);
            assert_eq!((one, &y1), (on(2).0, &on(3).1), "len {len}");
            assert!(
                (f64::from(one) - plain).abs() <= 1e-6 * plain.abs().max(1.0),
                "len {len}"
            );
            let plain_y: Vec<f32> = b.iter().zip(&a).map(|(y, x)| y + 0.5 * x).collect();
            assert_eq!(y1, plain_y, "len {len}");
        }
    }

    #[test]
    fn spare_vectors_are_reserved_and_reused() {
        let mut spare = Spare::reserve(1000, 2);
        assert!(
            spare
                .free
                .iter()
                .all(|v| v.is_empty() && v.capacity() == 1000)
        );
        let y = spare.filled([1.0, 2.0].into_iter());
        assert_eq!(y, [1.0, 2.0]);
        let at = y.as_ptr();
        spare.take_back([y]);
        let again = spare.filled([3.0].into_iter());
        assert_eq!((again.as_ptr(), &again[..]), (at, &[3.0][..]));
        assert_eq!(spare.free.len(), 1);
    }

    #[test]
    fn a_break_stops_the_run() {
        let mut n = 0;
        let mut x = vec![-1.5f32, 2.0];
        let mut obj = |x: &[f32]| {
            n += 1;
            if n > 3 {
                ControlFlow::Break(())
            } else {
                rosenbrock(x)
            }
        };
        let out = Lbfgs::new(100, 5, false).minimize(&mut x, &mut obj);
        assert!(out.stopped);
        assert_eq!(out.evaluations, 4);
    }

    #[test]
    fn a_carried_curvature_scale_sets_the_first_step() {
        // A wide, shallow quadratic f = Σ c·x² over many coordinates, like a large image:
        // ‖g‖₁ is large, so PyTorch's first step min(1, 1/‖g‖₁)·g barely moves, while the
        // carried scale 1/(2c) (the exact inverse curvature) lands on the minimum at once.
        let n = 10_000;
        let c = 1e-3f32;
        let quadratic = |x: &[f32]| -> ControlFlow<(), (f32, Vec<f32>)> {
            let f = x.iter().map(|v| c * v * v).sum();
            ControlFlow::Continue((f, x.iter().map(|v| 2.0 * c * v).collect()))
        };
        let run = |h: Option<f32>, evaluations: usize| {
            let mut x = vec![1.0f32; n];
            let mut lbfgs = Lbfgs::new(evaluations, 10, false);
            lbfgs.initial_h_diag = h;
            let out = lbfgs.minimize(&mut x, &mut { quadratic });
            (quadratic(&x).continue_value().unwrap().0, out)
        };
        let start = c * n as f32;
        // One step (two evaluations).
        let (pytorch, out) = run(None, 2);
        assert!(pytorch > 0.99 * start, "{pytorch} of {start}");
        assert_eq!(out.h_diag, None, "no correction pair yet");
        // The pair of that step gives the curvature scale sᵀy/yᵀy: exactly 1/(2c).
        let (_, out) = run(None, 3);
        let h = out.h_diag.expect("one pair kept");
        assert!((h - 1.0 / (2.0 * c)).abs() < 1e-2 / c, "{h}");
        let (carried, _) = run(Some(h), 2);
        assert!(carried < 1e-6 * start, "{carried} of {start}");
    }
}
