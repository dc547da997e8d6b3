//! Matrix products with bfloat16 operands and f32 accumulation, for the Winograd
//! convolution's 36 products per band (`M[ξ] = U[ξ] · V[ξ]`, see [`crate::winograd`]).
//!
//! bfloat16 keeps f32's exponent and the top 8 bits of its significand (Kalamkar et al. 2019,
//! "A Study of BFLOAT16 for Deep Learning Training"): each operand is rounded to nearest
//! (relative error ≤ 2⁻⁹), each product of two is exact in f32, and the sums are f32. On
//! x86-64 CPUs with AVX512-BF16 (`vdpbf16ps`: per f32 lane, `c += a₀b₀ + a₁b₁`) that is twice
//! the multiply-adds per instruction of an f32 FMA, on half the bytes. Other CPUs never
//! take this path ([`available`] is false); [`reference`] is the plain product it is tested
//! against.
//!
//! Operands are packed as 32-bit words, each holding two bfloat16 values that are
//! consecutive along the summed dimension `k` (even `k` in the low half):
//! - `a` (`m × k`, the transformed filters, packed once per network): blocks of [`MR`] rows,
//!   `[m / MR][k / 2][MR]`, rows and `k` padded with zeros;
//! - `b` (`k × n`, the transformed input, packed per band): `[k / 2][n]`.
//!
//! The one module where unsafe code is allowed: the intrinsics load and store through raw
//! pointers, and a function compiled for AVX-512 may only be called once the CPU is known
//! to have it. The safe functions check both before they call in.
#![allow(unsafe_code)]

/// Rows of `c` per micro-tile (the rows of `a` one pass over `b` serves).
pub const MR: usize = 8;
/// Columns of `c` per micro-tile: two AVX-512 registers of f32.
pub const NR: usize = 32;

/// Whether this CPU runs [`gemm`]: x86-64 with AVX-512 (F, BW) and AVX512-BF16.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits.
#[inline(always)]
fn round(x: f32) -> u32 {
    let bits = x.to_bits();
    bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16
}

/// Two values as one word: `lo` (even `k`) in the low half, `hi` in the high half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    round(lo) | (round(hi) << 16)
}

/// The two values of a word, back in f32.
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
fn unpair(w: u32) -> (f32, f32) {
    (f32::from_bits(w << 16), f32::from_bits(w & 0xffff_0000))
}

/// Words in `a` (`m × k`) once packed by [`pack_a`].
pub fn packed_a_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * MR * k.div_ceil(2)
}

/// Packs row-major `a` (`m × k`) into `[m / MR][k / 2][MR]` words.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<u32> {
    assert_eq!(a.len(), m * k, "a is m × k");
    let kk = k.div_ceil(2);
    let mut out = vec![0u32; packed_a_len(m, k)];
    for i in 0..m {
        let row = &a[i * k..][..k];
        let (block, r) = (i / MR, i % MR);
        for p in 0..kk {
            let hi = row.get(2 * p + 1).copied().unwrap_or(0.0);
            out[(block * kk + p) * MR + r] = pair(row[2 * p], hi);
        }
    }
    out
}

/// Packs `b` (`k` rows of `n` values, `stride` apart) into `out` (`[k / 2][n]` words).
pub fn pack_b(b: &[f32], k: usize, n: usize, stride: usize, out: &mut [u32]) {
    let kk = k.div_ceil(2);
    assert!(out.len() >= kk * n, "out holds [k / 2][n] words");
    assert!(k == 0 || b.len() >= (k - 1) * stride + n, "b holds k rows");
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512 (checked above); the function reads and writes only
        // through the slices it is given.
        return unsafe { pack_b_avx512(b, k, n, stride, out) };
    }
    pack_b_plain(b, k, n, stride, out);
}

#[inline(always)]
fn pack_b_plain(b: &[f32], k: usize, n: usize, stride: usize, out: &mut [u32]) {
    for (p, words) in out.chunks_exact_mut(n).take(k.div_ceil(2)).enumerate() {
        let lo = &b[2 * p * stride..][..n];
        if 2 * p + 1 < k {
            let hi = &b[(2 * p + 1) * stride..][..n];
            for ((w, &l), &h) in words.iter_mut().zip(lo).zip(hi) {
                *w = pair(l, h);
            }
        } else {
            for (w, &l) in words.iter_mut().zip(lo) {
                *w = pair(l, 0.0);
            }
        }
    }
}

/// [`pack_b_plain`] compiled for AVX-512, which vectorises its loops.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_b_avx512(b: &[f32], k: usize, n: usize, stride: usize, out: &mut [u32]) {
    pack_b_plain(b, k, n, stride, out);
}

/// `c = a · b` (`c`: `m × n`, row-major) for `a` packed by [`pack_a`] and `b` by [`pack_b`],
/// `k` the summed dimension before packing. Only where [`available`].
pub fn gemm(c: &mut [f32], a: &[u32], b: &[u32], m: usize, k: usize, n: usize) {
    let kk = k.div_ceil(2);
    assert_eq!(c.len(), m * n, "c is m × n");
    assert!(a.len() >= packed_a_len(m, k), "a is packed m × k");
    assert!(b.len() >= kk * n, "b is packed k × n");
    assert!(available(), "bf16 products need AVX512-BF16");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (asserted above) and the slices hold every index the
    // kernel reads or writes (asserted above: micro-tiles stop at m and n, and the packed
    // operands cover whole blocks of MR rows and k / 2 words).
    unsafe {
        avx512::gemm(c, a, b, m, kk, n)
    }
}

