//! Contact sheets: a grid of results with row and column labels, as in Gatys, Ecker &
//! Bethge 2015, fig. 3 (style layers down, the content/style weight ratio α/β across).
//! Labels use the 8x8 bitmap glyphs of `font8x8`, so no font file is needed.

use font8x8::{BASIC_FONTS, GREEK_FONTS, LATIN_FONTS, UnicodeFonts};

use crate::image::io::Image;

/// Space around and between cells, in pixels.
const GAP: u32 = 8;

/// The 8x8 glyph of `c` (a box for characters the fonts lack).
fn glyph(c: char) -> [u8; 8] {
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| GREEK_FONTS.get(c))
        .unwrap_or([0xff, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0xff])
}

/// Pixels a label takes at glyph zoom `zoom`: (width, height).
pub fn text_size(text: &str, zoom: u32) -> (u32, u32) {
    (text.chars().count() as u32 * 8 * zoom, 8 * zoom)
}

/// Draws `text` in black on `image` with its top-left corner at (x, y), each glyph pixel
/// a `zoom` x `zoom` square; what falls outside the image is dropped.
pub fn draw_text(image: &mut Image, text: &str, x: u32, y: u32, zoom: u32) {
    let plane = image.width as usize * image.height as usize;
    for (k, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..8u32 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for dy in 0..zoom {
                    for dx in 0..zoom {
                        let px = x + (k as u32 * 8 + gx) * zoom + dx;
                        let py = y + gy as u32 * zoom + dy;
                        if px < image.width && py < image.height {
                            let i = py as usize * image.width as usize + px as usize;
                            for ch in 0..3 {
                                image.data[ch * plane + i] = 0.0;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A white sheet with `cells` (rows of images, each row as long as `column_labels`) laid
/// out on a grid, each column headed by its label and each row preceded by its label.
/// Cells of different sizes are centred in the largest cell's box.
pub fn contact_sheet(
    cells: &[Vec<Image>],
    row_labels: &[String],
    column_labels: &[String],
) -> Image {
    let zoom = 2;
    let widest_label = column_labels
        .iter()
        .map(|l| text_size(l, zoom).0)
        .max()
        .unwrap_or(0);
    let cell_w = cells
        .iter()
        .flatten()
        .map(|c| c.width)
        .max()
        .unwrap_or(1)
        .max(widest_label);
    let cell_h = cells.iter().flatten().map(|c| c.height).max().unwrap_or(1);
    let label_w = row_labels
        .iter()
        .map(|l| text_size(l, zoom).0)
        .max()
        .unwrap_or(0);
    let header_h = if column_labels.is_empty() {
        0
    } else {
        8 * zoom + GAP
    };
    let left = GAP + if label_w > 0 { label_w + GAP } else { 0 };
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let rows = cells.len() as u32;
    let width = left + columns * (cell_w + GAP);
    let height = GAP + header_h + rows * (cell_h + GAP);
    let mut sheet = Image::new(width, height, vec![1.0; 3 * (width * height) as usize]);
    for (j, label) in column_labels.iter().enumerate() {
        let (tw, _) = text_size(label, zoom);
        let x = left + j as u32 * (cell_w + GAP) + cell_w.saturating_sub(tw) / 2;
        draw_text(&mut sheet, label, x, GAP, zoom);
    }
    let plane = (width * height) as usize;
    for (r, row) in cells.iter().enumerate() {
        let top = GAP + header_h + r as u32 * (cell_h + GAP);
        if let Some(label) = row_labels.get(r) {
            draw_text(&mut sheet, label, GAP, top + cell_h / 2 - 4 * zoom, zoom);
        }
        for (j, cell) in row.iter().enumerate() {
            let x0 = left + j as u32 * (cell_w + GAP) + (cell_w - cell.width) / 2;
            let y0 = top + (cell_h - cell.height) / 2;
            let cp = (cell.width * cell.height) as usize;
            for y in 0..cell.height {
                for x in 0..cell.width {
                    let src = (y * cell.width + x) as usize;
                    let dst = ((y0 + y) * width + x0 + x) as usize;
                    for ch in 0..3 {
                        sheet.data[ch * plane + dst] = cell.data[ch * cp + src];
                    }
                }
            }
        }
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, v: f32) -> Image {
        Image::new(w, h, vec![v; 3 * (w * h) as usize])
    }

    #[test]
    fn cells_land_on_the_grid_and_labels_are_drawn() {
        let cells = vec![
            vec![flat(20, 10, 0.5), flat(20, 10, 0.25)],
            vec![flat(20, 10, 0.75), flat(20, 10, 0.0)],
        ];
        let rows = ["a".to_string(), "bb".to_string()];
        let cols = ["1".to_string(), "2".to_string()];
        let sheet = contact_sheet(&cells, &rows, &cols);
        // Row labels 2 chars x 16 px wide: cells start at 8 + 32 + 8 = 48; header 16 + 8.
        assert_eq!((sheet.width, sheet.height), (48 + 2 * 28, 8 + 24 + 2 * 18));
        let at = |x: u32, y: u32| sheet.data[(y * sheet.width + x) as usize];
        assert_eq!(at(48 + 5, 32 + 5), 0.5);
        assert_eq!(at(48 + 28 + 5, 32 + 5), 0.25);
        assert_eq!(at(48 + 5, 32 + 18 + 5), 0.75);
        // Gaps stay white; labels put some black on the sheet.
        assert_eq!(at(48 + 22, 32 + 5), 1.0);
        let black = sheet.data.iter().filter(|v| **v == 0.0).count();
        assert!(black > 3 * 10 * 20, "labels and the black cell");
    }

    #[test]
    fn greek_letters_have_glyphs() {
        assert_ne!(glyph('α'), glyph('β'));
        assert_ne!(glyph('α'), glyph('\u{2603}'));
    }
}
