//! Times the Winograd convolution F(4×4, 3×3) (bands of one tile row, whole image, and the
//! strategy chosen; then with bf16 products where the CPU has them; then F(6×6, 3×3) with the
//! strategy chosen for it) against burn's direct convolution, for VGG's layer shapes:
//! `cargo run --release -p neural-style --example winograd_profile [size]`.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use neural_style_kernels::Border;
use neural_style_kernels::winograd::{self, Filters, Shape, Strategy, Tile};

/// Seconds `f` takes, its result kept from being optimised away.
fn seconds<T>(f: impl FnOnce() -> T) -> f64 {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let device = Device::flex();
    println!(
        "layer (cin->cout @ side)  ms, F4: bands-of-1  whole  chosen (strategy);  F6: chosen;  F4 bf16: chosen;  burn direct;  GFLOP/s direct-equivalent: F4 chosen vs direct"
    );
    let mut total_w = 0.0;
    let mut total_6 = 0.0;
    let mut total_b = 0.0;
    let mut total_d = 0.0;
    for &(cin, cout, div) in &[
        (64usize, 64usize, 1usize),
        (64, 128, 2),
        (128, 128, 2),
        (128, 256, 4),
        (256, 256, 4),
        (256, 512, 8),
        (512, 512, 8),
        (512, 512, 16),
    ] {
        let h = size / div;
        let shape = Shape {
            n: 1,
            channels: cin,
            height: h,
            width: h,
            pad: 1,
            border: Border::Zero,
        };
        let x: Vec<f32> = (0..cin * h * h)
            .map(|i| ((i * 31) % 97) as f32 / 97.0)
            .collect();
        let w: Vec<f32> = (0..cout * cin * 9)
            .map(|i| ((i * 17) % 89) as f32 / 890.0 - 0.05)
            .collect();
        let u4 = winograd::transform_filters(&w, cout, cin, false, Tile::F4);
        let ub = winograd::pack_filters_bf16(&u4, cout, cin);
        let u4 = Filters::F32 {
            tile: Tile::F4,
            u: &u4,
        };
        let u6 = winograd::transform_filters(&w, cout, cin, false, Tile::F6);
        let u6 = Filters::F32 {
            tile: Tile::F6,
            u: &u6,
        };
        let mut t6 = vec![];
        let bf16 = neural_style_kernels::bf16::available();
        let mut tb16 = vec![];
        let (mut tb, mut tw_, mut ta, mut td) = (vec![], vec![], vec![], vec![]);
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, cin, h, h]), &device);
        let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [cout, cin, 3, 3]), &device);
        let threads = rayon::current_num_threads();
        let chosen = Strategy::choose(&shape, cout, Tile::F4, threads);
        let chosen6 = Strategy::choose(&shape, cout, Tile::F6, threads);
        let (x, shape) = (&x, &shape);
        let with = |filters, strategy| {
            move || winograd::conv3x3_with(x, shape, filters, cout, Default::default(), strategy)
        };
        for _ in 0..5 {
            tb.push(seconds(with(u4, Strategy::Bands { rows: 1 })));
            tw_.push(seconds(with(u4, Strategy::Whole)));
            ta.push(seconds(with(u4, chosen)));
            t6.push(seconds(with(u6, chosen6)));
            if bf16 {
                tb16.push(seconds(with(Filters::Bf16(&ub), chosen)));
            }
            td.push(seconds(|| {
                conv2d(
                    xt.clone(),
                    wt.clone(),
                    None,
                    ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
                )
                .into_data()
            }));
        }
        let (i, m, o, d) = (median(tb), median(tw_), median(ta), median(td));
        let flops = 2.0 * (cin * cout * 9 * h * h) as f64;
        total_w += o;
        let f6 = median(t6);
        total_6 += f6;
        total_d += d;
        // Without AVX512-BF16 the bf16 column stays empty (NaN).
        let b = if tb16.is_empty() {
            f64::NAN
        } else {
            median(tb16)
        };
        total_b += b;
        println!(
            "{cin:>4}->{cout:<4} @ {h:<4}  {:8.1} {:8.1} {:8.1} {chosen:?};  {:8.1}  {:8.1};  {:7.1};  {:6.0} vs {:6.0}",
            i * 1e3,
            m * 1e3,
            o * 1e3,
            f6 * 1e3,
            b * 1e3,
            d * 1e3,
            flops / o / 1e9,
            flops / d / 1e9
        );
    }
    println!(
        "total (ms): winograd F4 {:.1}, F6 {:.1}, F4 with bf16 {:.1}, direct {:.1}",
        total_w * 1e3,
        total_6 * 1e3,
        total_b * 1e3,
        total_d * 1e3
    );
}
