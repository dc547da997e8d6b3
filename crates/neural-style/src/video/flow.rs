//! Dense optical flow by coarse-to-fine iterative Lucas–Kanade (Lucas & Kanade 1981, in the
//! pyramidal form of Bouguet 2000, solved at every pixel over a square window), backward
//! warping, and the forward–backward consistency test of Ruder, Dosovitskiy & Brox 2016
//! ("Artistic style transfer for videos", eq. 3–4) that marks occluded pixels.

/// A flow field: pixel `(x, y)` of the first image is at `(x + u, y + v)` in the second.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Horizontal displacement, row-major.
    pub u: Vec<f32>,
    /// Vertical displacement, row-major.
    pub v: Vec<f32>,
}

/// A single-channel image, row-major.
#[derive(Debug, Clone)]
struct Plane {
    w: usize,
    h: usize,
    d: Vec<f32>,
}

impl Plane {
    fn at(&self, x: isize, y: isize) -> f32 {
        let x = x.clamp(0, self.w as isize - 1) as usize;
        let y = y.clamp(0, self.h as isize - 1) as usize;
        self.d[y * self.w + x]
    }

    /// Bilinear sample with the border repeated.
    fn sample(&self, x: f32, y: f32) -> f32 {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as isize, y0 as isize);
        let top = self.at(x0, y0) * (1.0 - fx) + self.at(x0 + 1, y0) * fx;
        let bottom = self.at(x0, y0 + 1) * (1.0 - fx) + self.at(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    /// Blurred with [1 4 6 4 1]/16 and subsampled by 2.
    fn half(&self) -> Plane {
        const K: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
        let (w, h) = (self.w.div_ceil(2), self.h.div_ceil(2));
        let mut rows = vec![0f32; w * self.h];
        for y in 0..self.h {
            for x in 0..w {
                rows[y * w + x] = (0..5)
                    .map(|k| K[k] * self.at(2 * x as isize + k as isize - 2, y as isize))
                    .sum();
            }
        }
        let rows = Plane {
            w,
            h: self.h,
            d: rows,
        };
        let mut d = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                d[y * w + x] = (0..5)
                    .map(|k| K[k] * rows.at(x as isize, 2 * y as isize + k as isize - 2))
                    .sum();
            }
        }
        Plane { w, h, d }
    }

    /// Sum over a `(2r+1)²` window (border repeated), by two running sums.
    fn box_sum(&self, r: usize) -> Plane {
        let (w, h) = (self.w, self.h);
        let r = r as isize;
        let mut rows = vec![0f32; w * h];
        for y in 0..h {
            let mut acc: f32 = (-r..=r).map(|k| self.at(k, y as isize)).sum();
            for x in 0..w {
                rows[y * w + x] = acc;
                let xi = x as isize;
                acc += self.at(xi + r + 1, y as isize) - self.at(xi - r, y as isize);
            }
        }
        let rows = Plane { w, h, d: rows };
        let mut d = vec![0f32; w * h];
        for x in 0..w {
            let mut acc: f32 = (-r..=r).map(|k| rows.at(x as isize, k)).sum();
            for y in 0..h {
                d[y * w + x] = acc;
                let yi = y as isize;
                acc += rows.at(x as isize, yi + r + 1) - rows.at(x as isize, yi - r);
            }
        }
        Plane { w, h, d }
    }
}

/// Luma (Rec. 601) of a planar RGB image in 0..1.
pub fn luma(rgb: &[f32], width: usize, height: usize) -> Vec<f32> {
    let n = width * height;
    assert_eq!(rgb.len(), 3 * n, "planar RGB of {width}x{height}");
    (0..n)
        .map(|i| 0.299 * rgb[i] + 0.587 * rgb[n + i] + 0.114 * rgb[2 * n + i])
        .collect()
}

/// Settings of [`dense_flow`].
#[derive(Debug, Clone, Copy)]
pub struct FlowOptions {
    /// Half-size of the matching window: `(2r+1)²` pixels.
    pub window_radius: usize,
    /// Lucas–Kanade iterations per pyramid level.
    pub iterations: usize,
    /// Coarsest level's smaller side, in pixels.
    pub min_side: usize,
    /// Tikhonov term added to the structure tensor's diagonal, so flat regions get a
    /// small update instead of a wild one.
    pub regularisation: f32,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self {
            window_radius: 3,
            iterations: 6,
            min_side: 16,
            regularisation: 1e-4,
        }
    }
}

