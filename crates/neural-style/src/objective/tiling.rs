//! Tiles for evaluating the objective on pictures larger than memory allows, after Galerne,
//! Raad, Lezama & Morel 2024 ("Scaling Painting Style Transfer"): the image is cut into
//! cores that partition it, each read by the network with a halo as wide as the receptive
//! field of the deepest layer used and with its origin on that layer's pooling grid, so that
//! every activation inside a core equals the whole-image activation. The losses then
//! combine the cores exactly ([`crate::Objective::evaluate_tiled`]).

use crate::model::vgg::{Layer, LayerKind};

/// A rectangle of pixels: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// First column.
    pub x0: usize,
    /// First row.
    pub y0: usize,
    /// One past the last column.
    pub x1: usize,
    /// One past the last row.
    pub y1: usize,
}

impl Rect {
    /// Columns.
    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }

    /// This rectangle at a layer `scale` times coarser, in that layer's positions; `limit`
    /// is the layer's size (a rectangle ending at the image's edge ends at the layer's).
    pub fn at_stride(&self, stride: usize, limit: (usize, usize)) -> Rect {
        Rect {
            x0: (self.x0 / stride).min(limit.0),
            y0: (self.y0 / stride).min(limit.1),
            x1: (self.x1 / stride).min(limit.0),
            y1: (self.y1 / stride).min(limit.1),
        }
    }
}

/// One tile: the core whose activations (and so loss terms) it answers for, and the
/// region of the image the network reads for it (the core and its halo, within the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// The pixels it answers for.
    pub core: Rect,
    /// The pixels it reads.
    pub region: Rect,
}

impl Tile {
    /// The core at a layer `scale` times coarser than the image, whose size is `size`: in
    /// the whole layer's positions, and in the positions of this tile's own activations.
    pub fn core_at(&self, stride: usize, size: (usize, usize)) -> (Rect, Rect) {
        let c = self.core.at_stride(stride, size);
        let (ox, oy) = (self.region.x0 / stride, self.region.y0 / stride);
        let own = Rect {
            x0: c.x0 - ox,
            y0: c.y0 - oy,
            x1: c.x1 - ox,
            y1: c.y1 - oy,
        };
        (c, own)
    }
}

/// How the image is cut: core side, halo and the grid the regions start on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Side of a core in pixels (a multiple of `stride`; the last row and column of cores
    /// are cut by the image's edges).
    pub core: usize,
    /// Pixels read beyond each side of a core.
    pub halo: usize,
    /// The pooling factor of the deepest layer: cores and regions start on multiples of it.
    pub stride: usize,
}

/// The halo and stride that make a tile's core exact up to `deepest` of the layers
/// `network` (in network order): each 3x3 convolution widens the receptive field by one
/// position of its own resolution on each side, each 2x2 pooling halves the resolution.
pub fn reach(network: &[Layer], deepest: Layer) -> (usize, usize) {
    let (mut halo, mut stride) = (0, 1);
    for layer in network.iter().take_while(|l| **l <= deepest) {
        match layer.kind() {
            LayerKind::Conv => halo += stride,
            LayerKind::Pool => stride *= 2,
            LayerKind::Relu => {}
        }
    }
    (halo, stride)
}

impl Tiling {
    /// Cores of about `core` pixels (rounded up to the stride) for the layers `used` of
    /// `network`.
    pub fn new(core: usize, network: &[Layer], used: &[Layer]) -> Self {
        let deepest = used.iter().copied().max().unwrap_or(Layer::Relu1_1);
        let (halo, stride) = reach(network, deepest);
        Self {
            core: core.max(1).div_ceil(stride) * stride,
            halo,
            stride,
        }
    }

    /// The tiles of a `width` x `height` image, row by row.
    pub fn tiles(&self, width: usize, height: usize) -> Vec<Tile> {
        let mut tiles = Vec::new();
        for y0 in (0..height).step_by(self.core) {
            for x0 in (0..width).step_by(self.core) {
                let core = Rect {
                    x0,
                    y0,
                    x1: (x0 + self.core).min(width),
                    y1: (y0 + self.core).min(height),
                };
                let start = |at: usize| at.saturating_sub(self.halo) / self.stride * self.stride;
                let region = Rect {
                    x0: start(core.x0),
                    y0: start(core.y0),
                    x1: (core.x1 + self.halo).min(width),
                    y1: (core.y1 + self.halo).min(height),
                };
                tiles.push(Tile { core, region });
            }
        }
        tiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vgg::Arch;

    #[test]
    fn the_reach_of_relu5_1_is_70_pixels_on_a_16_pixel_grid() {
        let vgg19 = Arch::Vgg19.layers();
        assert_eq!(reach(&vgg19, Layer::Relu1_1), (1, 1));
        assert_eq!(reach(&vgg19, Layer::Relu2_1), (1 + 1 + 2, 2));
        // 2 convolutions at 1, 2 at 2, 4 at 4, 4 at 8 and conv5_1 at 16.
        assert_eq!(reach(&vgg19, Layer::Relu5_1), (2 + 4 + 16 + 32 + 16, 16));
        // VGG16 has 3 convolutions in blocks 3 and 4.
        assert_eq!(
            reach(&Arch::Vgg16.layers(), Layer::Relu5_1),
            (2 + 4 + 12 + 24 + 16, 16)
        );
    }

    #[test]
    fn cores_partition_the_image_and_regions_start_on_the_grid() {
        let t = Tiling::new(40, &Arch::Vgg19.layers(), &[Layer::Relu4_1]);
        assert_eq!((t.core, t.stride), (40, 8));
        let (w, h) = (101, 50);
        let tiles = t.tiles(w, h);
        assert_eq!(tiles.len(), 3 * 2);
        let mut covered = vec![0; w * h];
        for tile in &tiles {
            let (c, r) = (tile.core, tile.region);
            assert_eq!((r.x0 % 8, r.y0 % 8), (0, 0));
            assert!(r.x0 + t.halo <= c.x0 || r.x0 == 0);
            assert!(c.x1 + t.halo <= r.x1 || r.x1 == w);
            for y in c.y0..c.y1 {
                for x in c.x0..c.x1 {
                    covered[y * w + x] += 1;
                }
            }
        }
        assert!(covered.iter().all(|&n| n == 1));
    }
}