/// The plain product [`gemm`] computes, from the same packed operands, in f32.
pub fn reference(c: &mut [f32], a: &[u32], b: &[u32], m: usize, k: usize, n: usize) {
    let kk = k.div_ceil(2);
    for i in 0..m {
        let (block, r) = (i / MR, i % MR);
        for j in 0..n {
            let mut sum = 0.0f32;
            for p in 0..kk {
                let (a0, a1) = unpair(a[(block * kk + p) * MR + r]);
                let (b0, b1) = unpair(b[p * n + j]);
                sum += a0 * b0 + a1 * b1;
            }
            c[i * n + j] = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// A mask of the first `n` (at most 16) lanes.
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as u16
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn gemm(c: &mut [f32], a: &[u32], b: &[u32], m: usize, kk: usize, n: usize) {
        let (c, a, b) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        for j0 in (0..n).step_by(NR) {
            let cols = (n - j0).min(NR);
            for (block, i0) in (0..m).step_by(MR).enumerate() {
                let rows = (m - i0).min(MR);
                // SAFETY: row i0 + r < m and column j0 + j < n of `c`; block `block` of `a`;
                // columns j0.. of `b`'s kk rows (the caller checked the lengths).
                unsafe {
                    let (ct, at, bt) = (c.add(i0 * n + j0), a.add(block * kk * MR), b.add(j0));
                    if cols > 16 {
                        tile::<2>(ct, n, at, bt, n, kk, rows, cols);
                    } else {
                        tile::<1>(ct, n, at, bt, n, kk, rows, cols);
                    }
                }
            }
        }
    }

    /// One micro-tile: `rows × cols` of `c` (row stride `ldc`) from `MR` packed rows of `a`
    /// and `cols` columns of `b` (row stride `ldb` words), `R` registers wide.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile<const R: usize>(
        c: *mut f32,
        ldc: usize,
        a: *const u32,
        b: *const u32,
        ldb: usize,
        kk: usize,
        rows: usize,
        cols: usize,
    ) {
        let masks: [__mmask16; R] = std::array::from_fn(|j| lanes(cols.saturating_sub(16 * j)));
        let mut acc = [[_mm512_setzero_ps(); R]; MR];
        for p in 0..kk {
            // SAFETY: masked-off lanes are not read; the rest are in the caller's slices.
            unsafe {
                let bp = b.add(p * ldb) as *const i32;
                let bv: [__m512bh; R] = std::array::from_fn(|j| {
                    std::mem::transmute(_mm512_maskz_loadu_epi32(masks[j], bp.wrapping_add(16 * j)))
                });
                let ap = a.add(p * MR) as *const i32;
                for (r, row) in acc.iter_mut().enumerate() {
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r)));
                    for (acc, &bv) in row.iter_mut().zip(&bv) {
                        *acc = _mm512_dpbf16_ps(*acc, av, bv);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: masked-off lanes are not written.
                unsafe { _mm512_mask_storeu_ps(c.add(r * ldc + 16 * j), masks[j], v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random;

    #[test]
    fn rounding_is_to_nearest_even_as_the_half_crate_does() {
        for x in random(10_000, 3)
            .into_iter()
            .chain([0.0, -0.0, 1.0, 65504.0, 1e-30])
        {
            assert_eq!(round(x) as u16, half::bf16::from_f32(x).to_bits(), "{x}");
        }
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even significand, 1.
        assert_eq!(unpair(pair(1.0 + 1.0 / 256.0, 0.0)).0, 1.0);
    }

    #[test]
    fn packing_keeps_every_value_to_bf16_precision_and_pads_with_zeros() {
        let (m, k, n) = (11, 7, 5);
        let a = random(m * k, 1);
        let packed = pack_a(&a, m, k);
        assert_eq!(packed.len(), 16 * 4);
        for i in 0..16 {
            for j in 0..8 {
                let (lo, hi) = unpair(packed[((i / MR) * 4 + j / 2) * MR + i % MR]);
                let got = if j % 2 == 0 { lo } else { hi };
                let want = if i < m && j < k { a[i * k + j] } else { 0.0 };
                assert!((got - want).abs() <= want.abs() / 256.0, "a[{i}][{j}]");
            }
        }
        let b = random(k * 9, 2);
        let mut words = vec![u32::MAX; 4 * n];
        pack_b(&b, k, n, 9, &mut words);
        for (p, row) in words.chunks(n).enumerate() {
            for (j, &w) in row.iter().enumerate() {
                let (lo, hi) = unpair(w);
                let want_hi = if 2 * p + 1 < k {
                    b[(2 * p + 1) * 9 + j]
                } else {
                    0.0
                };
                assert!((lo - b[2 * p * 9 + j]).abs() <= b[2 * p * 9 + j].abs() / 256.0);
                assert!((hi - want_hi).abs() <= want_hi.abs() / 256.0);
            }
        }
    }

    #[test]
    fn the_kernel_matches_the_plain_product_on_ragged_shapes() {
        if !available() {
            eprintln!("skipping: this CPU has no AVX512-BF16 (the kernel never runs here)");
            return;
        }
        for &(m, k, n) in &[
            (1, 1, 1),
            (8, 2, 32),
            (13, 9, 17),
            (64, 64, 128),
            (100, 37, 45),
        ] {
            let a = pack_a(&random(m * k, 5), m, k);
            let mut b = vec![0u32; k.div_ceil(2) * n];
            pack_b(&random(k * n, 6), k, n, n, &mut b);
            let (mut got, mut want) = (vec![f32::NAN; m * n], vec![0.0; m * n]);
            gemm(&mut got, &a, &b, m, k, n);
            reference(&mut want, &a, &b, m, k, n);
            let scale = want.iter().fold(1e-6f32, |s, v| s.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * scale, "{m}x{k}x{n}: {g} vs {w}");
            }
        }
    }
}
