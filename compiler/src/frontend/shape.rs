//! Shape arithmetic shared by the frontend's shape inference and the interpreter.

/// Number of elements of `shape`, or `None` on overflow.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Numpy (multidirectional) broadcasting of two shapes, or `None` if they do not broadcast.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        // Dimension i from the right... aligned to the right.
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Whether `from` broadcasts to exactly `to` (unidirectional broadcasting).
pub fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len() && broadcast(from, to).as_deref() == Some(to)
}

/// The dimension `k` places from the right (0 = last), 1 past the rank.
fn dim_from_right(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// Row-major strides of `shape` aligned to an output of rank `rank`, with 0 for broadcast
/// (size-1 or missing) dimensions.
pub fn broadcast_strides(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut strides = vec![0; rank];
    let mut s = 1usize;
    for k in 0..shape.len() {
        let d = shape[shape.len() - 1 - k];
        if d != 1 {
            strides[rank - 1 - k] = s;
        }
        s = s.saturating_mul(d);
    }
    strides
}

/// Shapes of a numpy `matmul`: `(batch shape, m, k, n, output shape)`, or `None` if `a` and `b`
/// do not multiply. 1-D operands are promoted as numpy does (and the added dimension removed
/// from the output).
pub fn matmul(a: &[usize], b: &[usize]) -> Option<MatMulShape> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (m, ka) = if a.len() == 1 {
        (1, a[0])
    } else {
        (a[a.len() - 2], a[a.len() - 1])
    };
    let (kb, n) = if b.len() == 1 {
        (b[0], 1)
    } else {
        (b[b.len() - 2], b[b.len() - 1])
    };
    if ka != kb {
        return None;
    }
    let a_batch = if a.len() > 2 {
        &a[..a.len() - 2]
    } else {
        &[][..]
    };
    let b_batch = if b.len() > 2 {
        &b[..b.len() - 2]
    } else {
        &[][..]
    };
    let batch = broadcast(a_batch, b_batch)?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Some(MatMulShape {
        a_batch: a_batch.to_vec(),
        b_batch: b_batch.to_vec(),
        batch,
        m,
        k: ka,
        n,
        out,
    })
}

/// The geometry of a numpy `matmul`, see [`matmul`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatMulShape {
    pub a_batch: Vec<usize>,
    pub b_batch: Vec<usize>,
    /// Broadcast batch dimensions.
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Output shape.
    pub out: Vec<usize>,
}

/// `auto_pad` of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn parse(s: &str) -> Option<AutoPad> {
        match s {
            "" | "NOTSET" => Some(AutoPad::NotSet),
            "SAME_UPPER" => Some(AutoPad::SameUpper),
            "SAME_LOWER" => Some(AutoPad::SameLower),
            "VALID" => Some(AutoPad::Valid),
            _ => None,
        }
    }
}

/// Resolves one spatial dimension of a convolution: returns `(pad_begin, pad_end, out)`.
///
/// `pads` are the explicit pads (used only with [`AutoPad::NotSet`]). SAME_* pads follow the
/// ONNX definition: the output is `ceil(in / stride)` and the total padding
/// `max(0, (out - 1) * stride + dilated_kernel - in)` is split with the extra pixel at the end
/// (SAME_UPPER) or at the beginning (SAME_LOWER). `None` when the window does not fit.
pub fn conv_dim(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    auto_pad: AutoPad,
    pads: (usize, usize),
) -> Option<(usize, usize, usize)> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let dk = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let (pb, pe) = match auto_pad {
        AutoPad::NotSet => pads,
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(stride);
            let total = (out.saturating_sub(1))
                .checked_mul(stride)?
                .checked_add(dk)?
                .saturating_sub(input);
            if auto_pad == AutoPad::SameUpper {
                (total / 2, total - total / 2)
            } else {
                (total - total / 2, total / 2)
            }
        }
    };
    let padded = input.checked_add(pb)?.checked_add(pe)?;
    if padded < dk {
        return None;
    }
    Some((pb, pe, (padded - dk) / stride + 1))
}

/// Resolves one spatial dimension of MaxPool/AveragePool as onnxruntime does: returns
/// `(pad_begin, pad_end, out)`.
///
/// SAME_* pads use onnxruntime's (and the ONNX reference's) rule with the undilated kernel:
/// `pad_needed = (ceil(in / stride) - 1) * stride + kernel - in` (clamped at 0). The output is
/// `floor` (or `ceil` with `ceil_mode`) of `(in + pads - dilated_kernel) / stride + 1`; with
/// `ceil_mode` a last window that would start past the input and its begin padding is dropped,
/// as ONNX specifies. `None` when the window does not fit.
pub fn pool_dim(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    auto_pad: AutoPad,
    pads: (usize, usize),
    ceil_mode: bool,
) -> Option<(usize, usize, usize)> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let dk = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let (pb, pe) = match auto_pad {
        AutoPad::NotSet => pads,
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let target = input.div_ceil(stride);
            let needed = (target.saturating_sub(1))
                .checked_mul(stride)?
                .checked_add(kernel)?
                .saturating_sub(input);
            if auto_pad == AutoPad::SameUpper {
                (needed / 2, needed - needed / 2)
            } else {
                (needed.div_ceil(2), needed - needed.div_ceil(2))
            }
        }
    };
    let padded = input.checked_add(pb)?.checked_add(pe)?;
    if padded < dk {
        return None;
    }
    let span = padded - dk;
    let mut out = if ceil_mode {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    if ceil_mode && out > 1 && (out - 1).checked_mul(stride)? >= input.checked_add(pb)? {
        out -= 1;
    }
    Some((pb, pe, out))
}