/// The flow from `first` to `second` (single-channel, row-major, same size).
pub fn dense_flow(
    first: &[f32],
    second: &[f32],
    width: usize,
    height: usize,
    options: FlowOptions,
) -> Flow {
    assert_eq!(first.len(), width * height);
    assert_eq!(second.len(), width * height);
    let mut a = vec![Plane {
        w: width,
        h: height,
        d: first.to_vec(),
    }];
    let mut b = vec![Plane {
        w: width,
        h: height,
        d: second.to_vec(),
    }];
    while a
        .last()
        .is_some_and(|p| p.w.min(p.h) / 2 >= options.min_side.max(2))
    {
        let (na, nb) = (a[a.len() - 1].half(), b[b.len() - 1].half());
        a.push(na);
        b.push(nb);
    }
    let mut flow: Option<Flow> = None;
    for (pa, pb) in a.iter().zip(&b).rev() {
        let mut f = match flow {
            None => Flow {
                width: pa.w,
                height: pa.h,
                u: vec![0.0; pa.w * pa.h],
                v: vec![0.0; pa.w * pa.h],
            },
            Some(coarse) => upsample(&coarse, pa.w, pa.h),
        };
        for _ in 0..options.iterations {
            refine(pa, pb, &mut f, options);
            // Each pixel's update came from a window in which the flow varies: averaging
            // over a small neighbourhood keeps the field coherent between iterations.
            smooth(&mut f);
        }
        flow = Some(f);
    }
    flow.expect("at least one level")
}

/// The flow averaged over 3x3 neighbourhoods.
fn smooth(f: &mut Flow) {
    let (w, h) = (f.width, f.height);
    for d in [&mut f.u, &mut f.v] {
        let p = Plane {
            w,
            h,
            d: std::mem::take(d),
        };
        *d = p.box_sum(1).d.into_iter().map(|v| v / 9.0).collect();
    }
}

/// The coarser flow at the finer level's size, displacements doubled.
fn upsample(f: &Flow, w: usize, h: usize) -> Flow {
    let sx = f.width as f32 / w as f32;
    let sy = f.height as f32 / h as f32;
    let pu = Plane {
        w: f.width,
        h: f.height,
        d: f.u.clone(),
    };
    let pv = Plane {
        w: f.width,
        h: f.height,
        d: f.v.clone(),
    };
    let mut u = vec![0f32; w * h];
    let mut v = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = ((x as f32 + 0.5) * sx - 0.5, (y as f32 + 0.5) * sy - 0.5);
            u[y * w + x] = pu.sample(cx, cy) / sx;
            v[y * w + x] = pv.sample(cx, cy) / sy;
        }
    }
    Flow {
        width: w,
        height: h,
        u,
        v,
    }
}

/// One Lucas–Kanade step: `second` warped by the current flow is compared with `first`,
/// and the window's least-squares update is added.
fn refine(first: &Plane, second: &Plane, f: &mut Flow, o: FlowOptions) {
    let (w, h) = (first.w, first.h);
    let n = w * h;
    let mut ixx = vec![0f32; n];
    let mut ixy = vec![0f32; n];
    let mut iyy = vec![0f32; n];
    let mut ixt = vec![0f32; n];
    let mut iyt = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (sx, sy) = (x as f32 + f.u[i], y as f32 + f.v[i]);
            if sx < 0.0 || sy < 0.0 || sx > (w - 1) as f32 || sy > (h - 1) as f32 {
                // Gone out of the frame: no evidence here (the sums stay zero).
                continue;
            }
            let warped = second.sample(sx, sy);
            // Gradients of the first image only (inverse-compositional form): the window's
            // system stays the same through the iterations, which keeps them stable.
            let (xi, yi) = (x as isize, y as isize);
            let gx = 0.5 * (first.at(xi + 1, yi) - first.at(xi - 1, yi));
            let gy = 0.5 * (first.at(xi, yi + 1) - first.at(xi, yi - 1));
            let it = warped - first.d[i];
            ixx[i] = gx * gx;
            ixy[i] = gx * gy;
            iyy[i] = gy * gy;
            ixt[i] = gx * it;
            iyt[i] = gy * it;
        }
    }
    let sum = |d: Vec<f32>| Plane { w, h, d }.box_sum(o.window_radius).d;
    let (ixx, ixy, iyy, ixt, iyt) = (sum(ixx), sum(ixy), sum(iyy), sum(ixt), sum(iyt));
    for i in 0..n {
        let (a, b, c) = (ixx[i] + o.regularisation, ixy[i], iyy[i] + o.regularisation);
        let det = a * c - b * b;
        if det.abs() < 1e-12 {
            continue;
        }
        let du = -(c * ixt[i] - b * iyt[i]) / det;
        let dv = -(a * iyt[i] - b * ixt[i]) / det;
        // A step larger than the window cannot be trusted at this level.
        let limit = (2 * o.window_radius + 1) as f32;
        f.u[i] += du.clamp(-limit, limit);
        f.v[i] += dv.clamp(-limit, limit);
    }
}

/// `image` (planar, `channels` planes) sampled at `(x + u, y + v)` for each pixel `(x, y)`:
/// the second image of `flow` brought back onto the first.
pub fn warp(image: &[f32], channels: usize, flow: &Flow) -> Vec<f32> {
    let n = flow.width * flow.height;
    assert_eq!(image.len(), channels * n);
    let mut out = vec![0f32; channels * n];
    for c in 0..channels {
        let plane = Plane {
            w: flow.width,
            h: flow.height,
            d: image[c * n..(c + 1) * n].to_vec(),
        };
        for y in 0..flow.height {
            for x in 0..flow.width {
                let i = y * flow.width + x;
                out[c * n + i] = plane.sample(x as f32 + flow.u[i], y as f32 + flow.v[i]);
            }
        }
    }
    out
}

