//! Building op lists (merging neighbours) and the reference meaning of ops ([`apply_ops`]).

use super::Op;

/// Applies `ops` to `input` (the bytes of one direction, from the first byte the ops cover)
/// and appends what the receiver gets to `out`. This is the reference meaning of [`Op`]:
/// `Copy` and `Replace` past the end of `input` are clamped (no panic), bytes of `input` not
/// consumed by any op (held) are not emitted.
pub fn apply_ops(input: &[u8], ops: &[Op], out: &mut Vec<u8>) {
    let mut pos = 0usize;
    for op in ops {
        match op {
            Op::Copy(n) => {
                let end = pos.saturating_add(*n).min(input.len());
                out.extend_from_slice(input.get(pos..end).unwrap_or(&[]));
                pos = end;
            }
            Op::Delete(n) => pos = pos.saturating_add(*n).min(input.len()),
            Op::Replace(b) => {
                out.extend_from_slice(b);
                pos = pos.saturating_add(b.len()).min(input.len());
            }
            Op::Insert(b) => out.extend_from_slice(b),
        }
    }
}

/// Appends `Copy(n)`, merged into a preceding `Copy`.
pub(crate) fn copy(ops: &mut Vec<Op>, n: usize) {
    if n == 0 {
        return;
    }
    if let Some(Op::Copy(m)) = ops.last_mut() {
        *m += n;
    } else {
        ops.push(Op::Copy(n));
    }
}

/// Appends `Delete(n)`, merged into a preceding `Delete`.
pub(crate) fn delete(ops: &mut Vec<Op>, n: usize) {
    if n == 0 {
        return;
    }
    if let Some(Op::Delete(m)) = ops.last_mut() {
        *m += n;
    } else {
        ops.push(Op::Delete(n));
    }
}

/// Appends `Replace(b)`, merged into a preceding `Replace`.
pub(crate) fn replace(ops: &mut Vec<Op>, b: &[u8]) {
    if b.is_empty() {
        return;
    }
    if let Some(Op::Replace(v)) = ops.last_mut() {
        v.extend_from_slice(b);
    } else {
        ops.push(Op::Replace(b.to_vec()));
    }
}

/// Appends `Insert(b)`, merged into a preceding `Insert`.
pub(crate) fn insert(ops: &mut Vec<Op>, b: &[u8]) {
    if b.is_empty() {
        return;
    }
    if let Some(Op::Insert(v)) = ops.last_mut() {
        v.extend_from_slice(b);
    } else {
        ops.push(Op::Insert(b.to_vec()));
    }
}

/// Emits `output` in place of `input` (same length): equal runs as `Copy`, the rest as
/// `Replace`.
pub(crate) fn same_len(ops: &mut Vec<Op>, input: &[u8], output: &[u8]) {
    for (i, o) in input.iter().zip(output) {
        if i == o {
            copy(ops, 1);
        } else {
            replace(ops, std::slice::from_ref(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_all_kinds_and_clamps() {
        let ops = vec![
            Op::Copy(2),
            Op::Delete(1),
            Op::Replace(b"XY".to_vec()),
            Op::Insert(b"!".to_vec()),
            Op::Copy(100),
        ];
        let mut out = Vec::new();
        apply_ops(b"abcdefg", &ops, &mut out);
        assert_eq!(out, b"abXY!fg");
    }

    #[test]
    fn builders_merge_neighbours() {
        let mut ops = Vec::new();
        copy(&mut ops, 1);
        copy(&mut ops, 2);
        replace(&mut ops, b"X");
        replace(&mut ops, b"Y");
        delete(&mut ops, 1);
        delete(&mut ops, 0);
        insert(&mut ops, b"a");
        insert(&mut ops, b"b");
        assert_eq!(
            ops,
            vec![
                Op::Copy(3),
                Op::Replace(b"XY".to_vec()),
                Op::Delete(1),
                Op::Insert(b"ab".to_vec())
            ]
        );
    }
}