/// Normalizes an axis in `[-rank, rank)` (or `[-rank, rank]` with `inclusive`).
pub fn normalize_axis(axis: i64, rank: usize, inclusive: bool) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let hi = if inclusive { r } else { r - 1 };
    if axis < -r || axis > hi {
        return None;
    }
    let a = if axis < 0 { axis + r } else { axis };
    usize::try_from(a).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[3, 4, 5], &[5]), Some(vec![3, 4, 5]));
        assert_eq!(broadcast(&[3, 1, 5], &[4, 1]), Some(vec![3, 4, 5]));
        assert_eq!(broadcast(&[], &[2]), Some(vec![2]));
        assert_eq!(broadcast(&[3], &[4]), None);
        assert!(broadcasts_to(&[1, 4], &[3, 4]));
        assert!(!broadcasts_to(&[3, 4], &[1, 4]));
        assert_eq!(broadcast_strides(&[4, 1], 3), vec![0, 1, 0]);
    }

    #[test]
    fn matmul_shapes() {
        let s = matmul(&[3, 1, 3, 4], &[1, 2, 4, 2]).unwrap();
        assert_eq!(s.out, vec![3, 2, 3, 2]);
        assert_eq!(matmul(&[4], &[2, 4, 1]).unwrap().out, vec![2, 1]);
        assert_eq!(matmul(&[1, 2, 4, 3], &[3]).unwrap().out, vec![1, 2, 4]);
        assert_eq!(matmul(&[3], &[3]).unwrap().out, Vec::<usize>::new());
        assert!(matmul(&[2, 3], &[4, 2]).is_none());
    }

    #[test]
    fn conv_geometry() {
        // SAME_UPPER, 5x5 input, 3x3 kernel, stride 2: out 3, pads 1/1.
        assert_eq!(
            conv_dim(5, 3, 2, 1, AutoPad::SameUpper, (0, 0)),
            Some((1, 1, 3))
        );
        // total pad 1: SAME_UPPER puts it at the end, SAME_LOWER at the beginning.
        assert_eq!(
            conv_dim(4, 2, 1, 1, AutoPad::SameUpper, (0, 0)),
            Some((0, 1, 4))
        );
        assert_eq!(
            conv_dim(4, 2, 1, 1, AutoPad::SameLower, (0, 0)),
            Some((1, 0, 4))
        );
        assert_eq!(
            conv_dim(7, 3, 2, 1, AutoPad::NotSet, (1, 0)),
            Some((1, 0, 3))
        );
        assert_eq!(conv_dim(2, 3, 1, 1, AutoPad::NotSet, (0, 0)), None);
        assert_eq!(conv_dim(5, 3, 0, 1, AutoPad::NotSet, (0, 0)), None);
    }

    #[test]
    fn pool_geometry() {
        // test_maxpool_2d_ceil: 4x4, kernel 3, stride 2, ceil -> 2.
        assert_eq!(
            pool_dim(4, 3, 2, 1, AutoPad::NotSet, (0, 0), true),
            Some((0, 0, 2))
        );
        assert_eq!(
            pool_dim(4, 3, 2, 1, AutoPad::NotSet, (0, 0), false),
            Some((0, 0, 1))
        );
        // test_maxpool_2d_ceil_output_size_reduce_by_one: 2x2, kernel 1, stride 2, ceil -> 1.
        assert_eq!(
            pool_dim(2, 1, 2, 1, AutoPad::NotSet, (0, 0), true),
            Some((0, 0, 1))
        );
        // SAME_LOWER, 32, kernel 2, stride 1: pad 1 at the beginning.
        assert_eq!(
            pool_dim(32, 2, 1, 1, AutoPad::SameLower, (0, 0), false),
            Some((1, 0, 32))
        );
        assert_eq!(
            pool_dim(32, 2, 1, 1, AutoPad::SameUpper, (0, 0), false),
            Some((0, 1, 32))
        );
    }

    #[test]
    fn axes() {
        assert_eq!(normalize_axis(-1, 4, false), Some(3));
        assert_eq!(normalize_axis(4, 4, false), None);
        assert_eq!(normalize_axis(4, 4, true), Some(4));
        assert_eq!(normalize_axis(-5, 4, false), None);
    }
}