/// Per pixel of the first image, 1 where `forward` (first → second) and `backward` (second
/// → first) agree and the pixel stays inside the frame, else 0 (Ruder et al. 2016:
/// `|w + ŵ|² ≤ 0.01(|w|² + |ŵ|²) + 0.5`, `ŵ` being `backward` at the forward position).
pub fn consistency(forward: &Flow, backward: &Flow) -> Vec<f32> {
    let (w, h) = (forward.width, forward.height);
    let bu = Plane {
        w,
        h,
        d: backward.u.clone(),
    };
    let bv = Plane {
        w,
        h,
        d: backward.v.clone(),
    };
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            let (u, v) = (forward.u[i], forward.v[i]);
            let (tx, ty) = (x + u, y + v);
            if tx < 0.0 || ty < 0.0 || tx > (w - 1) as f32 || ty > (h - 1) as f32 {
                return 0.0;
            }
            let (bu, bv) = (bu.sample(tx, ty), bv.sample(tx, ty));
            let sum = (u + bu).powi(2) + (v + bv).powi(2);
            let size = u * u + v * v + bu * bu + bv * bv;
            if sum <= 0.01 * size + 0.5 { 1.0 } else { 0.0 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random texture: a sum of sines.
    fn texture(w: usize, h: usize, dx: f32, dy: f32) -> Vec<f32> {
        // Periods of 25 to 60 pixels, as in a photo's larger structures.
        let waves = [
            (0.21, 0.11, 0.0),
            (-0.09, 0.19, 1.0),
            (0.05, -0.14, 2.0),
            (0.15, 0.04, 0.5),
        ];
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 - dx, (i / w) as f32 - dy);
                0.5 + waves
                    .iter()
                    .map(|(a, b, p)| 0.12 * (a * x + b * y + p).sin())
                    .sum::<f32>()
            })
            .collect()
    }

    /// Median and 90th percentile of the end-point error away from the border.
    fn interior_error(f: &Flow, du: f32, dv: f32, margin: usize) -> (f32, f32) {
        let mut errs = Vec::new();
        for y in margin..f.height - margin {
            for x in margin..f.width - margin {
                let i = y * f.width + x;
                errs.push(((f.u[i] - du).powi(2) + (f.v[i] - dv).powi(2)).sqrt());
            }
        }
        errs.sort_by(f32::total_cmp);
        (errs[errs.len() / 2], errs[errs.len() * 9 / 10])
    }

    #[test]
    fn a_translation_is_recovered_in_the_interior() {
        let (w, h) = (96, 72);
        for (du, dv) in [(1.5, -0.7), (4.2, 2.6), (0.0, 0.0)] {
            let a = texture(w, h, 0.0, 0.0);
            let b = texture(w, h, du, dv);
            let f = dense_flow(&a, &b, w, h, FlowOptions::default());
            let (median, p90) = interior_error(&f, du, dv, 12);
            assert!(
                median < 0.05 && p90 < 0.1,
                "shift ({du}, {dv}): end-point error median {median}, 90th percentile {p90}"
            );
        }
    }

    #[test]
    fn warping_by_the_flow_brings_the_second_image_back() {
        let (w, h) = (80, 64);
        let a = texture(w, h, 0.0, 0.0);
        let b = texture(w, h, 3.0, -2.0);
        let f = dense_flow(&a, &b, w, h, FlowOptions::default());
        let back = warp(&b, 1, &f);
        let mut worst = 0f32;
        for y in 8..h - 8 {
            for x in 8..w - 8 {
                worst = worst.max((back[y * w + x] - a[y * w + x]).abs());
            }
        }
        let before = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 0.01 && before > 0.1,
            "warped error {worst}, unwarped {before}"
        );
    }

    #[test]
    fn consistency_marks_pixels_that_leave_the_frame_or_disagree() {
        let (w, h) = (20, 10);
        let n = w * h;
        let fw = Flow {
            width: w,
            height: h,
            u: vec![3.0; n],
            v: vec![0.0; n],
        };
        let mut bw = Flow {
            width: w,
            height: h,
            u: vec![-3.0; n],
            v: vec![0.0; n],
        };
        let c = consistency(&fw, &bw);
        // Columns 0..=16 land inside; 17.. leave the frame.
        assert_eq!(c[5 * w + 16], 1.0);
        assert_eq!(c[5 * w + 17], 0.0);
        // The backward flow says something else around column 10: occluded.
        for y in 0..h {
            for x in 9..12 {
                bw.u[y * w + x] = 2.0;
            }
        }
        let c = consistency(&fw, &bw);
        assert_eq!(c[5 * w + 7], 0.0, "lands on the disagreeing columns");
        assert_eq!(c[5 * w + 2], 1.0);
    }
}
