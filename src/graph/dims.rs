//! Arithmetic on dimensions that may be symbolic.
//!
//! Shape inference must not guess: a result is a number, a symbol when the arithmetic is exact
//! (broadcasting a symbol against 1, multiplying by 1, `N*64 / 64`), or unknown (`None`), which
//! makes the whole tensor's shape unknown. Conflicts between two numbers are errors because they
//! mean the model cannot run.

use super::Dim;

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Symbolic(_) => None,
        }
    }
}

/// Numpy broadcasting of one dimension pair. Ok(None): the result is not determined
/// (two different symbols).
pub(crate) fn broadcast_dim(a: &Dim, b: &Dim) -> Result<Option<Dim>, String> {
    Ok(match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x == y => Some(a.clone()),
        (Dim::Known(1), _) => Some(b.clone()),
        (_, Dim::Known(1)) => Some(a.clone()),
        (Dim::Known(x), Dim::Known(y)) => return Err(format!("dimensions {x} and {y} do not broadcast")),
        // A symbol broadcast against n > 1 must be n (or 1) for the model to run.
        (Dim::Symbolic(_), Dim::Known(_)) => Some(b.clone()),
        (Dim::Known(_), Dim::Symbolic(_)) => Some(a.clone()),
        (Dim::Symbolic(x), Dim::Symbolic(y)) if x == y => Some(a.clone()),
        (Dim::Symbolic(_), Dim::Symbolic(_)) => None,
    })
}

/// Numpy broadcasting of shapes (right-aligned). Ok(None) when some dimension is undetermined.
pub(crate) fn broadcast_shapes(shapes: &[&[Dim]]) -> Result<Option<Vec<Dim>>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut acc = Dim::Known(1);
        for s in shapes {
            let Some(k) = (i + s.len()).checked_sub(rank) else { continue };
            match broadcast_dim(&acc, &s[k]).map_err(|e| {
                let all: Vec<String> = shapes.iter().map(|s| super::shape_string(s)).collect();
                format!("{e} (shapes {} at axis {i} of the result)", all.join(" and "))
            })? {
                Some(d) => acc = d,
                None => return Ok(None),
            }
        }
        out.push(acc);
    }
    Ok(Some(out))
}

/// Two dimensions that must be equal (Concat's other axes, MatMul's inner dimension). Err on two
/// different numbers; a number wins over a symbol.
pub(crate) fn unify(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => Err(format!("{x} differs from {y}")),
        (Dim::Symbolic(_), Dim::Known(_)) => Ok(b.clone()),
        _ => Ok(a.clone()),
    }
}

/// A product of dimensions: a coefficient times symbols (kept sorted), so that `N*64*1*1`
/// divided by `64` is recognised as `N` (Reshape's -1, Flatten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Product {
    pub coef: i64,
    pub syms: Vec<String>,
}

impl Product {
    pub fn one() -> Self {
        Product { coef: 1, syms: Vec::new() }
    }

    pub fn of(dims: &[Dim]) -> Option<Self> {
        dims.iter().try_fold(Product::one(), |acc, d| acc.times(d))
    }

    /// None on overflow.
    pub fn times(mut self, d: &Dim) -> Option<Self> {
        match d {
            Dim::Known(n) => self.coef = self.coef.checked_mul(*n)?,
            Dim::Symbolic(s) => {
                let at = self.syms.binary_search(s).unwrap_or_else(|e| e);
                self.syms.insert(at, s.clone());
            }
        }
        Some(self)
    }

    /// self / other when it is exact; None otherwise (or when other is zero).
    pub fn divided_by(&self, other: &Product) -> Option<Product> {
        if other.coef == 0 || self.coef % other.coef != 0 {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let at = syms.binary_search(s).ok()?;
            syms.remove(at);
        }
        Some(Product { coef: self.coef / other.coef, syms })
    }

    /// As one dimension: a number, or a lone symbol with coefficient 1.
    pub fn to_dim(&self) -> Option<Dim> {
        match self.syms.as_slice() {
            [] => Some(Dim::Known(self.coef)),
            [s] if self.coef == 1 => Some(Dim::Symbolic(s.clone())),
            _ => None,
        }
    }
}

/// `a + b` where exact.
pub(crate) fn add(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_add(*y).map(Dim::Known),
        (_, Dim::Known(0)) => Some(a.clone()),
        (Dim::Known(0), _) => Some(b.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: i64) -> Dim {
        Dim::Known(n)
    }
    fn s(n: &str) -> Dim {
        Dim::Symbolic(n.into())
    }

    #[test]
    fn broadcasting_rules() {
        assert_eq!(broadcast_shapes(&[&[s("N"), k(3), k(4)], &[k(4)]]).unwrap(), Some(vec![s("N"), k(3), k(4)]));
        assert_eq!(broadcast_shapes(&[&[k(1), k(3)], &[k(5), k(1)]]).unwrap(), Some(vec![k(5), k(3)]));
        assert_eq!(broadcast_shapes(&[&[s("N"), k(1)], &[k(1), k(7)]]).unwrap(), Some(vec![s("N"), k(7)]));
        assert_eq!(broadcast_shapes(&[&[s("N")], &[s("M")]]).unwrap(), None);
        let e = broadcast_shapes(&[&[k(2), k(3)], &[k(4)]]).unwrap_err();
        assert!(e.contains("3 and 4"), "{e}");
        assert_eq!(broadcast_shapes(&[&[], &[k(2)]]).unwrap(), Some(vec![k(2)]));
    }

    #[test]
    fn products_cancel_symbols() {
        let p = Product::of(&[s("N"), k(64), k(1), k(1)]).unwrap();
        let q = Product::of(&[k(64)]).unwrap();
        assert_eq!(p.divided_by(&q).unwrap().to_dim(), Some(s("N")));
        assert_eq!(p.to_dim(), None);
        assert_eq!(q.divided_by(&p), None);
        assert_eq!(Product::of(&[k(6), k(7)]).unwrap().divided_by(&Product::of(&[k(4)]).unwrap()), None);
    }

    #[test]
    fn unify_prefers_numbers() {
        assert_eq!(unify(&s("N"), &k(3)).unwrap(), k(3));
        assert_eq!(unify(&k(3), &s("N")).unwrap(), k(3));
        assert!(unify(&k(3), &k(4)).is_err());
    }
}
