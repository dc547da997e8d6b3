//! Times the Winograd convolution's strategies (the whole image, bands of 1, 2, 4 and 8 tile
//! rows) for each tile size and VGG layer shape at 512x384, beside the strategy
//! [`Strategy::choose`] picks, to set the band sizes:
//! `cargo run --release -p neural-style-kernels --example band_sweep`
//! (`TILE=F4|F6` and `LAYER=cin-cout-height`, e.g. `LAYER=64-64-384`, restrict it).

use std::time::Instant;

use neural_style_kernels::Border;
use neural_style_kernels::winograd::{self, Filters, Shape, Strategy, Tile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Median milliseconds of `f` over five calls.
fn millis(f: impl Fn() -> Vec<f32>) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

fn main() {
    let threads = rayon::current_num_threads();
    let only_tile = std::env::var("TILE").ok();
    let only_layer = std::env::var("LAYER").ok();
    let strategies = [
        Strategy::Whole,
        Strategy::Bands { rows: 1 },
        Strategy::Bands { rows: 2 },
        Strategy::Bands { rows: 4 },
        Strategy::Bands { rows: 8 },
    ];
    for &(cin, cout, h, w) in &[
        (64usize, 64usize, 384usize, 512usize),
        (64, 128, 192, 256),
        (128, 128, 192, 256),
        (128, 256, 96, 128),
        (256, 256, 96, 128),
        (256, 512, 48, 64),
        (512, 512, 48, 64),
        (512, 512, 24, 32),
    ] {
        if only_layer
            .as_ref()
            .is_some_and(|l| *l != format!("{cin}-{cout}-{h}"))
        {
            continue;
        }
        let shape = Shape {
            n: 1,
            channels: cin,
            height: h,
            width: w,
            pad: 1,
            border: Border::Zero,
        };
        let x: Vec<f32> = (0..cin * h * w)
            .map(|i| ((i * 31) % 97) as f32 / 97.0)
            .collect();
        let weight: Vec<f32> = (0..cout * cin * 9)
            .map(|i| ((i * 17) % 89) as f32 / 890.0 - 0.05)
            .collect();
        for tile in [Tile::F4, Tile::F6] {
            if only_tile
                .as_ref()
                .is_some_and(|t| *t != format!("{tile:?}"))
            {
                continue;
            }
            let u = winograd::transform_filters(&weight, cout, cin, false, tile);
            let filters = Filters::F32 { tile, u: &u };
            let chosen = Strategy::choose(&shape, cout, tile, threads);
            let mut line = format!("{cin}->{cout} @ {w}x{h} {tile:?}, chosen {chosen:?}, ms:");
            for strategy in strategies {
                let ms = millis(|| {
                    winograd::conv3x3_with(&x, &shape, filters, cout, Default::default(), strategy)
                });
                line += &format!("  {strategy:?} {ms:.1}");
            }
            println!("{line}");
        }
    }
}
