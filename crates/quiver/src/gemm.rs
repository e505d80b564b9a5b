//! A bounds-checked, safe front for `matrixmultiply::sgemm`.
//!
//! Each element of the result is a dot product computed in a fixed order
//! that depends only on `k`, never on `m`, `n` or where the row sits, so a
//! sequence's values do not depend on what else is in the batch.

/// A read-only strided matrix view: element `(i, j)` is
/// `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with row stride `rs`, starting at `offset`.
    pub(crate) fn rows(data: &'a [f32], offset: usize, rs: usize) -> View<'a> {
        View {
            data,
            offset,
            rs,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `rs`.
    pub(crate) fn transposed(data: &'a [f32], offset: usize, rs: usize) -> View<'a> {
        View {
            data,
            offset,
            rs: 1,
            cs: rs,
        }
    }

    /// Index of the last element of an `m × n` view (`m, n > 0`).
    fn last(&self, m: usize, n: usize) -> usize {
        self.offset + (m - 1) * self.rs + (n - 1) * self.cs
    }
}

/// `C = alpha · A · B + beta · C` where `A` is `m × k`, `B` is `k × n` and
/// `C` is a row-major `m × n` block of `c` at `c_offset` with row stride
/// `c_rs`. With `beta == 0`, `C` is only written.
///
/// # Panics
/// If a view reaches past its slice or `C`'s rows overlap: internal bugs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View<'_>,
    b: View<'_>,
    beta: f32,
    c: &mut [f32],
    c_offset: usize,
    c_rs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(m == 1 || c_rs >= n, "gemm: overlapping rows in C");
    assert!(
        c_offset + (m - 1) * c_rs + (n - 1) < c.len(),
        "gemm: C out of bounds"
    );
    if k > 0 {
        assert!(a.last(m, k) < a.data.len(), "gemm: A out of bounds");
        assert!(b.last(k, n) < b.data.len(), "gemm: B out of bounds");
    }
    let stride = |s: usize| isize::try_from(s).unwrap_or(isize::MAX);
    // SAFETY: the asserts above keep every element that sgemm reads
    // (A: offset + i·rs + l·cs for i < m, l < k; B likewise) inside its
    // slice, and every element it writes (C at c_offset + i·c_rs + j for
    // i < m, j < n) inside `c`; C's elements are distinct (c_rs >= n), and
    // `c` is borrowed mutably while `a` and `b` are shared borrows, so C
    // cannot alias A or B. When k == 0, A and B are not read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr().add(a.offset.min(a.data.len())),
            stride(a.rs),
            stride(a.cs),
            b.data.as_ptr().add(b.offset.min(b.data.len())),
            stride(b.rs),
            stride(b.cs),
            beta,
            c.as_mut_ptr().add(c_offset),
            stride(c_rs),
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 * 0.5).collect();
        let mut c = vec![1.0; m * n];
        gemm(
            m,
            k,
            n,
            1.0,
            View::rows(&a, 0, k),
            View::rows(&b, 0, n),
            0.0,
            &mut c,
            0,
            n,
        );
        assert_eq!(c, naive(m, k, n, &a, &b));
        // Transposed view of B (stored n × k).
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c2 = vec![0.0; m * n];
        gemm(
            m,
            k,
            n,
            1.0,
            View::rows(&a, 0, k),
            View::transposed(&bt, 0, k),
            0.0,
            &mut c2,
            0,
            n,
        );
        assert_eq!(c2, c);
    }

    #[test]
    fn rows_do_not_depend_on_the_batch() {
        let (k, n) = (384, 96);
        let a: Vec<f32> = (0..40 * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 991.0 - 0.5)
            .collect();
        let mut all = vec![0.0; 40 * n];
        gemm(
            40,
            k,
            n,
            1.0,
            View::rows(&a, 0, k),
            View::rows(&b, 0, n),
            0.0,
            &mut all,
            0,
            n,
        );
        for row in [0, 13, 39] {
            let mut one = vec![0.0; n];
            gemm(
                1,
                k,
                n,
                1.0,
                View::rows(&a, row * k, k),
                View::rows(&b, 0, n),
                0.0,
                &mut one,
                0,
                n,
            );
            assert_eq!(one, all[row * n..(row + 1) * n]);
        }
    }
}
