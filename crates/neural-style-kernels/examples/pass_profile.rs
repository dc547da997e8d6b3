//! Times each kernel of one evaluation of VGG16 to conv5_1 with reflect padding, forward and
//! backward, as a run calls them: the convolutions (direct first layer, Winograd the rest;
//! the gradient is the convolution two pixels larger with the transposed filters, the
//! rectifier's mask and the padding's fold), the pooling and the Gram matrices at relu1_1 to
//! relu5_1:
//! `MIMALLOC_PURGE_DELAY=60000 cargo run --release -p neural-style-kernels --example
//! pass_profile [width height] [f6]` (freed memory kept for reuse, as the binary keeps it;
//! Winograd F(4×4, 3×3) with its own gradient filters, as the engine runs it, or with `f6`
//! F(6×6, 3×3) with the gradient read from the forward filters).

use std::time::Instant;

use neural_style_kernels::Border;
use neural_style_kernels::winograd::{self, Filters, Fuse, Shape, Tile};
use neural_style_kernels::{direct, linalg, maxpool};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Median seconds of `f` over five calls, its result kept from being optimised away.
fn time<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed) % 97) as f32 / 97.0 - 0.3)
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (width, height) = (*args.first().unwrap_or(&512), *args.get(1).unwrap_or(&384));
    let tile = if std::env::args().any(|a| a == "f6") {
        Tile::F6
    } else {
        Tile::F4
    };
    // (input channels, output channels, the side's divisor, Gram after it, pool after it)
    let layers = [
        (3usize, 64usize, 1usize, true, false),
        (64, 64, 1, false, true),
        (64, 128, 2, true, false),
        (128, 128, 2, false, true),
        (128, 256, 4, true, false),
        (256, 256, 4, false, false),
        (256, 256, 4, false, true),
        (256, 512, 8, true, false),
        (512, 512, 8, false, false),
        (512, 512, 8, false, true),
        (512, 512, 16, true, false),
    ];
    println!(
        "{width}x{height}, {tile:?}, ms: conv forward | conv backward (product, fold) | pool f/b | gram f/b"
    );
    let (mut forward, mut backward) = (0.0, 0.0);
    for (cin, cout, div, gram, pool) in layers {
        let (h, w) = (height / div, width / div);
        let x = values(cin * h * w, 1);
        let weight: Vec<f32> = values(cout * cin * 9, 2).iter().map(|v| v * 0.1).collect();
        let bias = values(cout, 3);
        let shape = Shape {
            n: 1,
            channels: cin,
            height: h,
            width: w,
            pad: 1,
            border: Border::Reflect,
        };
        let fuse = Fuse {
            bias: Some(&bias),
            relu: true,
            input_mask: None,
        };
        let back_shape = Shape {
            channels: cout,
            pad: 2,
            border: Border::Zero,
            ..shape
        };
        let grad = values(cout * h * w, 4);
        let (tf, y, tb) = if cin == 3 {
            let back = direct::transpose_flip(&weight, cout, cin);
            let tf = time(|| direct::conv3x3(&x, &shape, &weight, cout, fuse));
            let y = direct::conv3x3(&x, &shape, &weight, cout, fuse);
            let mask = Fuse {
                input_mask: Some(&y),
                ..Fuse::default()
            };
            let tb = time(|| direct::conv3x3(&grad, &back_shape, &back, cin, mask));
            (tf, y, tb)
        } else {
            let u = winograd::transform_filters(&weight, cout, cin, false, tile);
            let ub = match tile {
                Tile::F4 => winograd::transform_filters(&weight, cout, cin, true, tile),
                Tile::F6 => Vec::new(),
            };
            let forward = Filters::F32 { tile, u: &u };
            let back = match tile {
                Tile::F4 => Filters::F32 { tile, u: &ub },
                Tile::F6 => Filters::F6Adjoint(&u),
            };
            let tf = time(|| winograd::conv3x3(&x, &shape, forward, cout, fuse));
            let y = winograd::conv3x3(&x, &shape, forward, cout, fuse);
            let mask = Fuse {
                input_mask: Some(&y),
                ..Fuse::default()
            };
            let tb = time(|| winograd::conv3x3(&grad, &back_shape, back, cin, mask));
            (tf, y, tb)
        };
        let padded = vec![0.5f32; cin * (h + 2) * (w + 2)];
        let tfold = time(|| winograd::fold_padding(&padded, cin, h, w, Border::Reflect));
        let (mut tp, mut tpb) = (0.0, 0.0);
        if pool {
            tp = time(|| maxpool::forward(&y, cout, h, w));
            let g = values(cout * (h / 2) * (w / 2), 5);
            tpb = time(|| maxpool::backward(&y, &g, cout, h, w));
        }
        let (mut tg, mut tgb) = (0.0, 0.0);
        if gram {
            tg = time(|| linalg::gram(&y, cout, h * w));
            let dg = values(cout * cout, 6);
            tgb = time(|| linalg::gram_gradient(&dg, &y, cout, h * w));
        }
        forward += tf + tp + tg;
        backward += tb + tfold + tpb + tgb;
        println!(
            "{cin:>4}->{cout:<4} @ {w}x{h}: {:7.1} | {:7.1} ({:6.1}, {:5.1}) | {:5.1}/{:5.1} | {:5.1}/{:5.1}",
            tf * 1e3,
            (tb + tfold) * 1e3,
            tb * 1e3,
            tfold * 1e3,
            tp * 1e3,
            tpb * 1e3,
            tg * 1e3,
            tgb * 1e3
        );
    }
    println!(
        "total ms: forward {:.1}, backward {:.1}",
        forward * 1e3,
        backward * 1e3
    );
}
